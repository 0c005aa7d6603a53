//! The field-by-field checker behind every YAML config stackgen reads (the stack spec, router.yaml).
//!
//! A leaf module: it knows YAML positions and value kinds, not any one file format.
//! [`check_document`] parses the text into a tree that keeps the position of every node and hands
//! it to the format's own walk; a [`Checker`] collects [`Diagnostic`]s instead of stopping at the
//! first problem: a bad field is reported and skipped, a missing required key is reported at its
//! mapping, unknown keys get a "did you mean". Each format declares only its own fields and
//! cross-checks, in its own `impl Checker` block. Sections two formats share (the SMTP server,
//! quiet hours) live in [`smtp`] and `time_intervals`.

pub mod smtp;
mod time_intervals;
pub mod values;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoaderOptions, Node, Span};

use crate::diagnostic::{Diagnostic, Location, did_you_mean};

/// Parses YAML text into a tree that keeps every node's position; a key given twice is an error.
pub(crate) fn load_yaml(source: &str) -> Result<Node, marked_yaml::LoadError> {
    load_numbered_yaml(0, source)
}

/// [`load_yaml`], with every position marked as source `index` (the file's number in a
/// [`Checker`] that walks several documents).
pub(crate) fn load_numbered_yaml(
    index: usize,
    source: &str,
) -> Result<Node, marked_yaml::LoadError> {
    marked_yaml::parse_yaml_with_options(
        index,
        source,
        LoaderOptions::default().error_on_duplicate_keys(true),
    )
}

/// Parses `source` (a YAML mapping; duplicate keys refused) and runs `walk` over it. Returns what
/// the walk built, or every problem found, in the order they appear in the file.
pub(crate) fn check_document<T>(
    file: &str,
    source: &str,
    walk: impl FnOnce(&mut Checker, &Node) -> Option<T>,
) -> Result<T, Vec<Diagnostic>> {
    let mut checker = Checker::new(file);
    let root = match load_yaml(source) {
        Ok(root) => root,
        Err(err) => return Err(vec![checker.load_error(err)]),
    };
    match walk(&mut checker, &root) {
        Some(value) if checker.diagnostics.is_empty() => Ok(value),
        _ => {
            let mut diagnostics = checker.diagnostics;
            diagnostics.sort_by_key(|d| d.location);
            Err(diagnostics)
        }
    }
}

/// A mapping whose keys were checked against the allowed set.
pub(crate) struct Obj<'n> {
    pub(crate) map: &'n MarkedMappingNode,
    pub(crate) field: String,
}

impl<'n> Obj<'n> {
    /// The value under `key`, unless it is absent or null.
    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.map.get_node(key).filter(|node| !is_null(node))
    }

    pub(crate) fn path(&self, key: &str) -> String {
        join(&self.field, key)
    }

    pub(crate) fn span(&self) -> &'n Span {
        self.map.span()
    }
}

pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub(crate) fn is_null(node: &Node) -> bool {
    node.as_scalar()
        .is_some_and(|s| matches!(s.as_str(), "" | "~" | "null"))
}

