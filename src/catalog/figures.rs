//! Figures read at each `/metrics` scrape: the backlog by age, live alarms
//! by kind, the outbox, the forward queue, and the studies reported since a watermark (for the
//! turnaround histogram). Every query in [`Store::figures`] is a count over a
//! partial index or a bounded range, so a scrape stays cheap with a million
//! studies; the whole-catalog totals ([`Store::totals`]) scan an index and
//! are read less often.

use jiff::Timestamp;
use rusqlite::params;

use super::store::{fmt_ts, parse_ts};
use super::{Error, Store};

/// What `/metrics` shows from the catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Studies needing a report and without one, by age since first receipt:
    /// `(under 24 h, 24 h–7 d, 7–28 d, over 28 d)`.
    pub unreported_by_age: [u64; 4],
    /// Of those, how many are past their deadline.
    pub overdue: u64,
    /// Live alarms: `(kind, state, count)` with state `open` or `acknowledged`.
    pub alarms: Vec<(String, String, u64)>,
    /// Notifications waiting to be delivered, and those given up on.
    pub outbox_pending: u64,
    pub outbox_failed: u64,
    /// Instances waiting to be forwarded, per destination that has any
    /// (read from the partial index of pending queue rows).
    pub forward_pending: Vec<(String, u64)>,
}

/// The labels of [`Figures::unreported_by_age`], in order.
pub const AGE_BUCKETS: [&str; 4] = ["under_24h", "24h_to_7d", "7d_to_28d", "over_28d"];

impl Store {
    /// The figures as of `now`.
    pub fn figures(&self, now: Timestamp) -> Result<Figures, Error> {
        let ago = |hours: i64| {
            fmt_ts(
                now.checked_sub(jiff::SignedDuration::from_hours(hours))
                    .unwrap_or(now),
            )
        };
        let conn = &self.conn;
        let (total, d1, d7, d28, overdue): (i64, i64, i64, i64, i64) = conn
            .prepare_cached(
                "SELECT count(*), \
                    count(*) FILTER (WHERE first_received_at <= ?1), \
                    count(*) FILTER (WHERE first_received_at <= ?2), \
                    count(*) FILTER (WHERE first_received_at <= ?3), \
                    count(*) FILTER (WHERE deadline < ?4) \
                 FROM studies WHERE reported_at IS NULL AND no_report_needed = 0",
            )?
            .query_row(
                params![ago(24), ago(24 * 7), ago(24 * 28), fmt_ts(now)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let mut alarms = Vec::new();
        {
            let mut stmt = conn.prepare_cached(
                "SELECT kind, state, count(*) FROM alarms \
                 WHERE state IN ('open', 'acknowledged') GROUP BY kind, state",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (kind, state, count) = row?;
                alarms.push((kind, state, n(count)));
            }
        }
        let (pending, failed): (i64, i64) = conn
            .prepare_cached(
                "SELECT (SELECT count(*) FROM outbox WHERE state = 'pending'), \
                        (SELECT count(*) FROM outbox WHERE state = 'failed')",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(Figures {
            unreported_by_age: [n(total - d1), n(d1 - d7), n(d7 - d28), n(d28)],
            overdue: n(overdue),
            alarms,
            outbox_pending: n(pending),
            outbox_failed: n(failed),
            forward_pending: self.forward_pending()?,
        })
    }

    /// `(studies, instances)` in the catalog. Each count scans an index
    /// (tens of milliseconds at a million studies), so callers cache it.
    pub fn totals(&self) -> Result<(u64, u64), Error> {
        let (studies, instances): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT (SELECT count(*) FROM studies), (SELECT count(*) FROM instances)",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((
            u64::try_from(studies).unwrap_or(0),
            u64::try_from(instances).unwrap_or(0),
        ))
    }

    /// The newest report link's id: the starting watermark of
    /// [`Store::newly_reported`].
    pub fn last_link_id(&self) -> Result<i64, Error> {
        Ok(self
            .conn
            .prepare_cached("SELECT coalesce(max(rowid), 0) FROM report_links")?
            .query_row([], |r| r.get(0))?)
    }

    /// Studies that became formally reported through a link made after the
    /// link id `after`, each once (through its first counting link to a
    /// final or corrected report), for the turnaround histogram: `(first
    /// received, reported at)` pairs, and the link id to pass next time. At
    /// most `limit` studies; the rest come with the next call.
    ///
    /// A probable link confirmed later than it was made is not seen here:
    /// its link id is already behind the watermark.
    pub fn newly_reported(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<(Timestamp, Timestamp)>, i64), Error> {
        let last = self.last_link_id()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT l.rowid, s.first_received_at, s.reported_at \
             FROM report_links l \
             JOIN reports r ON r.id = l.report_id \
             JOIN studies s ON s.study_uid = l.study_uid \
             WHERE l.rowid > ?1 AND l.rowid <= ?2 AND s.reported_at IS NOT NULL \
               AND r.status IN ('final', 'corrected') AND r.withdrawn = 0 \
               AND (l.probable = 0 OR l.confirmation = 'confirmed') \
               AND NOT EXISTS ( \
                 SELECT 1 FROM report_links e JOIN reports er ON er.id = e.report_id \
                 WHERE e.study_uid = l.study_uid AND e.rowid < l.rowid \
                   AND er.status IN ('final', 'corrected') AND er.withdrawn = 0 \
                   AND (e.probable = 0 OR e.confirmation = 'confirmed')) \
             ORDER BY l.rowid LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![after, last, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| Ok((r.get::<_, i64>(0)?, parse_ts(r, 1)?, parse_ts(r, 2)?)),
        )?;
        let rows: Vec<(i64, Timestamp, Timestamp)> = rows.collect::<Result<_, _>>()?;
        let next = if rows.len() == limit {
            rows.last().map_or(last, |r| r.0)
        } else {
            last
        };
        Ok((rows.into_iter().map(|(_, a, b)| (a, b)).collect(), next))
    }

    /// Whether a write transaction can start now: the file is writable and
    /// no other process holds the write lock past the busy timeout.
    pub fn check_writable(&self) -> Result<(), Error> {
        self.conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK")?;
        Ok(())
    }
}
