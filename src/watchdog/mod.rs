//! The watchdog: rules, deadlines, alarms and their escalation.
//!
//! - [`calendar`]: working hours and bank holidays; working-time deadlines.
//! - [`rules`]: which rule a study falls under and the deadline it sets.
//! - [`engine`]: the alarm state machine (steps, repeats, acknowledgement,
//!   resolution), as pure functions.
//! - [`tick`]: one evaluation against the catalog — deadlines computed for
//!   studies that changed, alarms raised, advanced and resolved, notifications
//!   queued — in one transaction.
//! - [`outbox`]: delivers queued notifications, at least once, with backoff.
//!
//! [`run`] is the scheduler: it sleeps until the earliest stored due time
//! (a deadline, an escalation step, the end of an acknowledgement), and is
//! woken early when the catalog changes. All state is in the catalog, so a
//! restart neither repeats a step that was sent nor forgets one that fell due
//! while the process was down. It reports its own [`Liveness`], which
//! `/readyz`, `/metrics` and the systemd watchdog ping look at, so that a
//! scheduler that stopped while the process runs does not go unseen.

pub mod calendar;
pub mod engine;
pub mod outbox;
pub mod rules;
pub mod tick;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Where "now" comes from: the system clock in production, tokio's paused
/// clock in the scheduler's tests (it does not move `SystemTime`).
pub trait WallClock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that starts at `base` and advances with tokio's clock (paused or not).
#[derive(Clone, Debug)]
pub struct TokioClock {
    base: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(base: Timestamp) -> TokioClock {
        TokioClock {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl WallClock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = jiff::SignedDuration::try_from(self.start.elapsed()).unwrap_or_default();
        self.base.checked_add(elapsed).unwrap_or(Timestamp::MAX)
    }
}

/// What the scheduler evaluates: the catalog in production, an in-memory
/// model in tests.
pub trait Backend: Send + Sync {
    /// Brings everything up to `now`; returns when to look again (`None`:
    /// nothing is scheduled).
    fn tick(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = anyhow::Result<Option<Timestamp>>> + Send;
    /// Whether another process changed the catalog since the last call.
    fn changed_elsewhere(&self) -> impl Future<Output = bool> + Send;
}

/// The longest the scheduler sleeps without checking for changes made by
/// another process (the CLI): DESIGN.md promises they are noticed within a
/// second.
pub const POLL: Duration = Duration::from_secs(1);
/// After being woken by a change, wait this long for more changes so that a
/// burst of stores costs one evaluation.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// The scheduler has not come round its loop for this long: it is stuck
/// (it comes round at least every [`POLL`]).
pub const STUCK_AFTER: Duration = Duration::from_secs(60);
/// Evaluations have failed without a break for this long.
pub const FAILING_AFTER: Duration = Duration::from_secs(60);

/// Whether the scheduler is alive and evaluating: the times it last came
/// round its loop and last evaluated successfully, and since when its
/// evaluations have been failing. Shared with `/readyz`, `/metrics` and
/// the systemd watchdog ping.
#[derive(Debug)]
pub struct Liveness {
    /// Milliseconds since the Unix epoch; `ran` starts at creation, so a
    /// scheduler that never starts is stuck after [`STUCK_AFTER`] too.
    ran: AtomicI64,
    evaluated: AtomicI64,
    /// 0 while evaluations succeed.
    failing_since: AtomicI64,
}

impl Liveness {
    pub fn new(now: Timestamp) -> Liveness {
        Liveness {
            ran: AtomicI64::new(now.as_millisecond()),
            evaluated: AtomicI64::new(0),
            failing_since: AtomicI64::new(0),
        }
    }

    fn came_round(&self, now: Timestamp) {
        self.ran.store(now.as_millisecond(), Ordering::Relaxed);
    }

    fn evaluated(&self, now: Timestamp, ok: bool) {
        let ms = now.as_millisecond();
        if ok {
            self.evaluated.store(ms, Ordering::Relaxed);
            self.failing_since.store(0, Ordering::Relaxed);
        } else {
            let _ =
                self.failing_since
                    .compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// When the scheduler last came round its loop.
    pub fn last_run(&self) -> Timestamp {
        millis(self.ran.load(Ordering::Relaxed))
    }

    /// When it last evaluated successfully, if it has.
    pub fn last_evaluation(&self) -> Option<Timestamp> {
        Some(self.evaluated.load(Ordering::Relaxed))
            .filter(|&ms| ms != 0)
            .map(millis)
    }

    /// What is wrong with the scheduler at `now`, if anything.
    pub fn problem(&self, now: Timestamp) -> Option<String> {
        let for_secs = |ms: i64| (now.as_millisecond() - ms).max(0) / 1000;
        let ran = self.ran.load(Ordering::Relaxed);
        if for_secs(ran) >= secs(STUCK_AFTER) {
            return Some(format!(
                "the watchdog scheduler has not run for {} s",
                for_secs(ran)
            ));
        }
        let failing = self.failing_since.load(Ordering::Relaxed);
        if failing != 0 && for_secs(failing) >= secs(FAILING_AFTER) {
            return Some(format!(
                "watchdog evaluations have failed for {} s",
                for_secs(failing)
            ));
        }
        None
    }
}

fn millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Runs the scheduler until `shutdown`, reporting to `liveness`.
pub async fn run<B: Backend, C: WallClock>(
    backend: Arc<B>,
    clock: C,
    wake: Arc<Notify>,
    liveness: Arc<Liveness>,
    shutdown: CancellationToken,
) {
    let mut next: Option<Timestamp> = None;
    let mut due = true;
    loop {
        liveness.came_round(clock.now());
        if due {
            let now = clock.now();
            let result = backend.tick(now).await;
            liveness.evaluated(clock.now(), result.is_ok());
            next = match result {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "watchdog evaluation failed; retrying");
                    Some(now + jiff::SignedDuration::from_secs(5))
                }
            };
        }
        let now = clock.now();
        let until_next = next.map(|t| {
            let d = t.duration_since(now);
            Duration::try_from(d).unwrap_or(Duration::ZERO)
        });
        let sleep = until_next.map_or(POLL, |d| d.min(POLL));
        due = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {
                tokio::time::sleep(DEBOUNCE).await;
                true
            }
            _ = tokio::time::sleep(sleep) => {
                until_next.is_some_and(|d| d <= sleep) || backend.changed_elsewhere().await
            }
        };
    }
}

#[cfg(test)]
mod tests;

/// When an acknowledgement given at `now` for `text` (a duration such as
/// `"4h"`) ends: `None` for no duration (until the alarm resolves). Shared by
/// `ack`, the API and the dashboard's form.
pub fn ack_until(now: Timestamp, text: Option<&str>) -> Result<Option<Timestamp>, String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let d = crate::config::parse_duration(text)?;
    if d.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    let d = jiff::SignedDuration::try_from(d).map_err(|e| e.to_string())?;
    Ok(Some(now.checked_add(d).unwrap_or(Timestamp::MAX)))
}
