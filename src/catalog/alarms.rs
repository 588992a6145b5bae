//! The watchdog's tables: each study's rule and deadline, alarms, and the
//! notification outbox. The catalog stores and answers; the watchdog decides
//! (rules, deadlines and the alarm state machine live in `crate::watchdog`).

use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::store::{
    cached_exec, cached_row, collect, fmt_ts, insert_audit, parse_opt_ts, parse_ts,
};
use super::{Error, Store};

/// What rules look at, for a study whose deadline must be (re)computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StudyForRules {
    pub study_uid: String,
    pub modalities: Vec<String>,
    pub source: String,
    pub calling_ae: String,
    pub accession_number: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub first_received_at: Timestamp,
    /// From the latest order for the study (by UID or accession).
    pub patient_class: Option<String>,
    pub priority: Option<String>,
    pub attributes: Vec<(String, String)>,
}

/// A rule's decision for a study.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadlineUpdate {
    pub study_uid: String,
    pub rule: Option<String>,
    pub no_report_needed: bool,
    pub deadline: Option<Timestamp>,
}

/// A row of `alarms`, with the accession number of its study.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmRow {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub study_uid: Option<String>,
    pub accession_number: Option<String>,
    pub patient_id: Option<String>,
    pub report_id: Option<i64>,
    pub rule: Option<String>,
    pub state: String,
    pub raised_at: Timestamp,
    pub due_at: Timestamp,
    pub detail: String,
    pub next_step: usize,
    pub next_action_at: Option<Timestamp>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<Timestamp>,
    pub acknowledged_until: Option<Timestamp>,
    pub ack_reason: Option<String>,
    pub resolved_at: Option<Timestamp>,
    pub resolved_reason: Option<String>,
}

/// An alarm to raise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAlarm {
    pub kind: String,
    pub subject: String,
    pub study_uid: Option<String>,
    pub report_id: Option<i64>,
    pub rule: Option<String>,
    pub due_at: Timestamp,
    pub detail: String,
    pub next_action_at: Option<Timestamp>,
}

/// A notification to put in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNotification {
    pub alarm_id: Option<i64>,
    pub channel: String,
    /// `trigger | repeat | resolve | digest | test`.
    pub event: String,
    pub step: Option<usize>,
    /// The content, as JSON (the notifier renders it per channel).
    pub payload: String,
}

/// A change of an alarm decided by the watchdog, applied atomically with its
/// notifications and audit rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmUpdate {
    pub id: i64,
    pub state: String,
    pub next_step: usize,
    pub next_action_at: Option<Timestamp>,
    pub acknowledged_until: Option<Timestamp>,
    pub resolved_reason: Option<String>,
    /// `(action, detail)` audit rows, in order.
    pub audit: Vec<(String, String)>,
    pub notifications: Vec<NewNotification>,
}

/// A row of `outbox`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub created_at: Timestamp,
    pub alarm_id: Option<i64>,
    pub channel: String,
    pub event: String,
    pub step: Option<usize>,
    pub payload: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub sent_at: Option<Timestamp>,
}

/// `(report id, alert category, received at, first linked study)`.
pub type FailsafeCandidate = (i64, String, Timestamp, Option<String>);
/// Per alert category the earliest pending receipt, and the earliest
/// unmatched report's receipt.
pub type PendingReportTimes = (Vec<(String, Timestamp)>, Option<Timestamp>);
/// `(conflict id, study UID, SOP Instance UID, at)`.
pub type ConflictToAlarm = (i64, Option<String>, String, Timestamp);

/// Which alarms [`Store::alarms`] lists.
#[derive(Clone, Debug, Default)]
pub struct AlarmFilter {
    /// `open`, `acknowledged` or `resolved`; `None` for all.
    pub state: Option<String>,
    /// Only live ones (open or acknowledged).
    pub live: bool,
    pub study_uid: Option<String>,
    pub limit: Option<usize>,
}

const ALARM_COLUMNS: &str = "a.id, a.kind, a.subject, a.study_uid, s.accession_number, \
    s.patient_id, a.report_id, a.rule, a.state, a.raised_at, a.due_at, a.detail, a.next_step, \
    a.next_action_at, a.acknowledged_by, a.acknowledged_at, a.acknowledged_until, a.ack_reason, \
    a.resolved_at, a.resolved_reason";

