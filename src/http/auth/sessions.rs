//! Signed-in sessions, in memory: a restart signs everybody out, which is
//! the safe direction for a process restarted rarely and on purpose.
//!
//! A session is found by the SHA-256 of its cookie value, so the map never
//! compares a secret byte by byte, and a memory dump holds no usable cookie.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

use super::files::{random_hex, token_digest};
use super::lock;

/// At most this many sessions live at once; past it, the one idle longest
/// ends. Bounds memory whatever a client does.
pub const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    last_seen: Timestamp,
}

#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

/// Whether a session last seen at `last_seen` has lapsed by `now`.
fn lapsed(last_seen: Timestamp, now: Timestamp, ttl: Duration) -> bool {
    now.duration_since(last_seen).unsigned_abs() > ttl
}

impl Sessions {
    /// Starts a session for `user`; returns the cookie value and the session.
    pub fn start(
        &self,
        user: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<(String, Session), String> {
        let id = random_hex()?;
        let session = Session {
            user: user.to_owned(),
            csrf: random_hex()?,
            last_seen: now,
        };
        let mut live = lock(&self.live);
        if live.len() >= MAX_SESSIONS {
            live.retain(|_, s| !lapsed(s.last_seen, now, ttl));
        }
        if live.len() >= MAX_SESSIONS {
            let idlest = live
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k);
            if let Some(k) = idlest {
                live.remove(&k);
            }
        }
        live.insert(token_digest(&id), session.clone());
        Ok((id, session))
    }

    /// The session behind a cookie value, if it is live; using it moves its
    /// expiry on (sliding expiry).
    pub fn touch(&self, id: &str, now: Timestamp, ttl: Duration) -> Option<Session> {
        let key = token_digest(id);
        let mut live = lock(&self.live);
        let session = live.get_mut(&key)?;
        if lapsed(session.last_seen, now, ttl) {
            live.remove(&key);
            return None;
        }
        session.last_seen = session.last_seen.max(now);
        Some(session.clone())
    }

    /// Ends the session behind a cookie value; returns it if it was live.
    pub fn end(&self, id: &str) -> Option<Session> {
        lock(&self.live).remove(&token_digest(id))
    }

    /// Ends every session whose user `keep` refuses (removed from the users
    /// file).
    pub fn retain_users(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.live).retain(|_, s| keep(&s.user));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.live).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3600);

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn expiry_slides_with_use() {
        let s = Sessions::default();
        let (id, started) = s.start("alice", t("2026-11-23T10:00:00Z"), TTL).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(started.csrf, id);
        let seen = s.touch(&id, t("2026-11-23T10:59:00Z"), TTL).unwrap();
        assert_eq!((seen.user.as_str(), &seen.csrf), ("alice", &started.csrf));
        // An hour after the last use, not after the start.
        assert!(s.touch(&id, t("2026-11-23T11:58:00Z"), TTL).is_some());
        assert!(s.touch(&id, t("2026-11-23T12:58:01Z"), TTL).is_none());
        assert!(
            s.touch(&id, t("2026-11-23T12:58:02Z"), TTL).is_none(),
            "a lapsed session is gone, not revived"
        );
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn unknown_and_ended_sessions_are_nobody() {
        let s = Sessions::default();
        let now = t("2026-11-23T10:00:00Z");
        let (id, _) = s.start("alice", now, TTL).unwrap();
        assert!(s.touch(&"0".repeat(64), now, TTL).is_none());
        assert_eq!(s.end(&id).map(|x| x.user), Some("alice".to_owned()));
        assert!(s.touch(&id, now, TTL).is_none());
    }

    #[test]
    fn removed_users_lose_their_sessions() {
        let s = Sessions::default();
        let now = t("2026-11-23T10:00:00Z");
        let (a, _) = s.start("alice", now, TTL).unwrap();
        let (b, _) = s.start("bob", now, TTL).unwrap();
        s.retain_users(|u| u == "bob");
        assert!(s.touch(&a, now, TTL).is_none());
        assert!(s.touch(&b, now, TTL).is_some());
    }

    #[test]
    fn memory_is_bounded() {
        const TTL: Duration = Duration::from_secs(86_400);
        let s = Sessions::default();
        let start = t("2026-11-23T10:00:00Z");
        let mut first = None;
        for i in 0..=MAX_SESSIONS {
            let at = start + jiff::SignedDuration::from_secs(i as i64);
            let (id, _) = s.start("alice", at, TTL).unwrap();
            first.get_or_insert(id);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        let now = start + jiff::SignedDuration::from_secs(MAX_SESSIONS as i64);
        assert!(
            s.touch(first.as_deref().unwrap(), now, TTL).is_none(),
            "the session idle longest made room"
        );
    }
}
