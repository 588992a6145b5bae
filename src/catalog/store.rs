//! [`Store`]: every SQL statement studywatch runs, on one synchronous connection.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params, params_from_iter};

use super::reports::{self, LinkPolicy};
use super::{
    AuditRow, ConflictRow, Counts, DeliveryRow, Error, FailureRow, InstanceRow, NewConflict,
    NewFailure, NewInstance, SeriesRow, StudyDetail, StudyFilter, StudyRow, StudyState,
    TransferRow, schema,
};

/// How long a statement waits for another connection's write lock (the CLI
/// beside the server, or the reverse) before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The actor recorded for what studywatch does by itself.
pub(super) const SYSTEM: &str = "system";

/// A synchronous catalog connection. All of studywatch's SQL lives in its methods.
///
/// Writes run in `BEGIN IMMEDIATE` transactions: they take the write lock up
/// front (waiting up to the busy timeout), so a write never fails half way
/// because another process wrote in between.
pub struct Store {
    pub(super) conn: Connection,
    pub(super) link_policy: LinkPolicy,
    /// Set while a grouped call runs in its own savepoint (see `in_savepoint`).
    isolated: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating it and its parent directory if needed) the catalog at
    /// `path` and brings its schema up to date.
    ///
    /// `durable` selects `synchronous = FULL`, which makes every commit reach
    /// the disk before it returns; without it (`NORMAL`) a power cut may lose the
    /// last commits, which is only acceptable on storage with its own protection.
    pub fn open(path: &Path, durable: bool) -> Result<Store, Error> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Room for every statement of the ingest and HL7 paths, so the cache
        // never evicts one of them between two messages.
        conn.set_prepared_statement_cache_capacity(160);
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems (network mounts) cannot do WAL; the catalog still
            // works, but the CLI will block behind the server's writes.
            tracing::warn!(path = %path.display(), %mode, "catalog could not switch to WAL");
        }
        conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Plans never depend on bound values. Otherwise SQLite marks statements
        // such as `col = ?` as value-dependent, and the statement cache's
        // clear_bindings then expires them: every cached statement would be
        // prepared again on every use.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        schema::migrate(&mut conn)?;
        // Savepoint (statement) journals stay in memory: every grouped call
        // runs in a savepoint that journals the pages it touches, which
        // otherwise spills into a temporary file created and deleted on
        // each transaction. Set after the migrations, whose index builds may
        // sort more than should sit in memory.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(Store {
            conn,
            link_policy: LinkPolicy::default(),
            isolated: false,
        })
    }

    /// Opens an existing catalog read-only, for [`super::Readers`]: SQLite
    /// itself refuses any write made through it.
    pub fn open_reader(path: &Path) -> Result<Store, Error> {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(160);
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        let store = Store {
            conn,
            link_policy: LinkPolicy::default(),
            isolated: false,
        };
        let version = store.schema_version()?;
        if version != super::SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                found: version,
                supported: super::SCHEMA_VERSION,
            });
        }
        Ok(store)
    }

    /// Sets what links reports may make automatically (probable links, the
    /// site's zone). The default makes no probable links.
    pub fn set_link_policy(&mut self, policy: LinkPolicy) {
        self.link_policy = policy;
    }

    /// The database file, unless it is in memory.
    pub(super) fn file_path(&self) -> Option<std::path::PathBuf> {
        self.conn
            .path()
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
    }

    /// Whether commits on this connection reach the disk before they return
    /// (`synchronous` FULL or EXTRA, as [`Store::open`] sets when durable).
    pub(super) fn durable(&self) -> Result<bool, Error> {
        let level: i64 = self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        Ok(level >= 2)
    }

    /// Switches commits between flushing the WAL themselves (`FULL`) and
    /// leaving the flush to the caller (`NORMAL`, for the catalog thread's
    /// syncer). Only between transactions.
    pub(super) fn set_flush_on_commit(&self, flush: bool) -> Result<(), Error> {
        let sql = if flush {
            "PRAGMA synchronous = FULL"
        } else {
            "PRAGMA synchronous = NORMAL"
        };
        cached_exec(&self.conn, sql, [])?;
        Ok(())
    }

    /// Leaves WAL checkpoints to another connection (the catalog thread's
    /// checkpointer), so that commits never wait for one.
    pub(super) fn disable_autocheckpoint(&mut self) -> Result<(), Error> {
        self.conn
            .query_row("PRAGMA wal_autocheckpoint = 0", [], |_| Ok(()))?;
        Ok(())
    }

    /// The schema version of the open database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64, Error> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// A number that changes whenever another connection (another process, such
    /// as the CLI) commits to the database. Polling it is how the server notices
    /// outside changes cheaply.
    pub fn data_version(&self) -> Result<i64, Error> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed if `f` succeeds.
    ///
    /// Inside a transaction the caller already opened (the catalog thread's
    /// group commit), `f` runs in a savepoint instead: its writes are undone
    /// alone if it fails, and reach the disk with the enclosing commit.
    pub(super) fn write<R>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if self.isolated && !self.conn.is_autocommit() {
            return f(&self.conn);
        }
        if !self.conn.is_autocommit() {
            cached_exec(&self.conn, "SAVEPOINT write", [])?;
            return match f(&self.conn) {
                Ok(out) => {
                    cached_exec(&self.conn, "RELEASE write", [])?;
                    Ok(out)
                }
                Err(e) => {
                    if !self.conn.is_autocommit() {
                        self.conn
                            .execute_batch("ROLLBACK TO write; RELEASE write")?;
                    }
                    Err(e)
                }
            };
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// The catalogued instance with this SOP Instance UID, if any.
    pub fn lookup_instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRow>, Error> {
        let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE sop_instance_uid = ?1");
        Ok(cached_row(&self.conn, &sql, [sop_instance_uid], instance_from_row).optional()?)
    }

    /// Records one received instance in its own transaction: the instance row,
    /// and its series and study created or updated (counts, modalities, times;
    /// descriptive attributes come from the first instance, and later non-empty
    /// values only fill what is still missing). A new study is audited as
    /// `study_received`.
    ///
    /// A SOP Instance UID already catalogued is [`Error::DuplicateInstance`] and
    /// changes nothing.
    pub fn record_instance(&mut self, rec: &NewInstance) -> Result<(), Error> {
        let policy = self.link_policy.clone();
        self.write(|conn| insert_instance(conn, rec, &policy))
    }

    /// Records a batch of instances in ONE transaction (one commit, one WAL
    /// fsync), each inside its own savepoint so that a bad record fails alone.
    /// Returns one result per record, in order. This is the catalog thread's
    /// group commit; it is public so that bulk imports can use it too.
    ///
    /// If the transaction as a whole fails (cannot begin, SQLite aborted it, or
    /// COMMIT failed), nothing of the batch is stored and every record that had
    /// not already failed on its own gets [`Error::GroupCommit`].
    pub fn record_instances(&mut self, recs: &[NewInstance]) -> Vec<Result<(), Error>> {
        let fail_all = |results: &mut Vec<Result<(), Error>>, cause: Arc<Error>| {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(Error::GroupCommit(cause.clone()));
            }
            while results.len() < recs.len() {
                results.push(Err(Error::GroupCommit(cause.clone())));
            }
        };
        let mut results: Vec<Result<(), Error>> = Vec::with_capacity(recs.len());
        if let Err(e) = cached_exec(&self.conn, "BEGIN IMMEDIATE", []) {
            fail_all(&mut results, Arc::new(Error::from(e)));
            return results;
        }
        for rec in recs {
            let outcome = self.record_in_savepoint(rec);
            if self.conn.is_autocommit() {
                // SQLite rolled the whole transaction back (disk full, I/O error):
                // what this batch already recorded is gone too.
                let cause = Arc::new(match outcome {
                    Err(e) => e,
                    Ok(()) => Error::Sqlite(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                        Some("the batch's transaction was rolled back".to_owned()),
                    )),
                });
                fail_all(&mut results, cause);
                return results;
            }
            results.push(outcome);
        }
        if let Err(e) = cached_exec(&self.conn, "COMMIT", []) {
            if !self.conn.is_autocommit() {
                if let Err(rollback) = self.conn.execute_batch("ROLLBACK") {
                    tracing::error!(error = %rollback, "catalog: rollback after failed commit failed");
                }
            }
            fail_all(&mut results, Arc::new(Error::from(e)));
        }
        results
    }

    /// One record of a batch, inside a savepoint of the batch's transaction.
    fn record_in_savepoint(&mut self, rec: &NewInstance) -> Result<(), Error> {
        cached_exec(&self.conn, "SAVEPOINT record_instance", [])?;
        match insert_instance(&self.conn, rec, &self.link_policy) {
            Ok(()) => {
                cached_exec(&self.conn, "RELEASE record_instance", [])?;
                Ok(())
            }
            Err(e) => {
                if !self.conn.is_autocommit()
                    && self
                        .conn
                        .execute_batch("ROLLBACK TO record_instance; RELEASE record_instance")
                        .is_err()
                {
                    // Cannot undo this record alone: give up the whole batch
                    // rather than commit a half-applied record.
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(e)
            }
        }
    }

    /// Records a rejected instance (and audits it as `ingest_rejected`).
    /// Returns the failure's id.
    pub fn record_failure(&mut self, f: &NewFailure) -> Result<i64, Error> {
        self.write(|conn| {
            let at = fmt_ts(f.at);
            cached_exec(
                conn,
                "INSERT INTO ingest_failures (at, calling_ae, source, sop_class_uid, \
                 sop_instance_uid, study_uid, status, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    at,
                    f.calling_ae,
                    f.source,
                    f.sop_class_uid,
                    f.sop_instance_uid,
                    f.study_uid,
                    f.status,
                    f.reason
                ],
            )?;
            let id = conn.last_insert_rowid();
            let detail = format!(
                "failure {id}: status 0x{:04X} to {} ({}) for SOP instance {}: {}",
                f.status,
                f.calling_ae,
                f.source,
                f.sop_instance_uid.as_deref().unwrap_or("(none)"),
                f.reason
            );
            insert_audit(
                conn,
                &at,
                SYSTEM,
                "ingest_rejected",
                f.study_uid.as_deref(),
                &detail,
            )?;
            Ok(id)
        })
    }

    /// Records an instance resent with different content (and audits it as
    /// `integrity_conflict`). Returns the conflict's id.
    pub fn record_conflict(&mut self, c: &NewConflict) -> Result<i64, Error> {
        self.write(|conn| {
            let at = fmt_ts(c.at);
            cached_exec(
                conn,
                "INSERT INTO integrity_conflicts (at, sop_instance_uid, study_uid, calling_ae, \
                 existing_sha256, new_sha256, quarantine_path) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    at,
                    c.sop_instance_uid,
                    c.study_uid,
                    c.calling_ae,
                    c.existing_sha256,
                    c.new_sha256,
                    c.quarantine_path
                ],
            )?;
            let id = conn.last_insert_rowid();
            let detail = format!(
                "conflict {id}: SOP instance {} resent by {} with different content \
                 (sha256 {} stored, {} received); kept aside at {}",
                c.sop_instance_uid,
                c.calling_ae,
                c.existing_sha256,
                c.new_sha256,
                c.quarantine_path
            );
            insert_audit(
                conn,
                &at,
                SYSTEM,
                "integrity_conflict",
                c.study_uid.as_deref(),
                &detail,
            )?;
            Ok(id)
        })
    }

    /// Appends an audit row stamped with the wall clock. Returns its id.
    pub fn append_audit(
        &mut self,
        actor: &str,
        action: &str,
        study_uid: Option<&str>,
        detail: &str,
    ) -> Result<i64, Error> {
        self.append_audit_at(Timestamp::now(), actor, action, study_uid, detail)
    }

    /// Appends an audit row stamped `at` (from the caller's injectable clock).
    pub fn append_audit_at(
        &mut self,
        at: Timestamp,
        actor: &str,
        action: &str,
        study_uid: Option<&str>,
        detail: &str,
    ) -> Result<i64, Error> {
        self.write(|conn| insert_audit(conn, &fmt_ts(at), actor, action, study_uid, detail))
    }

    /// Studies matching `filter`, soonest deadline first (studies without one
    /// last), then by first receipt. `Overdue` is judged against the wall clock.
    pub fn studies(&self, filter: &StudyFilter) -> Result<Vec<StudyRow>, Error> {
        self.studies_at(filter, Timestamp::now())
    }

    /// [`Store::studies`] with `Overdue` judged as of `now` (from the caller's
    /// injectable clock).
    pub fn studies_at(&self, filter: &StudyFilter, now: Timestamp) -> Result<Vec<StudyRow>, Error> {
        let now = fmt_ts(now);
        let mut args: Vec<Value> = Vec::new();
        let condition = match filter.state {
            None => "1",
            Some(StudyState::Unreported) => "reported_at IS NULL AND no_report_needed = 0",
            Some(StudyState::Overdue) => {
                args.push(Value::Text(now));
                "reported_at IS NULL AND no_report_needed = 0 AND deadline < ?1"
            }
            Some(StudyState::Reported) => "reported_at IS NOT NULL",
            Some(StudyState::NoReportNeeded) => "reported_at IS NULL AND no_report_needed = 1",
        };
        args.push(Value::Integer(sql_limit(filter.limit)));
        let sql = format!(
            "SELECT {STUDY_COLUMNS} FROM studies WHERE {condition} \
             ORDER BY deadline IS NULL, deadline, first_received_at, study_uid LIMIT ?{}",
            args.len()
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), study_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One study's row (no detail; usable inside a transaction).
    pub fn study_row(&self, study_uid: &str) -> Result<Option<StudyRow>, Error> {
        let sql = format!("SELECT {STUDY_COLUMNS} FROM studies WHERE study_uid = ?1");
        Ok(cached_row(&self.conn, &sql, [study_uid], study_from_row).optional()?)
    }

    /// Everything about one study, read from one consistent snapshot.
    pub fn study(&self, study_uid: &str) -> Result<Option<StudyDetail>, Error> {
        let tx = self.conn.unchecked_transaction()?;
        let sql = format!("SELECT {STUDY_COLUMNS} FROM studies WHERE study_uid = ?1");
        let Some(study) = tx.query_row(&sql, [study_uid], study_from_row).optional()? else {
            return Ok(None);
        };
        let series = collect(
            &tx,
            &format!(
                "SELECT {SERIES_COLUMNS} FROM series WHERE study_uid = ?1 \
                 ORDER BY series_number IS NULL, series_number, first_received_at, series_uid"
            ),
            [study_uid],
            series_from_row,
        )?;
        let instances = collect(
            &tx,
            &format!(
                "SELECT {INSTANCE_COLUMNS} FROM instances WHERE study_uid = ?1 \
                 ORDER BY series_uid, received_at, sop_instance_uid"
            ),
            [study_uid],
            instance_from_row,
        )?;
        let failures = collect(
            &tx,
            &format!(
                "SELECT {FAILURE_COLUMNS} FROM ingest_failures WHERE study_uid = ?1 ORDER BY id"
            ),
            [study_uid],
            failure_from_row,
        )?;
        let conflicts = collect(
            &tx,
            &format!(
                "SELECT {CONFLICT_COLUMNS} FROM integrity_conflicts WHERE study_uid = ?1 ORDER BY id"
            ),
            [study_uid],
            conflict_from_row,
        )?;
        let audit = collect(
            &tx,
            &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE study_uid = ?1 ORDER BY id"),
            [study_uid],
            audit_from_row,
        )?;
        let reports = self.reports_of_study(study_uid)?;
        let transfer = tx.query_row(
            "SELECT stable_at, completeness, expected_instances, completeness_at, \
             completeness_detail FROM studies WHERE study_uid = ?1",
            [study_uid],
            |r| {
                Ok(TransferRow {
                    stable_at: parse_opt_ts(r, 0)?,
                    completeness: r.get(1)?,
                    expected_instances: r
                        .get::<_, Option<i64>>(2)?
                        .map(|n| u64::try_from(n).unwrap_or(0)),
                    completeness_at: parse_opt_ts(r, 3)?,
                    completeness_detail: r.get(4)?,
                })
            },
        )?;
        let delivery = collect(
            &tx,
            "SELECT sop_instance_uid, destination, state, attempts, sent_at, last_error, \
             commit_state, committed_at, commit_failure FROM forward_queue \
             WHERE study_uid = ?1 ORDER BY sop_instance_uid, destination",
            [study_uid],
            |r| {
                Ok(DeliveryRow {
                    sop_instance_uid: r.get(0)?,
                    destination: r.get(1)?,
                    state: r.get(2)?,
                    attempts: get_u64(r, 3)?,
                    sent_at: parse_opt_ts(r, 4)?,
                    last_error: r.get(5)?,
                    commit_state: r.get(6)?,
                    committed_at: parse_opt_ts(r, 7)?,
                    commit_failure: r.get(8)?,
                })
            },
        )?;
        tx.finish()?;
        Ok(Some(StudyDetail {
            study,
            series,
            instances,
            failures,
            conflicts,
            audit,
            reports,
            transfer,
            delivery,
        }))
    }

    /// Instances of one study, or of the whole catalog (for `verify`), ordered by
    /// study and series.
    pub fn instances(&self, study_uid: Option<&str>) -> Result<Vec<InstanceRow>, Error> {
        // Two statements rather than `?1 IS NULL OR ...`, which would keep
        // SQLite from using the index on study_uid.
        let order = "ORDER BY study_uid, series_uid, sop_instance_uid";
        match study_uid {
            Some(uid) => collect(
                &self.conn,
                &format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE study_uid = ?1 {order}"),
                [uid],
                instance_from_row,
            ),
            None => collect(
                &self.conn,
                &format!("SELECT {INSTANCE_COLUMNS} FROM instances {order}"),
                [],
                instance_from_row,
            ),
        }
    }

    /// The most recent ingest failures, newest first.
    pub fn failures(&self, limit: Option<usize>) -> Result<Vec<FailureRow>, Error> {
        let sql = format!(
            "SELECT {FAILURE_COLUMNS} FROM ingest_failures ORDER BY at DESC, id DESC LIMIT ?1"
        );
        collect(&self.conn, &sql, [sql_limit(limit)], failure_from_row)
    }

    /// Audit rows, oldest first, optionally only one study's and only those at
    /// or after `since`.
    pub fn audit(
        &self,
        study_uid: Option<&str>,
        since: Option<Timestamp>,
    ) -> Result<Vec<AuditRow>, Error> {
        let mut conditions = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        if let Some(uid) = study_uid {
            args.push(Value::Text(uid.to_owned()));
            conditions.push(format!("study_uid = ?{}", args.len()));
        }
        if let Some(since) = since {
            args.push(Value::Text(fmt_ts(since)));
            conditions.push(format!("at >= ?{}", args.len()));
        }
        let condition = if conditions.is_empty() {
            "1".to_owned()
        } else {
            conditions.join(" AND ")
        };
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE {condition} ORDER BY id");
        collect(&self.conn, &sql, params_from_iter(args), audit_from_row)
    }

    /// How many rows the main tables hold.
    pub fn counts(&self) -> Result<Counts, Error> {
        Ok(self.conn.query_row(
            "SELECT (SELECT count(*) FROM studies), (SELECT count(*) FROM instances), \
             (SELECT count(*) FROM ingest_failures), (SELECT count(*) FROM integrity_conflicts)",
            [],
            |r| {
                Ok(Counts {
                    studies: get_u64(r, 0)?,
                    instances: get_u64(r, 1)?,
                    failures: get_u64(r, 2)?,
                    conflicts: get_u64(r, 3)?,
                })
            },
        )?)
    }

    /// Opens the transaction a group of writes shares (the catalog thread's
    /// grouped calls).
    pub(super) fn begin_group(&mut self) -> Result<(), Error> {
        cached_exec(&self.conn, "BEGIN IMMEDIATE", [])?;
        Ok(())
    }

    /// Commits the group's transaction; on failure rolls it back.
    pub(super) fn commit_group(&mut self) -> Result<(), Error> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        if let Err(e) = cached_exec(&self.conn, "COMMIT", []) {
            self.rollback_if_open();
            return Err(e.into());
        }
        Ok(())
    }

    /// Runs `f` inside a savepoint of the open transaction, undone if `f`
    /// fails (outside a transaction, `f`'s writes commit one by one).
    pub(super) fn in_savepoint<R>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if self.conn.is_autocommit() {
            return f(self);
        }
        cached_exec(&self.conn, "SAVEPOINT grouped", [])?;
        // Inside this savepoint the write methods need no savepoint of their
        // own: a failure undoes the whole of `f` here.
        let was = std::mem::replace(&mut self.isolated, true);
        let out = f(self);
        self.isolated = was;
        if !self.conn.is_autocommit() {
            match &out {
                Ok(_) => {
                    cached_exec(&self.conn, "RELEASE grouped", [])?;
                }
                Err(_) => self
                    .conn
                    .execute_batch("ROLLBACK TO grouped; RELEASE grouped")?,
            }
        }
        out
    }

    /// Whether no transaction is open.
    pub(super) fn in_autocommit(&self) -> bool {
        self.conn.is_autocommit()
    }

    /// Rolls back a transaction left open (by a request that panicked half
    /// way), so that the next request starts clean.
    pub(super) fn rollback_if_open(&self) {
        if !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "catalog: rollback of an abandoned transaction failed");
            }
        }
    }

    /// The raw connection, for this module's tests only.
    #[cfg(test)]
    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// The work of [`Store::record_instance`], inside a transaction or savepoint
