//! What stackgen writes as YAML reads back as exactly what it meant in the YAML 1.1 readers
//! Kubernetes tooling uses: PyYAML, in pure Python and on libyaml. Hostile strings (YAML 1.1 line
//! breaks, controls, YAML syntax) written by the YAML writer come back as themselves, and a team
//! rule file or a spec field holding them renders to exactly the documents and rules it should.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::support::{render_to_temp, stackgen, stderr, tool};

/// Reads every document of `file` with PyYAML's `loader` (`SafeLoader`, or `CSafeLoader` on
/// libyaml) and returns them as JSON.
fn pyyaml(file: &Path, loader: &str) -> Vec<Value> {
    let python = tool("python3", "apt-get install python3");
    let script = format!(
        "import json, sys, yaml\n\
         with open(sys.argv[1], encoding='utf-8') as f:\n\
         \x20   docs = list(yaml.load_all(f, Loader=yaml.{loader}))\n\
         print(json.dumps(docs))\n"
    );
    let output = Command::new(python)
        .args(["-c", &script])
        .arg(file)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "PyYAML ({loader}) refuses {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from python")
}

const LOADERS: [&str; 2] = ["SafeLoader", "CSafeLoader"];

/// Strings YAML 1.1 readers take apart: its line breaks (NEL, LS, PS), controls, the byte order
/// mark, and YAML syntax around them.
fn hostile_strings() -> Vec<String> {
    const PIECES: &[&str] = &[
        "\u{2028}",
        "\u{2029}",
        "\u{85}",
        "\u{feff}",
        "\r\n",
        "\n",
        "\t",
        "\u{7}",
        "\u{7f}",
        "\u{9c}",
        "\u{fffe}",
        "\"",
        "'",
        "\\",
        ": ",
        " #",
        "- ",
        "---\n",
        "...",
        "|-",
        ">+",
        "&x",
        "*x",
        "!!python/object",
        "%TAG",
        "{a: b}",
        "[1, 2]",
        "? k",
        "Yes",
        "NULL",
        "0o17",
        "1_000",
        "2026-12-01",
        "=",
        "checkout",
    ];
    let mut rng = fastrand::Rng::with_seed(85);
    (0..400)
        .map(|_| {
            (0..rng.usize(1..7))
                .map(|_| PIECES[rng.usize(..PIECES.len())])
                .collect()
        })
        .collect()
}

#[test]
fn hostile_strings_read_back_as_themselves_in_pyyaml_and_libyaml() {
    let dir = tempfile::tempdir().expect("temp dir");
    let strings = hostile_strings();
    let value = json!({
        "values": strings,
        "multi_line": strings.iter().map(|s| format!("{s}\nline two {s}\n")).collect::<Vec<_>>(),
        "keys": strings.iter().map(|s| (s.clone(), Value::from(1))).collect::<serde_json::Map<_, _>>(),
    });
    let file = dir.path().join("hostile.yaml");
    fs::write(&file, stackgen::yaml::document(&value)).expect("write");
    for loader in LOADERS {
        let read = pyyaml(&file, loader);
        assert_eq!(read.len(), 1, "{loader}: one document");
        for part in ["values", "multi_line"] {
            for (got, want) in read[0][part]
                .as_array()
                .into_iter()
                .flatten()
                .zip(value[part].as_array().into_iter().flatten())
            {
                assert_eq!(got, want, "{loader}: {part} reads back otherwise");
            }
        }
        for (key, _) in value["keys"].as_object().into_iter().flatten() {
            assert!(
                read[0]["keys"].get(key).is_some(),
                "{loader}: key {key:?} reads back otherwise"
            );
        }
        assert_eq!(read[0], value, "{loader}");
    }
}

/// A team's rule with U+2028, NEL and a fake second rule in its labels and annotations stays one
/// rule of that team, and the rendered stream stays one document per object.
#[test]
fn hostile_text_in_a_team_rule_file_cannot_add_a_rule_or_a_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let injected =
        "fine\u{2028}- alert: Injected\u{2028}  expr: vector(1)\u{2028}  labels: {team: search}";
    let rules = format!(
        "groups:\n  - name: shop\n    rules:\n      - alert: ShopDown\n        expr: up == 0\n        for: 5m\n        labels:\n          severity: critical\n          note: \"{injected}\"\n        annotations:\n          summary: \"line\\u0085- alert: Injected2\\u2029{{{{ $labels.pod }}}}\"\n          description: \"Every shop pod is down.\\nSee the runbook.\\u2028    - alert: Injected3\\u2028      expr: vector(1)\\n\"\n          runbook_url: https://runbooks.example.com/shop-down\n"
    );
    fs::write(dir.path().join("shop.yaml"), rules).expect("rules");
    fs::write(
        dir.path().join("stack.yaml"),
        "cluster: {name: prod}\nrouter: {platform_team: shop}\nteams:\n  - name: shop\n    webhook: {url: {secret: hooks, key: shop}}\n    rule_files: [shop.yaml]\n  - name: search\n    webhook: {url: {secret: hooks, key: search}}\n",
    )
    .expect("spec");
    let spec = dir.path().join("stack.yaml");
    let (_tmp, out) = render_to_temp(spec.to_str().expect("utf-8"));
    let rendered = out.join("prometheus/rules/team-shop-shop.yaml");
    for loader in LOADERS {
        let docs = pyyaml(&rendered, loader);
        let rules = &docs[0]["groups"][0]["rules"];
        assert_eq!(rules.as_array().map(Vec::len), Some(1), "{loader}: {rules}");
        assert_eq!(rules[0]["labels"]["note"], injected, "{loader}");
        assert_eq!(rules[0]["labels"]["team"], "shop", "{loader}");
        assert_eq!(
            rules[0]["annotations"]["description"],
            "Every shop pod is down.\nSee the runbook.\u{2028}    - alert: Injected3\u{2028}      expr: vector(1)\n",
            "{loader}"
        );
        assert_eq!(
            rules[0]["annotations"]["summary"],
            "line\u{85}- alert: Injected2\u{2029}{{ $labels.pod }}",
            "{loader}"
        );
    }

    let stream = stackgen(&["render", spec.to_str().expect("utf-8"), "--out", "-"]);
    assert!(stream.status.success(), "{}", stderr(&stream));
    let stream_file = dir.path().join("stream.yaml");
    fs::write(&stream_file, &stream.stdout).expect("stream");
    let text = String::from_utf8(stream.stdout).expect("utf-8 stream");
    let as_yaml_1_2: Vec<Value> = yaml_rust2::YamlLoader::load_from_str(&text)
        .expect("the stream parses")
        .iter()
        .map(stackgen::yaml::from_yaml)
        .collect();
    assert!(as_yaml_1_2.len() > 10, "{} documents", as_yaml_1_2.len());
    for loader in LOADERS {
        let docs = pyyaml(&stream_file, loader);
        assert!(
            docs.iter()
                .all(|doc| doc["metadata"]["namespace"] != "kube-system"),
            "{loader}: a document in kube-system"
        );
        assert_eq!(docs.len(), as_yaml_1_2.len(), "{loader}: document count");
        for (one, other) in docs.iter().zip(&as_yaml_1_2) {
            assert_eq!(
                one, other,
                "{loader} reads a document otherwise than YAML 1.2"
            );
        }
    }
}
