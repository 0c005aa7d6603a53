//! Per-destination rate limits: token buckets sized from each service's documented limits. Pure:
//! time is an argument.

use crate::router::alert::Millis;

/// A documented limit: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: f64,
}

/// The limit of a destination kind, if its service documents one: Slack about 1 message per
/// second per webhook (short bursts allowed), Google Chat 60 per minute per space, Discord 30 per
/// minute per webhook, Teams connectors 4 per second, PagerDuty about 120 events per minute per
/// key, Mattermost as Slack by default. Webhooks, e-mail and the log are not limited here.
pub fn limit_for(kind: &str) -> Option<Limit> {
    let (per_second, burst) = match kind {
        "slack" | "mattermost" => (1.0, 3.0),
        "google_chat" => (1.0, 1.0),
        "discord" => (0.5, 5.0),
        "msteams" => (1.0, 4.0),
        "pagerduty" => (2.0, 10.0),
        "opsgenie" => (1.0, 10.0),
        _ => return None,
    };
    Some(Limit { per_second, burst })
}

/// Whether waiting notifications of a kind may be sent together as one digest. Pagers may not:
/// every incident keeps its own page.
pub fn may_coalesce(kind: &str) -> bool {
    matches!(
        kind,
        "slack" | "mattermost" | "google_chat" | "discord" | "msteams" | "email"
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    limit: Limit,
    tokens: f64,
    updated: Millis,
}

impl Bucket {
    pub fn new(limit: Limit, now: Millis) -> Self {
        Bucket {
            limit,
            tokens: limit.burst,
            updated: now,
        }
    }

    fn refill(&mut self, now: Millis) {
        // Never backwards: a pause sets `updated` into the future.
        if now > self.updated {
            let elapsed = (now - self.updated) as f64 / 1000.0;
            self.tokens = (self.tokens + elapsed * self.limit.per_second).min(self.limit.burst);
            self.updated = now;
        }
    }

    /// Takes a token if one is there.
    pub fn take(&mut self, now: Millis) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sends nothing before `until` (the destination said so in its rate-limit headers).
    pub fn pause_until(&mut self, until: Millis) {
        self.tokens = 0.0;
        self.updated = self.updated.max(until);
    }

    /// Milliseconds until the next token.
    pub fn wait(&mut self, now: Millis) -> Millis {
        self.refill(now);
        if self.tokens >= 1.0 {
            0
        } else {
            ((1.0 - self.tokens) / self.limit.per_second * 1000.0).ceil() as Millis
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut bucket = Bucket::new(limit_for("slack").expect("limited"), 0);
        assert!(bucket.take(0) && bucket.take(0) && bucket.take(0));
        assert!(!bucket.take(0), "the burst is three");
        assert_eq!(bucket.wait(0), 1_000);
        assert!(!bucket.take(999));
        assert!(bucket.take(1_000));
        assert!(limit_for("webhook").is_none());
        assert!(!may_coalesce("pagerduty"));
        let mut discord = Bucket::new(limit_for("discord").expect("limited"), 0);
        discord.pause_until(5_000);
        assert!(!discord.take(4_999));
        assert_eq!(
            discord.wait(5_000),
            2_000,
            "after the pause, tokens refill at the sustained rate"
        );
    }
}
