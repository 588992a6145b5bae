//! Read-only views for the HTTP API and the dashboard: the paginated study
//! worklist ([`Store::studies_page`]) and the backlog's figures
//! ([`Store::backlog_stats`]).
//!
//! Both must stay fast on a catalog of a million studies of which ten
//! thousand wait for a report, so both are shaped around indexes:
//! - the worklist of unreported studies reads the partial index
//!   `studies_worklist` (schema v4), which holds only studies still waiting
//!   for a report, in deadline order, with their source and modalities, so
//!   that filtering a page and counting the backlog never touch the table;
//! - studies that need no report read `studies_no_report`, the same kind of
//!   index over that (small) set;
//! - reported studies, and all studies, read `studies_by_deadline`: they are
//!   the bulk of the catalog, so a page fills after a short scan. A filter
//!   that matches few of them (a modality or source hardly ever seen) makes
//!   that scan long: about half a second over a million studies, measured;
//! - pages are keyset-paginated (`(deadline, first_received_at, study_uid)`
//!   greater than the last row's), never `OFFSET`, so page 100 costs what
//!   page 1 costs.
//!
//! SQLite sorts NULL first, but studies without a deadline belong last. So
//! each page reads two segments: the studies with a deadline, then those
//! without one (ordered by first receipt), each an index range of its own.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use super::store::{collect, fmt_ts};
use super::{Error, Store, StudyRow, StudyState};

/// The most rows one page may hold, whatever the caller asks for.
pub const MAX_PAGE: usize = 1000;

/// Which page of studies [`Store::studies_page`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StudyQuery {
    /// `Unreported` is every study still waiting for its report, overdue
    /// ones included (as the CLI's `studies --unreported`); `Overdue` only
    /// those past their deadline; `Reported`; `NoReportNeeded`. `None`: all.
    pub state: Option<StudyState>,
    /// Only studies with an instance of this modality (exact, e.g. `CT`).
    pub modality: Option<String>,
    /// Only studies whose first instance came from this source (peer label).
    pub source: Option<String>,
    /// At most this many studies (at least 1, at most [`MAX_PAGE`]).
    pub limit: usize,
    /// Resume after this study: the previous page's cursor.
    pub after: Option<StudyCursor>,
}

/// Where a page ended: the sort key of its last study. Opaque to clients
/// ([`StudyCursor::encode`], [`StudyCursor::decode`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StudyCursor {
    pub deadline: Option<Timestamp>,
    pub first_received_at: Timestamp,
    pub study_uid: String,
}

impl StudyCursor {
    /// The cursor after `row`.
    pub fn after(row: &StudyRow) -> StudyCursor {
        StudyCursor {
            deadline: row.deadline,
            first_received_at: row.first_received_at,
            study_uid: row.study_uid.clone(),
        }
    }

    /// The cursor as a URL-safe token: hex of `1|deadline µs|first µs|uid`.
    pub fn encode(&self) -> String {
        let deadline = self
            .deadline
            .map_or(String::new(), |d| d.as_microsecond().to_string());
        hex::encode(format!(
            "1|{deadline}|{}|{}",
            self.first_received_at.as_microsecond(),
            self.study_uid
        ))
    }

    /// The inverse of [`StudyCursor::encode`]; `None` for anything else.
    pub fn decode(token: &str) -> Option<StudyCursor> {
        let bytes = hex::decode(token).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(4, '|');
        if parts.next()? != "1" {
            return None;
        }
        let micros = |s: &str| -> Option<Timestamp> {
            Timestamp::from_microsecond(s.parse::<i64>().ok()?).ok()
        };
        let deadline = match parts.next()? {
            "" => None,
            d => Some(micros(d)?),
        };
        let first_received_at = micros(parts.next()?)?;
        let study_uid = parts.next()?;
        // Only catalogued (so valid) UIDs ever end a page.
        crate::uid::check(study_uid).ok()?;
        Some(StudyCursor {
            deadline,
            first_received_at,
            study_uid: study_uid.to_owned(),
        })
    }
}

