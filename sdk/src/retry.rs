//! [`RetryPolicy`]: which failures are retried, how often, and how long to wait.
//!
//! Retried: transport errors (connect, reset, per-attempt timeout) and 429, 502, 503, 504.
//! Waits grow exponentially with full jitter up to a cap; a `Retry-After` header (seconds or
//! HTTP date) is honoured when it asks for longer. Only idempotent methods (GET, HEAD, PUT,
//! DELETE, OPTIONS) are retried by default: a POST or PATCH retried after a timeout may apply
//! twice, so they are retried only when the caller opts in, for every operation or for named
//! ones. A 401 (refresh the credential once) and a 421 (re-resolve the tenant once) are
//! replayed whatever the method: the server did not process those requests.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode};

/// When and how to retry. All fields are public; start from [`RetryPolicy::default`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry; it doubles per retry.
    pub initial_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
    /// Wait as long as `Retry-After` asks (up to `max_retry_after`).
    pub honor_retry_after: bool,
    /// The longest `Retry-After` honoured; a longer one ends the retries.
    pub max_retry_after: Duration,
    /// Retry POST and PATCH too.
    pub retry_non_idempotent: bool,
    /// Retry these operations (by generated operation id, e.g. `contact_post`) even when they
    /// are POST or PATCH.
    pub non_idempotent_operations: BTreeSet<String>,
    /// Statuses that are retried.
    pub retry_statuses: BTreeSet<u16>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
            honor_retry_after: true,
            max_retry_after: Duration::from_secs(120),
            retry_non_idempotent: false,
            non_idempotent_operations: BTreeSet::new(),
            retry_statuses: [429, 502, 503, 504].into_iter().collect(),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The same policy with another number of attempts.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The same policy with other backoff bounds.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The same policy, also retrying POST and PATCH.
    pub fn retrying_non_idempotent(mut self) -> Self {
        self.retry_non_idempotent = true;
        self
    }

    /// Whether a request with this method and operation may be retried.
    pub fn may_retry(&self, method: &Method, operation: &str) -> bool {
        is_idempotent(method)
            || self.retry_non_idempotent
            || self.non_idempotent_operations.contains(operation)
    }

    /// Whether a status is worth another attempt.
    pub fn is_retryable_status(&self, status: StatusCode) -> bool {
        self.retry_statuses.contains(&status.as_u16())
    }

    /// The wait before retry number `retry` (1 = the first retry): uniformly random between
    /// zero and `min(max_backoff, initial_backoff × 2^(retry-1))` ("full jitter").
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
    }

    /// The upper bound of [`RetryPolicy::backoff`] for retry number `retry`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// The wait before retry number `retry` given the server's `Retry-After`, or `None` when
    /// the server asks for longer than this policy is willing to wait.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let backoff = self.backoff(retry);
        match retry_after.filter(|_| self.honor_retry_after) {
            Some(asked) if asked > self.max_retry_after => None,
            Some(asked) => Some(asked.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// GET, HEAD, PUT, DELETE and OPTIONS.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// Whether a transport error is worth another attempt (no answer was received).
pub(crate) fn is_retryable_transport(error: &reqwest::Error) -> bool {
    error.is_connect()
        || error.is_timeout()
        || error.is_request()
        || error.is_body()
        || error.status().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_capped_ceiling() {
        let policy =
            RetryPolicy::default().with_backoff(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(policy.ceiling(1), Duration::from_millis(100));
        assert_eq!(policy.ceiling(2), Duration::from_millis(200));
        assert_eq!(policy.ceiling(4), Duration::from_millis(800));
        assert_eq!(policy.ceiling(5), Duration::from_secs(1));
        assert_eq!(policy.ceiling(40), Duration::from_secs(1));
        let samples: Vec<Duration> = (0..200).map(|_| policy.backoff(3)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_millis(400)));
        assert!(
            samples.iter().any(|d| *d < Duration::from_millis(200)),
            "jitter spreads the waits"
        );
    }

    #[test]
    fn retry_after_wins_when_longer_and_is_capped() {
        let policy = RetryPolicy::default()
            .with_backoff(Duration::from_millis(10), Duration::from_millis(10));
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert!(policy.delay(1, None).unwrap() <= Duration::from_millis(10));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(3600))), None);
        let ignoring = RetryPolicy {
            honor_retry_after: false,
            ..policy
        };
        assert!(
            ignoring.delay(1, Some(Duration::from_secs(3))).unwrap() <= Duration::from_millis(10)
        );
    }

    #[test]
    fn only_idempotent_methods_retry_by_default() {
        let policy = RetryPolicy::default();
        assert!(policy.may_retry(&Method::GET, "contact_get"));
        assert!(policy.may_retry(&Method::PUT, "contact_put"));
        assert!(policy.may_retry(&Method::DELETE, "contact_delete"));
        assert!(!policy.may_retry(&Method::POST, "contact_post"));
        assert!(!policy.may_retry(&Method::PATCH, "contact_patch"));
        let mut opted = policy.clone();
        opted
            .non_idempotent_operations
            .insert("contact_post".into());
        assert!(opted.may_retry(&Method::POST, "contact_post"));
        assert!(!opted.may_retry(&Method::POST, "person_post"));
        assert!(
            policy
                .retrying_non_idempotent()
                .may_retry(&Method::PATCH, "x")
        );
        assert!(RetryPolicy::default().is_retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(!RetryPolicy::default().is_retryable_status(StatusCode::INTERNAL_SERVER_ERROR));
    }
}
