//! PromQL facts the linter needs, on top of the `promql-parser` crate: where a parse error is inside
//! the expression, which labels an expression's result carries, which metric names it reads, and
//! the threshold of a `... > NUMBER` alert.

use std::collections::BTreeSet;

use promql_parser::label::MatchOp;
use promql_parser::parser::token;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, VectorMatchCardinality, VectorSelector,
};

use crate::labels::PER_INSTANCE_LABELS;

/// A PromQL parse error and what it points at inside the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    /// Byte offset of the culprit.
    pub offset: usize,
    /// Its width in characters.
    pub width: usize,
}

/// Parses `expr`, locating the problem inside it on failure.
pub fn parse(expr: &str) -> Result<Expr, ParseError> {
    promql_parser::parser::parse(expr).map_err(|message| {
        let (offset, width) = error_span(expr, &message);
        ParseError {
            message,
            offset,
            width,
        }
    })
}

/// Where in `expr` an error message points. promql-parser reports no positions, so each kind of
/// message is located from what it names (a function, a regex, an unclosed bracket or quote);
/// anything else points at the end of the expression when it ends in an operator, else its start.
fn error_span(expr: &str, message: &str) -> (usize, usize) {
    let named = |prefix: &str, suffix: &str| -> Option<(usize, usize)> {
        let rest = message.strip_prefix(prefix)?;
        let name = rest.strip_suffix(suffix).unwrap_or(rest);
        (!name.is_empty())
            .then(|| expr.find(name).map(|at| (at, name.chars().count())))
            .flatten()
    };
    if let Some(span) = named("unknown function with name '", "'") {
        return span;
    }
    if let Some((at, width)) = named("illegal regex for ", "") {
        // Include the quotes around the regex.
        return (at.saturating_sub(1), width + 2);
    }
    let one = |at: Option<usize>| (at.unwrap_or(0), 1);
    if message.starts_with("unclosed left parenthesis") {
        return one(unmatched_open(expr, '(', ')'));
    }
    if message.starts_with("unclosed left bracket") {
        return one(unmatched_open(expr, '[', ']'));
    }
    if message.starts_with("unclosed left brace") {
        return one(unmatched_open(expr, '{', '}'));
    }
    if message.starts_with("unterminated quoted string") {
        return one(last_unclosed_quote(expr));
    }
    let trimmed = expr.trim_end();
    if trimmed.ends_with([
        '+', '-', '*', '/', '%', '^', '=', '>', '<', ',', '(', '{', '[',
    ]) {
        return (trimmed.len().saturating_sub(1), 1);
    }
    let start = expr.len() - expr.trim_start().len();
    (
        start,
        expr.trim().lines().next().map_or(1, |l| l.chars().count()),
    )
}