/// The ageing buckets of [`BacklogStats::by_age`], by time since the study
/// was first received: under 24 h, 24 h to under 7 days, 7 days to under 28
/// days, 28 days and more.
pub const AGE_BUCKETS: [&str; 4] = ["<24h", "24h-7d", "7d-28d", ">28d"];

/// The studies still waiting for a report (reported_at unset, and a report
/// needed), counted as of `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BacklogStats {
    pub at: Timestamp,
    /// Every study waiting for its report, overdue ones included.
    pub unreported: u64,
    /// Of those, past their deadline.
    pub overdue: u64,
    /// Of those, without a deadline yet (the watchdog has not computed it).
    pub no_deadline: u64,
    /// Counts per [`AGE_BUCKETS`] label, in that order.
    pub by_age: [(&'static str, u64); 4],
    /// Per modality (a study of several modalities counts under each; one
    /// with none under `None`), largest first, then by name.
    pub by_modality: Vec<(Option<String>, u64)>,
    /// Per source, largest first, then by name.
    pub by_source: Vec<(String, u64)>,
}

/// The condition selecting studies still waiting for a report. It must stay
/// textually the WHERE of the partial index `studies_worklist`, so SQLite
/// can use that index (QPSG is on: only literal conditions imply it).
const WAITING: &str = "reported_at IS NULL AND no_report_needed = 0";

/// The condition selecting studies a rule says need no report: the WHERE of
/// the partial index `studies_no_report` (schema v6).
const NO_REPORT: &str = "reported_at IS NULL AND no_report_needed = 1";

impl Store {
    /// One page of studies matching `q`, soonest deadline first, studies
    /// without a deadline last, ties by first receipt and study UID; and the
    /// cursor of the next page, `None` when this page is the last.
    /// `Overdue` is judged as of `now`.
    ///
    /// Read from one consistent snapshot: a page never shows a study twice
    /// or skips one because of a concurrent write. Across pages, a study
    /// whose sort key changes between requests (its deadline recomputed)
    /// may move past or before the cursor, as with any keyset pagination.
    pub fn studies_page(
        &self,
        q: &StudyQuery,
        now: Timestamp,
    ) -> Result<(Vec<StudyRow>, Option<StudyCursor>), Error> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        self.snapshot(|conn| {
            // One more than asked: whether it exists says if a next page does.
            let want = limit + 1;
            let mut keys = Vec::with_capacity(want);
            let after_null = q.after.as_ref().is_some_and(|c| c.deadline.is_none());
            if !after_null {
                keys.extend(page_keys(conn, q, now, Segment::Deadline, want)?);
            }
            // Overdue studies all have a deadline.
            if keys.len() < want && q.state != Some(StudyState::Overdue) {
                let rest = want - keys.len();
                // Past the first segment the second starts from its beginning.
                let from_start = !after_null;
                keys.extend(page_keys(
                    conn,
                    q,
                    now,
                    Segment::NoDeadline { from_start },
                    rest,
                )?);
            }
            let more = keys.len() > limit;
            keys.truncate(limit);
            let mut rows = Vec::with_capacity(keys.len());
            for uid in &keys {
                // Within the snapshot every key still names its study.
                if let Some(row) = self.study_row(uid)? {
                    rows.push(row);
                }
            }
            let next = if more {
                rows.last().map(StudyCursor::after)
            } else {
                None
            };
            Ok((rows, next))
        })
    }

    /// How many studies wait for a report, overdue, by age, modality and
    /// source, as of `now`: one pass over the `studies_worklist` index.
    pub fn backlog_stats(&self, now: Timestamp) -> Result<BacklogStats, Error> {
        let ago = |hours: i64| {
            fmt_ts(
                now.checked_sub(SignedDuration::from_hours(hours))
                    .unwrap_or(Timestamp::MIN),
            )
        };
        // Stored times sort as text, so every comparison is on the text.
        let bounds = [ago(24), ago(24 * 7), ago(24 * 28)];
        let now_text = fmt_ts(now);
        let rows: Vec<(String, Option<String>, String, String)> =
            collect(&self.conn, &backlog_sql(), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        let mut stats = BacklogStats {
            at: now,
            unreported: 0,
            overdue: 0,
            no_deadline: 0,
            by_age: AGE_BUCKETS.map(|label| (label, 0)),
            by_modality: Vec::new(),
            by_source: Vec::new(),
        };
        let mut modalities: BTreeMap<Option<String>, u64> = BTreeMap::new();
        let mut sources: BTreeMap<String, u64> = BTreeMap::new();
        for (first, deadline, source, mods) in rows {
            stats.unreported += 1;
            match deadline {
                Some(d) if d < now_text => stats.overdue += 1,
                Some(_) => {}
                None => stats.no_deadline += 1,
            }
            let bucket = bounds.iter().take_while(|b| first <= **b).count();
            if let Some(slot) = stats.by_age.get_mut(bucket) {
                slot.1 += 1;
            }
            let mut any = false;
            for m in mods.split('\\').map(str::trim).filter(|m| !m.is_empty()) {
                any = true;
                *modalities.entry(Some(m.to_owned())).or_default() += 1;
            }
            if !any {
                *modalities.entry(None).or_default() += 1;
            }
            *sources.entry(source).or_default() += 1;
        }
        stats.by_modality = largest_first(modalities);
        stats.by_source = largest_first(sources);
        Ok(stats)
    }

    /// Runs `f` in one read transaction (a consistent snapshot), or in the
    /// transaction already open.
    fn snapshot<R>(&self, f: impl FnOnce(&Connection) -> Result<R, Error>) -> Result<R, Error> {
        if !self.conn.is_autocommit() {
            return f(&self.conn);
        }
        let tx = self.conn.unchecked_transaction()?;
        let out = f(&tx)?;
        tx.finish()?;
        Ok(out)
    }
}

/// A map's entries by count, largest first; ties in key order.
fn largest_first<K: Ord>(counts: BTreeMap<K, u64>) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = counts.into_iter().collect();
    // Stable: equal counts keep the map's key order.
    v.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    v
}

