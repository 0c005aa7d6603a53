//! A Prometheus rule file read with positions: every group, rule, label and annotation knows its
//! line and column, and an expression maps an offset inside it back to the file.

use std::collections::BTreeMap;

use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};

use crate::config_check::{Checker, load_yaml};
use crate::diagnostic::{Diagnostic, Location, did_you_mean};

const GROUP_KEYS: &[&str] = &[
    "name",
    "interval",
    "limit",
    "query_offset",
    "rules",
    "labels",
];
const RULE_KEYS: &[&str] = &[
    "alert",
    "record",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];

/// The comment that marks a rule as per-instance on purpose (silences the service-level check).
pub const PER_INSTANCE_MARKER: &str = "stackgen:per-instance";

#[derive(Debug, Clone)]
pub struct RuleFile {
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// Where the name is written (the group's start when it has none).
    pub location: Location,
    pub rules: Vec<Rule>,
}

/// A scalar with where it starts.
#[derive(Debug, Clone)]
pub struct Spanned {
    pub value: String,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// `alert` or `record` name.
    pub name: Spanned,
    pub is_alert: bool,
    pub expr: Option<Expression>,
    pub for_duration: Option<Spanned>,
    pub labels: BTreeMap<String, Spanned>,
    pub annotations: BTreeMap<String, Spanned>,
    /// Start of the rule's mapping.
    pub location: Location,
    /// The rule carries the per-instance marker comment.
    pub per_instance_on_purpose: bool,
}

/// A PromQL expression and how its characters map back to the file.
#[derive(Debug, Clone)]
pub struct Expression {
    pub text: String,
    pub location: Location,
    layout: Layout,
}

#[derive(Debug, Clone)]
enum Layout {
    /// On the key's line; `quoted` adds one column for the opening quote.
    Inline { quoted: bool },
    /// A `|` block: content lines start at this indentation, from the span's line on.
    Block { indent: usize },
}

impl Expression {
    /// The file position of byte `offset` inside the expression.
    pub fn location_of(&self, offset: usize) -> Location {
        let before = &self.text[..offset.min(self.text.len())];
        match self.layout {
            Layout::Inline { quoted } => Location {
                line: self.location.line,
                col: self.location.col + usize::from(quoted) + before.chars().count(),
            },
            Layout::Block { indent } => {
                let line_index = before.matches('\n').count();
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
                Location {
                    line: self.location.line + line_index,
                    col: indent + 1 + column,
                }
            }
        }
    }
}

/// Parses a rule file; structure problems become diagnostics (all of them), with the rules that
/// could still be read.
pub fn parse(file: &str, source: &str) -> (RuleFile, Vec<Diagnostic>) {
    let mut checker = Checker::new(file);
    let groups = match load_yaml(source) {
        Ok(root) => groups(&mut checker, &root, source),
        Err(err) => {
            checker.error_at(
                load_error_location(&err),
                "",
                format!("invalid YAML: {err}"),
                Some("a rule file is a mapping with a `groups:` list".into()),
            );
            Vec::new()
        }
    };
    (RuleFile { groups }, checker.diagnostics)
}

/// The file's `groups:`, each with the rules that could be read.
fn groups(checker: &mut Checker, root: &Node, source: &str) -> Vec<Group> {
    let root_map = root.as_mapping();
    if let Some(map) = root_map {
        for key in map.keys().filter(|k| k.as_str() != "groups") {
            checker.error_at(
                Location::of_span(key.span()),
                key.as_str(),
                format!("unknown key `{}` in a rule file", key.as_str()),
                Some("a rule file has only `groups:`".into()),
            );
        }
    }
    let Some(group_list) = root_map
        .and_then(|m| m.get_node("groups"))
        .and_then(Node::as_sequence)
    else {
        checker.error_at(
            Location::of_span(root.span()),
            "groups",
            "missing `groups:` list".into(),
            Some("a rule file is `groups: [{name: ..., rules: [...]}]`".into()),
        );
        return Vec::new();
    };
    let rule_starts: Vec<usize> = group_list
        .iter()
        .filter_map(|g| g.as_mapping()?.get_sequence("rules"))
        .flat_map(|rules| rules.iter().map(|r| Location::of_span(r.span()).line))
        .collect();
    let mut sorted_starts = rule_starts;
    sorted_starts.sort_unstable();
    let lines: Vec<&str> = source.lines().collect();
    let context = RuleContext {
        lines: &lines,
        rule_starts: &sorted_starts,
    };
    let mut groups = Vec::new();
    for (gi, group_node) in group_list.iter().enumerate() {
        let field = format!("groups[{gi}]");
        let Some(group) = group_node.as_mapping() else {
            checker.error_at(
                Location::of_span(group_node.span()),
                &field,
                "a group must be a mapping".into(),
                Some("write `- name: my-group` then `rules:`".into()),
            );
            continue;
        };
        groups.push(parse_group(checker, group, &field, &context));
    }
    groups
}