/// that the caller owns.
fn insert_instance(conn: &Connection, rec: &NewInstance, policy: &LinkPolicy) -> Result<(), Error> {
    let exists = cached_row(
        conn,
        "SELECT 1 FROM instances WHERE sop_instance_uid = ?1",
        [&rec.sop_instance_uid],
        |_| Ok(()),
    )
    .optional()?
    .is_some();
    if exists {
        return Err(Error::DuplicateInstance(rec.sop_instance_uid.clone()));
    }

    let series_study: Option<String> = cached_row(
        conn,
        "SELECT study_uid FROM series WHERE series_uid = ?1",
        [&rec.series_uid],
        |r| r.get(0),
    )
    .optional()?;
    if let Some(existing) = &series_study {
        if *existing != rec.study_uid {
            return Err(Error::SeriesInOtherStudy {
                series_uid: rec.series_uid.clone(),
                existing_study_uid: existing.clone(),
                study_uid: rec.study_uid.clone(),
            });
        }
    }
    let new_series = series_study.is_none();

    let at = fmt_ts(rec.received_at);
    let modality = nonempty(&rec.modality);
    let existing_modalities: Option<String> = cached_row(
        conn,
        "SELECT modalities FROM studies WHERE study_uid = ?1",
        [&rec.study_uid],
        |r| r.get(0),
    )
    .optional()?;
    let new_study = existing_modalities.is_none();
    let modalities = merge_modalities(existing_modalities.as_deref().unwrap_or(""), modality);

    if new_study {
        cached_exec(
            conn,
            "INSERT INTO studies (study_uid, patient_id, accession_number, issuer_of_accession, \
             modalities, study_date, study_time, study_description, referring_physician, \
             institution_name, source, calling_ae, first_received_at, last_received_at, \
             series_count, instance_count, issuer_of_patient_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, 1, 1, ?14)",
            params![
                rec.study_uid,
                nonempty(&rec.patient_id),
                nonempty(&rec.accession_number),
                nonempty(&rec.issuer_of_accession),
                modalities,
                nonempty(&rec.study_date),
                nonempty(&rec.study_time),
                nonempty(&rec.study_description),
                nonempty(&rec.referring_physician),
                nonempty(&rec.institution_name),
                rec.source,
                rec.calling_ae,
                at,
                nonempty(&rec.issuer_of_patient_id)
            ],
        )?;
        let detail = format!(
            "first instance {} from {} (calling AE {})",
            rec.sop_instance_uid, rec.source, rec.calling_ae
        );
        insert_audit(
            conn,
            &at,
            SYSTEM,
            "study_received",
            Some(&rec.study_uid),
            &detail,
        )?;
    } else {
        cached_exec(
            conn,
            "UPDATE studies SET \
             patient_id = coalesce(patient_id, ?2), \
             accession_number = coalesce(accession_number, ?3), \
             issuer_of_accession = coalesce(issuer_of_accession, ?4), \
             modalities = ?5, \
             study_date = coalesce(study_date, ?6), \
             study_time = coalesce(study_time, ?7), \
             study_description = coalesce(study_description, ?8), \
             referring_physician = coalesce(referring_physician, ?9), \
             institution_name = coalesce(institution_name, ?10), \
             first_received_at = min(first_received_at, ?11), \
             last_received_at = max(last_received_at, ?11), \
             series_count = series_count + ?12, \
             instance_count = instance_count + 1, \
             stable_at = NULL, \
             issuer_of_patient_id = coalesce(issuer_of_patient_id, ?13) \
             WHERE study_uid = ?1",
            params![
                rec.study_uid,
                nonempty(&rec.patient_id),
                nonempty(&rec.accession_number),
                nonempty(&rec.issuer_of_accession),
                modalities,
                nonempty(&rec.study_date),
                nonempty(&rec.study_time),
                nonempty(&rec.study_description),
                nonempty(&rec.referring_physician),
                nonempty(&rec.institution_name),
                at,
                i64::from(new_series),
                nonempty(&rec.issuer_of_patient_id)
            ],
        )?;
    }

    let series_description = nonempty(&rec.series_description);
    if new_series {
        cached_exec(
            conn,
            "INSERT INTO series (series_uid, study_uid, modality, series_number, \
             series_description, instance_count, first_received_at, last_received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)",
            params![
                rec.series_uid,
                rec.study_uid,
                modality,
                rec.series_number,
                series_description,
                at
            ],
        )?;
    } else {
        cached_exec(
            conn,
            "UPDATE series SET \
             modality = coalesce(modality, ?2), \
             series_number = coalesce(series_number, ?3), \
             series_description = coalesce(series_description, ?4), \
             instance_count = instance_count + 1, \
             first_received_at = min(first_received_at, ?5), \
             last_received_at = max(last_received_at, ?5) \
             WHERE series_uid = ?1",
            params![
                rec.series_uid,
                modality,
                rec.series_number,
                series_description,
                at
            ],
        )?;
    }

    // SQLite integers are i64; a file of 8 EiB is not a real case, but refuse
    // it rather than wrap.
    let size_bytes = i64::try_from(rec.size_bytes)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    cached_exec(
        conn,
        "INSERT INTO instances (sop_instance_uid, series_uid, study_uid, sop_class_uid, \
         transfer_syntax, size_bytes, sha256, rel_path, received_at, calling_ae, forwarded) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            rec.sop_instance_uid,
            rec.series_uid,
            rec.study_uid,
            rec.sop_class_uid,
            rec.transfer_syntax,
            size_bytes,
            rec.sha256,
            rec.rel_path,
            at,
            rec.calling_ae,
            !rec.forward_to.is_empty()
        ],
    )?;
    if new_study {
        // Reports (and orders) may have arrived before the images.
        reports::link_new_study(
            conn,
            &rec.study_uid,
            nonempty(&rec.accession_number),
            nonempty(&rec.patient_id),
            policy,
            &at,
        )?;
    }
    for (keyword, value) in &rec.attributes {
        cached_exec(
            conn,
            "INSERT OR IGNORE INTO study_attributes (study_uid, keyword, value) VALUES (?1, ?2, ?3)",
            params![rec.study_uid, keyword, value],
        )?;
    }
    if let Some(report) = &rec.report {
        reports::insert_report(conn, report, None, policy)?;
    }
    super::forward::enqueue(
        conn,
        &rec.forward_to,
        &rec.sop_instance_uid,
        &rec.study_uid,
        &at,
    )?;
    if let Some(reading) = &rec.clock {
        super::clock::record(conn, reading)?;
    }
    Ok(())
}