fn alarm_from_row(r: &Row<'_>) -> rusqlite::Result<AlarmRow> {
    let next_step: i64 = r.get(12)?;
    Ok(AlarmRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        subject: r.get(2)?,
        study_uid: r.get(3)?,
        accession_number: r.get(4)?,
        patient_id: r.get(5)?,
        report_id: r.get(6)?,
        rule: r.get(7)?,
        state: r.get(8)?,
        raised_at: parse_ts(r, 9)?,
        due_at: parse_ts(r, 10)?,
        detail: r.get(11)?,
        next_step: usize::try_from(next_step).unwrap_or(0),
        next_action_at: parse_opt_ts(r, 13)?,
        acknowledged_by: r.get(14)?,
        acknowledged_at: parse_opt_ts(r, 15)?,
        acknowledged_until: parse_opt_ts(r, 16)?,
        ack_reason: r.get(17)?,
        resolved_at: parse_opt_ts(r, 18)?,
        resolved_reason: r.get(19)?,
    })
}

const OUTBOX_COLUMNS: &str = "id, created_at, alarm_id, channel, event, step, payload, state, \
    attempts, next_attempt_at, last_error, sent_at";

pub(super) fn outbox_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    let step: Option<i64> = r.get(5)?;
    let attempts: i64 = r.get(8)?;
    Ok(OutboxRow {
        id: r.get(0)?,
        created_at: parse_ts(r, 1)?,
        alarm_id: r.get(2)?,
        channel: r.get(3)?,
        event: r.get(4)?,
        step: step.and_then(|s| usize::try_from(s).ok()),
        payload: r.get(6)?,
        state: r.get(7)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: parse_ts(r, 9)?,
        last_error: r.get(10)?,
        sent_at: parse_opt_ts(r, 11)?,
    })
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Runs `f` atomically: in its own transaction, or in a savepoint of the
    /// transaction already open.
    pub fn atomically<R>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if !self.in_autocommit() {
            return self.in_savepoint(f);
        }
        self.begin_group()?;
        match f(self) {
            Ok(out) => {
                self.commit_group()?;
                Ok(out)
            }
            Err(e) => {
                self.rollback_if_open();
                Err(e)
            }
        }
    }

    /// Studies whose rule and deadline must be (re)computed, at most `limit`.
    pub fn stale_studies(&self, limit: usize) -> Result<Vec<StudyForRules>, Error> {
        self.facts_where(
            "s.deadline_stale = 1 LIMIT ?1",
            &[Value::Integer(to_i64(limit))],
        )
    }

    /// The UIDs of the most recently received studies, newest first.
    pub fn recent_studies(&self, limit: usize) -> Result<Vec<String>, Error> {
        collect(
            &self.conn,
            "SELECT study_uid FROM studies ORDER BY last_received_at DESC LIMIT ?1",
            [to_i64(limit)],
            |r| r.get(0),
        )
    }

    /// What rules see of one study (for `rules explain`).
    pub fn rule_facts(&self, study_uid: &str) -> Result<StudyForRules, Error> {
        self.facts_where("s.study_uid = ?1", &[Value::Text(study_uid.to_owned())])?
            .pop()
            .ok_or_else(|| Error::Sqlite(rusqlite::Error::QueryReturnedNoRows))
    }

    fn facts_where(&self, condition: &str, args: &[Value]) -> Result<Vec<StudyForRules>, Error> {
        let sql = format!(
            "SELECT s.study_uid, s.modalities, s.source, s.calling_ae, s.accession_number, \
             s.study_date, s.study_time, s.first_received_at, \
             (SELECT o.patient_class FROM orders o WHERE o.study_uid = s.study_uid \
                 OR (s.accession_number IS NOT NULL AND o.accession_number = s.accession_number) \
                 ORDER BY o.id DESC LIMIT 1), \
             (SELECT o.priority FROM orders o WHERE o.study_uid = s.study_uid \
                 OR (s.accession_number IS NOT NULL AND o.accession_number = s.accession_number) \
                 ORDER BY o.id DESC LIMIT 1) \
             FROM studies s WHERE {condition}"
        );
        let mut rows = collect(&self.conn, &sql, params_from_iter(args.iter()), |r| {
            let modalities: String = r.get(1)?;
            Ok(StudyForRules {
                study_uid: r.get(0)?,
                modalities: modalities
                    .split('\\')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
                source: r.get(2)?,
                calling_ae: r.get(3)?,
                accession_number: r.get(4)?,
                study_date: r.get(5)?,
                study_time: r.get(6)?,
                first_received_at: parse_ts(r, 7)?,
                patient_class: r.get(8)?,
                priority: r.get(9)?,
                attributes: Vec::new(),
            })
        })?;
        for s in &mut rows {
            s.attributes = collect(
                &self.conn,
                "SELECT keyword, value FROM study_attributes WHERE study_uid = ?1",
                [&s.study_uid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        }
        Ok(rows)
    }

    /// Marks every study still waiting for a report for re-evaluation (at
    /// start: the rules may have changed). Returns how many.
    pub fn mark_unreported_stale(&mut self) -> Result<usize, Error> {
        self.write(|conn| {
            Ok(cached_exec(
                conn,
                "UPDATE studies SET deadline_stale = 1 WHERE reported_at IS NULL AND deadline_stale = 0",
                [],
            )?)
        })
    }

    /// Stores rules' decisions and clears the studies' stale marks.
    pub fn set_deadlines(&mut self, updates: &[DeadlineUpdate]) -> Result<(), Error> {
        self.write(|conn| {
            for u in updates {
                cached_exec(
                    conn,
                    "UPDATE studies SET rule = ?2, no_report_needed = ?3, deadline = ?4, \
                     deadline_stale = 0 WHERE study_uid = ?1",
                    params![
                        u.study_uid,
                        u.rule,
                        u.no_report_needed,
                        u.deadline.map(fmt_ts)
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Unreported studies past their deadline with no live `overdue_report`
    /// alarm: `(study_uid, deadline, rule)`, earliest first.
    pub fn overdue_unalarmed(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(String, Timestamp, Option<String>)>, Error> {
        collect(
            &self.conn,
            // The conditions of the partial index studies_due.
            "SELECT s.study_uid, s.deadline, s.rule FROM studies s \
             WHERE s.reported_at IS NULL AND s.no_report_needed = 0 AND s.alarmed = 0 \
             AND s.deadline <= ?1 AND s.deadline_stale = 0 \
             ORDER BY s.deadline LIMIT ?2",
            params![fmt_ts(now), to_i64(limit)],
            |r| Ok((r.get(0)?, parse_ts(r, 1)?, r.get(2)?)),
        )
    }

    /// Current, not withdrawn reports carrying an alert category that have
    /// never had a fail-safe alarm: `(report_id, category, received_at,
    /// first linked study)`.
    pub fn failsafe_candidates(
        &self,
        received_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<FailsafeCandidate>, Error> {
        collect(
            &self.conn,
            "SELECT r.id, r.alert_category, r.received_at, \
             (SELECT l.study_uid FROM report_links l WHERE l.report_id = r.id LIMIT 1) \
             FROM reports r WHERE r.alert_category IS NOT NULL AND r.superseded_by IS NULL \
             AND r.withdrawn = 0 AND r.alert_acknowledged_at IS NULL AND r.received_at <= ?1 \
             AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.kind = 'failsafe_unacknowledged' \
                 AND a.subject = 'report:' || r.id) \
             ORDER BY r.received_at LIMIT ?2",
            params![fmt_ts(received_before), to_i64(limit)],
            |r| Ok((r.get(0)?, r.get(1)?, parse_ts(r, 2)?, r.get(3)?)),
        )
    }

    /// For scheduling: per alert category, the earliest receipt of a report
    /// whose alert is still unacknowledged and unalarmed; and the earliest
    /// receipt of a report that counts for no study and has no alarm.
    pub fn pending_report_times(&self) -> Result<PendingReportTimes, Error> {
        let alerts = collect(
            &self.conn,
            "SELECT r.alert_category, min(r.received_at) FROM reports r \
             WHERE r.alert_category IS NOT NULL AND r.superseded_by IS NULL AND r.withdrawn = 0 \
             AND r.alert_acknowledged_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.kind = 'failsafe_unacknowledged' \
                 AND a.subject = 'report:' || r.id) \
             GROUP BY r.alert_category",
            [],
            |r| Ok((r.get(0)?, parse_ts(r, 1)?)),
        )?;
        let unmatched: Option<String> = self.conn.query_row(
            "SELECT min(r.received_at) FROM reports r WHERE r.linked = 0 \
             AND r.superseded_by IS NULL \
             AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.kind = 'unmatched_report' \
                 AND a.subject = 'report:' || r.id AND a.state <> 'resolved')",
            [],
            |r| r.get(0),
        )?;
        Ok((alerts, unmatched.and_then(|t| t.parse().ok())))
    }

    /// Current reports that count for no study, received at or before
    /// `received_before`, with no live `unmatched_report` alarm.
    pub fn unmatched_unalarmed(
        &self,
        received_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<(i64, Timestamp, Option<String>)>, Error> {
        collect(
            &self.conn,
            "SELECT r.id, r.received_at, r.accession_number FROM reports r \
             WHERE r.linked = 0 AND r.superseded_by IS NULL AND r.received_at <= ?1 \
             AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.kind = 'unmatched_report' \
                 AND a.subject = 'report:' || r.id AND a.state <> 'resolved') \
             ORDER BY r.received_at LIMIT ?2",
            params![fmt_ts(received_before), to_i64(limit)],
            |r| Ok((r.get(0)?, parse_ts(r, 1)?, r.get(2)?)),
        )
    }

    /// Integrity conflicts (different content under a stored SOP Instance
    /// UID) that have never had an alarm: `(conflict id, study UID, SOP
    /// Instance UID, at)`.
    pub fn conflicts_unalarmed(&self, limit: usize) -> Result<Vec<ConflictToAlarm>, Error> {
        collect(
            &self.conn,
            "SELECT c.id, c.study_uid, c.sop_instance_uid, c.at FROM integrity_conflicts c \
             WHERE NOT EXISTS (SELECT 1 FROM alarms a WHERE a.kind = 'integrity' \
                 AND a.subject = 'conflict:' || c.id) ORDER BY c.id LIMIT ?1",
            [to_i64(limit)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, parse_ts(r, 3)?)),
        )
    }

    /// Per calling AE, instances refused since its last `integrity` alarm
    /// (or ever), when it has no live one: `(calling AE, count, latest, a
    /// reason)`.
    pub fn rejections_unalarmed(&self) -> Result<Vec<(String, i64, Timestamp, String)>, Error> {
        collect(
            &self.conn,
            "SELECT f.calling_ae, count(*), max(f.at), max(f.reason) FROM ingest_failures f \
             WHERE f.at > coalesce((SELECT max(a.raised_at) FROM alarms a \
                 WHERE a.kind = 'integrity' AND a.subject = 'rejected:' || f.calling_ae), '') \
             AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.kind = 'integrity' \
                 AND a.subject = 'rejected:' || f.calling_ae AND a.state <> 'resolved') \
             GROUP BY f.calling_ae",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, parse_ts(r, 2)?, r.get(3)?)),
        )
    }

    /// Counts of unreported studies (that need a report) older than 24 h,
    /// 7 days and 28 days, and the number of live alarms: the digest's figures.
    pub fn backlog(&self, now: Timestamp) -> Result<(i64, i64, i64, i64), Error> {
        let ago = |d: i64| {
            fmt_ts(
                now.checked_sub(jiff::SignedDuration::from_hours(d))
                    .unwrap_or(now),
            )
        };
        Ok(self.conn.query_row(
            "SELECT \
               (SELECT count(*) FROM studies WHERE reported_at IS NULL AND no_report_needed = 0 \
                   AND first_received_at <= ?1), \
               (SELECT count(*) FROM studies WHERE reported_at IS NULL AND no_report_needed = 0 \
                   AND first_received_at <= ?2), \
               (SELECT count(*) FROM studies WHERE reported_at IS NULL AND no_report_needed = 0 \
                   AND first_received_at <= ?3), \
               (SELECT count(*) FROM alarms WHERE state <> 'resolved')",
            params![ago(24), ago(24 * 7), ago(24 * 28)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?)
    }

    /// When the last digest was queued, if ever.
    pub fn last_digest_at(&self) -> Result<Option<Timestamp>, Error> {
        let at: Option<String> = self.conn.query_row(
            "SELECT max(created_at) FROM outbox WHERE event = 'digest'",
            [],
            |r| r.get(0),
        )?;
        Ok(at.and_then(|t| t.parse().ok()))
    }

    /// When the last HL7 message arrived, if ever.
    pub fn last_hl7_message_at(&self) -> Result<Option<Timestamp>, Error> {
        let at: Option<String> =
            self.conn
                .query_row("SELECT max(received_at) FROM hl7_messages", [], |r| {
                    r.get(0)
                })?;
        Ok(at.and_then(|t| t.parse().ok()))
    }

    /// Raises an alarm (audited as `alarm_raised`). Returns its id, or `None`
    /// when a live alarm of that kind and subject already exists.
    pub fn raise_alarm(&mut self, a: &NewAlarm, now: Timestamp) -> Result<Option<i64>, Error> {
        self.write(|conn| {
            let at = fmt_ts(now);
            let inserted = cached_exec(
                conn,
                "INSERT OR IGNORE INTO alarms (kind, subject, study_uid, report_id, rule, state, \
                 raised_at, due_at, detail, next_action_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?7, ?8, ?9)",
                params![
                    a.kind,
                    a.subject,
                    a.study_uid,
                    a.report_id,
                    a.rule,
                    at,
                    fmt_ts(a.due_at),
                    a.detail,
                    a.next_action_at.map(fmt_ts)
                ],
            )?;
            if inserted == 0 {
                return Ok(None);
            }
            let id = conn.last_insert_rowid();
            if a.kind == "overdue_report" {
                cached_exec(
                    conn,
                    "UPDATE studies SET alarmed = 1 WHERE study_uid = ?1",
                    [&a.subject],
                )?;
            }
            insert_audit(
                conn,
                &at,
                super::store::SYSTEM,
                "alarm_raised",
                a.study_uid.as_deref(),
                &format!("alarm {id} ({}): {}", a.kind, a.detail),
            )?;
            Ok(Some(id))
        })
    }

    /// Live alarms the watchdog must look at now: open ones with an action
    /// due, acknowledged ones whose acknowledgement has ended, and every live
    /// one whose cause may have cleared (`kinds_to_check`).
    pub fn alarms_to_advance(&self, now: Timestamp, limit: usize) -> Result<Vec<AlarmRow>, Error> {
        // Three indexed reads rather than one OR over every live alarm.
        let at = fmt_ts(now);
        let mut out: Vec<AlarmRow> = Vec::new();
        for condition in [
            "a.state = 'open' AND a.next_action_at <= ?1",
            "a.state = 'acknowledged' AND a.acknowledged_until <= ?1",
            "a.recheck = 1 AND ?1 IS NOT NULL",
        ] {
            let sql = format!(
                "SELECT {ALARM_COLUMNS} FROM alarms a LEFT JOIN studies s ON s.study_uid = a.study_uid \
                 WHERE {condition} ORDER BY a.id LIMIT ?2"
            );
            for row in collect(&self.conn, &sql, params![at, to_i64(limit)], alarm_from_row)? {
                if !out.iter().any(|a| a.id == row.id) {
                    out.push(row);
                }
            }
        }
        out.sort_by_key(|a| a.id);
        out.truncate(limit);
        Ok(out)
    }

    /// Whether an alarm's cause remains, as the catalog sees it now.
    pub fn alarm_cause_remains(&self, alarm: &AlarmRow, now: Timestamp) -> Result<bool, Error> {
        let remains: Option<bool> = match alarm.kind.as_str() {
            "overdue_report" => cached_row(
                &self.conn,
                "SELECT reported_at IS NULL AND no_report_needed = 0 AND deadline <= ?2 \
                 FROM studies WHERE study_uid = ?1",
                params![alarm.subject, fmt_ts(now)],
                |r| r.get(0),
            )
            .optional()?,
            "failsafe_unacknowledged" => cached_row(
                &self.conn,
                "SELECT superseded_by IS NULL AND withdrawn = 0 AND alert_acknowledged_at IS NULL \
                 FROM reports WHERE id = ?1",
                [alarm.report_id],
                |r| r.get(0),
            )
            .optional()?,
            "unmatched_report" => cached_row(
                &self.conn,
                "SELECT superseded_by IS NULL AND linked = 0 FROM reports WHERE id = ?1",
                [alarm.report_id],
                |r| r.get(0),
            )
            .optional()?,
            super::orders::KIND => super::orders::order_awaits_images(&self.conn, &alarm.subject)?,
            "incomplete_transfer" => cached_row(
                &self.conn,
                "SELECT completeness IS NOT 'complete' FROM studies WHERE study_uid = ?1",
                [&alarm.subject],
                |r| r.get(0),
            )
            .optional()?,
            // Others clear by their own checks (feed, storage) or by a person.
            _ => Some(true),
        };
        Ok(remains.unwrap_or(false))
    }

    /// Applies the watchdog's decision for an alarm: its new state, its
    /// notifications and its audit rows, in one transaction.
    pub fn update_alarm(&mut self, u: &AlarmUpdate, now: Timestamp) -> Result<(), Error> {
        self.write(|conn| {
            let at = fmt_ts(now);
            let (study, kind, subject): (Option<String>, String, String) = cached_row(
                conn,
                "SELECT study_uid, kind, subject FROM alarms WHERE id = ?1",
                [u.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let resolving = u.state == "resolved";
            if resolving && kind == "overdue_report" {
                cached_exec(
                    conn,
                    "UPDATE studies SET alarmed = 0 WHERE study_uid = ?1",
                    [&subject],
                )?;
            }
            cached_exec(
                conn,
                "UPDATE alarms SET state = ?2, next_step = ?3, next_action_at = ?4, \
                 acknowledged_until = ?5, recheck = 0, \
                 resolved_at = CASE WHEN ?6 THEN ?7 ELSE resolved_at END, \
                 resolved_reason = coalesce(?8, resolved_reason) WHERE id = ?1",
                params![
                    u.id,
                    u.state,
                    to_i64(u.next_step),
                    u.next_action_at.map(fmt_ts),
                    u.acknowledged_until.map(fmt_ts),
                    resolving,
                    at,
                    u.resolved_reason
                ],
            )?;
            for n in &u.notifications {
                insert_notification(conn, n, &at)?;
            }
            for (action, detail) in &u.audit {
                insert_audit(
                    conn,
                    &at,
                    super::store::SYSTEM,
                    action,
                    study.as_deref(),
                    detail,
                )?;
            }
            Ok(())
        })
    }

    /// Marks for a recheck every live alarm of `kind` whose subject is not
    /// in `holding` (the subjects whose cause the caller has just seen
    /// hold), so that the next pass resolves it without waiting for its
    /// next step. Returns how many were marked.
    pub fn recheck_cleared(&mut self, kind: &str, holding: &[String]) -> Result<usize, Error> {
        let live: Vec<(i64, String)> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, subject FROM alarms \
                 WHERE kind = ?1 AND state <> 'resolved' AND recheck = 0",
            )?;
            let rows = stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let cleared: Vec<i64> = live
            .into_iter()
            .filter(|(_, subject)| !holding.contains(subject))
            .map(|(id, _)| id)
            .collect();
        if cleared.is_empty() {
            return Ok(0);
        }
        self.write(|conn| {
            for id in &cleared {
                cached_exec(conn, "UPDATE alarms SET recheck = 1 WHERE id = ?1", [id])?;
            }
            Ok(cleared.len())
        })
    }

    /// Clears an alarm's recheck mark when looking at it changed nothing.
    pub fn alarm_checked(&mut self, id: i64) -> Result<(), Error> {
        self.write(|conn| {
            cached_exec(
                conn,
                "UPDATE alarms SET recheck = 0 WHERE id = ?1 AND recheck = 1",
                [id],
            )?;
            Ok(())
        })
    }

    /// Queues a notification not tied to an alarm step (a digest, a test).
    pub fn queue_notification(
        &mut self,
        n: &NewNotification,
        now: Timestamp,
    ) -> Result<i64, Error> {
        self.write(|conn| insert_notification(conn, n, &fmt_ts(now)))
    }

    /// A person's acknowledgement: `for_` from `now`, or until resolved.
    /// Returns the alarm as it was before, or `None` if there is no such live alarm.
    pub fn acknowledge_alarm(
        &mut self,
        id: i64,
        by: &str,
        reason: &str,
        until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Option<AlarmRow>, Error> {
        self.write(|conn| {
            let sql = format!(
                "SELECT {ALARM_COLUMNS} FROM alarms a LEFT JOIN studies s ON s.study_uid = a.study_uid \
                 WHERE a.id = ?1"
            );
            let Some(alarm) = conn.query_row(&sql, [id], alarm_from_row).optional()? else {
                return Ok(None);
            };
            if alarm.state == "resolved" {
                return Ok(None);
            }
            let at = fmt_ts(now);
            cached_exec(
                conn,
                "UPDATE alarms SET state = 'acknowledged', acknowledged_by = ?2, \
                 acknowledged_at = ?3, acknowledged_until = ?4, ack_reason = ?5 WHERE id = ?1",
                params![id, by, at, until.map(fmt_ts), reason],
            )?;
            let until_text = until.map_or("until resolved".to_owned(), |u| format!("until {u}"));
            insert_audit(
                conn,
                &at,
                by,
                "alarm_acknowledged",
                alarm.study_uid.as_deref(),
                &format!("alarm {id} ({}) acknowledged {until_text}: {reason}", alarm.kind),
            )?;
            Ok(Some(alarm))
        })
    }

    /// The referrer's side acknowledges a report's fail-safe alert (audited
    /// under their name). `Ok(false)` when the report has no alert.
    pub fn acknowledge_alert(
        &mut self,
        report_id: i64,
        by: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<bool, Error> {
        self.write(|conn| {
            let at = fmt_ts(now);
            let changed = cached_exec(
                conn,
                "UPDATE reports SET alert_acknowledged_by = ?2, alert_acknowledged_at = ?3 \
                 WHERE id = ?1 AND alert_category IS NOT NULL AND alert_acknowledged_at IS NULL",
                params![report_id, by, at],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            let study: Option<String> = cached_row(
                conn,
                "SELECT study_uid FROM report_links WHERE report_id = ?1 LIMIT 1",
                [report_id],
                |r| r.get(0),
            )
            .optional()?;
            insert_audit(
                conn,
                &at,
                by,
                "alert_acknowledged",
                study.as_deref(),
                &format!("fail-safe alert of report {report_id} acknowledged: {note}"),
            )?;
            Ok(true)
        })
    }

    /// One alarm.
    pub fn alarm(&self, id: i64) -> Result<Option<AlarmRow>, Error> {
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms a LEFT JOIN studies s ON s.study_uid = a.study_uid \
             WHERE a.id = ?1"
        );
        Ok(self.conn.query_row(&sql, [id], alarm_from_row).optional()?)
    }

    /// Alarms, newest first.
    pub fn alarms(&self, f: &AlarmFilter) -> Result<Vec<AlarmRow>, Error> {
        let mut conditions = vec!["1".to_owned()];
        let mut args: Vec<Value> = Vec::new();
        if let Some(state) = &f.state {
            args.push(Value::Text(state.clone()));
            conditions.push(format!("a.state = ?{}", args.len()));
        }
        if f.live {
            conditions.push("a.state <> 'resolved'".to_owned());
        }
        if let Some(uid) = &f.study_uid {
            args.push(Value::Text(uid.clone()));
            conditions.push(format!("a.study_uid = ?{}", args.len()));
        }
        args.push(Value::Integer(f.limit.map_or(-1, to_i64)));
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms a LEFT JOIN studies s ON s.study_uid = a.study_uid \
             WHERE {} ORDER BY a.id DESC LIMIT ?{}",
            conditions.join(" AND "),
            args.len()
        );
        collect(&self.conn, &sql, params_from_iter(args), alarm_from_row)
    }

    /// The earliest time the watchdog has something to do after `now`: a
    /// deadline of an unreported study, an alarm action, or the end of an
    /// acknowledgement.
    pub fn next_watchdog_time(&self, now: Timestamp) -> Result<Option<Timestamp>, Error> {
        let next: Option<String> = self.conn.query_row(
            "SELECT min(t) FROM ( \
               SELECT min(deadline) AS t FROM studies \
                 WHERE reported_at IS NULL AND no_report_needed = 0 AND alarmed = 0 \
                 AND deadline > ?1 \
               UNION ALL SELECT min(next_action_at) FROM alarms WHERE state = 'open' \
               UNION ALL SELECT min(acknowledged_until) FROM alarms WHERE state = 'acknowledged')",
            [fmt_ts(now)],
            |r| r.get(0),
        )?;
        Ok(next.and_then(|t| t.parse().ok()))
    }

    /// Whether any study waits for its deadline to be computed.
    pub fn has_stale_studies(&self) -> Result<bool, Error> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM studies WHERE deadline_stale = 1)",
            [],
            |r| r.get(0),
        )?)
    }

    /// Pending notifications due by `now`, oldest first.
    pub fn outbox_due(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboxRow>, Error> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1 \
             ORDER BY next_attempt_at, id LIMIT ?2"
        );
        collect(
            &self.conn,
            &sql,
            params![fmt_ts(now), to_i64(limit)],
            outbox_from_row,
        )
    }

    /// When the next pending notification is due.
    pub fn outbox_next_attempt(&self) -> Result<Option<Timestamp>, Error> {
        let next: Option<String> = self.conn.query_row(
            "SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(next.and_then(|t| t.parse().ok()))
    }

    /// Notifications, newest first (for `alarms` and the dashboard's outbox health).
    pub fn outbox(&self, state: Option<&str>, limit: usize) -> Result<Vec<OutboxRow>, Error> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE (?1 IS NULL OR state = ?1) \
             ORDER BY id DESC LIMIT ?2"
        );
        collect(
            &self.conn,
            &sql,
            params![state, to_i64(limit)],
            outbox_from_row,
        )
    }

    /// Records a delivery attempt's outcome, and audits it.
    /// `Ok(())` + `next_attempt_at = None` marks it sent; `Err` with a next
    /// attempt keeps it pending; `Err` without one marks it failed (given up).
    pub fn record_attempt(
        &mut self,
        id: i64,
        outcome: Result<&str, &str>,
        next_attempt_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), Error> {
        self.write(|conn| {
            let at = fmt_ts(now);
            let (alarm_id, channel, study): (Option<i64>, String, Option<String>) = cached_row(
                conn,
                "SELECT o.alarm_id, o.channel, a.study_uid FROM outbox o \
                 LEFT JOIN alarms a ON a.id = o.alarm_id WHERE o.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let what = alarm_id.map_or(String::new(), |a| format!(" for alarm {a}"));
            match outcome {
                Ok(detail) => {
                    cached_exec(
                        conn,
                        "UPDATE outbox SET state = 'sent', attempts = attempts + 1, sent_at = ?2, \
                         last_error = NULL WHERE id = ?1",
                        params![id, at],
                    )?;
                    insert_audit(
                        conn,
                        &at,
                        super::store::SYSTEM,
                        "notification_sent",
                        study.as_deref(),
                        &format!("notification {id}{what} to {channel}: {detail}"),
                    )?;
                }
                Err(error) => {
                    let (state, action) = match next_attempt_at {
                        Some(_) => ("pending", "notification_failed"),
                        None => ("failed", "notify_failed"),
                    };
                    cached_exec(
                        conn,
                        "UPDATE outbox SET state = ?2, attempts = attempts + 1, last_error = ?3, \
                         next_attempt_at = coalesce(?4, next_attempt_at) WHERE id = ?1",
                        params![id, state, error, next_attempt_at.map(fmt_ts)],
                    )?;
                    let retry = next_attempt_at
                        .map_or(" — given up".to_owned(), |t| format!("; retry at {t}"));
                    insert_audit(
                        conn,
                        &at,
                        super::store::SYSTEM,
                        action,
                        study.as_deref(),
                        &format!("notification {id}{what} to {channel}: {error}{retry}"),
                    )?;
                }
            }
            Ok(())
        })
    }
}

fn insert_notification(conn: &Connection, n: &NewNotification, at: &str) -> Result<i64, Error> {
    cached_exec(
        conn,
        "INSERT INTO outbox (created_at, alarm_id, channel, event, step, payload, state, \
         next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?1)",
        params![
            at,
            n.alarm_id,
            n.channel,
            n.event,
            n.step.map(to_i64),
            n.payload
        ],
    )?;
    Ok(conn.last_insert_rowid())
}
