//! Storage commitment in the catalog, both ways (PS3.4 Annex J).
//!
//! Towards a destination (we are the SCU): a sent `forward_queue` row of a
//! destination that commits is `awaiting`; once its study is stable and
//! every row of the study for that destination is sent, the rows are
//! `requested` under one Transaction UID, recorded *before* the N-ACTION
//! goes out (a PACS may answer within milliseconds, on another
//! association); the destination's N-EVENT-REPORT makes each `committed`
//! or `failed`. A request left unanswered goes back to `awaiting` and is
//! asked again under a new Transaction UID.
//!
//! From a peer (we are the SCP): `commit_requests` keeps each N-ACTION
//! until its N-EVENT-REPORT has been delivered; the result is computed from
//! the catalog when the report is sent, so it is the truth at that moment.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::store::{SYSTEM, cached_exec, collect, fmt_ts, insert_audit, parse_opt_ts};
use super::{Error, Store};

/// Failure Reason: no such object instance (PS3.4 J.3.2.1.1.2).
pub const NO_SUCH_INSTANCE: u16 = 0x0112;
/// Failure Reason: class / instance conflict.
pub const CLASS_INSTANCE_CONFLICT: u16 = 0x0119;

/// A study whose rows for a destination can be asked to commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitBatch {
    pub study_uid: String,
    /// (SOP Class UID, SOP Instance UID) of each row awaiting commitment.
    pub items: Vec<(String, String)>,
}

/// The answer to a peer's commitment request, as the catalog sees it now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitAnswer {
    /// (SOP Class UID, SOP Instance UID) held, verified and of that class.
    pub committed: Vec<(String, String)>,
    /// (SOP Class UID, SOP Instance UID, Failure Reason).
    pub failed: Vec<(String, String, u16)>,
}

/// A peer's request whose report is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueReport {
    pub transaction_uid: String,
    pub calling_ae: String,
    pub attempts: u32,
}

/// A peer's commitment request as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRequest {
    pub calling_ae: String,
    /// `pending` (its report is owed) or `reported`.
    pub state: String,
    /// 1 (all committed) or 2 (failures exist), once reported.
    pub event_type: Option<i64>,
    pub reported_at: Option<Timestamp>,
}

/// Per destination: its rows sent and not yet committed (or refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UncommittedRow {
    pub destination: String,
    pub waiting: u64,
    pub failed: u64,
    /// When the oldest waiting row was sent.
    pub oldest_sent: Option<Timestamp>,
}

// Several queries below repeat `commit_state IN ('awaiting', 'requested')`
// beside a narrower condition on the same column: with the query planner's
// stability guarantee on, SQLite uses the partial index `forward_commit_open`
// only for a WHERE that contains its condition literally.

impl Store {
    /// Up to `limit` studies of `destination` whose sent rows await a
    /// commitment request: the study is stable and none of its rows for
    /// the destination is still pending.
    pub fn commit_ready(&self, destination: &str, limit: usize) -> Result<Vec<CommitBatch>, Error> {
        let studies: Vec<String> = collect(
            &self.conn,
            "SELECT DISTINCT q.study_uid FROM forward_queue q \
             JOIN studies s ON s.study_uid = q.study_uid \
             WHERE q.destination = ?1 AND q.commit_state IN ('awaiting', 'requested') \
               AND q.commit_state = 'awaiting' AND s.stable_at IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM forward_queue p \
                   WHERE p.study_uid = q.study_uid AND p.destination = ?1 AND p.state = 'pending') \
             LIMIT ?2",
            params![destination, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| r.get(0),
        )?;
        let mut out = Vec::with_capacity(studies.len());
        for study_uid in studies {
            let items = collect(
                &self.conn,
                "SELECT i.sop_class_uid, q.sop_instance_uid FROM forward_queue q \
                 JOIN instances i ON i.sop_instance_uid = q.sop_instance_uid \
                 WHERE q.destination = ?1 AND q.study_uid = ?2 \
                   AND q.commit_state IN ('awaiting', 'requested') AND q.commit_state = 'awaiting' \
                 ORDER BY q.sop_instance_uid",
                params![destination, study_uid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            out.push(CommitBatch { study_uid, items });
        }
        Ok(out)
    }

    /// Records that `sop_instance_uids` of `destination` are asked to
    /// commit under `transaction_uid`. Called before the N-ACTION is sent.
    pub fn commit_requested(
        &mut self,
        destination: &str,
        transaction_uid: &str,
        sop_instance_uids: &[String],
        now: Timestamp,
    ) -> Result<(), Error> {
        let at = fmt_ts(now);
        self.write(|conn| {
            for sop in sop_instance_uids {
                cached_exec(
                    conn,
                    "UPDATE forward_queue SET commit_state = 'requested', commit_transaction = ?3, \
                     commit_requested_at = ?4, commit_failure = NULL \
                     WHERE destination = ?1 AND sop_instance_uid = ?2 AND state = 'sent' \
                       AND commit_state IN ('awaiting', 'requested')",
                    params![destination, sop, transaction_uid, at],
                )?;
            }
            Ok(())
        })
    }

    /// Puts rows of `transaction_uid` still `requested` back to
    /// `awaiting` (the request could not be sent, or went unanswered), so
    /// they are asked again. Returns how many.
    pub fn commit_request_lapsed(
        &mut self,
        transaction_uid: &str,
        why: &str,
    ) -> Result<usize, Error> {
        self.write(|conn| {
            Ok(cached_exec(
                conn,
                "UPDATE forward_queue SET commit_state = 'awaiting', commit_failure = ?2 \
                 WHERE commit_transaction = ?1 AND commit_state = 'requested'",
                params![transaction_uid, why],
            )?)
        })
    }

    /// Transactions of `destination` requested before `before` and still
    /// unanswered.
    pub fn commit_unanswered(
        &self,
        destination: &str,
        before: Timestamp,
    ) -> Result<Vec<String>, Error> {
        collect(
            &self.conn,
            "SELECT DISTINCT commit_transaction FROM forward_queue \
             WHERE destination = ?1 AND commit_state IN ('awaiting', 'requested') \
               AND commit_state = 'requested' AND commit_requested_at < ?2",
            params![destination, fmt_ts(before)],
            |r| r.get(0),
        )
    }

    /// The destination whose rows were asked to commit under
    /// `transaction_uid`, if any.
    pub fn commit_destination(&self, transaction_uid: &str) -> Result<Option<String>, Error> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT destination FROM forward_queue WHERE commit_transaction = ?1 LIMIT 1",
            )?
            .query_row([transaction_uid], |r| r.get(0))
            .optional()?)
    }

