//! The syntax of Go templates in rule labels and annotations (`{{ $labels.pod }}`), as Prometheus
//! parses them when it loads a rule file: every action closed, strings and parentheses closed,
//! `if`/`range`/`with`/`define`/`block` ended, and every function one that Prometheus's templates
//! define. Pure: text in, the first error out with the byte offset it points at.

/// Functions a Prometheus alert template can call: Go's built-ins and Prometheus's own.
const FUNCTIONS: &[&str] = &[
    // text/template
    "and",
    "call",
    "html",
    "index",
    "slice",
    "js",
    "len",
    "not",
    "or",
    "print",
    "printf",
    "println",
    "urlquery",
    "eq",
    "ge",
    "gt",
    "le",
    "lt",
    "ne",
    // Prometheus
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "reReplaceAll",
    "safeHtml",
    "match",
    "title",
    "toUpper",
    "toLower",
    "graphLink",
    "tableLink",
    "sortByLabel",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "toDuration",
    "now",
    "pathPrefix",
    "externalURL",
    "parseDuration",
    "stripPort",
    "stripDomain",
    "urlQueryEscape",
];

/// Words that start or continue a control structure, or stand for a value.
const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    "nil", "true", "false",
];

/// The actions that open a block closed by `{{end}}`.
const BLOCKS: [&str; 5] = ["if", "range", "with", "define", "block"];

/// Why a template does not parse, and where (a byte offset into the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

fn error(offset: usize, message: impl Into<String>) -> TemplateError {
    TemplateError {
        offset,
        message: message.into(),
    }
}

/// Checks `text`; `Ok` when Prometheus would parse it.
pub fn check(text: &str) -> Result<(), TemplateError> {
    let mut open_blocks: Vec<(&'static str, usize)> = Vec::new();
    let mut at = 0;
    while let Some(found) = text[at..].find("{{") {
        let start = at + found;
        let body_start = start + 2;
        let close = find_close(text, body_start)?;
        let action = text[body_start..close]
            .strip_prefix('-')
            .unwrap_or(&text[body_start..close]);
        let action = action.strip_suffix('-').unwrap_or(action).trim();
        at = close + 2;
        if action.starts_with("/*") {
            if !action.ends_with("*/") {
                return Err(error(start, "unclosed comment"));
            }
            continue;
        }
        let words = tokens(action, start)?;
        let opens = words
            .first()
            .and_then(|first| BLOCKS.iter().copied().find(|block| block == first));
        if let Some(block) = opens {
            if words.len() < 2 {
                return Err(error(start, format!("missing value for {block}")));
            }
            check_functions(&words[1..], start)?;
            open_blocks.push((block, start));
            continue;
        }
        match words.first().map(String::as_str) {
            None => return Err(error(start, "missing value for command")),
            Some("else") => {
                if open_blocks.is_empty() {
                    return Err(error(start, "unexpected {{else}}"));
                }
                check_functions(&words[1..], start)?;
            }
            Some("end") => {
                if open_blocks.pop().is_none() {
                    return Err(error(start, "unexpected {{end}}"));
                }
            }
            Some(_) => check_functions(&words, start)?,
        }
    }
    match open_blocks.last() {
        Some((block, start)) => Err(error(
            *start,
            format!("unexpected EOF: {{{{{block}}}}} has no {{{{end}}}}"),
        )),
        None => Ok(()),
    }
}

/// The offset of the `}}` that closes the action starting at `from` (outside strings).
fn find_close(text: &str, from: usize) -> Result<usize, TemplateError> {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'`' | b'\'' => i = string_end(text, i)?,
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    Err(error(from - 2, "unclosed action: `{{` without `}}`"))
}

/// The offset of the quote that closes the string opening at `start`.
fn string_end(text: &str, start: usize) -> Result<usize, TemplateError> {
    let bytes = text.as_bytes();
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            return Ok(i);
        }
        if bytes[i] == b'\n' && quote != b'`' {
            break;
        }
        i += 1;
    }
    Err(error(start, "unterminated quoted string"))
}

/// The words of an action: identifiers, variables, fields, literals and punctuation, with
/// parentheses checked to balance.
fn tokens(action: &str, offset: usize) -> Result<Vec<String>, TemplateError> {
    let mut words = Vec::new();
    let mut depth = 0usize;
    let chars: Vec<(usize, char)> = action.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                depth += 1;
                words.push("(".to_string());
                i += 1;
            }
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| error(offset, "unexpected right paren"))?;
                words.push(")".to_string());
                i += 1;
            }
            '|' => {
                words.push("|".to_string());
                i += 1;
            }
            '"' | '`' | '\'' => {
                let end = string_end(action, at).map_err(|e| error(offset, e.message))?;
                words.push(action[at..=end].to_string());
                i = chars
                    .iter()
                    .position(|(p, _)| *p > end)
                    .unwrap_or(chars.len());
            }
            _ => {
                let end = chars[i..]
                    .iter()
                    .find(|(_, c)| c.is_whitespace() || matches!(c, '(' | ')' | '|' | '"' | '`'))
                    .map_or(action.len(), |(p, _)| *p);
                words.push(action[at..end].to_string());
                i = chars
                    .iter()
                    .position(|(p, _)| *p >= end)
                    .unwrap_or(chars.len());
            }
        }
    }
    if depth > 0 {
        return Err(error(offset, "unclosed left paren"));
    }
    Ok(words)
}

/// Every word in command position (first of the action, after `|` or `(`) that is a name must
/// be a known function.
fn check_functions(words: &[String], offset: usize) -> Result<(), TemplateError> {
    let mut command_start = true;
    for word in words {
        match word.as_str() {
            "|" | "(" => {
                command_start = true;
                continue;
            }
            ":=" | "=" => {
                command_start = true;
                continue;
            }
            _ => {}
        }
        let is_name = word
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_');
        if command_start
            && is_name
            && !KEYWORDS.contains(&word.as_str())
            && !FUNCTIONS.contains(&word.as_str())
        {
            return Err(error(offset, format!("function \"{word}\" not defined")));
        }
        command_start = false;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_prometheus_parses_passes() {
        for text in [
            "plain text",
            "{{ $labels.pod }} on {{ $labels.node }}",
            "{{ $value | humanizePercentage }} of requests fail",
            "{{- if gt $value 1.0 }}many{{ else }}one{{ end -}}",
            "{{ range $i, $x := query \"up\" }}{{ $x.Labels.job }}{{ end }}",
            "{{ printf \"%.1f\" $value }} {{/* a comment */}}",
            "{{ with $labels.service }}{{ . }}{{ end }}",
            "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}",
            "{{ (index (query \"up\") 0).Value }}",
        ] {
            assert_eq!(check(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn what_prometheus_refuses_is_refused_where_it_starts() {
        for (text, offset, message) in [
            ("pod {{ $labels.pod ", 4, "unclosed action"),
            (
                "{{ humanise $value }}",
                0,
                "function \"humanise\" not defined",
            ),
            ("x {{ if $value }}y", 2, "unexpected EOF"),
            ("{{ end }}", 0, "unexpected {{end}}"),
            ("{{ printf \"%s $value }}", 10, "unterminated quoted string"),
            ("{{ (len $labels }}", 0, "unclosed left paren"),
            ("{{ }}", 0, "missing value"),
            (
                "{{ $value | humanize | toupper }}",
                0,
                "function \"toupper\" not defined",
            ),
        ] {
            let e = check(text).expect_err(text);
            assert_eq!(e.offset, offset, "{text}: {e:?}");
            assert!(e.message.contains(message), "{text}: {e:?}");
        }
    }
}