/// What [`Store::backlog_stats`] reads: every waiting study's times, source
/// and modalities, from the worklist index alone.
fn backlog_sql() -> String {
    format!("SELECT first_received_at, deadline, source, modalities FROM studies WHERE {WAITING}")
}

/// The two parts of the sort order.
#[derive(Clone, Copy)]
enum Segment {
    /// Studies with a deadline, by `(deadline, first_received_at, study_uid)`.
    Deadline,
    /// Studies without one, by `(first_received_at, study_uid)`; from the
    /// beginning, or after the cursor (which then has no deadline).
    NoDeadline { from_start: bool },
}

/// The study UIDs of one segment of a page, at most `limit`.
fn page_keys(
    conn: &Connection,
    q: &StudyQuery,
    now: Timestamp,
    segment: Segment,
    limit: usize,
) -> Result<Vec<String>, Error> {
    let (sql, args) = page_sql(q, now, segment, limit);
    collect(conn, &sql, params_from_iter(args), |r| r.get(0))
}

/// The statement of [`page_keys`] and its arguments.
///
/// Each distinct filter combination is its own statement text, prepared
/// once per connection (`prepare_cached`); values are always bound.
fn page_sql(
    q: &StudyQuery,
    now: Timestamp,
    segment: Segment,
    limit: usize,
) -> (String, Vec<Value>) {
    let mut args: Vec<Value> = Vec::new();
    let mut arg = |v: Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    let mut conditions: Vec<String> = Vec::new();
    match q.state {
        None => {}
        Some(StudyState::Unreported) => conditions.push(WAITING.to_owned()),
        Some(StudyState::Overdue) => {
            conditions.push(WAITING.to_owned());
            conditions.push(format!("deadline < {}", arg(Value::Text(fmt_ts(now)))));
        }
        Some(StudyState::Reported) => conditions.push("reported_at IS NOT NULL".to_owned()),
        Some(StudyState::NoReportNeeded) => conditions.push(NO_REPORT.to_owned()),
    }
    if let Some(m) = &q.modality {
        // modalities is a sorted, backslash-separated set (`CT\SR`): wrapped
        // in backslashes, `\CT\` occurs in it exactly when CT is a member.
        conditions.push(format!(
            "instr('\\' || modalities || '\\', {}) > 0",
            arg(Value::Text(format!("\\{m}\\")))
        ));
    }
    if let Some(s) = &q.source {
        conditions.push(format!("source = {}", arg(Value::Text(s.clone()))));
    }
    let cursor = q.after.as_ref();
    let order = match segment {
        Segment::Deadline => {
            // Without a cursor, '' sorts before every stored time, and the
            // comparison is false for a NULL deadline: one statement serves
            // the first page and the next ones.
            let (d, f, u) = match cursor {
                Some(c) => (
                    c.deadline.map(fmt_ts).unwrap_or_default(),
                    fmt_ts(c.first_received_at),
                    c.study_uid.clone(),
                ),
                None => (String::new(), String::new(), String::new()),
            };
            conditions.push(format!(
                "(deadline, first_received_at, study_uid) > ({}, {}, {})",
                arg(Value::Text(d)),
                arg(Value::Text(f)),
                arg(Value::Text(u))
            ));
            "deadline, first_received_at, study_uid"
        }
        Segment::NoDeadline { from_start } => {
            let (f, u) = match cursor {
                Some(c) if !from_start => (fmt_ts(c.first_received_at), c.study_uid.clone()),
                _ => (String::new(), String::new()),
            };
            conditions.push("deadline IS NULL".to_owned());
            conditions.push(format!(
                "(first_received_at, study_uid) > ({}, {})",
                arg(Value::Text(f)),
                arg(Value::Text(u))
            ));
            "first_received_at, study_uid"
        }
    };
    let limit_arg = arg(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT study_uid FROM studies WHERE {} ORDER BY {order} LIMIT {limit_arg}",
        conditions.join(" AND ")
    );
    (sql, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{DeadlineUpdate, NewInstance};

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test timestamp")
    }

    fn instance(n: u32, modality: &str, source: &str, at: Timestamp) -> NewInstance {
        NewInstance {
            study_uid: format!("1.2.3.{n}"),
            series_uid: format!("1.2.3.{n}.1"),
            sop_instance_uid: format!("1.2.3.{n}.1.1"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            patient_id: None,
            issuer_of_patient_id: None,
            accession_number: None,
            issuer_of_accession: None,
            modality: Some(modality.into()),
            study_date: None,
            study_time: None,
            study_description: None,
            referring_physician: None,
            institution_name: None,
            series_number: None,
            series_description: None,
            size_bytes: 10,
            sha256: "0123456789abcdef".repeat(4),
            rel_path: format!("{n}.dcm"),
            received_at: at,
            calling_ae: "AE".into(),
            source: source.into(),
            report: None,
            attributes: vec![],
            forward_to: vec![],
            clock: None,
        }
    }

    /// 34 studies: every third of the first 30 without a deadline,
    /// deadlines spread with ties, modalities CT/MR, two sources; the last
    /// four tied on deadline and first receipt.
    fn seeded() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&dir.path().join("c.sqlite"), false).expect("open");
        let t0 = ts("2026-11-01T00:00:00Z");
        let mut updates = Vec::new();
        for n in 0..30u32 {
            let at = t0 + SignedDuration::from_hours(i64::from(n));
            let modality = if n % 2 == 0 { "CT" } else { "MR" };
            let source = if n % 5 == 0 { "other-trust" } else { "ed" };
            store
                .record_instance(&instance(n, modality, source, at))
                .expect("record");
            updates.push(DeadlineUpdate {
                study_uid: format!("1.2.3.{n}"),
                rule: None,
                no_report_needed: false,
                // Ties: pairs share a deadline; counting down so the
                // deadline order differs from the receipt order.
                deadline: (n % 3 != 0)
                    .then(|| t0 + SignedDuration::from_hours(i64::from(100 - n / 2))),
            });
        }
        // Four more tied on deadline and receipt: only the UID orders them.
        let tied_at = t0 + SignedDuration::from_hours(40);
        for n in 30..34u32 {
            store
                .record_instance(&instance(n, "CT", "ed", tied_at))
                .expect("record");
            updates.push(DeadlineUpdate {
                study_uid: format!("1.2.3.{n}"),
                rule: None,
                no_report_needed: false,
                deadline: Some(t0 + SignedDuration::from_hours(90)),
            });
        }
        store.set_deadlines(&updates).expect("deadlines");
        (dir, store)
    }

    fn walk(store: &Store, q: &StudyQuery, now: Timestamp) -> Vec<StudyRow> {
        let mut q = q.clone();
        let mut all = Vec::new();
        for _ in 0..100 {
            let (rows, next) = store.studies_page(&q, now).expect("page");
            assert!(rows.len() <= q.limit);
            all.extend(rows);
            match next {
                Some(c) => q.after = Some(c),
                None => return all,
            }
        }
        panic!("pagination did not end");
    }

    fn sort_key(r: &StudyRow) -> (bool, Option<Timestamp>, Timestamp, String) {
        (
            r.deadline.is_none(),
            r.deadline,
            r.first_received_at,
            r.study_uid.clone(),
        )
    }

    #[test]
    fn pages_walk_every_study_once_in_deadline_order_nulls_last() {
        let (_dir, store) = seeded();
        let now = ts("2026-11-03T00:00:00Z");
        for limit in [1, 2, 4, 7, 33, 34, 35] {
            let rows = walk(
                &store,
                &StudyQuery {
                    limit,
                    ..StudyQuery::default()
                },
                now,
            );
            assert_eq!(rows.len(), 34, "limit {limit}");
            let keys: Vec<_> = rows.iter().map(sort_key).collect();
            let mut sorted = keys.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(keys, sorted, "limit {limit}: sorted, no repeats");
            assert!(rows.last().expect("rows").deadline.is_none());
        }
    }

    #[test]
    fn filters_combine_with_pagination() {
        let (_dir, store) = seeded();
        let now = ts("2026-11-04T20:00:00Z");
        let q = StudyQuery {
            state: Some(StudyState::Unreported),
            modality: Some("CT".into()),
            source: Some("ed".into()),
            limit: 2,
            after: None,
        };
        let rows = walk(&store, &q, now);
        let expected: Vec<u32> = (0..34)
            .filter(|n| *n >= 30 || (n % 2 == 0 && n % 5 != 0))
            .collect();
        assert_eq!(rows.len(), expected.len());
        assert!(
            rows.iter()
                .all(|r| r.modalities == ["CT"] && r.source == "ed")
        );
        // MR is not matched by a partial string ("M").
        let m = walk(
            &store,
            &StudyQuery {
                modality: Some("M".into()),
                limit: 10,
                ..StudyQuery::default()
            },
            now,
        );
        assert!(m.is_empty());
        // Overdue: deadline before now, and only those.
        let overdue = walk(
            &store,
            &StudyQuery {
                state: Some(StudyState::Overdue),
                limit: 3,
                ..StudyQuery::default()
            },
            now,
        );
        assert!(!overdue.is_empty());
        assert!(overdue.iter().all(|r| r.deadline.is_some_and(|d| d < now)));
        let all = walk(
            &store,
            &StudyQuery {
                limit: 100,
                ..StudyQuery::default()
            },
            now,
        );
        let expected = all
            .iter()
            .filter(|r| r.state(now) == StudyState::Overdue)
            .count();
        assert_eq!(overdue.len(), expected);
    }

    #[test]
    fn cursor_round_trips_and_refuses_garbage() {
        let c = StudyCursor {
            deadline: Some(ts("2026-11-01T00:00:00.123456Z")),
            first_received_at: ts("2026-10-31T23:00:00Z"),
            study_uid: "1.2.840.1".into(),
        };
        assert_eq!(StudyCursor::decode(&c.encode()), Some(c.clone()));
        let none = StudyCursor {
            deadline: None,
            ..c.clone()
        };
        assert_eq!(StudyCursor::decode(&none.encode()), Some(none));
        for bad in [
            "",
            "zz",
            "abc",
            &hex::encode("2|1|2|1.2"),
            &hex::encode("1|x|2|1.2"),
            &hex::encode("1|1|2|1..2"),
            &hex::encode("1|1|2"),
        ] {
            assert_eq!(StudyCursor::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn backlog_counts_waiting_studies_by_age_modality_and_source() {
        let (_dir, store) = seeded();
        // Studies were received hourly from 2026-11-01T00:00 (n = 0..29),
        // and four at 2026-11-02T16:00 (later than `now`: the youngest bucket).
        let now = ts("2026-11-02T05:00:00Z");
        let stats = store.backlog_stats(now).expect("stats");
        assert_eq!(stats.unreported, 34);
        // Received at or before now - 24h (05:00 on the 1st): n = 0..=5.
        assert_eq!(
            stats.by_age,
            [("<24h", 28), ("24h-7d", 6), ("7d-28d", 0), (">28d", 0)]
        );
        assert_eq!(stats.no_deadline, 10);
        assert_eq!(
            stats.by_modality,
            [(Some("CT".to_owned()), 19), (Some("MR".to_owned()), 15)]
        );
        assert_eq!(
            stats.by_source,
            [("ed".to_owned(), 28), ("other-trust".to_owned(), 6)]
        );
        assert_eq!(stats.overdue, 0);
        let later = store
            .backlog_stats(ts("2026-11-20T00:00:00Z"))
            .expect("stats");
        assert_eq!(later.overdue, 24);
        assert_eq!(later.by_age[2], ("7d-28d", 34));
    }

    #[test]
    fn pages_and_the_backlog_read_their_indexes() {
        let (_dir, store) = seeded();
        let now = ts("2026-11-03T00:00:00Z");
        let plan = |sql: &str, args: Vec<Value>| -> String {
            let mut stmt = store
                .conn()
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("prepare");
            let rows: Vec<String> = stmt
                .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("rows");
            rows.join("; ")
        };
        let after = StudyCursor {
            deadline: Some(now),
            first_received_at: now,
            study_uid: "1.2.3".into(),
        };
        let null_after = StudyCursor {
            deadline: None,
            ..after.clone()
        };
        for (state, index) in [
            (StudyState::Unreported, "studies_worklist"),
            (StudyState::Overdue, "studies_worklist"),
            (StudyState::NoReportNeeded, "studies_no_report"),
        ] {
            for modality in [None, Some("CT".to_owned())] {
                for source in [None, Some("ed".to_owned())] {
                    for (segment, cursor) in [
                        (Segment::Deadline, None),
                        (Segment::Deadline, Some(after.clone())),
                        (
                            Segment::NoDeadline { from_start: true },
                            Some(after.clone()),
                        ),
                        (
                            Segment::NoDeadline { from_start: false },
                            Some(null_after.clone()),
                        ),
                    ] {
                        let q = StudyQuery {
                            state: Some(state),
                            modality: modality.clone(),
                            source: source.clone(),
                            limit: 100,
                            after: cursor,
                        };
                        let (sql, args) = page_sql(&q, now, segment, 101);
                        let p = plan(&sql, args);
                        // Covering: the page's keys come from the index alone,
                        // already in order.
                        assert!(p.contains(&format!("COVERING INDEX {index}")), "{sql}: {p}");
                        assert!(p.starts_with("SEARCH"), "a range, not a scan: {sql}: {p}");
                        assert!(!p.contains("TEMP B-TREE"), "{sql}: {p}");
                    }
                }
            }
        }
        // Reported studies and all studies: the deadline index, in order.
        for state in [Some(StudyState::Reported), None] {
            let q = StudyQuery {
                state,
                limit: 100,
                ..StudyQuery::default()
            };
            let (sql, args) = page_sql(&q, now, Segment::Deadline, 101);
            let p = plan(&sql, args);
            assert!(p.contains("INDEX studies_by_deadline"), "{sql}: {p}");
            assert!(!p.contains("SCAN studies"), "{sql}: {p}");
        }
        let backlog = plan(&backlog_sql(), Vec::new());
        assert!(
            backlog.contains("COVERING INDEX studies_worklist"),
            "{backlog}"
        );
    }
}