/// What every rule of the file is read with.
struct RuleContext<'a> {
    /// The file's lines, read once (every rule looks at a few of them).
    lines: &'a [&'a str],
    /// The line each rule starts on, sorted (for the marker comment).
    rule_starts: &'a [usize],
}

fn parse_group(
    checker: &mut Checker,
    group: &MarkedMappingNode,
    field: &str,
    context: &RuleContext,
) -> Group {
    check_keys(group, field, GROUP_KEYS, checker);
    let name = group.get_scalar("name").map(|s| s.as_str().to_string());
    let location = Location::of_span(
        group
            .get_scalar("name")
            .map_or(group.span(), |name| name.span()),
    );
    if name.is_none() {
        checker.error_at(
            Location::of_span(group.span()),
            &format!("{field}.name"),
            "group without a `name`".into(),
            Some("add `name: my-group`".into()),
        );
    }
    let mut rules = Vec::new();
    match group.get_node("rules").map(|n| (n, n.as_sequence())) {
        Some((_, Some(list))) => {
            for (ri, rule_node) in list.iter().enumerate() {
                let rule_field = format!("{field}.rules[{ri}]");
                let Some(rule) = rule_node.as_mapping() else {
                    checker.error_at(
                        Location::of_span(rule_node.span()),
                        &rule_field,
                        "a rule must be a mapping".into(),
                        Some("write `- alert: Name` with `expr:` below".into()),
                    );
                    continue;
                };
                if let Some(parsed) = parse_rule(rule, &rule_field, context, checker) {
                    rules.push(parsed);
                }
            }
        }
        Some((node, None)) => checker.error_at(
            Location::of_span(node.span()),
            &format!("{field}.rules"),
            "`rules` must be a list".into(),
            None,
        ),
        None => checker.error_at(
            Location::of_span(group.span()),
            &format!("{field}.rules"),
            "group without `rules`".into(),
            Some("add `rules:` with at least one rule".into()),
        ),
    }
    Group {
        name: name.unwrap_or_default(),
        location,
        rules,
    }
}

fn load_error_location(err: &marked_yaml::LoadError) -> Location {
    use marked_yaml::LoadError as E;
    let marker = match err {
        E::TopLevelMustBeMapping(m)
        | E::TopLevelMustBeSequence(m)
        | E::UnexpectedAnchor(m)
        | E::MappingKeyMustBeScalar(m)
        | E::UnexpectedTag(m)
        | E::ScanError(m, _) => Some(*m),
        E::DuplicateKey(inner) => inner.key.span().start().copied(),
    };
    marker.map_or(Location { line: 1, col: 1 }, |m| Location {
        line: m.line().max(1),
        col: m.column().max(1),
    })
}

fn check_keys(map: &MarkedMappingNode, field: &str, allowed: &[&str], checker: &mut Checker) {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            let hint = did_you_mean(key.as_str(), allowed.iter().copied()).map_or_else(
                || format!("allowed keys: {}", allowed.join(", ")),
                |c| format!("did you mean `{c}`?"),
            );
            checker.error_at(
                Location::of_span(key.span()),
                &format!("{field}.{}", key.as_str()),
                format!("unknown key `{}`", key.as_str()),
                Some(hint),
            );
        }
    }
}

fn spanned(node: &MarkedScalarNode) -> Spanned {
    Spanned {
        value: node.as_str().to_string(),
        location: Location::of_span(node.span()),
    }
}

fn string_map(map: Option<&Node>, field: &str, checker: &mut Checker) -> BTreeMap<String, Spanned> {
    let mut out = BTreeMap::new();
    let Some(node) = map else { return out };
    let Some(mapping) = node.as_mapping() else {
        checker.error_at(
            Location::of_span(node.span()),
            field,
            format!("`{field}` must be a mapping"),
            None,
        );
        return out;
    };
    for (key, value) in mapping.iter() {
        match value.as_scalar() {
            Some(v) => {
                out.insert(key.as_str().to_string(), spanned(v));
            }
            None => checker.error_at(
                Location::of_span(value.span()),
                &format!("{field}.{}", key.as_str()),
                "label and annotation values are strings".into(),
                None,
            ),
        }
    }
    out
}

