//! Label matchers in Alertmanager's syntax (`name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`),
//! used by ownership rules and routes. Regexes are anchored, as in Alertmanager.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(
            f,
            "{}{op}{}",
            self.name,
            serde_json::Value::String(self.value.clone())
        )
    }
}

impl Matcher {
    /// Parses `name<op>"value"` (the value may also be unquoted). Errors are a hint for the user.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let text = text.trim();
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| format!("`{text}` has no operator; write e.g. severity=\"critical\""))?;
        let (name, rest) = text.split_at(name_end);
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("`{text}` does not start with a label name"));
        }
        let (op, rest) = [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ]
        .into_iter()
        .find_map(|(token, op)| rest.trim_start().strip_prefix(token).map(|r| (op, r)))
        .ok_or_else(|| format!("`{text}`: the operator is one of =, !=, =~, !~"))?;
        let raw = rest.trim();
        let value = if raw.starts_with('"') {
            serde_json::from_str::<String>(raw).map_err(|_| {
                format!("`{text}`: the quoted value is not closed or has a bad escape")
            })?
        } else {
            raw.to_string()
        };
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("`{text}`: invalid regex: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }

    /// Whether the labels satisfy this matcher (a missing label is the empty string).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }
}

/// Whether every matcher matches.
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_matches_all_operators() {
        let l = labels(&[("severity", "critical"), ("service", "checkout")]);
        assert!(
            Matcher::parse(r#"severity="critical""#)
                .expect("ok")
                .matches(&l)
        );
        assert!(
            Matcher::parse(r#"severity!="warning""#)
                .expect("ok")
                .matches(&l)
        );
        assert!(
            Matcher::parse(r#"service=~"check.*""#)
                .expect("ok")
                .matches(&l)
        );
        assert!(
            !Matcher::parse(r#"service=~"check""#)
                .expect("ok")
                .matches(&l),
            "regexes are anchored"
        );
        assert!(
            Matcher::parse(r#"team!~".+""#).expect("ok").matches(&l),
            "missing label is empty"
        );
        assert!(Matcher::parse("severity=critical").expect("ok").matches(&l));
    }

    #[test]
    fn rejects_broken_matchers_with_a_hint() {
        assert!(
            Matcher::parse("severity")
                .expect_err("no op")
                .contains("operator")
        );
        assert!(
            Matcher::parse(r#"a=~"(""#)
                .expect_err("regex")
                .contains("invalid regex")
        );
        assert!(
            Matcher::parse(r#"a="x"#)
                .expect_err("quote")
                .contains("not closed")
        );
        assert!(Matcher::parse(r#"="x""#).is_err());
    }

    #[test]
    fn displays_in_alertmanager_syntax() {
        assert_eq!(
            Matcher::parse(r#"a=~"x|y""#).expect("ok").to_string(),
            r#"a=~"x|y""#
        );
    }
}
