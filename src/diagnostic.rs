//! Diagnostics for user input: what is wrong, where (file:line:col and the field), and a hint.
//!
//! Every checker in stackgen collects [`Diagnostic`]s instead of stopping at the first problem, so a
//! user sees everything wrong with a file in one run. [`Diagnostic::render`] prints one the way
//! compilers do: the message, the location, the source line with a caret under the culprit and a hint.

use std::fmt::Write as _;

/// A position in a source file, 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Location {
    pub line: usize,
    pub col: usize,
}

impl Location {
    /// Takes the start of a `marked_yaml` span; a missing start (synthetic nodes) maps to 1:1.
    pub fn of_span(span: &marked_yaml::Span) -> Self {
        span.start()
            .map(|m| Location {
                line: m.line(),
                col: m.column(),
            })
            .unwrap_or(Location { line: 1, col: 1 })
    }
}

/// How bad a problem is: errors fail a check, warnings only inform (unless denied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// One problem found in a user's file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    pub location: Location,
    /// Dotted path of the field, e.g. `services[2].team`.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
    /// The culprit is a secret: the echoed source line shows `*` in its place.
    pub redact: bool,
    /// Caret width, when the checker knows it (otherwise the YAML token at the location).
    pub width: Option<usize>,
}

impl Diagnostic {
    /// Prints the diagnostic with the offending source line and a caret, e.g.
    ///
    /// ```text
    /// error: unknown key `retension` in `prometheus`
    ///  --> stack.yaml:5:3
    ///   |
    /// 5 |   retension: 15d
    ///   |   ^^^^^^^^^
    ///   = field: prometheus.retension
    ///   = hint: did you mean `retention`?
    /// ```
    pub fn render(&self, source: &str) -> String {
        self.render_as(Level::Error, source)
    }

    /// Like [`Diagnostic::render`], headed `error:` or `warning:` by `level`.
    pub fn render_as(&self, level: Level, source: &str) -> String {
        let line = source.lines().nth(self.location.line.saturating_sub(1));
        self.render_with_line(level, line)
    }

    /// Like [`Diagnostic::render_as`], given the source line it points at (callers rendering
    /// many diagnostics of one file split its lines once: [`SourceLines`]).
    pub fn render_with_line(&self, level: Level, source_line: Option<&str>) -> String {
        let mut out = String::new();
        let Location { line, col } = self.location;
        let _ = writeln!(
            out,
            "{}: {}",
            level.as_str(),
            capped(&hide_url_credentials(&self.message), MAX_ECHO)
        );
        let gutter = line.to_string().len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(out, "{pad}--> {}:{line}:{col}", self.file);
        if let Some(text) = source_line {
            let text = text.trim_end_matches('\r');
            let _ = writeln!(out, "{pad} |");
            let width = self.width.unwrap_or_else(|| token_width(text, col)).max(1);
            let culprit = col..col + width;
            // A long line is shown as a window around the culprit, so a huge value cannot
            // make a huge diagnostic.
            let total = text.chars().count();
            let first = if total <= MAX_ECHO {
                0
            } else {
                col.saturating_sub(1)
                    .saturating_sub(MAX_ECHO / 4)
                    .min(total - MAX_ECHO)
            };
            let last = (first + MAX_ECHO).min(total);
            let before = if first > 0 { "…" } else { "" };
            let after = if last < total { "…" } else { "" };
            let window: String = text
                .chars()
                .skip(first)
                .take(last.saturating_sub(first))
                .collect();
            let shown: String = mask_secrets(&window)
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if self.redact && culprit.contains(&(first + i + 1)) {
                        '*'
                    } else {
                        c
                    }
                })
                .collect();
            let _ = writeln!(out, "{line} | {before}{shown}{after}");
            let lead: String = text
                .chars()
                .skip(first)
                .take(col.saturating_sub(1).saturating_sub(first))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let marker = if before.is_empty() { "" } else { " " };
            let width = width.min(last.saturating_sub(col.saturating_sub(1)).max(1));
            let _ = writeln!(out, "{pad} | {marker}{lead}{}", "^".repeat(width));
        }
        if !self.field.is_empty() {
            let _ = writeln!(out, "{pad} = field: {}", self.field);
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "{pad} = hint: {}", capped(hint, MAX_ECHO));
        }
        out
    }
}

