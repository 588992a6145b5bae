//! The forward queue: one row per (destination, instance), written in the
//! transaction that records the instance, and worked through by
//! `crate::forward`'s senders.
//!
//! States: `pending` (due once `next_attempt_at` has passed), `sent` (the
//! destination answered success or a warning), `failed` (it can never be
//! sent as things stand, e.g. the destination refuses the SOP class or
//! transfer syntax, or the stored file is unreadable; `forward retry` makes
//! it pending again). A row is never deleted here, so the catalog keeps
//! proof of each delivery.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::store::{cached_exec, fmt_ts, parse_ts};
use super::{Error, Store};

/// The longest `last_error` kept, in characters.
const MAX_ERROR: usize = 500;

/// An instance due for a destination, with what the sender needs to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardItem {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    /// Path of the stored file, relative to the storage root.
    pub rel_path: String,
    /// Attempts made so far.
    pub attempts: u32,
}

/// What became of one attempt to send a queued instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// Success or warning status from the destination.
    Sent {
        sop_instance_uid: String,
        status: u16,
    },
    /// Try again at `next_attempt_at`.
    Retry {
        sop_instance_uid: String,
        status: Option<u16>,
        error: String,
        next_attempt_at: Timestamp,
    },
    /// Cannot be sent as things stand; waits for `forward retry`.
    Failed {
        sop_instance_uid: String,
        status: Option<u16>,
        error: String,
    },
}

/// The queue of one destination, for `forward status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardStatusRow {
    pub destination: String,
    pub pending: u64,
    /// Pending rows whose next attempt is later than now (backing off).
    pub waiting: u64,
    pub oldest_pending: Option<Timestamp>,
    pub sent: u64,
    pub failed: u64,
    /// The most attempts any pending row has had.
    pub max_attempts: u32,
    /// The error of the most recent failed attempt still unresolved.
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
    pub last_sent_at: Option<Timestamp>,
}

/// Queues `sop_instance_uid` for each of `destinations`, inside the
/// caller's transaction. A row that already exists is left as it is, so a
/// resend never queues an instance twice.
pub(super) fn enqueue(
    conn: &Connection,
    destinations: &[String],
    sop_instance_uid: &str,
    study_uid: &str,
    at: &str,
) -> Result<(), Error> {
    for destination in destinations {
        cached_exec(
            conn,
            "INSERT OR IGNORE INTO forward_queue (destination, sop_instance_uid, study_uid, \
             state, attempts, next_attempt_at, enqueued_at) \
             VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)",
            params![destination, sop_instance_uid, study_uid, at],
        )?;
    }
    Ok(())
}

fn clip(text: &str) -> String {
    text.chars().take(MAX_ERROR).collect()
}