pub(super) fn insert_audit(
    conn: &Connection,
    at: &str,
    actor: &str,
    action: &str,
    study_uid: Option<&str>,
    detail: &str,
) -> Result<i64, Error> {
    cached_exec(
        conn,
        "INSERT INTO audit (at, actor, action, study_uid, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, actor, action, study_uid, detail],
    )?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn collect<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    map: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, Error> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, map)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The stored form of a time: RFC 3339 in UTC with exactly six fractional
/// digits, so that comparing the text compares the times.
pub(super) fn fmt_ts(ts: Timestamp) -> String {
    format!("{ts:.6}")
}

pub(super) fn parse_ts(row: &Row<'_>, idx: usize) -> rusqlite::Result<Timestamp> {
    let text: String = row.get(idx)?;
    text.parse().map_err(|e: jiff::Error| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Counts and sizes are stored as non-negative INTEGERs (CHECK constraints).
fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Integer, Box::new(e))
    })
}

pub(super) fn parse_opt_ts(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Timestamp>> {
    match row.get_ref(idx)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => parse_ts(row, idx).map(Some),
    }
}

/// DICOM pads values with spaces (and sometimes NUL); an empty value is absent.
fn nonempty(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(|v| v.trim_matches(|c: char| c == ' ' || c == '\0'))
        .filter(|v| !v.is_empty())
}