/// `text` as a PromQL double-quoted string literal that reads back as exactly `text`.
pub fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A regular expression (RE2, as PromQL's `=~` reads it) matching exactly one of `values`.
pub fn alternatives(values: &[&str]) -> String {
    values
        .iter()
        .map(|value| {
            value
                .chars()
                .map(|c| {
                    if "\\.+*?()|[]{}^$".contains(c) {
                        format!("\\{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// Byte offset of `word` in `text` as a whole identifier (not inside a longer name).
pub fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    text.match_indices(word).map(|(at, _)| at).find(|&at| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

fn unmatched_open(expr: &str, open: char, close: char) -> Option<usize> {
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in expr.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            c if c == open => stack.push(i),
            c if c == close => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.pop()
}

fn last_unclosed_quote(expr: &str) -> Option<usize> {
    let mut open: Option<(char, usize)> = None;
    let mut escaped = false;
    for (i, c) in expr.char_indices() {
        match open {
            Some((q, _)) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    open = None;
                }
            }
            None if matches!(c, '"' | '\'' | '`') => open = Some((c, i)),
            None => {}
        }
    }
    open.map(|(_, i)| i)
}

/// The labels of an expression's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelSet {
    /// Every label of the input series, except these.
    AllExcept(BTreeSet<String>),
    /// Exactly these labels (at most).
    Only(BTreeSet<String>),
}

impl LabelSet {
    fn none() -> Self {
        LabelSet::Only(BTreeSet::new())
    }

    fn all() -> Self {
        LabelSet::AllExcept(BTreeSet::new())
    }

    /// These labels added.
    pub fn with(self, extra: impl IntoIterator<Item = String>) -> Self {
        match self {
            LabelSet::Only(mut set) => {
                set.extend(extra);
                LabelSet::Only(set)
            }
            LabelSet::AllExcept(mut removed) => {
                for label in extra {
                    removed.remove(&label);
                }
                LabelSet::AllExcept(removed)
            }
        }
    }

    fn without(self, gone: impl IntoIterator<Item = String>) -> Self {
        match self {
            LabelSet::Only(mut set) => {
                for label in gone {
                    set.remove(&label);
                }
                LabelSet::Only(set)
            }
            LabelSet::AllExcept(mut removed) => {
                removed.extend(gone);
                LabelSet::AllExcept(removed)
            }
        }
    }

    /// The labels either carries.
    pub fn union(self, other: LabelSet) -> Self {
        match (self, other) {
            (LabelSet::Only(a), LabelSet::Only(b)) => {
                LabelSet::Only(a.union(&b).cloned().collect())
            }
            (LabelSet::AllExcept(a), LabelSet::AllExcept(b)) => {
                LabelSet::AllExcept(a.intersection(&b).cloned().collect())
            }
            (LabelSet::AllExcept(a), LabelSet::Only(b))
            | (LabelSet::Only(b), LabelSet::AllExcept(a)) => {
                LabelSet::AllExcept(a.difference(&b).cloned().collect())
            }
        }
    }

    /// The per-instance labels this result may still carry.
    pub fn per_instance_labels(&self) -> Vec<&'static str> {
        PER_INSTANCE_LABELS
            .iter()
            .copied()
            .filter(|label| match self {
                LabelSet::Only(set) => set.contains(*label),
                LabelSet::AllExcept(removed) => !removed.contains(*label),
            })
            .collect()
    }

    /// The labels known to be kept (for suggesting a `by (...)` clause).
    pub fn known(&self) -> Vec<String> {
        match self {
            LabelSet::Only(set) => set.iter().cloned().collect(),
            LabelSet::AllExcept(_) => Vec::new(),
        }
    }
}

/// The labels of series recorded by rules, by series name (what [`output_labels_given`] knows of
/// a selector of that name, instead of "every label").
pub type RecordedLabels = std::collections::BTreeMap<String, LabelSet>;

/// Which labels the result of `expr` carries.
pub fn output_labels(expr: &Expr) -> LabelSet {
    output_labels_given(expr, &RecordedLabels::new())
}

/// Which labels the result of `expr` carries, when the series named in `recorded` carry those.
pub fn output_labels_given(expr: &Expr, recorded: &RecordedLabels) -> LabelSet {
    match expr {
        Expr::VectorSelector(vs) => selector_labels(vs, recorded),
        Expr::MatrixSelector(ms) => selector_labels(&ms.vs, recorded),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => LabelSet::none(),
        Expr::Paren(p) => output_labels_given(&p.expr, recorded),
        Expr::Unary(u) => output_labels_given(&u.expr, recorded),
        Expr::Subquery(s) => output_labels_given(&s.expr, recorded),
        Expr::Extension(_) => LabelSet::all(),
        Expr::Aggregate(agg) => aggregate_labels(agg, recorded),
        Expr::Call(call) => call_labels(call, recorded),
        Expr::Binary(bin) => binary_labels(bin, recorded),
    }
}

/// A selector of a recorded series carries its rule's labels; any other, every label.
fn selector_labels(vs: &VectorSelector, recorded: &RecordedLabels) -> LabelSet {
    vs.name
        .as_ref()
        .and_then(|name| recorded.get(name))
        .cloned()
        .unwrap_or_else(LabelSet::all)
}

/// `sum by (...)`, `topk`, `count_values`, ...
fn aggregate_labels(agg: &AggregateExpr, recorded: &RecordedLabels) -> LabelSet {
    let input = output_labels_given(&agg.expr, recorded);
    let keeps_input = matches!(
        agg.op.id(),
        token::T_TOPK | token::T_BOTTOMK | token::T_LIMITK | token::T_LIMIT_RATIO
    );
    if keeps_input {
        return input;
    }
    let mut result = match &agg.modifier {
        Some(LabelModifier::Include(labels)) => {
            LabelSet::Only(labels.labels.iter().cloned().collect())
        }
        Some(LabelModifier::Exclude(labels)) => input.without(labels.labels.iter().cloned()),
        None => LabelSet::none(),
    };
    if agg.op.id() == token::T_COUNT_VALUES
        && let Some(Expr::StringLiteral(label)) = agg.param.as_deref()
    {
        result = result.with([label.val.clone()]);
    }
    result
}

/// A function's result: most keep their first vector argument's labels.
fn call_labels(call: &Call, recorded: &RecordedLabels) -> LabelSet {
    let args = &call.args.args;
    match call.func.name {
        "absent" | "absent_over_time" => {
            let selector = args.first().and_then(|a| match a.as_ref() {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            });
            let labels = selector
                .map(|vs| {
                    vs.matchers
                        .matchers
                        .iter()
                        .filter(|m| m.op == MatchOp::Equal && m.name != "__name__")
                        .map(|m| m.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            LabelSet::Only(labels)
        }
        "vector" | "time" | "scalar" | "pi" => LabelSet::none(),
        "label_replace" | "label_join" => {
            let destination = args.get(1).and_then(|a| match a.as_ref() {
                Expr::StringLiteral(s) => Some(s.val.clone()),
                _ => None,
            });
            let input = args
                .first()
                .map_or_else(LabelSet::none, |a| output_labels_given(a, recorded));
            input.with(destination)
        }
        "histogram_quantile" => args.get(1).map_or_else(LabelSet::none, |a| {
            output_labels_given(a, recorded).without(["le".to_string()])
        }),
        _ => args
            .iter()
            .map(|a| output_labels_given(a, recorded))
            .find(|set| *set != LabelSet::none())
            .unwrap_or_else(LabelSet::none),
    }
}

/// `a / b`, `a and b`, `a * on (...) group_left (...) b`, ...
fn binary_labels(bin: &BinaryExpr, recorded: &RecordedLabels) -> LabelSet {
    let lhs = output_labels_given(&bin.lhs, recorded);
    let rhs = output_labels_given(&bin.rhs, recorded);
    let lhs_scalar = lhs == LabelSet::none() && is_scalar(&bin.lhs);
    let rhs_scalar = rhs == LabelSet::none() && is_scalar(&bin.rhs);
    if lhs_scalar {
        return rhs;
    }
    if rhs_scalar {
        return lhs;
    }
    match bin.op.id() {
        token::T_LAND | token::T_LUNLESS => lhs,
        token::T_LOR => lhs.union(rhs),
        _ => match bin.modifier.as_ref().map(|m| &m.card) {
            Some(VectorMatchCardinality::ManyToOne(extra)) => {
                lhs.with(extra.labels.iter().cloned())
            }
            Some(VectorMatchCardinality::OneToMany(extra)) => {
                rhs.with(extra.labels.iter().cloned())
            }
            _ => lhs,
        },
    }
}

fn is_scalar(expr: &Expr) -> bool {
    match expr {
        Expr::NumberLiteral(_) => true,
        Expr::Paren(p) => is_scalar(&p.expr),
        Expr::Unary(u) => is_scalar(&u.expr),
        Expr::Call(c) => matches!(c.func.name, "scalar" | "time" | "pi"),
        Expr::Binary(b) => is_scalar(&b.lhs) && is_scalar(&b.rhs),
        _ => false,
    }
}

/// Metric names the expression reads (by selector name or `__name__="..."`).
pub fn metric_names(expr: &Expr) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    collect_names(expr, &mut names);
    names
}

fn collect_names(expr: &Expr, names: &mut BTreeSet<String>) {
    visit_selectors(expr, &mut |vs| {
        if let Some(name) = &vs.name {
            names.insert(name.clone());
        }
        for m in &vs.matchers.matchers {
            if m.name == "__name__" && m.op == MatchOp::Equal {
                names.insert(m.value.clone());
            }
        }
    });
}

/// Calls `visit` on every selector of `expr` (a range selector's as well).
pub fn visit_selectors(expr: &Expr, visit: &mut impl FnMut(&VectorSelector)) {
    match expr {
        Expr::VectorSelector(vs) => visit(vs),
        Expr::MatrixSelector(ms) => visit(&ms.vs),
        Expr::Paren(p) => visit_selectors(&p.expr, visit),
        Expr::Unary(u) => visit_selectors(&u.expr, visit),
        Expr::Subquery(s) => visit_selectors(&s.expr, visit),
        Expr::Aggregate(a) => {
            visit_selectors(&a.expr, visit);
            if let Some(param) = &a.param {
                visit_selectors(param, visit);
            }
        }
        Expr::Call(c) => c.args.args.iter().for_each(|a| visit_selectors(a, visit)),
        Expr::Binary(b) => {
            visit_selectors(&b.lhs, visit);
            visit_selectors(&b.rhs, visit);
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// For `... <cmp> NUMBER` at the top of an expression: the byte range of NUMBER in `text`.
pub fn threshold_span(text: &str) -> Option<std::ops::Range<usize>> {
    let expr = promql_parser::parser::parse(text).ok()?;
    let Expr::Binary(bin) = &expr else {
        return None;
    };
    if !bin.op.is_comparison_operator() || !matches!(bin.rhs.as_ref(), Expr::NumberLiteral(_)) {
        return None;
    }
    let trimmed = text.trim_end();
    let start = trimmed
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'))
        .last()
        .map(|(i, _)| i)?;
    let number = &trimmed[start..];
    number.parse::<f64>().ok()?;
    Some(start..trimmed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_quoted_as_promql_strings() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(alternatives(&["a.b", "c"]), r"a\.b|c");
    }

    fn labels(q: &str) -> LabelSet {
        output_labels(&parse(q).expect("parses"))
    }

    fn only(items: &[&str]) -> LabelSet {
        LabelSet::Only(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn aggregation_decides_the_labels() {
        assert_eq!(labels("up == 0"), LabelSet::all());
        assert_eq!(
            labels("sum by (service) (rate(x[5m])) > 1"),
            only(&["service"])
        );
        assert_eq!(labels("sum(rate(x[5m]))"), only(&[]));
        assert_eq!(
            labels("sum without (pod) (x)"),
            LabelSet::AllExcept(["pod".to_string()].into())
        );
        assert_eq!(labels("absent(up{job=\"a\", pod=~\".*\"})"), only(&["job"]));
        assert_eq!(
            labels("histogram_quantile(0.9, sum by (le, service) (rate(h_bucket[5m])))"),
            only(&["service"])
        );
        assert_eq!(labels("topk(3, sum by (service) (x))"), only(&["service"]));
        assert_eq!(
            labels("sum by (a) (x) / on (a) group_left (b) sum by (a, b) (y)"),
            only(&["a", "b"])
        );
        assert_eq!(labels("vector(1)"), only(&[]));
        assert_eq!(labels("1 - sum by (s) (x)"), only(&["s"]));
    }

    #[test]
    fn per_instance_labels_are_found() {
        assert_eq!(
            labels("up == 0").per_instance_labels().first(),
            Some(&"instance")
        );
        assert!(
            labels("max by (service) (up)")
                .per_instance_labels()
                .is_empty()
        );
        assert_eq!(
            labels("max by (service, pod) (up)").per_instance_labels(),
            vec!["pod"]
        );
    }

    #[test]
    fn error_positions_point_inside_the_expression() {
        let at = |q: &str| {
            let e = parse(q).expect_err("invalid");
            (e.offset, e.width)
        };
        assert_eq!(at("sum(rate(x[5m])"), (3, 1));
        assert_eq!(at("rate(x[5m]) > bad_fn(x)"), (14, 6));
        assert_eq!(at("up{a=\"b}"), (5, 1));
        assert_eq!(at("up =="), (4, 1));
        assert_eq!(at("up{a=~\"(\"}"), (6, 3));
        assert_eq!(find_word("group(up) + up", "up"), Some(6));
        assert_eq!(find_word("x_total + x", "x"), Some(10));
    }

    #[test]
    fn metric_names_and_thresholds() {
        let names = metric_names(
            &parse("sum(rate(a_total[5m])) / sum(rate({__name__=\"b_total\"}[5m])) > 0.05")
                .expect("parses"),
        );
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["a_total", "b_total"]
        );
        let text = "sum(x)\n  / sum(y) > 0.05\n";
        assert_eq!(threshold_span(text).map(|r| &text[r]), Some("0.05"));
        assert_eq!(threshold_span("vector(1)"), None);
        assert_eq!(threshold_span("x > y"), None);
    }
}