/// The most characters of a message, a hint or a source line a diagnostic shows.
const MAX_ECHO: usize = 240;

/// `text` cut to `max` characters, marked `…`.
pub fn capped(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.chars().count() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    std::borrow::Cow::Owned(cut)
}

/// A source line as a diagnostic may echo it: whatever looks like a secret, or sits where one
/// could (the value of a key like `password`, `pasword`, `token`, `url`, `routing_key`; a URL past
/// its host; a long token of letters and digits), is masked with `*`, keeping every column.
/// `text` with the user and password of every URL in it (`https://user:pw@host`) hidden: a
/// message that quotes a refused URL must not echo its credentials.
pub fn hide_url_credentials(text: &str) -> std::borrow::Cow<'_, str> {
    use std::sync::OnceLock;
    static USERINFO: OnceLock<regex::Regex> = OnceLock::new();
    USERINFO
        .get_or_init(|| {
            regex::Regex::new(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s`]+@")
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .replace_all(text, "${1}***@")
}

pub fn mask_secrets(line: &str) -> String {
    use std::sync::OnceLock;
    static PATTERNS: OnceLock<[regex::Regex; 3]> = OnceLock::new();
    let [valued, url, token] = PATTERNS.get_or_init(|| {
        let build = |pattern: &str| regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{e}"));
        [
            // A key whose value could be a secret, then its value (quoted, or up to , } ] #).
            build(r#"(?i)\b[a-z_]*(pass|pasw|passw|token|api_?key|routing|url|ulr|webhook|credential|cred)[a-z_]*\s*:\s*("(?:[^"\\]|\\.)*"?|'[^']*'?|[^,}\]#\s{][^,}\]#]*)"#),
            // A URL: what follows its scheme and host.
            build(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s\x22',}\]]+(/[^\s\x22',}\]]*)"),
            // A long token of letters and digits.
            build(r"[A-Za-z0-9_+/=-]{24,}"),
        ]
    });
    let mut hidden = vec![false; line.len()];
    for captures in valued.captures_iter(line) {
        if let Some(value) = captures.get(2) {
            hidden[value.start()..value.end()]
                .iter_mut()
                .for_each(|h| *h = true);
        }
    }
    for captures in url.captures_iter(line) {
        if let Some(path) = captures.get(1) {
            hidden[path.start()..path.end()]
                .iter_mut()
                .for_each(|h| *h = true);
        }
    }
    for found in token.find_iter(line) {
        let text = found.as_str();
        if text.chars().any(|c| c.is_ascii_digit()) && text.chars().any(|c| c.is_ascii_alphabetic())
        {
            hidden[found.start()..found.end()]
                .iter_mut()
                .for_each(|h| *h = true);
        }
    }
    line.char_indices()
        .map(|(at, c)| {
            if hidden[at] && !c.is_whitespace() {
                '*'
            } else {
                c
            }
        })
        .collect()
}

/// Width of the token starting at 1-based `col`: 1 for the start of a flow mapping or list, a
/// quoted string up to its closing quote, otherwise
/// up to the next `:` followed by a space, `,`, `]`, `}`, ` #` or the end of the line (trailing
/// blanks trimmed). At least 1.
fn token_width(text: &str, col: usize) -> usize {
    let rest: Vec<char> = text.chars().skip(col.saturating_sub(1)).collect();
    let Some(&first) = rest.first() else {
        return 1;
    };
    if first == '{' || first == '[' {
        return 1;
    }
    if first == '"' || first == '\'' {
        let close = rest.iter().skip(1).position(|&c| c == first);
        return close.map_or(rest.len(), |i| i + 2);
    }
    let mut end = rest.len();
    for (i, &c) in rest.iter().enumerate() {
        let next = rest.get(i + 1).copied();
        let stops = matches!(c, ',' | ']' | '}')
            || (c == ':' && matches!(next, None | Some(' ')))
            || (c == ' ' && next == Some('#'));
        if stops && i > 0 {
            end = i;
            break;
        }
    }
    let token: String = rest[..end].iter().collect();
    token.trim_end().chars().count().max(1)
}

/// Why a checked file (the stack spec, router.yaml) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The reason is part of the message (not a `source`, which would show it twice).
    #[error("cannot read {path}: {reason}")]
    Read {
        path: std::path::PathBuf,
        reason: std::io::Error,
    },
    #[error("{file} has {} problem(s)", .diagnostics.len())]
    Invalid {
        file: String,
        source_text: String,
        diagnostics: Vec<Diagnostic>,
        /// The text of the other files some diagnostics point into (a spec's team rule files),
        /// by the name they show.
        included: std::collections::BTreeMap<String, String>,
    },
}

