//! Series from a Prometheus text exposition (what `/metrics` answers), so the linter and the
//! dashboard tests can tell a typo'd metric from a real one, and `validate --metrics` can check a
//! service's metrics convention against a scrape of it.
//!
//! The text format is read line by line: `# ...` lines are comments (`HELP`, `TYPE`), every other
//! line is `name{label="value",...} value [timestamp]`, with `\\`, `\"` and `\n` escaped in label
//! values (which may hold braces and commas, like Spring's `uri="/accounts/{id}"`), and the
//! name possibly quoted inside the braces (`{"name.with.dots",a="b"}`).

use std::collections::{BTreeMap, BTreeSet};

/// Series names that Prometheus makes itself for every target or rule.
pub const SYNTHETIC: &[&str] = &[
    "up",
    "ALERTS",
    "ALERTS_FOR_STATE",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// A series' labels.
pub type SeriesLabels = BTreeMap<String, String>;

/// Every series name an exposition has (a histogram's `_bucket`, `_sum` and `_count` as written).
pub fn metric_names(text: &str) -> Result<BTreeSet<String>, String> {
    Ok(series(text)?.into_iter().map(|(name, _)| name).collect())
}

/// Every series of an exposition: its name and labels, in the order written.
pub fn series(text: &str) -> Result<Vec<(String, SeriesLabels)>, String> {
    let mut series = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = sample(line).map_err(|e| format!("line {}: {e}", index + 1))?;
        series.push(parsed);
    }
    if series.is_empty() {
        return Err("no samples found; is this a Prometheus text exposition (/metrics)?".into());
    }
    Ok(series)
}

/// One sample line's series.
fn sample(line: &str) -> Result<(String, SeriesLabels), String> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let mut name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = SeriesLabels::new();
    if let Some(inside) = rest.strip_prefix('{') {
        rest = inside;
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            if rest.starts_with('"') {
                // A quoted metric name (the UTF-8 names of newer clients).
                let (quoted, after) = quoted(rest)?;
                if quoted.chars().any(char::is_control) {
                    return Err("a quoted metric name holds a control character".into());
                }
                if !name.is_empty() {
                    return Err(format!("a second name `{quoted}` inside the braces"));
                }
                name = quoted;
                rest = after;
                continue;
            }
            let key_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .ok_or("the labels have no closing `}`")?;
            let key = &rest[..key_end];
            if key.is_empty() {
                return Err(format!("a label name is expected at `{}`", preview(rest)));
            }
            let after_key = rest[key_end..].trim_start();
            let after_equals = after_key
                .strip_prefix('=')
                .ok_or_else(|| format!("label `{key}` has no `=`"))?;
            let (value, after) = quoted(after_equals.trim_start())?;
            labels.insert(key.to_string(), value);
            rest = after;
        }
    }
    let quoted_name = line.starts_with('{');
    let plain_name = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_:".contains(c));
    if name.is_empty() || !(quoted_name || plain_name) {
        return Err(format!("`{}` is not a metric name", preview(&name)));
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| format!("`{name}` has no value"))?;
    let number = matches!(value, "NaN" | "+Inf" | "-Inf" | "Inf") || value.parse::<f64>().is_ok();
    if !number {
        return Err(format!(
            "`{name}` has the value `{}`, not a number",
            preview(value)
        ));
    }
    Ok((name, labels))
}

/// A double-quoted string at the start of `text` (unescaped), and what follows it.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let inside = text
        .strip_prefix('"')
        .ok_or_else(|| format!("a quoted value is expected at `{}`", preview(text)))?;
    let mut value = String::new();
    let mut chars = inside.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &inside[at + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, other)) => value.push(other),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("a label value has no closing `\"`".into())
}

/// The start of `text`, for messages: control characters escaped, so a scrape cannot drive the
/// terminal that shows the error.
fn preview(text: &str) -> String {
    let start: String = text.chars().take(40).collect();
    if start.chars().any(char::is_control) {
        start.escape_default().to_string()
    } else {
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_give_their_series_names() {
        let text = "# TYPE req_seconds histogram\nreq_seconds_bucket{le=\"0.1\"} 1\nreq_seconds_bucket{le=\"+Inf\"} 2\nreq_seconds_sum 0.3\nreq_seconds_count 2\n# TYPE hits_total counter\nhits_total{code=\"200\"} 5 1395066363000\n";
        let names = metric_names(text).expect("parses");
        for n in [
            "req_seconds_bucket",
            "req_seconds_sum",
            "req_seconds_count",
            "hits_total",
        ] {
            assert!(names.contains(n), "{n} missing from {names:?}");
        }
        assert!(metric_names("").is_err());
        let all = series(text).expect("parses");
        let bounds: Vec<&str> = all
            .iter()
            .filter(|(name, _)| name == "req_seconds_bucket")
            .filter_map(|(_, labels)| labels.get("le").map(String::as_str))
            .collect();
        assert_eq!(bounds, ["0.1", "+Inf"]);
        assert!(
            all.iter()
                .any(|(name, labels)| name == "hits_total" && labels["code"] == "200")
        );
    }

    #[test]
    fn label_values_hold_braces_commas_and_escapes() {
        let text = "http_server_requests_seconds_count{method=\"GET\",uri=\"/a/{id},{x}\",note=\"say \\\"hi\\\"\\n\\\\\",} 42\n{\"my.metric\",a=\"b\"} NaN\n";
        let all = series(text).expect("parses");
        assert_eq!(all[0].0, "http_server_requests_seconds_count");
        assert_eq!(all[0].1["uri"], "/a/{id},{x}");
        assert_eq!(all[0].1["note"], "say \"hi\"\n\\");
        assert_eq!(all[1].0, "my.metric");
        assert_eq!(all[1].1["a"], "b");
    }

    #[test]
    fn a_line_that_is_no_sample_is_an_error_with_its_number() {
        for (text, error) in [
            ("ok 1\nbroken{a=\"1\" 2\n", "line 2: "),
            ("x{a=1} 2\n", "quoted value"),
            ("x 1\ny{a=\"1\"} yes\n", "not a number"),
            ("x{a=\"1\"}\n", "has no value"),
            ("not-a-name 1\n", "not a metric name"),
            ("x \u{1b}[2J\n", "`\\u{1b}[2J`, not a number"),
            ("{\"a\u{7}\"} 1\n", "holds a control character"),
        ] {
            let found = series(text).expect_err(text);
            assert!(found.contains(error), "{text}: {found}");
        }
    }
}