pub(crate) struct Checker {
    /// The first document's name: where diagnostics without a node's position point.
    pub(crate) file: String,
    /// Every document walked, by source number (see [`load_numbered_yaml`]): its name in
    /// diagnostics and what it is called in messages ("the spec", "the team file").
    documents: Vec<(String, &'static str)>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl Checker {
    /// A checker of `file` (the name diagnostics show) with no problem found yet.
    pub(crate) fn new(file: &str) -> Checker {
        Checker {
            file: file.to_string(),
            documents: vec![(file.to_string(), "the spec")],
            diagnostics: Vec::new(),
        }
    }

    /// Adds a document to walk besides the first; its nodes must be loaded with the returned
    /// source number, so their problems point into it.
    pub(crate) fn add_document(&mut self, file: &str, called: &'static str) -> usize {
        self.documents.push((file.to_string(), called));
        self.documents.len() - 1
    }

    /// The name of the document `span` is in.
    pub(crate) fn file_of(&self, span: &Span) -> &str {
        span.start()
            .and_then(|marker| self.documents.get(marker.source()))
            .map_or(&self.file, |(name, _)| name)
    }

    /// Where `span` is, as a reader finds it: `line 4` in the same document as `here`,
    /// `teams/search.yaml:4` in another.
    pub(crate) fn place_of(&self, span: &Span, here: &Span) -> String {
        let line = Location::of_span(span).line;
        let source = |s: &Span| s.start().map(|m| m.source());
        if source(span) == source(here) {
            format!("line {line}")
        } else {
            format!("{}:{line}", self.file_of(span))
        }
    }

    /// Sorts the problems by document, then by place.
    pub(crate) fn sort_diagnostics(&mut self) {
        let order: Vec<String> = self.documents.iter().map(|(n, _)| n.clone()).collect();
        self.diagnostics.sort_by_key(|d| {
            (
                order
                    .iter()
                    .position(|n| *n == d.file)
                    .unwrap_or(order.len()),
                d.location,
            )
        });
    }

    pub(crate) fn error(
        &mut self,
        span: &Span,
        field: &str,
        message: String,
        hint: Option<String>,
    ) {
        self.diagnostics.push(Diagnostic {
            file: self.file_of(span).to_string(),
            location: Location::of_span(span),
            field: field.to_string(),
            message,
            hint,
            redact: false,
            width: None,
        });
    }

    /// An error at a location already taken from the tree (for checks that run after the walk).
    pub(crate) fn error_at(
        &mut self,
        location: Location,
        field: &str,
        message: String,
        hint: Option<String>,
    ) {
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            location,
            field: field.to_string(),
            message,
            hint,
            redact: false,
            width: None,
        });
    }

    pub(crate) fn load_error(&mut self, err: marked_yaml::LoadError) -> Diagnostic {
        let file = self.file.clone();
        self.load_error_in(
            &file,
            "the spec",
            "start with `cluster:` (see `stackgen init`)",
            err,
        )
    }

    /// A YAML error of document `file` (called `called`, whose first key `start` hints at).
    pub(crate) fn load_error_in(
        &mut self,
        file: &str,
        called: &str,
        start: &str,
        err: marked_yaml::LoadError,
    ) -> Diagnostic {
        use marked_yaml::LoadError as E;
        let (marker, message, hint) = match &err {
            E::TopLevelMustBeMapping(m) => (
                *m,
                format!("{called} must be a YAML mapping"),
                start.to_string(),
            ),
            E::DuplicateKey(inner) => (
                inner.key.span().start().copied().unwrap_or(*m_default()),
                format!("duplicate key `{}`", inner.key.as_str()),
                format!(
                    "`{}` is already set on line {}; keep one",
                    inner.prev_key.as_str(),
                    inner.prev_key.span().start().map_or(0, |m| m.line())
                ),
            ),
            E::ScanError(m, scan) => (
                *m,
                format!("invalid YAML: {}", scan.info()),
                "check indentation, quotes and brackets around this place".to_string(),
            ),
            E::UnexpectedAnchor(m) | E::UnexpectedTag(m) | E::MappingKeyMustBeScalar(m) => (
                *m,
                format!("unsupported YAML: {err}"),
                format!(
                    "{called} uses plain mappings, lists and scalars (no anchors, tags or complex keys)"
                ),
            ),
            E::TopLevelMustBeSequence(m) => (*m, err.to_string(), String::new()),
        };
        Diagnostic {
            file: file.to_string(),
            location: Location {
                line: marker.line().max(1),
                col: marker.column().max(1),
            },
            field: String::new(),
            message,
            hint: Some(hint).filter(|h| !h.is_empty()),
            redact: false,
            width: None,
        }
    }

    /// Checks that `node` is a mapping with only `keys`; reports unknown keys with a suggestion.
    pub(crate) fn object<'n>(
        &mut self,
        node: &'n Node,
        field: &str,
        keys: &[&str],
    ) -> Option<Obj<'n>> {
        let Some(map) = node.as_mapping() else {
            self.error(
                node.span(),
                field,
                format!("`{field}` must be a mapping"),
                Some(format!("expected keys: {}", keys.join(", "))),
            );
            return None;
        };
        for key in map.keys() {
            if !keys.contains(&key.as_str()) {
                let hint = match did_you_mean(key.as_str(), keys.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("allowed keys here: {}", keys.join(", ")),
                };
                let place = if field.is_empty() {
                    let source = map.span().start().map_or(0, |m| m.source());
                    self.documents
                        .get(source)
                        .map_or("the spec", |(_, called)| *called)
                        .to_string()
                } else {
                    format!("`{field}`")
                };
                self.error(
                    key.span(),
                    &join(field, key.as_str()),
                    format!("unknown key `{}` in {place}", key.as_str()),
                    Some(hint),
                );
            }
        }
        Some(Obj {
            map,
            field: field.to_string(),
        })
    }

    /// An optional sub-object; absent or null gives `None` without error.
    pub(crate) fn sub_object<'n>(
        &mut self,
        parent: &Obj<'n>,
        key: &str,
        keys: &[&str],
    ) -> Option<Obj<'n>> {
        let node = parent.get(key)?;
        self.object(node, &parent.path(key), keys)
    }

    pub(crate) fn scalar<'n>(
        &mut self,
        node: &'n Node,
        field: &str,
        what: &str,
    ) -> Option<&'n MarkedScalarNode> {
        match node.as_scalar() {
            Some(s) => Some(s),
            None => {
                self.error(
                    node.span(),
                    field,
                    format!("`{field}` must be {what}"),
                    Some("write a single value here, not a list or mapping".into()),
                );
                None
            }
        }
    }

    /// The value of a required key; reports it missing at its mapping, with `hint`.
    pub(crate) fn required<'n>(
        &mut self,
        obj: &Obj<'n>,
        key: &str,
        hint: &str,
    ) -> Option<&'n Node> {
        let node = obj.get(key);
        if node.is_none() {
            self.error(
                obj.span(),
                &obj.path(key),
                format!("missing required key `{key}`"),
                Some(hint.to_string()),
            );
        }
        node
    }

    /// A required string field; reports it missing at the parent mapping.
    pub(crate) fn required_string(&mut self, obj: &Obj, key: &str) -> Option<(String, Location)> {
        let node = self.required(obj, key, &format!("add `{key}:` here"))?;
        self.string(node, &obj.path(key))
    }

    /// An optional string field; absent, null or empty gives `None`.
    pub(crate) fn optional_text(&mut self, obj: &Obj, key: &str) -> Option<String> {
        let node = obj.get(key)?;
        self.string(node, &obj.path(key))
            .map(|(text, _)| text)
            .filter(|text| !text.is_empty())
    }

    pub(crate) fn string(&mut self, node: &Node, field: &str) -> Option<(String, Location)> {
        let scalar = self.scalar(node, field, "a string")?;
        Some((
            scalar.as_str().to_string(),
            Location::of_span(scalar.span()),
        ))
    }

    /// A string that must pass `check`; the error message names the field.
    pub(crate) fn checked_string(
        &mut self,
        node: &Node,
        field: &str,
        what: &str,
        check: fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        let (text, _) = self.string(node, field)?;
        match check(&text) {
            Ok(()) => Some(text),
            Err(hint) => {
                self.error(
                    node.span(),
                    field,
                    format!("invalid {what} `{text}`"),
                    Some(hint),
                );
                None
            }
        }
    }

    pub(crate) fn optional_checked(
        &mut self,
        obj: &Obj,
        key: &str,
        what: &str,
        check: fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        let node = obj.get(key)?;
        self.checked_string(node, &obj.path(key), what, check)
    }

    pub(crate) fn checked_or_default(
        &mut self,
        obj: Option<&Obj>,
        key: &str,
        what: &str,
        check: fn(&str) -> Result<(), String>,
        default: &str,
    ) -> String {
        obj.and_then(|o| self.optional_checked(o, key, what, check))
            .unwrap_or_else(|| default.to_string())
    }

    pub(crate) fn quantity(&mut self, node: &Node, field: &str) -> Option<(String, f64)> {
        let (text, _) = self.string(node, field)?;
        match values::parse_quantity(&text) {
            Ok(value) => Some((text, value)),
            Err(hint) => {
                self.error(
                    node.span(),
                    field,
                    format!("invalid quantity `{text}`"),
                    Some(hint),
                );
                None
            }
        }
    }

    pub(crate) fn uint(
        &mut self,
        obj: Option<&Obj>,
        key: &str,
        min: u64,
        max: u64,
        default: u64,
    ) -> u64 {
        let Some(obj) = obj else { return default };
        let Some(node) = obj.get(key) else {
            return default;
        };
        let field = obj.path(key);
        let Some(scalar) = self.scalar(node, &field, "a whole number") else {
            return default;
        };
        match scalar.as_str().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.error(
                    node.span(),
                    &field,
                    format!(
                        "`{field}` must be a whole number from {min} to {max}, got `{}`",
                        scalar.as_str()
                    ),
                    Some(format!("write a number such as {default}")),
                );
                default
            }
        }
    }

    pub(crate) fn bool(&mut self, obj: Option<&Obj>, key: &str, default: bool) -> bool {
        let Some(obj) = obj else { return default };
        let Some(node) = obj.get(key) else {
            return default;
        };
        let field = obj.path(key);
        match node.as_scalar().map(|s| s.as_str()) {
            Some("true") => true,
            Some("false") => false,
            _ => {
                self.error(
                    node.span(),
                    &field,
                    format!("`{field}` must be true or false"),
                    Some("write `true` or `false`".into()),
                );
                default
            }
        }
    }

    /// A list under `key` of names from `allowed` (each kept once); `None` when the key is absent.
    /// An unknown name, or an empty list, is reported; `what` names one item in messages.
    pub(crate) fn names_from(
        &mut self,
        obj: &Obj,
        key: &str,
        what: &str,
        allowed: &[&'static str],
    ) -> Option<Vec<&'static str>> {
        obj.get(key)?;
        let field = obj.path(key);
        let mut names = Vec::new();
        for node in self.list(obj, key) {
            let Some((text, _)) = self.string(node, &field) else {
                continue;
            };
            match allowed.iter().find(|name| **name == text) {
                Some(name) if !names.contains(name) => names.push(*name),
                Some(_) => {}
                None => {
                    let hint = did_you_mean(&text, allowed.iter().copied()).map_or_else(
                        || format!("use {}", allowed.join(", ")),
                        |c| format!("did you mean `{c}`?"),
                    );
                    self.error(
                        node.span(),
                        &field,
                        format!("unknown {what} `{text}`"),
                        Some(hint),
                    );
                }
            }
        }
        if names.is_empty() {
            self.error(
                obj.span(),
                &field,
                format!("`{key}` lists no {what}"),
                Some(format!("list {}, or remove `{key}`", allowed.join(", "))),
            );
        }
        Some(names)
    }

    pub(crate) fn list<'n>(&mut self, obj: &Obj<'n>, key: &str) -> Vec<&'n Node> {
        let Some(node) = obj.get(key) else {
            return Vec::new();
        };
        match node.as_sequence() {
            Some(seq) => seq.iter().collect(),
            None => {
                let field = obj.path(key);
                self.error(
                    node.span(),
                    &field,
                    format!("`{field}` must be a list"),
                    Some("write one `- ` item per line".into()),
                );
                Vec::new()
            }
        }
    }
}

/// Placeholder marker for errors that carry no position.
pub(crate) fn m_default() -> &'static marked_yaml::Marker {
    static START: std::sync::OnceLock<marked_yaml::Marker> = std::sync::OnceLock::new();
    START.get_or_init(|| marked_yaml::Marker::new(0, 0, 1, 1))
}
