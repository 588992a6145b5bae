//! [`Catalog`]: the server's async handle to the catalog thread.
//!
//! SQLite calls block (on locks, on fsync), so they never run on a tokio worker.
//! One dedicated std thread owns the [`Store`]; requests reach it over a channel
//! and answers come back on oneshot channels. One thread rather than
//! `spawn_blocking` per call because SQLite serialises writers anyway, and a
//! single owner can group-commit: every `record_instance` request already queued
//! when the thread gets to one goes into the same transaction, so N concurrent
//! C-STOREs cost one WAL fsync instead of N. On a durable file catalog that
//! fsync leaves the thread too: batches commit without flushing, and the
//! [`Syncer`] thread flushes the WAL and only then delivers their answers,
//! while this thread goes on with the next batch.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::syncer::Syncer;
use super::{Error, NewInstance, Store};

/// At most this many `record_instance` requests share one transaction, which
/// bounds how long the first of them waits for its answer.
const MAX_BATCH: usize = 64;

type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// A grouped job does its writes inside the batch's transaction and returns
/// what delivers its answer once the outcome of the commit is known.
type GroupJob = Box<dyn FnOnce(&mut Store) -> Deliver + Send>;
type Deliver = super::syncer::Deliver;

enum Request {
    /// A job, and whether its commit should wake the watchdog.
    Call(Job, bool),
    Grouped(GroupJob),
    Record(Box<NewInstance>, oneshot::Sender<Result<(), Error>>),
    Close(oneshot::Sender<()>),
}

/// Counters shared between the handles and the thread (for `/metrics`).
#[derive(Default)]
struct Stats {
    /// Requests sent and not yet taken by the thread.
    queued: AtomicU64,
    /// Transactions that recorded a batch of instances.
    group_commits: AtomicU64,
    /// Instances offered to those transactions.
    grouped_records: AtomicU64,
    /// Signalled after every commit of received instances or grouped calls
    /// (new studies, reports, orders), so the watchdog looks again.
    changed: Arc<tokio::sync::Notify>,
}

/// A cloneable async handle to the catalog thread.
///
/// The thread ends when [`Catalog::close`] or [`Catalog::shutdown`] is called,
/// or when the last handle is dropped; in every case it first finishes the
/// requests queued before that point. Requests made after it has ended fail
/// with [`Error::ThreadGone`].
#[derive(Clone)]
pub struct Catalog {
    tx: mpsc::Sender<Request>,
    /// Whether this handle's calls signal `changes` (see [`Catalog::quiet`]).
    wakes: bool,
    stats: Arc<Stats>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("queue_depth", &self.queue_depth())
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// Opens the store (on the calling thread, so that errors such as
    /// [`Error::SchemaTooNew`] come back here) and starts the catalog thread.
    pub fn open(path: &Path, durable: bool) -> Result<Catalog, Error> {
        Catalog::spawn(Store::open(path, durable)?)
    }