/// Adds `modality` to the backslash-separated set `existing`, keeping it
/// sorted and distinct (e.g. `CT\SR`).
fn merge_modalities(existing: &str, modality: Option<&str>) -> String {
    let mut set: BTreeSet<&str> = split_modalities(existing).collect();
    if let Some(m) = modality {
        // Modality is single-valued, but a peer may send several: keep each.
        set.extend(split_modalities(m));
    }
    set.into_iter().collect::<Vec<_>>().join("\\")
}

pub(super) fn split_modalities(s: &str) -> impl Iterator<Item = &str> {
    s.split('\\').map(str::trim).filter(|m| !m.is_empty())
}

pub(super) fn sql_limit(limit: Option<usize>) -> i64 {
    // SQLite reads a negative LIMIT as "no limit".
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

const STUDY_COLUMNS: &str = "study_uid, patient_id, accession_number, issuer_of_accession, \
    modalities, study_date, study_time, study_description, referring_physician, \
    institution_name, source, calling_ae, first_received_at, last_received_at, series_count, \
    instance_count, reported_at, deadline, report_status, rule, no_report_needed, \
    issuer_of_patient_id";

fn study_from_row(r: &Row<'_>) -> rusqlite::Result<StudyRow> {
    let modalities: String = r.get(4)?;
    Ok(StudyRow {
        study_uid: r.get(0)?,
        patient_id: r.get(1)?,
        accession_number: r.get(2)?,
        issuer_of_accession: r.get(3)?,
        modalities: split_modalities(&modalities).map(str::to_owned).collect(),
        study_date: r.get(5)?,
        study_time: r.get(6)?,
        study_description: r.get(7)?,
        referring_physician: r.get(8)?,
        institution_name: r.get(9)?,
        source: r.get(10)?,
        calling_ae: r.get(11)?,
        first_received_at: parse_ts(r, 12)?,
        last_received_at: parse_ts(r, 13)?,
        series_count: get_u64(r, 14)?,
        instance_count: get_u64(r, 15)?,
        reported_at: parse_opt_ts(r, 16)?,
        deadline: parse_opt_ts(r, 17)?,
        report_status: r.get(18)?,
        rule: r.get(19)?,
        no_report_needed: r.get(20)?,
        issuer_of_patient_id: r.get(21)?,
    })
}

const SERIES_COLUMNS: &str = "series_uid, study_uid, modality, series_number, \
    series_description, instance_count, first_received_at, last_received_at";

fn series_from_row(r: &Row<'_>) -> rusqlite::Result<SeriesRow> {
    Ok(SeriesRow {
        series_uid: r.get(0)?,
        study_uid: r.get(1)?,
        modality: r.get(2)?,
        series_number: r.get(3)?,
        series_description: r.get(4)?,
        instance_count: get_u64(r, 5)?,
        first_received_at: parse_ts(r, 6)?,
        last_received_at: parse_ts(r, 7)?,
    })
}

const INSTANCE_COLUMNS: &str = "sop_instance_uid, series_uid, study_uid, sop_class_uid, \
    transfer_syntax, size_bytes, sha256, rel_path, received_at, calling_ae, pruned_at";

fn instance_from_row(r: &Row<'_>) -> rusqlite::Result<InstanceRow> {
    Ok(InstanceRow {
        sop_instance_uid: r.get(0)?,
        series_uid: r.get(1)?,
        study_uid: r.get(2)?,
        sop_class_uid: r.get(3)?,
        transfer_syntax: r.get(4)?,
        size_bytes: get_u64(r, 5)?,
        sha256: r.get(6)?,
        rel_path: r.get(7)?,
        received_at: parse_ts(r, 8)?,
        calling_ae: r.get(9)?,
        pruned_at: parse_opt_ts(r, 10)?,
    })
}

const FAILURE_COLUMNS: &str = "id, at, calling_ae, source, sop_class_uid, sop_instance_uid, \
    study_uid, status, reason";

fn failure_from_row(r: &Row<'_>) -> rusqlite::Result<FailureRow> {
    Ok(FailureRow {
        id: r.get(0)?,
        at: parse_ts(r, 1)?,
        calling_ae: r.get(2)?,
        source: r.get(3)?,
        sop_class_uid: r.get(4)?,
        sop_instance_uid: r.get(5)?,
        study_uid: r.get(6)?,
        status: r.get(7)?,
        reason: r.get(8)?,
    })
}

const CONFLICT_COLUMNS: &str = "id, at, sop_instance_uid, study_uid, calling_ae, \
    existing_sha256, new_sha256, quarantine_path";

pub(super) fn conflict_from_row(r: &Row<'_>) -> rusqlite::Result<ConflictRow> {
    Ok(ConflictRow {
        id: r.get(0)?,
        at: parse_ts(r, 1)?,
        sop_instance_uid: r.get(2)?,
        study_uid: r.get(3)?,
        calling_ae: r.get(4)?,
        existing_sha256: r.get(5)?,
        new_sha256: r.get(6)?,
        quarantine_path: r.get(7)?,
    })
}

const AUDIT_COLUMNS: &str = "id, at, actor, action, study_uid, detail";

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        id: r.get(0)?,
        at: parse_ts(r, 1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        study_uid: r.get(4)?,
        detail: r.get(5)?,
    })
}

/// Runs a statement through the connection's statement cache: the hot path
/// (one instance after another) then prepares each statement once.
pub(super) fn cached_exec<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Queries one row through the connection's statement cache.
pub(super) fn cached_row<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}
