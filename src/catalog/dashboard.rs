//! Reads that only the dashboard makes: the escalation state of worklist
//! rows, pages of alarms and reports awaiting a person, ingest and delivery
//! health, peers last seen, and the backlog's history.
//!
//! Every query reads an index range bounded by a limit or by a recent time
//! window, never the whole of `studies` or `instances`: the dashboard must
//! answer within 200 ms on a catalog of a million studies. Rows are
//! re-read through the public single-row readers ([`Store::alarm`],
//! [`Store::report`], [`Store::study_row`]) so that a row means the same
//! here as everywhere else; a page holds at most a few dozen of them.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use rusqlite::{OptionalExtension, Row, params};

use super::alarms::outbox_from_row;
use super::store::{collect, conflict_from_row, fmt_ts, parse_opt_ts, parse_ts};
use super::{AlarmRow, ConflictRow, Error, OutboxRow, ReportRow, Store, StudyRow};

/// The statements, named so that the tests can check each one's plan.
/// Conditions repeat partial indexes' WHERE clauses literally: with QPSG
/// on, SQLite uses a partial index only when the query's WHERE implies it
/// as written.
mod sql {
    /// A study's live overdue alarm (alarms_one_live).
    pub const STUDY_ALARM: &str = "SELECT id, state, next_step, acknowledged_by, \
        acknowledged_until FROM alarms WHERE kind = 'overdue_report' AND subject = ?1 \
        AND state <> 'resolved'";
    /// alarms_by_state.
    pub const ALARM_COUNT: &str = "SELECT count(*) FROM alarms WHERE state = ?1";
    pub const ALARMS_PAGE: &str =
        "SELECT id FROM alarms WHERE state = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3";
    /// reports_alert_pending.
    pub const ALERTS_PENDING: &str = "SELECT id FROM reports WHERE alert_category IS NOT NULL \
        AND alert_acknowledged_at IS NULL AND superseded_by IS NULL AND withdrawn = 0 \
        ORDER BY received_at, id LIMIT ?1";
    pub const ALERTS_PENDING_COUNT: &str = "SELECT count(*) FROM reports \
        WHERE alert_category IS NOT NULL AND alert_acknowledged_at IS NULL \
        AND superseded_by IS NULL AND withdrawn = 0";
    /// reports_unlinked, then report_links by its primary key.
    pub const PENDING_LINKS: &str = "SELECT l.report_id, l.study_uid, l.linked_at \
        FROM reports r JOIN report_links l ON l.report_id = r.id \
        WHERE r.linked = 0 AND r.superseded_by IS NULL \
        AND l.probable = 1 AND l.confirmation IS NULL \
        ORDER BY r.received_at, r.id, l.study_uid LIMIT ?1";
    pub const UNMATCHED: &str = "SELECT id FROM reports WHERE linked = 0 \
        AND superseded_by IS NULL AND (received_at, id) > (?1, ?2) \
        ORDER BY received_at, id LIMIT ?3";
    pub const UNMATCHED_COUNT: &str =
        "SELECT count(*) FROM reports WHERE linked = 0 AND superseded_by IS NULL";
    /// studies_by_last_received, series_by_study, and instances_by_series
    /// for a series that straddles `since` only.
    pub const INSTANCES_SINCE: &str = "SELECT coalesce(sum(CASE \
        WHEN se.first_received_at >= ?1 THEN se.instance_count \
        ELSE (SELECT count(*) FROM instances i \
              WHERE i.series_uid = se.series_uid AND i.received_at >= ?1) END), 0) \
        FROM studies s JOIN series se ON se.study_uid = s.study_uid \
        WHERE s.last_received_at >= ?1 AND se.last_received_at >= ?1";
    pub const STUDIES_SINCE: &str = "SELECT count(*), \
        count(*) FILTER (WHERE first_received_at >= ?1) \
        FROM studies WHERE last_received_at >= ?1";
    /// ingest_failures_by_at.
    pub const REJECTED_SINCE: &str = "SELECT count(*) FROM ingest_failures WHERE at >= ?1";
    /// `reason` comes from the row holding max(at) (SQLite's bare-column
    /// rule): the latest reason of each status.
    pub const REJECTIONS_SINCE: &str = "SELECT status, count(*), max(at), reason, \
        group_concat(DISTINCT calling_ae) FROM ingest_failures WHERE at >= ?1 \
        GROUP BY status ORDER BY count(*) DESC, status LIMIT ?2";
    pub const CONFLICTS_RECENT: &str = "SELECT id, at, sop_instance_uid, study_uid, \
        calling_ae, existing_sha256, new_sha256, quarantine_path FROM integrity_conflicts \
        ORDER BY id DESC LIMIT ?1";
    pub const CONFLICTS_COUNT: &str = "SELECT count(*) FROM integrity_conflicts";
    /// integrity_conflicts_by_study.
    pub const CONFLICTS_OF_STUDY: &str = "SELECT id, at, sop_instance_uid, study_uid, \
        calling_ae, existing_sha256, new_sha256, quarantine_path FROM integrity_conflicts \
        WHERE study_uid = ?1 ORDER BY id LIMIT ?2";
    pub const CALLERS_SINCE: &str = "SELECT calling_ae, source, max(last_received_at), \
        count(*) FROM studies WHERE last_received_at >= ?1 GROUP BY calling_ae, source \
        ORDER BY max(last_received_at) DESC";
    /// hl7_messages_by_received.
    pub const HL7_SENDERS_SINCE: &str = "SELECT sending_application, sending_facility, \
        count(*), count(*) FILTER (WHERE ack_code <> 'AA'), max(received_at) \
        FROM hl7_messages WHERE received_at >= ?1 \
        GROUP BY sending_application, sending_facility ORDER BY max(received_at) DESC";
    /// outbox_pending.
    pub const OUTBOX_PENDING: &str =
        "SELECT count(*), min(created_at) FROM outbox WHERE state = 'pending'";
    /// outbox_failed.
    pub const OUTBOX_FAILED_COUNT: &str = "SELECT count(*) FROM outbox WHERE state = 'failed'";
    pub const OUTBOX_FAILED: &str = "SELECT id, created_at, alarm_id, channel, event, step, \
        payload, state, attempts, next_attempt_at, last_error, sent_at FROM outbox \
        WHERE state = 'failed' ORDER BY id DESC LIMIT ?1";
    /// studies_worklist.
    pub const WAITING_NOW: &str = "SELECT first_received_at FROM studies \
        WHERE reported_at IS NULL AND no_report_needed = 0";
    /// studies_by_reported.
    pub const REPORTED_AFTER: &str = "SELECT first_received_at, reported_at FROM studies \
        WHERE reported_at > ?1 AND no_report_needed = 0 ORDER BY reported_at DESC";
}

