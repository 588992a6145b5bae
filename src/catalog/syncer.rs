//! [`Syncer`]: makes group commits durable off the catalog thread.
//!
//! With `synchronous = FULL`, SQLite fsyncs the WAL inside COMMIT, and the
//! catalog thread sits idle for the whole flush (about a millisecond here)
//! while the next requests queue behind it. For the batches of received
//! instances and grouped calls, the catalog thread instead commits with
//! `synchronous = NORMAL` (the frames are written to the WAL, not yet
//! flushed) and hands the answers to this thread, which flushes the WAL with
//! one `fdatasync` and only then delivers them. The catalog thread meanwhile
//! runs the next batch, and every commit made during a flush shares the next
//! one.
//!
//! Why this is as durable as FULL for those answers: the WAL is one file,
//! written in order, and SQLite's recovery replays it up to the last frame
//! whose checksum chain is intact. Once an `fdatasync` that started after a
//! commit returns, that commit's frames (and every earlier one) are on disk.
//! A checkpoint flushes the WAL itself before copying frames into the
//! database, so a WAL that is reset or removed in between has already been
//! made durable. Nothing is answered before its flush: a caller sees success
//! only after it.
//!
//! A failed `fdatasync` may have dropped dirty pages that no later flush
//! will write again, so after one the syncer fails every answer from then on
//! (the gateway stops confirming anything) and says why in the log; a restart
//! lets SQLite recover from what is really on disk.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::Error;

/// Delivers the answers of one committed batch, given the flush's outcome.
pub(super) type Deliver = Box<dyn FnOnce(Result<(), Arc<Error>>) + Send>;

/// The handle the catalog thread keeps: send a batch's delivery after its
/// commit, and join at the end.
pub(super) struct Syncer {
    tx: Option<mpsc::Sender<Deliver>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the syncer for the catalog database at `database`.
    pub(super) fn spawn(database: &Path) -> std::io::Result<Syncer> {
        let (tx, rx) = mpsc::channel::<Deliver>();
        let mut wal = Wal::new(database);
        let thread = std::thread::Builder::new()
            .name("catalog-sync".to_owned())
            .spawn(move || {
                let mut failed: Option<Arc<Error>> = None;
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let outcome = match &failed {
                        Some(cause) => Err(cause.clone()),
                        None => wal.flush().map_err(|e| {
                            tracing::error!(error = %e,
                                "catalog: flushing the WAL failed; nothing more is confirmed \
                                 until studywatch is restarted");
                            let cause = Arc::new(e);
                            failed = Some(cause.clone());
                            cause
                        }),
                    };
                    for deliver in batch {
                        deliver(outcome.clone());
                    }
                }
            })?;
        Ok(Syncer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `deliver`, to run after the next flush. Runs it at once with an
    /// error if the syncer thread is gone.
    pub(super) fn after_flush(&self, deliver: Deliver) {
        let Some(tx) = &self.tx else {
            deliver(Err(Arc::new(Error::ThreadGone)));
            return;
        };
        if let Err(mpsc::SendError(deliver)) = tx.send(deliver) {
            deliver(Err(Arc::new(Error::ThreadGone)));
        }
    }
}

impl Drop for Syncer {
    /// Flushes and delivers what is queued, then stops the thread.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the catalog syncer panicked");
            }
        }
    }
}

/// The database's WAL file, opened (read-only: it is only ever flushed here)
/// when first needed and again if SQLite replaced it.
struct Wal {
    path: PathBuf,
    database: PathBuf,
    file: Option<(File, u64, u64)>,
}

impl Wal {
    fn new(database: &Path) -> Wal {
        let mut path = database.as_os_str().to_owned();
        path.push("-wal");
        Wal {
            path: PathBuf::from(path),
            database: database.to_path_buf(),
            file: None,
        }
    }

    /// `fdatasync` of the WAL. If there is no WAL any more (the last other
    /// connection removed it after checkpointing everything into the
    /// database), the database file is flushed instead.
    fn flush(&mut self) -> Result<(), Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let current = match std::fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.file = None;
                let db = File::open(&self.database).map_err(io(&self.database))?;
                return db.sync_data().map_err(io(&self.database));
            }
            Err(e) => return Err(io(&self.path)(e)),
        };
        if self
            .file
            .as_ref()
            .is_none_or(|(_, dev, ino)| (*dev, *ino) != current)
        {
            let file = File::open(&self.path).map_err(io(&self.path))?;
            let m = file.metadata().map_err(io(&self.path))?;
            self.file = Some((file, m.dev(), m.ino()));
        }
        let Some((file, _, _)) = &self.file else {
            unreachable!("opened above");
        };
        file.sync_data().map_err(io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_the_wal_or_the_database_when_there_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.sqlite3");
        std::fs::write(&db, b"db").unwrap();
        let mut wal = Wal::new(&db);
        // No WAL yet: the database file is flushed, nothing is kept open.
        wal.flush().unwrap();
        assert!(wal.file.is_none());
        std::fs::write(dir.path().join("c.sqlite3-wal"), b"frames").unwrap();
        wal.flush().unwrap();
        let first = wal.file.as_ref().map(|(_, _, ino)| *ino);
        assert!(first.is_some());
        // Replaced under the same name: the new file is opened.
        std::fs::remove_file(dir.path().join("c.sqlite3-wal")).unwrap();
        std::fs::write(dir.path().join("c.sqlite3-wal"), b"other").unwrap();
        wal.flush().unwrap();
        let second = wal.file.as_ref().map(|(_, _, ino)| *ino);
        assert!(second.is_some());
        assert_eq!(
            second,
            Some(
                std::fs::metadata(dir.path().join("c.sqlite3-wal"))
                    .unwrap()
                    .ino()
            )
        );
    }

    #[test]
    fn a_missing_database_is_an_error_not_a_success() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::new(&dir.path().join("gone.sqlite3"));
        assert!(matches!(wal.flush(), Err(Error::Io { .. })));
    }

    #[test]
    fn answers_arrive_after_a_flush_in_the_order_queued() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.sqlite3");
        std::fs::write(&db, b"db").unwrap();
        let syncer = Syncer::spawn(&db).unwrap();
        let (tx, rx) = mpsc::channel();
        for i in 0..50 {
            let tx = tx.clone();
            syncer.after_flush(Box::new(move |outcome| {
                tx.send((i, outcome.is_ok())).unwrap();
            }));
        }
        drop(syncer);
        let got: Vec<(i32, bool)> = rx.try_iter().collect();
        assert_eq!(got, (0..50).map(|i| (i, true)).collect::<Vec<_>>());
    }

    #[test]
    fn after_one_failed_flush_every_later_answer_fails() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.sqlite3");
        // No database and no WAL: the flush fails.
        let syncer = Syncer::spawn(&db).unwrap();
        let (tx, rx) = mpsc::channel();
        let send = |tx: mpsc::Sender<bool>| -> Deliver {
            Box::new(move |outcome| tx.send(outcome.is_ok()).unwrap())
        };
        syncer.after_flush(send(tx.clone()));
        while rx.try_recv().is_err() {
            std::thread::yield_now();
        }
        // Now it exists, but the earlier failure stands.
        std::fs::write(&db, b"db").unwrap();
        syncer.after_flush(send(tx.clone()));
        drop(syncer);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![false]);
    }
}
