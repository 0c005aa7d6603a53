//! The retry policy: exponential backoff with jitter and a cap, `Retry-After` honoured, and a
//! maximum age after which a notification is dead. Pure: the random jitter is an argument.

use crate::router::alert::Millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_backoff: Millis,
    pub max_backoff: Millis,
    pub max_age: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    RetryAt(Millis),
    GiveUp,
}

impl RetryPolicy {
    /// When to try again after the `attempts`-th failed attempt (1-based). `jitter` in [0, 1)
    /// spreads retries over the upper half of the backoff.
    pub fn next(
        &self,
        attempts: u32,
        now: Millis,
        created_at: Millis,
        retry_after: Option<Millis>,
        jitter: f64,
    ) -> Decision {
        let exponent = attempts.saturating_sub(1).min(30);
        let backoff = self
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        let jittered = backoff / 2 + ((backoff / 2) as f64 * jitter.clamp(0.0, 1.0)) as Millis;
        let delay = retry_after.map_or(jittered, |after| after.max(0));
        let at = now.saturating_add(delay);
        if at - created_at > self.max_age {
            Decision::GiveUp
        } else {
            Decision::RetryAt(at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        initial_backoff: 1_000,
        max_backoff: 60_000,
        max_age: 3_600_000,
    };

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        assert_eq!(POLICY.next(1, 0, 0, None, 0.0), Decision::RetryAt(500));
        assert_eq!(POLICY.next(1, 0, 0, None, 1.0), Decision::RetryAt(1_000));
        assert_eq!(POLICY.next(3, 0, 0, None, 1.0), Decision::RetryAt(4_000));
        assert_eq!(POLICY.next(30, 0, 0, None, 1.0), Decision::RetryAt(60_000));
    }

    #[test]
    fn retry_after_wins_and_max_age_ends_it() {
        assert_eq!(
            POLICY.next(1, 10, 0, Some(30_000), 0.5),
            Decision::RetryAt(30_010)
        );
        assert_eq!(POLICY.next(5, 3_599_000, 0, None, 1.0), Decision::GiveUp);
        assert_eq!(POLICY.next(1, 0, 0, Some(7_200_000), 0.0), Decision::GiveUp);
    }
}
