//! Retention: which local files may be pruned.
//!
//! The gateway's disk is not the archive. A local file may go once it is
//! old enough and every destination that takes its instance has it: sent,
//! and committed where the destination does storage commitment. An
//! instance no destination takes is never pruned. The catalog keeps the
//! instance's row and hash; `instances.pruned_at` says the file is gone on
//! purpose.

use jiff::Timestamp;
use rusqlite::params;

use super::store::{cached_exec, collect, fmt_ts};
use super::{Error, Store};

/// Where a pass over the candidates stopped: (received at, SOP Instance UID).
pub type PruneCursor = (Timestamp, String);

/// A file that may be pruned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prunable {
    pub sop_instance_uid: String,
    pub rel_path: String,
    pub received_at: Timestamp,
}

impl Store {
    /// Up to `limit` instances received at or before `before` (and after
    /// `after`, a cursor) whose file is still here and which every
    /// destination has. Read from the partial index of unpruned instances.
    pub fn prunable(
        &self,
        before: Timestamp,
        after: Option<PruneCursor>,
        limit: usize,
    ) -> Result<(Vec<Prunable>, Option<PruneCursor>), Error> {
        let (after_at, after_uid) = match &after {
            Some((t, u)) => (fmt_ts(*t), u.clone()),
            None => (String::new(), String::new()),
        };
        // Scan the candidates by age, then keep those every destination has.
        let scanned: Vec<(String, String, Timestamp)> = collect(
            &self.conn,
            "SELECT sop_instance_uid, rel_path, received_at FROM instances \
             WHERE pruned_at IS NULL AND forwarded = 1 AND received_at <= ?1 \
               AND (received_at > ?2 OR (received_at = ?2 AND sop_instance_uid > ?3)) \
             ORDER BY received_at, sop_instance_uid LIMIT ?4",
            params![
                fmt_ts(before),
                after_at,
                after_uid,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| Ok((r.get(0)?, r.get(1)?, super::store::parse_ts(r, 2)?)),
        )?;
        // A full page may have more after it.
        let cursor = (scanned.len() == limit)
            .then(|| scanned.last().map(|(u, _, t)| (*t, u.clone())))
            .flatten();
        let mut stmt = self.conn.prepare_cached(
            "SELECT count(*), \
               sum(state = 'sent' AND (commit_state IS NULL OR commit_state = 'committed')) \
             FROM forward_queue WHERE sop_instance_uid = ?1",
        )?;
        let mut out = Vec::new();
        for (sop, rel_path, received_at) in scanned {
            let (rows, done): (i64, Option<i64>) =
                stmt.query_row([&sop], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if rows > 0 && done == Some(rows) {
                out.push(Prunable {
                    sop_instance_uid: sop,
                    rel_path,
                    received_at,
                });
            }
        }
        Ok((out, cursor))
    }

    /// Records that these instances' files were removed at `now`.
    pub fn mark_pruned(
        &mut self,
        sop_instance_uids: &[String],
        now: Timestamp,
    ) -> Result<(), Error> {
        let at = fmt_ts(now);
        self.write(|conn| {
            for sop in sop_instance_uids {
                cached_exec(
                    conn,
                    "UPDATE instances SET pruned_at = ?2 WHERE sop_instance_uid = ?1 AND pruned_at IS NULL",
                    params![sop, at],
                )?;
            }
            Ok(())
        })
    }
}