impl Store {
    /// Up to `limit` pending rows of `destination` due at `now`, oldest
    /// due first.
    pub fn forward_due(
        &self,
        destination: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<ForwardItem>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT q.sop_instance_uid, i.sop_class_uid, i.transfer_syntax, i.rel_path, q.attempts \
             FROM forward_queue q JOIN instances i ON i.sop_instance_uid = q.sop_instance_uid \
             WHERE q.destination = ?1 AND q.state = 'pending' AND q.next_attempt_at <= ?2 \
             ORDER BY q.next_attempt_at, q.enqueued_at LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                destination,
                fmt_ts(now),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(ForwardItem {
                    sop_instance_uid: r.get(0)?,
                    sop_class_uid: r.get(1)?,
                    transfer_syntax: r.get(2)?,
                    rel_path: r.get(3)?,
                    attempts: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the next pending row of `destination` falls due, if any.
    pub fn forward_next_due(&self, destination: &str) -> Result<Option<Timestamp>, Error> {
        let next = self
            .conn
            .prepare_cached(
                "SELECT min(next_attempt_at) FROM forward_queue \
                 WHERE destination = ?1 AND state = 'pending'",
            )?
            .query_row([destination], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten();
        Ok(next.and_then(|s| s.parse().ok()))
    }

    /// Records the outcomes of a batch of attempts to `destination` in one
    /// transaction. With `commits` (the destination does storage
    /// commitment), a sent row then awaits its commitment request.
    pub fn record_forward_outcomes(
        &mut self,
        destination: &str,
        outcomes: &[ForwardOutcome],
        commits: bool,
        now: Timestamp,
    ) -> Result<(), Error> {
        let at = fmt_ts(now);
        self.write(|conn| {
            for outcome in outcomes {
                match outcome {
                    ForwardOutcome::Sent {
                        sop_instance_uid,
                        status,
                    } => cached_exec(
                        conn,
                        "UPDATE forward_queue SET state = 'sent', attempts = attempts + 1, \
                         sent_at = ?3, last_attempt_at = ?3, last_status = ?4, last_error = NULL, \
                         commit_state = CASE WHEN ?5 THEN 'awaiting' END \
                         WHERE destination = ?1 AND sop_instance_uid = ?2 AND state = 'pending'",
                        params![
                            destination,
                            sop_instance_uid,
                            at,
                            i64::from(*status),
                            commits
                        ],
                    )?,
                    ForwardOutcome::Retry {
                        sop_instance_uid,
                        status,
                        error,
                        next_attempt_at,
                    } => cached_exec(
                        conn,
                        "UPDATE forward_queue SET attempts = attempts + 1, \
                         next_attempt_at = ?3, last_attempt_at = ?4, last_status = ?5, \
                         last_error = ?6 \
                         WHERE destination = ?1 AND sop_instance_uid = ?2 AND state = 'pending'",
                        params![
                            destination,
                            sop_instance_uid,
                            fmt_ts(*next_attempt_at),
                            at,
                            status.map(i64::from),
                            clip(error)
                        ],
                    )?,
                    ForwardOutcome::Failed {
                        sop_instance_uid,
                        status,
                        error,
                    } => cached_exec(
                        conn,
                        "UPDATE forward_queue SET state = 'failed', attempts = attempts + 1, \
                         last_attempt_at = ?3, last_status = ?4, last_error = ?5 \
                         WHERE destination = ?1 AND sop_instance_uid = ?2 AND state = 'pending'",
                        params![
                            destination,
                            sop_instance_uid,
                            at,
                            status.map(i64::from),
                            clip(error)
                        ],
                    )?,
                };
            }
            Ok(())
        })
    }

    /// For each destination with instances waiting: when the oldest of them
    /// was queued, and how many wait. Read from the partial index of pending
    /// rows, so it stays cheap however many were sent.
    pub fn forward_oldest_pending(&self) -> Result<Vec<(String, Timestamp, u64)>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT destination, min(enqueued_at), count(*) FROM forward_queue \
             WHERE state = 'pending' GROUP BY destination ORDER BY destination",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                parse_ts(r, 1)?,
                u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// For each destination with instances given up on (state `failed`):
    /// how many. Read from a partial index of the failed rows.
    pub fn forward_failed_counts(&self) -> Result<Vec<(String, u64)>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT destination, count(*) FROM forward_queue \
             WHERE state = 'failed' GROUP BY destination ORDER BY destination",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every destination with queue rows, with its figures as of `now`.
    pub fn forward_status(&self, now: Timestamp) -> Result<Vec<ForwardStatusRow>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT destination, \
                count(*) FILTER (WHERE state = 'pending'), \
                count(*) FILTER (WHERE state = 'pending' AND next_attempt_at > ?1), \
                min(enqueued_at) FILTER (WHERE state = 'pending'), \
                count(*) FILTER (WHERE state = 'sent'), \
                count(*) FILTER (WHERE state = 'failed'), \
                coalesce(max(attempts) FILTER (WHERE state = 'pending'), 0), \
                max(sent_at) \
             FROM forward_queue GROUP BY destination ORDER BY destination",
        )?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let rows = stmt.query_map([fmt_ts(now)], |r| {
            Ok(ForwardStatusRow {
                destination: r.get(0)?,
                pending: n(r.get(1)?),
                waiting: n(r.get(2)?),
                oldest_pending: opt_ts(r, 3)?,
                sent: n(r.get(4)?),
                failed: n(r.get(5)?),
                max_attempts: u32::try_from(r.get::<_, i64>(6)?).unwrap_or(u32::MAX),
                last_error: None,
                last_error_at: None,
                last_sent_at: opt_ts(r, 7)?,
            })
        })?;
        let mut out: Vec<ForwardStatusRow> = rows.collect::<Result<_, _>>()?;
        let mut last = self.conn.prepare_cached(
            "SELECT last_error, last_attempt_at FROM forward_queue \
             WHERE destination = ?1 AND state IN ('pending', 'failed') AND last_error IS NOT NULL \
             ORDER BY last_attempt_at DESC LIMIT 1",
        )?;
        for row in &mut out {
            if let Some((error, at)) = last
                .query_row([&row.destination], |r| {
                    Ok((r.get::<_, String>(0)?, opt_ts(r, 1)?))
                })
                .optional()?
            {
                row.last_error = Some(error);
                row.last_error_at = at;
            }
        }
        Ok(out)
    }

    /// Pending rows per destination (for `/metrics`), read from the partial
    /// index of pending rows only.
    pub fn forward_pending(&self) -> Result<Vec<(String, u64)>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT destination, count(*) FROM forward_queue \
             WHERE state = 'pending' GROUP BY destination",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The queue state of one instance for one destination: `(state,
    /// attempts)`.
    pub fn forward_state(
        &self,
        destination: &str,
        sop_instance_uid: &str,
    ) -> Result<Option<(String, u32)>, Error> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT state, attempts FROM forward_queue \
                 WHERE destination = ?1 AND sop_instance_uid = ?2",
            )?
            .query_row([destination, sop_instance_uid], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                ))
            })
            .optional()?)
    }

    /// Makes failed rows, and pending rows waiting for a later attempt, due
    /// at `now` (of one destination, or all), and audits it as
    /// `forward_retry` by `actor`. Returns how many rows changed.
    pub fn forward_retry(
        &mut self,
        destination: Option<&str>,
        actor: &str,
        now: Timestamp,
    ) -> Result<usize, Error> {
        let at = fmt_ts(now);
        self.write(|conn| {
            let changed = cached_exec(
                conn,
                "UPDATE forward_queue SET state = 'pending', next_attempt_at = ?1 \
                 WHERE (state = 'failed' OR (state = 'pending' AND next_attempt_at > ?1)) \
                   AND (?2 IS NULL OR destination = ?2)",
                params![at, destination],
            )?;
            let detail = format!(
                "{changed} queued instance(s) for {} made due now",
                destination.unwrap_or("every destination")
            );
            super::store::insert_audit(conn, &at, actor, "forward_retry", None, &detail)?;
            Ok(changed)
        })
    }
}

fn opt_ts(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    match r.get_ref(i)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => parse_ts(r, i).map(Some),
    }
}
