//! A small, deterministic YAML writer for values built in code (labels, resources, kustomization,
//! generated ConfigMaps) and the quoting used for every value a template inserts.
//!
//! Strings are written plain when that is unambiguous, as literal blocks when multi-line text can
//! be written so losslessly, and double-quoted otherwise, with every character that is not
//! printable or that a YAML 1.1 reader would take for a line break escaped: whatever a string
//! holds, it reads back as exactly itself and can never add a key, an item or a document. Map keys come out sorted
//! because `serde_json::Map` is ordered, so the same value always gives the same bytes.

use serde_json::Value;

/// Writes a string as a YAML scalar that reads back as the same string: plain when that is
/// unambiguous (`monitoring`, `app.kubernetes.io/name`, `/metrics`), double-quoted otherwise.
pub fn quote(text: &str) -> String {
    if is_plain_safe(text) {
        return text.to_string();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if needs_escape(c) => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Characters that may not appear as they are in any YAML scalar stackgen writes: what YAML does
/// not count as printable, and what a YAML 1.1 reader (libyaml, PyYAML) takes for a line break
/// (NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR), and the byte order mark. Written as `\uXXXX`,
/// they read back as themselves in YAML 1.1 and 1.2 alike.
fn needs_escape(c: char) -> bool {
    let printable = matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7E}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}');
    !printable || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}')
}

/// Plain (unquoted) is safe for a string that starts with a letter or `/`, holds only letters,
/// digits and `_ . / - :` (a `:` never last), and is no YAML 1.1 boolean or null word. Such a
/// string can never read back as a number, boolean, null or anything but itself.
/// Words a YAML 1.1 reader takes for a boolean or null, in any case.
const YAML_1_1_WORDS: &[&str] = &["true", "false", "yes", "no", "on", "off", "y", "n", "null"];

fn is_plain_safe(text: &str) -> bool {
    let first_ok = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/');
    first_ok
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | ':'))
        && !text.ends_with(':')
        && !text.contains("::")
        && !YAML_1_1_WORDS.contains(&text.to_ascii_lowercase().as_str())
}

/// Writes `value` as block YAML, every line indented by `indent` spaces and starting with a newline,
/// ready to follow a `key:` in a template. Empty collections and scalars stay on the key's line.
pub fn block(value: &Value, indent: usize) -> String {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut out = String::new();
            write_map(map, indent, &mut out);
            out
        }
        Value::Array(items) if !items.is_empty() => {
            let mut out = String::new();
            write_seq(items, indent, &mut out);
            out
        }
        other => format!(" {}", scalar(other, indent)),
    }
}

/// A whole YAML document for `value` (no leading newline, trailing newline).
pub fn document(value: &Value) -> String {
    let text = block(value, 0);
    let mut text = text.strip_prefix('\n').unwrap_or(&text).to_string();
    text.push('\n');
    text
}

fn write_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (key, value) in map {
        out.push('\n');
        out.push_str(&pad);
        out.push_str(&key_text(key));
        out.push(':');
        out.push_str(&block(value, indent + 2));
    }
}

fn write_seq(items: &[Value], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for item in items {
        out.push('\n');
        out.push_str(&pad);
        out.push('-');
        match item {
            Value::Object(fields) if !fields.is_empty() => {
                // First key on the dash line, the rest aligned under it.
                let inner = block(item, indent + 2);
                let first_line_pad = format!("\n{}", " ".repeat(indent + 2));
                let inner = inner.strip_prefix(&first_line_pad).unwrap_or(&inner);
                out.push(' ');
                out.push_str(inner);
            }
            _ => out.push_str(&block(item, indent + 2)),
        }
    }
}

fn key_text(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && !YAML_1_1_WORDS.contains(&key.to_ascii_lowercase().as_str());
    if plain { key.to_string() } else { quote(key) }
}

