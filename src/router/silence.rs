//! Silences: matchers (as in routes), a start and an end, a comment and an author. An incident
//! whose labels a silence matches while it is in force is still tracked and shown, but its
//! notifications are held (`quiet::hold`); when the silence ends on an incident still open, the
//! team is told once where it stands (`quiet::release`). A maintenance window is a silence that
//! starts later.
//!
//! Pure: [`check`], [`create`] and [`expire`] decide with the time as an argument.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::alert::{Labels, Millis};
use super::matcher::{MatchOp, Matcher, all_match};

/// Every silence, by id.
pub type Silences = BTreeMap<String, Silence>;

/// The longest comment kept.
pub const COMMENT_MAX: usize = 2_000;

/// A silence as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    /// In Alertmanager's syntax, as given (`service="checkout"`).
    pub matchers: Vec<String>,
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub comment: String,
    pub created_by: String,
    pub created_at: Millis,
    /// Who ended it early, if anybody did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
}

impl Silence {
    pub fn in_force(&self, now: Millis) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// Whether it matches `labels` (matchers that no longer parse match nothing).
    pub fn matches(&self, labels: &Labels) -> bool {
        let parsed: Result<Vec<Matcher>, String> =
            self.matchers.iter().map(|m| Matcher::parse(m)).collect();
        parsed.is_ok_and(|matchers| !matchers.is_empty() && all_match(&matchers, labels))
    }

    /// The teams its matchers hold to (`team="payments"`), if any.
    pub fn team(&self) -> Option<String> {
        self.matchers.iter().find_map(|text| {
            let matcher = Matcher::parse(text).ok()?;
            (matcher.name == "team" && matcher.op == MatchOp::Equal).then_some(matcher.value)
        })
    }
}

/// Whether a silence in force at `now` matches an incident's `labels`.
pub fn silenced(silences: &Silences, labels: &Labels, now: Millis) -> bool {
    silences
        .values()
        .any(|s| s.in_force(now) && s.matches(labels))
}

/// What a new silence says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSilence {
    pub matchers: Vec<String>,
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub comment: String,
}

/// Why a silence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("matcher `{matcher}`: {reason}")]
    Matcher { matcher: String, reason: String },
    #[error("a silence needs a matcher `team=\"NAME\"` of a team you respond for")]
    NoTeam,
    #[error("a silence ends after it starts")]
    EndsBeforeItStarts,
    #[error("a silence that ends in the past silences nothing")]
    InThePast,
    #[error("a silence needs a comment (why, and for how long), at most {COMMENT_MAX} bytes")]
    Comment,
    #[error("no silence `{0}`")]
    Unknown(String),
}

/// Checks a new silence: its matchers parse, one of them is `team="..."`, it ends after it
/// starts and after `now`, and says why. The team it silences is returned with it.
pub fn check(new: &NewSilence, now: Millis) -> Result<String, SilenceError> {
    for text in &new.matchers {
        Matcher::parse(text).map_err(|reason| SilenceError::Matcher {
            matcher: text.clone(),
            reason,
        })?;
    }
    let probe = Silence {
        id: String::new(),
        matchers: new.matchers.clone(),
        starts_at: new.starts_at,
        ends_at: new.ends_at,
        comment: String::new(),
        created_by: String::new(),
        created_at: now,
        expired_by: None,
    };
    let team = probe.team().ok_or(SilenceError::NoTeam)?;
    if new.ends_at <= new.starts_at {
        return Err(SilenceError::EndsBeforeItStarts);
    }
    if new.ends_at <= now {
        return Err(SilenceError::InThePast);
    }
    let comment = new.comment.trim();
    if comment.is_empty()
        || comment.len() > COMMENT_MAX
        || comment.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(SilenceError::Comment);
    }
    Ok(team)
}

/// Adds a silence (checked by [`check`]) under `id`; returns it.
pub fn create(
    silences: &mut Silences,
    id: String,
    new: NewSilence,
    by: &str,
    now: Millis,
) -> Silence {
    let silence = Silence {
        id: id.clone(),
        matchers: new.matchers,
        starts_at: new.starts_at,
        ends_at: new.ends_at,
        comment: new.comment.trim().to_string(),
        created_by: by.to_string(),
        created_at: now,
        expired_by: None,
    };
    silences.insert(id, silence.clone());
    silence
}

/// Ends the silence `id` at `now` (one that has ended already is left as it is); returns it.
pub fn expire(
    silences: &mut Silences,
    id: &str,
    by: &str,
    now: Millis,
) -> Result<Silence, SilenceError> {
    let silence = silences
        .get_mut(id)
        .ok_or_else(|| SilenceError::Unknown(id.to_string()))?;
    if silence.ends_at > now {
        silence.ends_at = now.max(silence.starts_at);
        silence.expired_by = Some(by.to_string());
    }
    Ok(silence.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(matchers: &[&str], starts_at: Millis, ends_at: Millis) -> NewSilence {
        NewSilence {
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            starts_at,
            ends_at,
            comment: "database upgrade".into(),
        }
    }

    #[test]
    fn a_silence_names_its_team_ends_later_and_says_why() {
        assert_eq!(
            check(
                &new(&[r#"team="payments""#, r#"service=~"check.*""#], 0, 10),
                5
            ),
            Ok("payments".into())
        );
        assert_eq!(
            check(&new(&[r#"service="checkout""#], 0, 10), 5),
            Err(SilenceError::NoTeam)
        );
        assert_eq!(
            check(&new(&[r#"team=~"pay.*""#], 0, 10), 5),
            Err(SilenceError::NoTeam),
            "a regex could silence another team"
        );
        assert_eq!(
            check(&new(&[r#"team="payments""#], 10, 10), 5),
            Err(SilenceError::EndsBeforeItStarts)
        );
        assert_eq!(
            check(&new(&[r#"team="payments""#], 0, 4), 5),
            Err(SilenceError::InThePast)
        );
        assert!(matches!(
            check(&new(&[r#"team="payments"#], 0, 10), 5),
            Err(SilenceError::Matcher { .. })
        ));
        let mut no_reason = new(&[r#"team="payments""#], 0, 10);
        no_reason.comment = "  ".into();
        assert_eq!(check(&no_reason, 5), Err(SilenceError::Comment));
    }

    #[test]
    fn a_silence_matches_while_in_force_and_ends_when_expired() {
        let mut state = Silences::new();
        let silence = create(
            &mut state,
            "s1".into(),
            new(&[r#"team="payments""#, r#"service="checkout""#], 100, 200),
            "dana",
            50,
        );
        let labels: Labels = [("team", "payments"), ("service", "checkout")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(silence.matches(&labels));
        assert!(!silence.in_force(99) && silence.in_force(100) && !silence.in_force(200));
        let mut other = labels.clone();
        other.insert("service".into(), "search".into());
        assert!(!silence.matches(&other));
        let ended = expire(&mut state, "s1", "erin", 150).expect("known");
        assert_eq!(
            (ended.ends_at, ended.expired_by.as_deref()),
            (150, Some("erin"))
        );
        assert!(!state["s1"].in_force(150));
        assert_eq!(
            expire(&mut state, "nope", "erin", 150),
            Err(SilenceError::Unknown("nope".into()))
        );
        // A maintenance window ended before it began ends at its start.
        create(
            &mut state,
            "s2".into(),
            new(&[r#"team="payments""#], 1_000, 2_000),
            "dana",
            150,
        );
        assert_eq!(
            expire(&mut state, "s2", "dana", 160)
                .expect("known")
                .ends_at,
            1_000
        );
    }
}