    /// Applies a destination's N-EVENT-REPORT: `committed` rows become
    /// committed, `failed` ones failed with their reason. Only rows asked
    /// under `transaction_uid` change. Returns (committed, failed) counts.
    pub fn commit_reported(
        &mut self,
        transaction_uid: &str,
        committed: &[String],
        failed: &[(String, u16)],
        now: Timestamp,
    ) -> Result<(usize, usize), Error> {
        let at = fmt_ts(now);
        self.write(|conn| {
            let mut ok = 0;
            for sop in committed {
                ok += cached_exec(
                    conn,
                    "UPDATE forward_queue SET commit_state = 'committed', committed_at = ?3, \
                     commit_failure = NULL \
                     WHERE commit_transaction = ?1 AND sop_instance_uid = ?2 \
                       AND commit_state IN ('awaiting', 'requested')",
                    params![transaction_uid, sop, at],
                )?;
            }
            let mut bad = 0;
            for (sop, reason) in failed {
                bad += cached_exec(
                    conn,
                    "UPDATE forward_queue SET commit_state = 'failed', \
                     commit_failure = ?3 \
                     WHERE commit_transaction = ?1 AND sop_instance_uid = ?2 \
                       AND commit_state IN ('awaiting', 'requested')",
                    params![
                        transaction_uid,
                        sop,
                        format!("failure reason {reason:#06X}")
                    ],
                )?;
            }
            Ok((ok, bad))
        })
    }