fn scalar(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => literal_block(s, indent).unwrap_or_else(|| quote(s)),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A literal block (`|` or `|-`) for readable multi-line text, when that is lossless.
fn literal_block(text: &str, indent: usize) -> Option<String> {
    if !text.contains('\n') {
        return None;
    }
    let body = text.strip_suffix('\n');
    let (indicator, body) = match body {
        Some(b) if !b.ends_with('\n') => ("|", b),
        Some(_) => return None,
        None => ("|-", text),
    };
    let safe = body.split('\n').all(|line| {
        !line.ends_with([' ', '\t'])
            && line
                .chars()
                .all(|c| c == '\t' || !(needs_escape(c) || c.is_control()))
    }) && !body.is_empty()
        && !body.starts_with([' ', '\t', '\n']);
    if !safe {
        return None;
    }
    let pad = " ".repeat(indent);
    let mut out = String::from(indicator);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    Some(out)
}

/// Reads YAML that someone else wrote (a team's rule or test file) with yaml-rust2, refusing
/// anchors and aliases first: an alias is expanded as a copy, so a few lines of nested aliases
/// (an alias bomb) would take gigabytes. Rule and test files never need them.
pub fn load_untrusted(text: &str) -> Result<Vec<yaml_rust2::Yaml>, String> {
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
    use yaml_rust2::scanner::Marker;

    #[derive(Default)]
    struct AnchorFinder {
        found: Option<Marker>,
    }
    impl MarkedEventReceiver for AnchorFinder {
        fn on_event(&mut self, event: Event, mark: Marker) {
            let anchored = match event {
                Event::Alias(_) => true,
                Event::Scalar(_, _, anchor, _)
                | Event::SequenceStart(anchor, _)
                | Event::MappingStart(anchor, _) => anchor > 0,
                _ => false,
            };
            if anchored && self.found.is_none() {
                self.found = Some(mark);
            }
        }
    }
    let mut finder = AnchorFinder::default();
    Parser::new_from_str(text)
        .load(&mut finder, true)
        .map_err(|e| e.to_string())?;
    if let Some(mark) = finder.found {
        return Err(format!(
            "{}:{}: anchors and aliases (`&name`, `*name`) are not supported; write the value out",
            mark.line(),
            mark.col() + 1
        ));
    }
    yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| e.to_string())
}