/// The live `overdue_report` alarm of a study on the worklist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StudyAlarm {
    pub study_uid: String,
    pub alarm_id: i64,
    /// `open` or `acknowledged`.
    pub state: String,
    /// How many escalation steps have fired (the index of the next one).
    pub steps_fired: usize,
    pub acknowledged_by: Option<String>,
    pub acknowledged_until: Option<Timestamp>,
}

/// How many live alarms there are, by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlarmCounts {
    pub open: u64,
    pub acknowledged: u64,
}

/// A probable link (patient ID and date) that nobody has decided yet, with
/// its report and the study it points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingLink {
    pub report: ReportRow,
    pub study_uid: String,
    /// `None` only if the study vanished between the two reads.
    pub study: Option<StudyRow>,
    pub linked_at: Timestamp,
}

/// A page of reports that count for no study.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmatchedPage {
    /// Oldest first.
    pub reports: Vec<ReportRow>,
    /// `(received_at, id)` of the last one, when there are more.
    pub next: Option<(Timestamp, i64)>,
    /// How many there are in all.
    pub total: u64,
}

/// Refused instances since a time, grouped by the status answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectionGroup {
    pub status: u16,
    pub count: u64,
    pub last_at: Timestamp,
    /// The reason given for the latest of them.
    pub latest_reason: String,
    /// The calling AE titles that sent them, sorted.
    pub calling_aes: Vec<String>,
}

/// What arrived and what was refused since a time (the start of the local day).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestToday {
    pub instances: u64,
    /// Studies that received an instance.
    pub studies: u64,
    /// Of those, studies first received in the period.
    pub new_studies: u64,
    pub rejected: u64,
    pub rejections: Vec<RejectionGroup>,
}

