//! Stable studies and completeness.
//!
//! A study is stable once no instance has arrived for its `stable_after`
//! (`studies.stable_at`); ingest clears `stable_at` with every instance,
//! so a late one makes the study unstable until it settles again. When a
//! study from a peer that answers C-FIND settles, it is queued for a
//! completeness check (`completeness = 'checking'`), whose result is
//! `complete`, `incomplete` (n of m) or `unknown`.

use jiff::Timestamp;
use rusqlite::params;

use super::store::{SYSTEM, cached_exec, collect, fmt_ts, insert_audit};
use super::{Error, Store};

/// A study still receiving: what the stability check needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settling {
    pub study_uid: String,
    pub source: String,
    pub calling_ae: String,
    pub last_received_at: Timestamp,
}

/// A stable study waiting for its completeness check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToCheck {
    pub study_uid: String,
    pub source: String,
    pub calling_ae: String,
    /// Instances we hold of it.
    pub instances: u64,
}

/// The outcome of a completeness check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completeness {
    Complete { instances: u64 },
    Incomplete { received: u64, expected: u64 },
    Unknown { why: String },
}

impl Store {
    /// Studies without `stable_at` whose last instance came at or before
    /// `before`, oldest first, after the keyset `after` (the last one of
    /// the previous page).
    pub fn settling(
        &self,
        before: Timestamp,
        after: Option<&Settling>,
        limit: usize,
    ) -> Result<Vec<Settling>, Error> {
        let (at, uid) = after.map_or((String::new(), String::new()), |s| {
            (fmt_ts(s.last_received_at), s.study_uid.clone())
        });
        collect(
            &self.conn,
            "SELECT study_uid, source, calling_ae, last_received_at FROM studies \
             WHERE stable_at IS NULL AND last_received_at <= ?1 \
               AND (last_received_at > ?2 OR (last_received_at = ?2 AND study_uid > ?3)) \
             ORDER BY last_received_at, study_uid LIMIT ?4",
            params![
                fmt_ts(before),
                at,
                uid,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(Settling {
                    study_uid: r.get(0)?,
                    source: r.get(1)?,
                    calling_ae: r.get(2)?,
                    last_received_at: super::store::parse_ts(r, 3)?,
                })
            },
        )
    }

    /// Marks a study stable at `now`, provided no instance arrived after
    /// `last_received_at` (the one the caller judged by). With `check`,
    /// it is queued for a completeness check. Returns whether it changed.
    pub fn mark_stable(
        &mut self,
        study_uid: &str,
        last_received_at: Timestamp,
        check: bool,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let at = fmt_ts(now);
        self.write(|conn| {
            let changed = cached_exec(
                conn,
                "UPDATE studies SET stable_at = ?2, \
                 completeness = CASE WHEN ?4 THEN 'checking' ELSE completeness END \
                 WHERE study_uid = ?1 AND stable_at IS NULL AND last_received_at = ?3",
                params![study_uid, at, fmt_ts(last_received_at), check],
            )?;
            if changed > 0 {
                insert_audit(
                    conn,
                    &at,
                    SYSTEM,
                    "study_stable",
                    Some(study_uid),
                    &format!("no instance since {}", fmt_ts(last_received_at)),
                )?;
            }
            Ok(changed > 0)
        })
    }

    /// Stable studies queued for a completeness check.
    pub fn completeness_due(&self, limit: usize) -> Result<Vec<ToCheck>, Error> {
        collect(
            &self.conn,
            "SELECT study_uid, source, calling_ae, instance_count FROM studies \
             WHERE completeness = 'checking' ORDER BY stable_at LIMIT ?1",
            [i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(ToCheck {
                    study_uid: r.get(0)?,
                    source: r.get(1)?,
                    calling_ae: r.get(2)?,
                    instances: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                })
            },
        )
    }

    /// Records a completeness check's result, unless the study became
    /// unstable meanwhile (a late instance: it will be checked again).
    pub fn record_completeness(
        &mut self,
        study_uid: &str,
        result: &Completeness,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let at = fmt_ts(now);
        let (state, expected, detail) = match result {
            Completeness::Complete { instances } => (
                "complete",
                Some(*instances),
                format!("the sender holds {instances} instance(s); all received"),
            ),
            Completeness::Incomplete { received, expected } => (
                "incomplete",
                Some(*expected),
                format!("{received} of {expected} instance(s) received"),
            ),
            Completeness::Unknown { why } => ("unknown", None, why.clone()),
        };
        self.write(|conn| {
            let changed = cached_exec(
                conn,
                "UPDATE studies SET completeness = ?2, expected_instances = ?3, \
                 completeness_at = ?4, completeness_detail = ?5 \
                 WHERE study_uid = ?1 AND completeness = 'checking' AND stable_at IS NOT NULL",
                params![
                    study_uid,
                    state,
                    expected.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                    at,
                    detail
                ],
            )?;
            if changed > 0 {
                insert_audit(
                    conn,
                    &at,
                    SYSTEM,
                    "completeness_checked",
                    Some(study_uid),
                    &format!("{state}: {detail}"),
                )?;
            }
            Ok(changed > 0)
        })
    }

    /// Studies found incomplete that have no live `incomplete_transfer`
    /// alarm, for the watchdog: (study UID, detail).
    pub fn incomplete_unalarmed(&self, limit: usize) -> Result<Vec<(String, String)>, Error> {
        collect(
            &self.conn,
            "SELECT s.study_uid, coalesce(s.completeness_detail, '') FROM studies s \
             WHERE s.completeness = 'incomplete' AND NOT EXISTS (SELECT 1 FROM alarms a \
                 WHERE a.kind = 'incomplete_transfer' AND a.subject = s.study_uid \
                   AND a.state <> 'resolved') \
             LIMIT ?1",
            [i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }
}