impl Diagnostic {
    /// The JSON form of an error (`--format json`): where, what and the hint.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.file,
            "line": self.location.line,
            "col": self.location.col,
            "level": "error",
            "field": self.field,
            "message": hide_url_credentials(&self.message),
            "hint": self.hint,
        })
    }
}

impl FileError {
    /// Every diagnostic with the source line it points at, and a one-line summary.
    pub fn render(&self) -> String {
        match self {
            FileError::Read { .. } => self.to_string(),
            FileError::Invalid {
                file,
                source_text,
                diagnostics,
                included,
            } => render_in(diagnostics, |name| {
                if name == file {
                    source_text.as_str()
                } else {
                    included.get(name).map_or("", String::as_str)
                }
            }),
        }
    }
}

/// Renders all diagnostics for one source file, followed by a one-line summary.
pub fn render_all(diagnostics: &[Diagnostic], source: &str) -> String {
    render_in(diagnostics, |_| source)
}

/// Renders diagnostics of several files, each with the source `source_of` gives for its file.
fn render_in<'s>(diagnostics: &[Diagnostic], source_of: impl Fn(&str) -> &'s str) -> String {
    let mut out = String::new();
    let mut lines = SourceLines::default();
    for d in diagnostics {
        let line = lines.line(&d.file, source_of(&d.file), d.location.line);
        out.push_str(&d.render_with_line(Level::Error, line));
        out.push('\n');
    }
    let n = diagnostics.len();
    let _ = writeln!(out, "{n} problem{} found", if n == 1 { "" } else { "s" });
    out
}

/// The lines of the files diagnostics point into, each file split once however many
/// diagnostics it has (so rendering n findings of one file is linear, not quadratic).
#[derive(Default)]
pub struct SourceLines<'s> {
    files: std::collections::HashMap<String, Vec<&'s str>>,
}