/// A calling AE that sent instances recently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerSeen {
    pub calling_ae: String,
    pub source: String,
    /// The last instance received from it (of the studies it started).
    pub last_received_at: Timestamp,
    /// Studies it started that received an instance in the window.
    pub studies: u64,
}

/// An HL7 sender (MSH-3 and MSH-4) seen recently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hl7Sender {
    pub application: String,
    pub facility: String,
    pub messages: u64,
    /// Answered AE or AR.
    pub refused: u64,
    pub last_at: Timestamp,
}

/// The notification outbox at a glance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxHealth {
    pub pending: u64,
    /// When the oldest pending notification was queued.
    pub oldest_pending: Option<Timestamp>,
    /// Notifications given up on (failed), ever.
    pub failed: u64,
    /// The most recent of them, newest first.
    pub recent_failed: Vec<OutboxRow>,
}

impl Store {
    /// The live `overdue_report` alarms of these studies (at most one each).
    pub fn study_alarms(&self, study_uids: &[String]) -> Result<Vec<StudyAlarm>, Error> {
        let mut out = Vec::new();
        for uid in study_uids {
            // The conditions of the partial unique index alarms_one_live.
            let row = self
                .conn
                .prepare_cached(sql::STUDY_ALARM)?
                .query_row([uid], |r| {
                    let step: i64 = r.get(2)?;
                    Ok(StudyAlarm {
                        study_uid: uid.clone(),
                        alarm_id: r.get(0)?,
                        state: r.get(1)?,
                        steps_fired: usize::try_from(step).unwrap_or(0),
                        acknowledged_by: r.get(3)?,
                        acknowledged_until: parse_opt_ts(r, 4)?,
                    })
                })
                .optional()?;
            out.extend(row);
        }
        Ok(out)
    }

