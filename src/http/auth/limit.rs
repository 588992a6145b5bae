//! Sign-in rate limits: at most `login_attempts` failed sign-ins per (user
//! name, client address) within `login_window`. Past that, attempts are
//! refused without looking at the password, so guessing costs the guesser
//! time and costs us no hashing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

use super::lock;

/// At most this many (name, address) pairs are remembered; past it, those
/// whose failures are all outside the window are forgotten first, then the
/// one whose last failure is oldest.
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug, Default)]
pub struct Limiter {
    failures: Mutex<HashMap<(String, String), Vec<Timestamp>>>,
}

#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub attempts: u32,
    pub length: Duration,
}

impl Window {
    fn start(&self, now: Timestamp) -> Timestamp {
        now.checked_sub(self.length).unwrap_or(Timestamp::MIN)
    }
}

impl Limiter {
    /// `Some(time)` when the pair has used up its failures: no attempt
    /// before `time`.
    pub fn refused_until(
        &self,
        name: &str,
        client: &str,
        now: Timestamp,
        window: Window,
    ) -> Option<Timestamp> {
        let mut map = lock(&self.failures);
        let key = (name.to_owned(), client.to_owned());
        let times = map.get_mut(&key)?;
        let start = window.start(now);
        times.retain(|t| *t > start);
        if times.is_empty() {
            map.remove(&key);
            return None;
        }
        let limit = usize::try_from(window.attempts).unwrap_or(usize::MAX);
        if times.len() < limit {
            return None;
        }
        // The oldest failure that still counts leaves the window first.
        let oldest = times.iter().min().copied()?;
        Some(oldest.checked_add(window.length).unwrap_or(Timestamp::MAX))
    }

    /// Records a failed sign-in.
    pub fn failed(&self, name: &str, client: &str, now: Timestamp, window: Window) {
        let mut map = lock(&self.failures);
        let start = window.start(now);
        if map.len() >= MAX_KEYS {
            map.retain(|_, times| times.iter().any(|t| *t > start));
        }
        if map.len() >= MAX_KEYS {
            let stalest = map
                .iter()
                .min_by_key(|(_, times)| times.iter().max().copied())
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                map.remove(&k);
            }
        }
        let times = map.entry((name.to_owned(), client.to_owned())).or_default();
        times.retain(|t| *t > start);
        times.push(now);
        // Only the newest `attempts` failures can matter.
        let keep = usize::try_from(window.attempts).unwrap_or(usize::MAX);
        if times.len() > keep {
            let drop = times.len() - keep;
            times.drain(..drop);
        }
    }

    /// A sign-in succeeded: its earlier failures no longer count.
    pub fn succeeded(&self, name: &str, client: &str) {
        lock(&self.failures).remove(&(name.to_owned(), client.to_owned()));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.failures).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    const W: Window = Window {
        attempts: 3,
        length: Duration::from_secs(900),
    };

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_after_the_limit_until_the_oldest_failure_leaves_the_window() {
        let l = Limiter::default();
        let t0 = t("2026-11-23T10:00:00Z");
        for i in 0..3 {
            let at = t0 + SignedDuration::from_mins(i);
            assert_eq!(l.refused_until("alice", "10.0.0.1", at, W), None);
            l.failed("alice", "10.0.0.1", at, W);
        }
        let now = t0 + SignedDuration::from_mins(3);
        assert_eq!(
            l.refused_until("alice", "10.0.0.1", now, W),
            Some(t("2026-11-23T10:15:00Z"))
        );
        // Other names and other addresses have their own allowance.
        assert_eq!(l.refused_until("bob", "10.0.0.1", now, W), None);
        assert_eq!(l.refused_until("alice", "10.0.0.2", now, W), None);
        // One failure left the window: one more try.
        let later = t("2026-11-23T10:15:01Z");
        assert_eq!(l.refused_until("alice", "10.0.0.1", later, W), None);
        l.failed("alice", "10.0.0.1", later, W);
        assert_eq!(
            l.refused_until("alice", "10.0.0.1", later, W),
            Some(t("2026-11-23T10:16:00Z"))
        );
    }

    #[test]
    fn a_success_clears_the_failures() {
        let l = Limiter::default();
        let now = t("2026-11-23T10:00:00Z");
        for _ in 0..3 {
            l.failed("alice", "unknown", now, W);
        }
        assert!(l.refused_until("alice", "unknown", now, W).is_some());
        l.succeeded("alice", "unknown");
        assert_eq!(l.refused_until("alice", "unknown", now, W), None);
    }

    #[test]
    fn memory_is_bounded() {
        let l = Limiter::default();
        let now = t("2026-11-23T10:00:00Z");
        for i in 0..MAX_KEYS + 10 {
            l.failed(&format!("u{i}"), "10.0.0.1", now, W);
        }
        assert_eq!(l.len(), MAX_KEYS);
        // Failures outside the window are forgotten when room is needed.
        let later = now + SignedDuration::from_hours(1);
        l.failed("new", "10.0.0.1", later, W);
        assert_eq!(l.len(), 1);
    }
}