    /// Per destination with rows sent but not committed: how many wait for
    /// an answer, how many the destination refused to commit, and when the
    /// oldest waiting one was sent.
    pub fn commit_open(&self) -> Result<Vec<UncommittedRow>, Error> {
        let mut rows = collect(
            &self.conn,
            "SELECT destination, \
               sum(commit_state IN ('awaiting', 'requested')), \
               min(CASE WHEN commit_state IN ('awaiting', 'requested') THEN sent_at END) \
             FROM forward_queue WHERE commit_state IN ('awaiting', 'requested') \
             GROUP BY destination",
            [],
            |r| {
                Ok(UncommittedRow {
                    destination: r.get(0)?,
                    waiting: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    failed: 0,
                    oldest_sent: r.get::<_, Option<String>>(2)?.and_then(|s| s.parse().ok()),
                })
            },
        )?;
        let failed: Vec<(String, i64)> = collect(
            &self.conn,
            "SELECT destination, count(*) FROM forward_queue \
             WHERE commit_state = 'failed' GROUP BY destination",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        for (destination, n) in failed {
            let n = u64::try_from(n).unwrap_or(0);
            match rows.iter_mut().find(|r| r.destination == destination) {
                Some(r) => r.failed = n,
                None => rows.push(UncommittedRow {
                    destination,
                    waiting: 0,
                    failed: n,
                    oldest_sent: None,
                }),
            }
        }
        rows.sort_by(|a, b| a.destination.cmp(&b.destination));
        Ok(rows)
    }

    // -- From a peer: we are the SCP ------------------------------------

    /// Records a peer's commitment request, to be reported once
    /// `report_at` has passed (or sooner, on the same association). A
    /// Transaction UID seen before from the same AE is a resend: it is
    /// reported again. Returns false when that UID belongs to another AE's
    /// request (the caller answers with a failure).
    pub fn record_commit_request(
        &mut self,
        transaction_uid: &str,
        calling_ae: &str,
        items: &[(String, String)],
        now: Timestamp,
        report_at: Timestamp,
    ) -> Result<bool, Error> {
        let at = fmt_ts(now);
        self.write(|conn| {
            let owner: Option<String> = conn
                .prepare_cached(
                    "SELECT calling_ae FROM commit_requests WHERE transaction_uid = ?1",
                )?
                .query_row([transaction_uid], |r| r.get(0))
                .optional()?;
            match owner {
                Some(ae) if ae != calling_ae => return Ok(false),
                Some(_) => {
                    cached_exec(
                        conn,
                        "UPDATE commit_requests SET state = 'pending', next_attempt_at = ?2, \
                         attempts = 0, last_error = NULL WHERE transaction_uid = ?1",
                        params![transaction_uid, fmt_ts(report_at)],
                    )?;
                }
                None => {
                    cached_exec(
                        conn,
                        "INSERT INTO commit_requests (transaction_uid, calling_ae, received_at, \
                         state, next_attempt_at) VALUES (?1, ?2, ?3, 'pending', ?4)",
                        params![transaction_uid, calling_ae, at, fmt_ts(report_at)],
                    )?;
                }
            }
            for (class, instance) in items {
                cached_exec(
                    conn,
                    "INSERT OR REPLACE INTO commit_request_items \
                     (transaction_uid, sop_instance_uid, sop_class_uid) VALUES (?1, ?2, ?3)",
                    params![transaction_uid, instance, class],
                )?;
            }
            insert_audit(
                conn,
                &at,
                calling_ae,
                "commit_requested",
                None,
                &format!(
                    "storage commitment request {transaction_uid} for {} instance(s)",
                    items.len()
                ),
            )?;
            Ok(true)
        })
    }

    /// What we can commit of a peer's request, as of now: an instance
    /// counts only if it is catalogued (so stored durably and verified)
    /// under the SOP class the request names.
    pub fn commit_answer(&self, transaction_uid: &str) -> Result<CommitAnswer, Error> {
        let rows: Vec<(String, String, Option<String>)> = collect(
            &self.conn,
            "SELECT r.sop_class_uid, r.sop_instance_uid, i.sop_class_uid \
             FROM commit_request_items r \
             LEFT JOIN instances i ON i.sop_instance_uid = r.sop_instance_uid \
             WHERE r.transaction_uid = ?1 ORDER BY r.sop_instance_uid",
            [transaction_uid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let mut answer = CommitAnswer::default();
        for (class, instance, held) in rows {
            match held {
                Some(h) if h == class => answer.committed.push((class, instance)),
                Some(_) => answer
                    .failed
                    .push((class, instance, CLASS_INSTANCE_CONFLICT)),
                None => answer.failed.push((class, instance, NO_SUCH_INSTANCE)),
            }
        }
        Ok(answer)
    }

    /// Peers' requests whose report is due at `now`.
    pub fn commit_reports_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueReport>, Error> {
        collect(
            &self.conn,
            "SELECT transaction_uid, calling_ae, attempts FROM commit_requests \
             WHERE state = 'pending' AND next_attempt_at <= ?1 \
             ORDER BY next_attempt_at LIMIT ?2",
            params![fmt_ts(now), i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(DueReport {
                    transaction_uid: r.get(0)?,
                    calling_ae: r.get(1)?,
                    attempts: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(u32::MAX),
                })
            },
        )
    }

    /// The report of `transaction_uid` was delivered (the peer answered
    /// success to our N-EVENT-REPORT).
    pub fn commit_report_delivered(
        &mut self,
        transaction_uid: &str,
        answer: &CommitAnswer,
        now: Timestamp,
    ) -> Result<(), Error> {
        let at = fmt_ts(now);
        let event_type = if answer.failed.is_empty() { 1 } else { 2 };
        self.write(|conn| {
            let ae: Option<String> = conn
                .prepare_cached(
                    "SELECT calling_ae FROM commit_requests WHERE transaction_uid = ?1",
                )?
                .query_row([transaction_uid], |r| r.get(0))
                .optional()?;
            cached_exec(
                conn,
                "UPDATE commit_requests SET state = 'reported', reported_at = ?2, \
                 event_type = ?3, committed_count = ?4, failed_count = ?5, last_error = NULL \
                 WHERE transaction_uid = ?1",
                params![
                    transaction_uid,
                    at,
                    event_type,
                    i64::try_from(answer.committed.len()).unwrap_or(i64::MAX),
                    i64::try_from(answer.failed.len()).unwrap_or(i64::MAX)
                ],
            )?;
            insert_audit(
                conn,
                &at,
                ae.as_deref().unwrap_or("-"),
                "commit_reported",
                None,
                &format!(
                    "storage commitment {transaction_uid}: event type {event_type}, \
                     {} committed, {} failed",
                    answer.committed.len(),
                    answer.failed.len()
                ),
            )?;
            commit_completeness(conn, transaction_uid, ae.as_deref(), answer, &at)?;
            Ok(())
        })
    }

    /// Delivering the report of `transaction_uid` failed; try again at
    /// `next_attempt_at`.
    pub fn commit_report_retry(
        &mut self,
        transaction_uid: &str,
        error: &str,
        next_attempt_at: Timestamp,
    ) -> Result<(), Error> {
        self.write(|conn| {
            cached_exec(
                conn,
                "UPDATE commit_requests SET attempts = attempts + 1, last_error = ?2, \
                 next_attempt_at = ?3 WHERE transaction_uid = ?1 AND state = 'pending'",
                params![transaction_uid, error, fmt_ts(next_attempt_at)],
            )?;
            Ok(())
        })
    }

    /// When the next pending report falls due, if any.
    pub fn commit_next_report(&self) -> Result<Option<Timestamp>, Error> {
        let next: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT min(next_attempt_at) FROM commit_requests WHERE state = 'pending'",
            )?
            .query_row([], |r| r.get(0))?;
        Ok(next.and_then(|s| s.parse().ok()))
    }

    /// A peer's request as recorded.
    pub fn commit_request_state(
        &self,
        transaction_uid: &str,
    ) -> Result<Option<PeerRequest>, Error> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT calling_ae, state, event_type, reported_at FROM commit_requests \
                 WHERE transaction_uid = ?1",
            )?
            .query_row([transaction_uid], |r| {
                Ok(PeerRequest {
                    calling_ae: r.get(0)?,
                    state: r.get(1)?,
                    event_type: r.get(2)?,
                    reported_at: parse_opt_ts(r, 3)?,
                })
            })
            .optional()?)
    }
}