/// A YAML document (as yaml-rust2 reads it) as a JSON value, for editing and writing back.
pub fn from_yaml(node: &yaml_rust2::Yaml) -> Value {
    match node {
        yaml_rust2::Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.clone()), Value::Number),
        yaml_rust2::Yaml::Integer(n) => Value::from(*n),
        yaml_rust2::Yaml::String(s) => Value::String(s.clone()),
        yaml_rust2::Yaml::Boolean(b) => Value::Bool(*b),
        yaml_rust2::Yaml::Array(items) => Value::Array(items.iter().map(from_yaml).collect()),
        yaml_rust2::Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        yaml_rust2::Yaml::String(s) | yaml_rust2::Yaml::Real(s) => s.clone(),
                        yaml_rust2::Yaml::Integer(n) => n.to_string(),
                        yaml_rust2::Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, from_yaml(v))
                })
                .collect(),
        ),
        yaml_rust2::Yaml::Alias(_) | yaml_rust2::Yaml::Null | yaml_rust2::Yaml::BadValue => {
            Value::Null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_nested_block_yaml() {
        let value = json!({
            "b": {"cpu": "500m", "count": 2},
            "a": [{"name": "x", "port": 80}, "y"],
            "empty": {},
            "text": "line one\nline two\n",
        });
        let want = "a:\n  - name: x\n    port: 80\n  - \"y\"\nb:\n  count: 2\n  cpu: \"500m\"\nempty: {}\ntext: |\n  line one\n  line two\n";
        assert_eq!(document(&value), want);
    }

    #[test]
    fn quotes_what_would_change_meaning() {
        assert_eq!(quote("yes"), "\"yes\"");
        assert_eq!(quote("Off"), "\"Off\"");
        assert_eq!(quote("monitoring"), "monitoring");
        assert_eq!(quote("app.kubernetes.io/name"), "app.kubernetes.io/name");
        assert_eq!(
            quote("quay.io/prometheus/prometheus:v3.13.2"),
            "quay.io/prometheus/prometheus:v3.13.2"
        );
        assert_eq!(quote("8080"), "\"8080\"");
        assert_eq!(quote("500m"), "\"500m\"");
        assert_eq!(quote("a: b"), "\"a: b\"");
        assert_eq!(quote("x:"), "\"x:\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(key_text("app.kubernetes.io/name"), "app.kubernetes.io/name");
        assert_eq!(key_text("on"), "\"on\"");
        assert_eq!(key_text("a b"), "\"a b\"");
    }

    #[test]
    fn unsafe_multiline_text_stays_quoted() {
        assert_eq!(scalar(&json!("  indented\nx"), 2), r#""  indented\nx""#);
        assert_eq!(scalar(&json!("trailing \nx"), 2), r#""trailing \nx""#);
        assert_eq!(scalar(&json!("two\n\n"), 2), r#""two\n\n""#);
    }

    #[test]
    fn output_parses_back_to_the_same_value() {
        let value = json!({"k": ["a: b", "#not a comment", "- dash", "multi\nline", true, 1.5, null, "no", "1e3", "a:b", "/metrics"]});
        let text = document(&value);
        let parsed = yaml_rust2::YamlLoader::load_from_str(&text).expect("valid yaml");
        let seq = parsed[0]["k"].as_vec().expect("list");
        assert_eq!(seq[0].as_str(), Some("a: b"));
        assert_eq!(seq[1].as_str(), Some("#not a comment"));
        assert_eq!(seq[2].as_str(), Some("- dash"));
        assert_eq!(seq[3].as_str(), Some("multi\nline"));
        assert_eq!(seq[4].as_bool(), Some(true));
        for (i, text) in [(7, "no"), (8, "1e3"), (9, "a:b"), (10, "/metrics")] {
            assert_eq!(seq[i].as_str(), Some(text), "{text}");
        }
    }

    /// Pieces hostile strings are made of: YAML syntax, line breaks of YAML 1.1 and 1.2,
    /// controls, the byte order mark, non-characters, words YAML 1.1 reads as other types.
    pub(crate) const HOSTILE_PIECES: &[&str] = &[
        "\u{2028}",
        "\u{2029}",
        "\u{85}",
        "\u{feff}",
        "\r",
        "\n",
        "\r\n",
        "\t",
        "\0",
        "\u{7f}",
        "\u{9b}",
        "\u{1b}[2J",
        "\u{fffe}",
        "\u{ffff}",
        "\"",
        "'",
        "\\",
        ": ",
        "#",
        "- ",
        "---",
        "...",
        "|",
        ">",
        "&a",
        "*a",
        "!!str",
        "%YAML",
        "@",
        "`",
        "{",
        "}",
        "[",
        "]",
        ", ",
        "? ",
        " ",
        "é",
        "😀",
        "yes",
        "no",
        "null",
        "~",
        "0x1F",
        "1e3",
        ".inf",
        "<<",
        "x",
        "team: other",
        "expr: vector(1)",
    ];

    /// A hostile string, from a seeded generator (the same strings on every run).
    pub(crate) fn hostile(rng: &mut fastrand::Rng) -> String {
        (0..rng.usize(0..8))
            .map(|_| HOSTILE_PIECES[rng.usize(..HOSTILE_PIECES.len())])
            .collect()
    }

    #[test]
    fn every_string_reads_back_as_itself_as_value_key_item_and_multi_line_text() {
        let mut rng = fastrand::Rng::with_seed(2028);
        for _ in 0..5_000 {
            let text = hostile(&mut rng);
            let value = json!({
                "value": text,
                "lines": format!("{text}\nsecond line {text}\n"),
                "list": [text, {"nested": text}],
                text.clone(): "as a key",
            });
            let written = document(&value);
            let docs = yaml_rust2::YamlLoader::load_from_str(&written)
                .unwrap_or_else(|e| panic!("{e} in {written:?}"));
            assert_eq!(docs.len(), 1, "{written:?}");
            assert_eq!(from_yaml(&docs[0]), value, "{written:?}");
            let scalar = quote(&text);
            assert!(
                !scalar.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']),
                "{scalar:?} breaks the line"
            );
        }
    }

    #[test]
    fn line_separators_never_end_a_literal_block() {
        let text = "summary: fine\u{2028}- alert: Injected\n  expr: vector(1)\n";
        let written = document(&json!({ "annotation": text }));
        assert!(written.starts_with("annotation: \""), "{written}");
        assert!(written.contains("\\u2028"), "{written}");
    }

    #[test]
    fn an_alias_bomb_is_refused_before_it_is_expanded() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..12 {
            let refs = vec![format!("*a{}", level - 1); 10].join(", ");
            bomb.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        let refused = load_untrusted(&bomb).expect_err("refused");
        assert!(refused.starts_with("1:9: anchors and aliases"), "{refused}");
        assert!(load_untrusted("groups: []\n").is_ok());
    }
}