    /// Starts the catalog thread owning `store`.
    pub fn spawn(mut store: Store) -> Result<Catalog, Error> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut syncer = None;
        if let Some(path) = store.file_path() {
            // Checkpoints move off the commit path: the catalog thread's
            // commits then never stop to copy the WAL into the database.
            store.disable_autocheckpoint()?;
            if store.durable()? {
                syncer = Some(Syncer::spawn(&path).map_err(|source| Error::Io {
                    path: "catalog syncer thread".into(),
                    source,
                })?);
            }
            spawn_checkpointer(path, Arc::clone(&stop));
        }
        let thread = std::thread::Builder::new()
            .name("catalog".to_owned())
            .spawn({
                let stats = stats.clone();
                move || {
                    run(store, rx, &stats, syncer);
                    stop.store(true, Ordering::Relaxed);
                }
            })
            .map_err(|source| Error::Io {
                path: "catalog thread".into(),
                source,
            })?;
        Ok(Catalog {
            tx,
            wakes: true,
            stats,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Runs `f` on the catalog thread and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            // The caller may have gone away (cancelled); that is not our problem.
            let _ = reply.send(f(store));
        });
        self.send(Request::Call(job, self.wakes))?;
        answer.await.map_err(|_| Error::ThreadGone)?
    }

    /// A handle whose calls do not signal [`Catalog::changes`]: for the
    /// watchdog and the outbox sender, whose own writes must not wake the
    /// watchdog again.
    pub fn quiet(&self) -> Catalog {
        Catalog {
            wakes: false,
            ..self.clone()
        }
    }

    /// Runs `f` on the catalog thread inside a transaction shared with the
    /// other grouped calls queued at the same time (one commit, one WAL fsync
    /// for all of them), and returns its result once that transaction is
    /// committed. `f`'s writes must go through the store's write methods,
    /// which become savepoints there: if `f` fails, only its own writes are
    /// undone. If the commit fails, every call in the group gets
    /// [`Error::GroupCommit`].
    pub async fn call_grouped<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let (reply, answer) = oneshot::channel();
        let job: GroupJob = Box::new(move |store| {
            let result = store.in_savepoint(f);
            Box::new(move |commit: Result<(), Arc<Error>>| {
                let out = match (commit, result) {
                    (Ok(()), result) => result,
                    // Its own failure says more than the batch's.
                    (Err(_), Err(own)) => Err(own),
                    (Err(cause), Ok(_)) => Err(Error::GroupCommit(cause)),
                };
                let _ = reply.send(out);
            })
        });
        self.send(Request::Grouped(job))?;
        answer.await.map_err(|_| Error::ThreadGone)?
    }

    /// Records a received instance, group-committed with any others queued at
    /// the same time. Returns once the batch is committed (durably, when the
    /// catalog was opened durable). See [`Store::record_instance`].
    pub async fn record_instance(&self, rec: NewInstance) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Record(Box::new(rec), reply))?;
        answer.await.map_err(|_| Error::ThreadGone)?
    }

    /// Asks the thread to finish the requests queued so far, close the
    /// database and stop; resolves when it has.
    pub async fn close(self) {
        let (done, closed) = oneshot::channel();
        if self.send(Request::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }

    /// Like [`Catalog::close`], for synchronous code: stops the thread and
    /// joins it. Blocks, so call it outside the runtime (or in
    /// `spawn_blocking`).
    pub fn shutdown(self) {
        let (done, _closed) = oneshot::channel();
        let _ = self.send(Request::Close(done));
        let thread = match self.thread.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the catalog thread panicked");
            }
        }
    }

    /// Signalled (one stored permit, coalescing) after the catalog thread
    /// commits received instances or grouped calls: what the watchdog waits
    /// on besides its own timer.
    pub fn changes(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.stats.changed)
    }

    /// Requests waiting for the catalog thread.
    pub fn queue_depth(&self) -> u64 {
        self.stats.queued.load(Ordering::Relaxed)
    }

    /// Transactions that group-committed received instances so far.
    pub fn group_commits(&self) -> u64 {
        self.stats.group_commits.load(Ordering::Relaxed)
    }

    /// Instances offered to those transactions so far (divide by
    /// [`Catalog::group_commits`] for the mean batch size).
    pub fn grouped_records(&self) -> u64 {
        self.stats.grouped_records.load(Ordering::Relaxed)
    }

    fn send(&self, request: Request) -> Result<(), Error> {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(request).map_err(|_| {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            Error::ThreadGone
        })
    }
}

/// How often the checkpointer copies committed WAL frames into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// Beyond this many WAL pages, a checkpoint also waits for readers so that
/// the WAL is reset and cannot grow without bound.
const WAL_RESTART_PAGES: i64 = 32_768;

/// Runs WAL checkpoints on a connection of its own until `stop` is set.
fn spawn_checkpointer(path: std::path::PathBuf, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("catalog-checkpoint".to_owned())
        .spawn(move || {
            let conn = match rusqlite::Connection::open(&path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "catalog checkpointer cannot open the catalog");
                    return;
                }
            };
            let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(CHECKPOINT_EVERY);
                let pages =
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
                match pages {
                    Ok(n) if n > WAL_RESTART_PAGES => {
                        if let Err(e) =
                            conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                        {
                            tracing::warn!(error = %e, "catalog: WAL restart checkpoint failed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "catalog: checkpoint failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the catalog checkpointer");
    }
}

/// The catalog thread's loop. With a `syncer`, batches commit without
/// flushing the WAL and their answers wait for the syncer's next flush.
fn run(mut store: Store, rx: mpsc::Receiver<Request>, stats: &Stats, syncer: Option<Syncer>) {
    let take = |request: Request| {
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        request
    };
    // A request taken while gathering a batch that is not part of it; it runs
    // right after the batch, so requests keep their order.
    let mut next: Option<Request> = None;
    let closed = loop {
        let request = match next.take() {
            Some(r) => r,
            None => match rx.recv() {
                Ok(r) => take(r),
                // Every handle is gone and the queue is drained.
                Err(mpsc::RecvError) => break None,
            },
        };
        match request {
            Request::Call(job, wakes) => {
                guarded(&mut store, job);
                if wakes {
                    stats.changed.notify_one();
                }
            }
            Request::Grouped(job) => {
                let mut jobs = vec![job];
                while jobs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(r) => match take(r) {
                            Request::Grouped(job) => jobs.push(job),
                            other => {
                                next = Some(other);
                                break;
                            }
                        },
                        Err(_) => break,
                    }
                }
                let (answers, restored) =
                    unflushed(&mut store, syncer.is_some(), |store| run_group(store, jobs));
                stats.changed.notify_one();
                let deliver: Deliver = Box::new(move |flush| {
                    for (deliver, commit) in answers {
                        deliver(commit.and(flush.clone()));
                    }
                });
                after_flush(syncer.as_ref(), deliver);
                if !restored {
                    break None;
                }
            }
            Request::Record(rec, reply) => {
                let mut recs = vec![*rec];
                let mut replies = vec![reply];
                while recs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(r) => match take(r) {
                            Request::Record(rec, reply) => {
                                recs.push(*rec);
                                replies.push(reply);
                            }
                            other => {
                                next = Some(other);
                                break;
                            }
                        },
                        Err(_) => break,
                    }
                }
                stats.group_commits.fetch_add(1, Ordering::Relaxed);
                stats.changed.notify_one();
                stats
                    .grouped_records
                    .fetch_add(recs.len() as u64, Ordering::Relaxed);
                tracing::trace!(batch = recs.len(), "catalog group commit");
                let (results, restored) = unflushed(&mut store, syncer.is_some(), |store| {
                    store.record_instances(&recs)
                });
                let deliver: Deliver = Box::new(move |flush| {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(match (&flush, result) {
                            (Err(cause), Ok(())) => Err(Error::GroupCommit(cause.clone())),
                            (_, result) => result,
                        });
                    }
                });
                after_flush(syncer.as_ref(), deliver);
                if !restored {
                    break None;
                }
            }
            Request::Close(done) => break Some(done),
        }
    };
    // Requests still queued after a Close are dropped with the receiver; their
    // callers see their oneshot close and get Error::ThreadGone.
    drop(rx);
    // The last answers are delivered before the connection closes.
    drop(syncer);
    drop(store);
    if let Some(done) = closed {
        let _ = done.send(());
    }
}

