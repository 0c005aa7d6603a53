//! Per-destination rate limits: token buckets sized from each service's documented limit (which
//! each destination kind declares, [`crate::router::destination::KindInfo::rate_limit`]). Pure:
//! time is an argument.

use crate::router::alert::Millis;
use crate::router::destination::Limit;

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
        let mut bucket = Bucket::new(
            Limit {
                per_second: 1.0,
                burst: 3.0,
            },
            0,
        );
        assert!(bucket.take(0) && bucket.take(0) && bucket.take(0));
        assert!(!bucket.take(0), "the burst is three");
        assert_eq!(bucket.wait(0), 1_000);
        assert!(!bucket.take(999));
        assert!(bucket.take(1_000));
        let mut discord = Bucket::new(
            Limit {
                per_second: 0.5,
                burst: 5.0,
            },
            0,
        );
        discord.pause_until(5_000);
        assert!(!discord.take(4_999));
        assert_eq!(
            discord.wait(5_000),
            2_000,
            "after the pause, tokens refill at the sustained rate"
        );
    }
}