fn parse_rule(
    rule: &MarkedMappingNode,
    field: &str,
    context: &RuleContext,
    checker: &mut Checker,
) -> Option<Rule> {
    let (lines, rule_starts) = (context.lines, context.rule_starts);
    check_keys(rule, field, RULE_KEYS, checker);
    let location = Location::of_span(rule.span());
    let (name, is_alert) = match (rule.get_scalar("alert"), rule.get_scalar("record")) {
        (Some(a), None) => (spanned(a), true),
        (None, Some(r)) => (spanned(r), false),
        (Some(a), Some(_)) => {
            checker.error_at(
                Location::of_span(a.span()),
                field,
                "a rule has either `alert` or `record`, not both".into(),
                None,
            );
            return None;
        }
        (None, None) => {
            checker.error_at(
                location,
                field,
                "rule without `alert` or `record`".into(),
                Some("start the rule with `- alert: Name`".into()),
            );
            return None;
        }
    };
    let expr = match rule.get_node("expr") {
        Some(node) => match node.as_scalar() {
            Some(scalar) => Some(expression(scalar, lines)),
            None => {
                checker.error_at(
                    Location::of_span(node.span()),
                    &format!("{field}.expr"),
                    "`expr` must be a string".into(),
                    None,
                );
                None
            }
        },
        None => {
            checker.error_at(
                location,
                &format!("{field}.expr"),
                format!("rule `{}` has no `expr`", name.value),
                Some("add `expr:` with a PromQL expression".into()),
            );
            None
        }
    };
    // The marker belongs to the rule it precedes (or sits in): from the line before this rule up
    // to, not including, the line before the next rule.
    let next_start = rule_starts
        .get(rule_starts.partition_point(|&l| l <= location.line))
        .copied()
        .unwrap_or(usize::MAX);
    let per_instance_on_purpose = lines
        .iter()
        .enumerate()
        .skip(location.line.saturating_sub(2))
        .take_while(|(i, _)| i + 2 < next_start)
        .any(|(_, line)| line.trim_start().starts_with('#') && line.contains(PER_INSTANCE_MARKER));
    Some(Rule {
        is_alert,
        expr,
        for_duration: rule.get_scalar("for").map(spanned),
        labels: string_map(rule.get_node("labels"), &format!("{field}.labels"), checker),
        annotations: string_map(
            rule.get_node("annotations"),
            &format!("{field}.annotations"),
            checker,
        ),
        location,
        per_instance_on_purpose,
        name,
    })
}

fn expression(scalar: &MarkedScalarNode, lines: &[&str]) -> Expression {
    // For block scalars (`|`), the span starts at the first content line; their text keeps its
    // line breaks, which is how they are told apart from one-line values.
    let location = Location::of_span(scalar.span());
    let text = scalar.as_str().to_string();
    let line_text = lines
        .get(location.line.saturating_sub(1))
        .copied()
        .unwrap_or_default();
    let first = line_text.chars().nth(location.col.saturating_sub(1));
    let layout = match first {
        Some('"') | Some('\'') => Layout::Inline { quoted: true },
        _ if text.trim_end().contains('\n') => Layout::Block {
            indent: location.col.saturating_sub(1),
        },
        _ => Layout::Inline { quoted: false },
    };
    Expression {
        text,
        location,
        layout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expression_offsets_map_to_file_positions() {
        let src = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n      - alert: B\n        expr: |\n          sum(x)\n            / sum(y) > 1\n";
        let (file, problems) = parse("r.yaml", src);
        assert!(problems.is_empty(), "{problems:?}");
        let a = file.groups[0].rules[0].expr.as_ref().expect("expr");
        assert_eq!(a.location_of(3), Location { line: 5, col: 18 });
        let b = file.groups[0].rules[1].expr.as_ref().expect("expr");
        let offset = b.text.find("sum(y)").expect("present");
        assert_eq!(b.location_of(offset), Location { line: 9, col: 15 });
    }

    #[test]
    fn structure_problems_are_all_reported() {
        let src = "groups:\n  - name: g\n    rules:\n      - alert: A\n        exprr: up\n      - record: r\n        expr: up\n        annotation: {}\n  - rules: []\n";
        let (_, problems) = parse("r.yaml", src);
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert!(messages.contains(&"unknown key `exprr`"), "{messages:?}");
        assert!(messages.contains(&"rule `A` has no `expr`"), "{messages:?}");
        assert!(
            messages.contains(&"unknown key `annotation`"),
            "{messages:?}"
        );
        assert!(messages.contains(&"group without a `name`"), "{messages:?}");
    }

    #[test]
    fn marker_comment_is_found() {
        let src = "groups:\n  - name: g\n    rules:\n      # stackgen:per-instance\n      - alert: A\n        expr: up == 0\n      - alert: B\n        expr: up == 0\n      # stackgen:per-instance\n      - alert: C\n        expr: up == 0\n";
        let (file, _) = parse("r.yaml", src);
        assert!(file.groups[0].rules[0].per_instance_on_purpose);
        assert!(!file.groups[0].rules[1].per_instance_on_purpose);
        assert!(file.groups[0].rules[2].per_instance_on_purpose);
    }
}