    /// How many alarms are open and how many acknowledged.
    pub fn alarm_counts(&self) -> Result<AlarmCounts, Error> {
        let count = |state: &str| -> Result<u64, Error> {
            let n: i64 = self
                .conn
                .prepare_cached(sql::ALARM_COUNT)?
                .query_row([state], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(AlarmCounts {
            open: count("open")?,
            acknowledged: count("acknowledged")?,
        })
    }

    /// Alarms in `state`, newest first, with ids below `before` (the
    /// previous page's last id), at most `limit`; and the id to continue
    /// before when there are more.
    pub fn alarms_page(
        &self,
        state: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<AlarmRow>, Option<i64>), Error> {
        let ids: Vec<i64> = collect(
            &self.conn,
            sql::ALARMS_PAGE,
            params![state, before.unwrap_or(i64::MAX), sql_count(limit + 1)],
            |r| r.get(0),
        )?;
        let more = ids.len() > limit;
        let mut rows = Vec::with_capacity(limit);
        for id in ids.into_iter().take(limit) {
            rows.extend(self.alarm(id)?);
        }
        let next = if more {
            rows.last().map(|a| a.id)
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Current reports whose fail-safe alert nobody on the referrer's side
    /// has acknowledged, oldest first, at most `limit`; and how many there
    /// are in all.
    pub fn failsafe_pending(&self, limit: usize) -> Result<(Vec<ReportRow>, u64), Error> {
        let ids: Vec<i64> = collect(&self.conn, sql::ALERTS_PENDING, [sql_count(limit)], |r| {
            r.get(0)
        })?;
        let total: i64 = self
            .conn
            .prepare_cached(sql::ALERTS_PENDING_COUNT)?
            .query_row([], |r| r.get(0))?;
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            rows.extend(self.report(id)?);
        }
        Ok((rows, u64::try_from(total).unwrap_or(0)))
    }

    /// Probable links awaiting a person's decision, oldest report first, at
    /// most `limit`. They are found through the reports that count for no
    /// study (a confirmed link makes its report count), which the partial
    /// index reports_unlinked keeps small.
    pub fn pending_links(&self, limit: usize) -> Result<Vec<PendingLink>, Error> {
        let keys: Vec<(i64, String, Timestamp)> =
            collect(&self.conn, sql::PENDING_LINKS, [sql_count(limit)], |r| {
                Ok((r.get(0)?, r.get(1)?, parse_ts(r, 2)?))
            })?;
        let mut out = Vec::with_capacity(keys.len());
        for (report_id, study_uid, linked_at) in keys {
            let Some(report) = self.report(report_id)? else {
                continue;
            };
            let study = self.study_row(&study_uid)?;
            out.push(PendingLink {
                report,
                study_uid,
                study,
                linked_at,
            });
        }
        Ok(out)
    }

    /// Reports that count for no study, oldest first, after the cursor
    /// `(received_at, id)` of the previous page, at most `limit`; the next
    /// cursor when there are more; and how many there are in all.
    pub fn unmatched_page(
        &self,
        after: Option<(Timestamp, i64)>,
        limit: usize,
    ) -> Result<UnmatchedPage, Error> {
        let (at, id) = after.map_or((String::new(), 0), |(t, id)| (fmt_ts(t), id));
        let ids: Vec<i64> = collect(
            &self.conn,
            sql::UNMATCHED,
            params![at, id, sql_count(limit + 1)],
            |r| r.get(0),
        )?;
        let total: i64 = self
            .conn
            .prepare_cached(sql::UNMATCHED_COUNT)?
            .query_row([], |r| r.get(0))?;
        let more = ids.len() > limit;
        let mut rows = Vec::with_capacity(limit);
        for id in ids.into_iter().take(limit) {
            rows.extend(self.report(id)?);
        }
        let next = if more {
            rows.last().map(|r| (r.received_at, r.id))
        } else {
            None
        };
        Ok(UnmatchedPage {
            reports: rows,
            next,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    /// Instances and studies received since `since`, and the refusals.
    ///
    /// Instances are counted through the series touched since then (found
    /// from the studies touched, by index): a series first received since
    /// then counts whole, and only a series that straddles `since` has its
    /// instances counted one by one. No index on instance times is needed.
    pub fn ingest_since(&self, since: Timestamp, groups: usize) -> Result<IngestToday, Error> {
        let since = fmt_ts(since);
        let instances: i64 = self
            .conn
            .prepare_cached(sql::INSTANCES_SINCE)?
            .query_row([&since], |r| r.get(0))?;
        let (studies, new_studies): (i64, i64) = self
            .conn
            .prepare_cached(sql::STUDIES_SINCE)?
            .query_row([&since], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let rejected: i64 = self
            .conn
            .prepare_cached(sql::REJECTED_SINCE)?
            .query_row([&since], |r| r.get(0))?;
        let rejections = collect(
            &self.conn,
            sql::REJECTIONS_SINCE,
            params![since, sql_count(groups)],
            |r| {
                let n: i64 = r.get(1)?;
                let aes: Option<String> = r.get(4)?;
                let mut calling_aes: Vec<String> = aes
                    .unwrap_or_default()
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect();
                calling_aes.sort();
                Ok(RejectionGroup {
                    status: r.get(0)?,
                    count: u64::try_from(n).unwrap_or(0),
                    last_at: parse_ts(r, 2)?,
                    latest_reason: r.get(3)?,
                    calling_aes,
                })
            },
        )?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(IngestToday {
            instances: n(instances),
            studies: n(studies),
            new_studies: n(new_studies),
            rejected: n(rejected),
            rejections,
        })
    }

    /// The most recent integrity conflicts, newest first, and how many
    /// there are in all (the table only grows when a sender resends
    /// different content under a stored UID: it stays small).
    pub fn recent_conflicts(&self, limit: usize) -> Result<(Vec<ConflictRow>, u64), Error> {
        let rows = collect(
            &self.conn,
            sql::CONFLICTS_RECENT,
            [sql_count(limit)],
            conflict_from_row,
        )?;
        let total: i64 = self
            .conn
            .prepare_cached(sql::CONFLICTS_COUNT)?
            .query_row([], |r| r.get(0))?;
        Ok((rows, u64::try_from(total).unwrap_or(0)))
    }

    /// Integrity conflicts of one study, oldest first, at most `limit`.
    pub fn study_conflicts(
        &self,
        study_uid: &str,
        limit: usize,
    ) -> Result<Vec<ConflictRow>, Error> {
        collect(
            &self.conn,
            sql::CONFLICTS_OF_STUDY,
            params![study_uid, sql_count(limit)],
            conflict_from_row,
        )
    }

    /// Calling AEs whose studies received instances since `since`, most
    /// recent first. Each study is counted under the AE that sent its first
    /// instance (the catalog keeps no per-AE index of instances), so an AE
    /// that only adds to studies another started does not appear.
    pub fn callers_since(&self, since: Timestamp) -> Result<Vec<CallerSeen>, Error> {
        collect(&self.conn, sql::CALLERS_SINCE, [fmt_ts(since)], |r| {
            let n: i64 = r.get(3)?;
            Ok(CallerSeen {
                calling_ae: r.get(0)?,
                source: r.get(1)?,
                last_received_at: parse_ts(r, 2)?,
                studies: u64::try_from(n).unwrap_or(0),
            })
        })
    }

    /// HL7 senders (MSH-3, MSH-4) heard from since `since`, most recent
    /// first.
    pub fn hl7_senders_since(&self, since: Timestamp) -> Result<Vec<Hl7Sender>, Error> {
        collect(&self.conn, sql::HL7_SENDERS_SINCE, [fmt_ts(since)], |r| {
            let n: i64 = r.get(2)?;
            let refused: i64 = r.get(3)?;
            Ok(Hl7Sender {
                application: r.get(0)?,
                facility: r.get(1)?,
                messages: u64::try_from(n).unwrap_or(0),
                refused: u64::try_from(refused).unwrap_or(0),
                last_at: parse_ts(r, 4)?,
            })
        })
    }

    /// Pending and failed notifications, and the `recent` latest failures.
    pub fn outbox_health(&self, recent: usize) -> Result<OutboxHealth, Error> {
        let (pending, oldest): (i64, Option<String>) = self
            .conn
            .prepare_cached(sql::OUTBOX_PENDING)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let failed: i64 = self
            .conn
            .prepare_cached(sql::OUTBOX_FAILED_COUNT)?
            .query_row([], |r| r.get(0))?;
        let recent_failed = if failed > 0 {
            collect(
                &self.conn,
                sql::OUTBOX_FAILED,
                [sql_count(recent)],
                outbox_from_row,
            )?
        } else {
            Vec::new()
        };
        Ok(OutboxHealth {
            pending: u64::try_from(pending).unwrap_or(0),
            oldest_pending: oldest.and_then(|t| t.parse().ok()),
            failed: u64::try_from(failed).unwrap_or(0),
            recent_failed,
        })
    }
}

impl Store {
    /// How many studies were waiting for a report at each of `ends`
    /// (ascending): received at or before it, needing a report, and not
    /// formally reported by then. `None` for an end not reached within
    /// `budget`.
    ///
    /// Two index reads, bucketed here: the studies waiting now (from the
    /// worklist index), and the studies reported after the first end (from
    /// studies_by_reported), newest report first. An end's count depends
    /// only on the studies reported after it, so the scan finishes the
    /// latest ends first: when `budget` runs out, the counts of the ends at
    /// or after the last report read are exact and the earlier ones are
    /// `None`. With a million studies reported over 30 days the whole scan
    /// takes a few hundred milliseconds; a caller with a page to render
    /// passes a budget and counts the rest in the background.
    pub fn backlog_history(
        &self,
        ends: &[Timestamp],
        budget: Option<Duration>,
    ) -> Result<Vec<Option<u64>>, Error> {
        let Some(first_end) = ends.first() else {
            return Ok(Vec::new());
        };
        let started = Instant::now();
        // Stored times compare as text, and so do these.
        let ends: Vec<String> = ends.iter().map(|t| fmt_ts(*t)).collect();
        let slot = |t: &str| ends.partition_point(|e| e.as_str() < t);
        // +1 from the first end a study waited at, -1 from the first it no
        // longer did; the running sum is the count at each end.
        let mut diff = vec![0i64; ends.len() + 1];
        {
            let mut stmt = self.conn.prepare_cached(sql::WAITING_NOW)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                diff[slot(text(row, 0)?)] += 1;
            }
        }
        // The ends before this one are not counted yet.
        let mut exact_from = 0;
        {
            let mut stmt = self.conn.prepare_cached(sql::REPORTED_AFTER)?;
            let mut rows = stmt.query([fmt_ts(*first_end)])?;
            let mut seen = 0u64;
            while let Some(row) = rows.next()? {
                let reported = text(row, 1)?;
                let from = slot(text(row, 0)?);
                let until = slot(reported);
                if from < until {
                    diff[from] += 1;
                    diff[until] -= 1;
                }
                seen += 1;
                if seen % 1024 == 0 && budget.is_some_and(|b| started.elapsed() > b) {
                    // Every study reported after `reported` has been read
                    // (newest first), so the ends at or after it are exact.
                    exact_from = slot(reported);
                    break;
                }
            }
        }
        let mut waiting = 0i64;
        Ok(diff[..ends.len()]
            .iter()
            .enumerate()
            .map(|(i, d)| {
                waiting += d;
                (i >= exact_from).then(|| u64::try_from(waiting).unwrap_or(0))
            })
            .collect())
    }
}

/// A text column, borrowed from the row (no copy per row of a long scan).
fn text<'a>(row: &'a Row<'_>, idx: usize) -> rusqlite::Result<&'a str> {
    row.get_ref(idx)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A row count as SQLite's integer.
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::sql;
    use crate::catalog::Store;

    /// Partial indexes, of rows waiting for a person or a sender.
    const PARTIAL: [&str; 5] = [
        "reports_alert_pending",
        "reports_unlinked",
        "outbox_pending",
        "outbox_failed",
        "studies_worklist",
    ];

    /// Every dashboard statement reads through an index: no full scan of
    /// a table that grows with the catalog.
    #[test]
    fn every_statement_reads_an_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("c.sqlite"), false).expect("open");
        let statements: &[(&str, &[&str])] = &[
            (sql::STUDY_ALARM, &["alarms_one_live"]),
            (sql::ALARM_COUNT, &["alarms_by_state"]),
            (sql::ALARMS_PAGE, &["alarms_by_state"]),
            (sql::ALERTS_PENDING, &["reports_alert_pending"]),
            (sql::ALERTS_PENDING_COUNT, &["reports_alert_pending"]),
            (
                sql::PENDING_LINKS,
                &["reports_unlinked", "sqlite_autoindex_report_links_1"],
            ),
            (sql::UNMATCHED, &["reports_unlinked"]),
            (sql::UNMATCHED_COUNT, &["reports_unlinked"]),
            (
                sql::INSTANCES_SINCE,
                &[
                    "studies_by_last_received",
                    "series_by_study",
                    "instances_by_series",
                ],
            ),
            (sql::STUDIES_SINCE, &["studies_by_last_received"]),
            (sql::REJECTED_SINCE, &["ingest_failures_by_at"]),
            (sql::REJECTIONS_SINCE, &["ingest_failures_by_at"]),
            (sql::CONFLICTS_RECENT, &[]),
            (sql::CONFLICTS_COUNT, &[]),
            (sql::CONFLICTS_OF_STUDY, &["integrity_conflicts_by_study"]),
            (sql::CALLERS_SINCE, &["studies_by_last_received"]),
            (sql::HL7_SENDERS_SINCE, &["hl7_messages_by_received"]),
            (sql::OUTBOX_PENDING, &["outbox_pending"]),
            (sql::OUTBOX_FAILED_COUNT, &["outbox_failed"]),
            (sql::OUTBOX_FAILED, &["outbox_failed"]),
            (sql::WAITING_NOW, &["studies_worklist"]),
            (sql::REPORTED_AFTER, &["studies_by_reported"]),
        ];
        for (statement, indexes) in statements {
            let (statement, indexes) = (*statement, *indexes);
            let mut stmt = store
                .conn()
                .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
                .expect("prepare");
            let plan: Vec<String> = stmt
                .query_map(
                    rusqlite::params_from_iter(std::iter::repeat_n("", stmt.parameter_count())),
                    |r| r.get::<_, String>(3),
                )
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("rows");
            let plan = plan.join("; ");
            for index in indexes {
                assert!(
                    plan.contains(index),
                    "{statement}\nshould use {index}: {plan}"
                );
            }
            // A scan may read a partial index (which holds only the few
            // rows waiting for someone) or the conflicts table (a row per
            // instance resent with different content: rare); nothing else.
            for step in plan.split("; ").filter(|s| s.starts_with("SCAN")) {
                assert!(
                    PARTIAL.iter().any(|p| step.contains(&format!("INDEX {p}")))
                        || step.starts_with("SCAN integrity_conflicts"),
                    "{statement}\nscans: {plan}"
                );
            }
        }
    }
}