/// Runs `batch` with commits that leave the WAL flush to the syncer (when
/// there is one), and switches flushing back on for the thread's other calls.
///
/// Returns the batch's result, and false when flushing could not be switched
/// back on. The thread's other calls answer as soon as they commit, so they
/// would then answer before their commit is durable: the caller stops the
/// thread instead (fail-stop), and every later request fails.
fn unflushed<R>(
    store: &mut Store,
    deferred: bool,
    batch: impl FnOnce(&mut Store) -> R,
) -> (R, bool) {
    // If switching fails, commits flush themselves, as without a syncer.
    let deferred = deferred && store.set_flush_on_commit(false).is_ok();
    let out = batch(store);
    if deferred {
        if let Err(e) = store
            .set_flush_on_commit(true)
            .or_else(|_| store.set_flush_on_commit(true))
        {
            tracing::error!(error = %e,
                "catalog: cannot switch commits back to flushing; the catalog stops \
                 taking requests, so that nothing is answered before it is durable");
            return (out, false);
        }
    }
    (out, true)
}

/// Delivers `deliver` after the syncer's next flush, or at once without one
/// (commits then flushed, or the catalog is not durable).
fn after_flush(syncer: Option<&Syncer>, deliver: Deliver) {
    match syncer {
        Some(syncer) => syncer.after_flush(deliver),
        None => deliver(Ok(())),
    }
}

/// Runs grouped jobs in one transaction and returns each answer's delivery
/// with the outcome of the commit it belongs to.
fn run_group(store: &mut Store, jobs: Vec<GroupJob>) -> Vec<(Deliver, Result<(), Arc<Error>>)> {
    let mut answers = Vec::with_capacity(jobs.len());
    let mut pending: Vec<Deliver> = Vec::with_capacity(jobs.len());
    if let Err(e) = store.begin_group() {
        tracing::warn!(error = %e, "catalog: group transaction could not begin");
        for job in jobs {
            // Without a transaction each job commits on its own.
            answers.push((job(store), Ok(())));
        }
        return answers;
    }
    for job in jobs {
        match catch_unwind(AssertUnwindSafe(|| job(store))) {
            Ok(deliver) => pending.push(deliver),
            Err(_) => {
                tracing::error!("a grouped catalog request panicked; its group was rolled back");
                store.rollback_if_open();
            }
        }
        if store.in_autocommit() {
            // SQLite rolled the transaction back (or a job panicked): what the
            // group wrote so far is gone; say so, and go on in a fresh one.
            let cause = Arc::new(Error::GroupAborted);
            answers.extend(pending.drain(..).map(|d| (d, Err(cause.clone()))));
            if let Err(e) = store.begin_group() {
                tracing::error!(error = %e, "catalog: cannot begin a group transaction");
            }
        }
    }
    let commit = store.commit_group().map_err(Arc::new);
    answers.extend(pending.into_iter().map(|d| (d, commit.clone())));
    answers
}

/// Runs one job, keeping the thread (and every other caller) alive if it
/// panics; the panicking caller sees its answer channel close.
fn guarded(store: &mut Store, job: Job) {
    if catch_unwind(AssertUnwindSafe(|| job(store))).is_err() {
        tracing::error!("a catalog request panicked; its transaction was rolled back");
        store.rollback_if_open();
    }
}