impl<'s> SourceLines<'s> {
    /// Line `number` (1-based) of `file`, whose text is `source`.
    pub fn line(&mut self, file: &str, source: &'s str, number: usize) -> Option<&'s str> {
        let lines = self
            .files
            .entry(file.to_string())
            .or_insert_with(|| source.lines().collect());
        lines.get(number.saturating_sub(1)).copied()
    }
}

/// Suggests the candidate closest to `got`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    got: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(got, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(line: usize, col: usize) -> Diagnostic {
        Diagnostic {
            file: "stack.yaml".into(),
            location: Location { line, col },
            field: "prometheus.retension".into(),
            message: "unknown key `retension` in `prometheus`".into(),
            hint: Some("did you mean `retention`?".into()),
            redact: false,
            width: None,
        }
    }

    #[test]
    fn renders_source_line_caret_and_hint() {
        let src = "cluster:\n  name: a\nprometheus:\n  replicas: 2\n  retension: 15d\n";
        let got = diag(5, 3).render(src);
        let want = "error: unknown key `retension` in `prometheus`\n --> stack.yaml:5:3\n  |\n5 |   retension: 15d\n  |   ^^^^^^^^^\n  = field: prometheus.retension\n  = hint: did you mean `retention`?\n";
        assert_eq!(got, want);
    }

    #[test]
    fn a_quoted_url_shows_no_credentials() {
        assert_eq!(
            hide_url_credentials("invalid URL `https://user:pw@partner.example.net/health`"),
            "invalid URL `https://***@partner.example.net/health`"
        );
        assert_eq!(hide_url_credentials("no URL here"), "no URL here");
    }

    #[test]
    fn redacted_culprit_is_not_echoed() {
        let mut d = diag(1, 13);
        d.redact = true;
        let got = d.render("  url: x\n    url: \"hunter2\"\n");
        let d2 = Diagnostic {
            location: Location { line: 2, col: 10 },
            ..d
        };
        let got2 = d2.render("  url: x\n    url: \"hunter2\"\n");
        assert!(!got2.contains("hunter2"), "{got2}");
        assert!(got2.contains("    url: *********"), "{got2}");
        // Where a secret could sit, a value is masked even when it is not the culprit.
        assert!(got.contains("url: *"), "{got}");
    }

    #[test]
    fn what_looks_like_a_secret_is_never_echoed() {
        for (line, secret) in [
            (
                "  smtp: {host: smtp.example.com, pasword: hunter2hunter2}",
                "hunter2",
            ),
            (
                "    slack: {ulr: \"https://hooks.slack.com/services/T0/B0/XYZ\"}",
                "services",
            ),
            ("auth: {bearer_token: \"s3cr3t-value\", extra: 1}", "s3cr3t"),
            (
                "      - {kind: pagerduty, routing_key: [\"R0UTINGKEY\"]}",
                "R0UTINGKEY",
            ),
            ("  note: abcdef0123456789ABCDEF0123456789", "abcdef0123"),
            ("  link: https://example.com/path/to/TOKEN", "TOKEN"),
        ] {
            let masked = mask_secrets(line);
            assert!(!masked.contains(secret), "{masked}");
            assert_eq!(masked.chars().count(), line.chars().count(), "{masked}");
        }
        // Secret references and ordinary values stay readable.
        let kept = "    slack: {url: {secret: hooks, key: slack}, severities: [critical]}";
        assert_eq!(mask_secrets(kept), kept);
        assert_eq!(
            mask_secrets("  host: smtp.example.com"),
            "  host: smtp.example.com"
        );
    }

    #[test]
    fn caret_covers_quoted_strings_and_flow_items() {
        assert_eq!(token_width(r#"  name: "my team" # x"#, 9), 9);
        assert_eq!(token_width("  ports: [80, 9o]", 15), 2);
        assert_eq!(token_width("  retention: 15x  # days", 14), 3);
    }

    #[test]
    fn suggests_close_names_only() {
        let keys = ["retention", "replicas", "resources"];
        assert_eq!(did_you_mean("retension", keys), Some("retention"));
        assert_eq!(did_you_mean("zzz", keys), None);
    }

    #[test]
    fn a_huge_value_makes_a_small_diagnostic() {
        let mut value = "x".repeat(2_000_000);
        value.replace_range(10_000..10_001, "Q");
        let source = format!("cluster: {{name: {value}}}\n");
        let d = Diagnostic {
            message: format!("invalid cluster name `{value}`"),
            ..diag(1, 17)
        };
        let got = d.render(&source);
        assert!(got.len() < 2_000, "{} bytes", got.len());
        assert!(got.contains("1 | cluster: {name: xxx"), "{got}");
        // Far into the line, the caret still sits under the culprit.
        let far = diag(1, 17 + 10_000);
        let got = far.render(&source);
        assert!(got.len() < 2_000, "{} bytes", got.len());
        let lines: Vec<&str> = got.lines().collect();
        let shown = lines
            .iter()
            .find(|l| l.starts_with("1 | "))
            .expect("the line");
        let caret = lines.iter().find(|l| l.contains('^')).expect("the caret");
        let at = caret.chars().position(|c| c == '^').expect("caret");
        assert_eq!(shown.chars().nth(at), Some('Q'), "{shown}\n{caret}");
    }
}