/// What a peer's commitment request says about the studies it touched.
///
/// The peer names the instances it sent; any we do not hold means a study
/// of that request arrived incomplete, though the peer may stop at our
/// failure report and tell nobody. So every study that the request's held
/// instances belong to becomes `incomplete` (the watchdog raises
/// `incomplete_transfer`). The missing instances' own studies cannot be
/// known, and are usually the same. A later request from the peer that we
/// can commit in full marks `complete` again the studies that a commitment
/// had found incomplete; a completeness found by C-FIND is left to C-FIND.
fn commit_completeness(
    conn: &rusqlite::Connection,
    transaction_uid: &str,
    calling_ae: Option<&str>,
    answer: &CommitAnswer,
    at: &str,
) -> Result<(), Error> {
    let studies: Vec<String> = collect(
        conn,
        "SELECT DISTINCT i.study_uid FROM commit_request_items r \
         JOIN instances i ON i.sop_instance_uid = r.sop_instance_uid \
         WHERE r.transaction_uid = ?1 ORDER BY i.study_uid",
        [transaction_uid],
        |r| r.get(0),
    )?;
    let requested = answer.committed.len() + answer.failed.len();
    let from = calling_ae.unwrap_or("-");
    let (state, detail) = if answer.failed.is_empty() {
        (
            "complete",
            format!(
                "{COMMITMENT_DETAIL} {transaction_uid} from {from}: all {requested} requested instance(s) held"
            ),
        )
    } else {
        (
            "incomplete",
            format!(
                "{COMMITMENT_DETAIL} {transaction_uid} from {from}: {} of {requested} requested \
                 instance(s) not committed",
                answer.failed.len()
            ),
        )
    };
    let ours = format!("{COMMITMENT_DETAIL} %");
    for study_uid in &studies {
        // `complete` only undoes what a commitment found.
        let changed = cached_exec(
            conn,
            "UPDATE studies SET completeness = ?2, completeness_at = ?3, completeness_detail = ?4, \
             expected_instances = NULL \
             WHERE study_uid = ?1 \
               AND (?5 OR (completeness = 'incomplete' AND completeness_detail LIKE ?6))",
            params![
                study_uid,
                state,
                at,
                detail,
                !answer.failed.is_empty(),
                ours
            ],
        )?;
        if changed > 0 {
            insert_audit(
                conn,
                at,
                SYSTEM,
                "completeness_checked",
                Some(study_uid),
                &format!("{state}: {detail}"),
            )?;
        }
    }
    Ok(())
}

/// How a completeness detail written from a commitment request begins.
const COMMITMENT_DETAIL: &str = "storage commitment";
