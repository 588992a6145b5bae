//! The scheduler on tokio's paused clock, against an in-memory backend that
//! applies the same alarm engine as the catalog backend (no sockets, no
//! SQLite): alarms fire within a second of the deadline, steps go in order,
//! repeats follow, an acknowledgement holds them and re-arms on expiry, and a
//! final report resolves the alarm while a preliminary one does not. The
//! scheduler's liveness shows a scheduler that hangs or keeps failing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::engine::{self, Action, Plan};
use super::rules::Step;
use super::{Backend, Liveness, TokioClock, WallClock};

const BASE: &str = "2026-11-20T10:00:00Z";

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Step {
        at: Timestamp,
        step: usize,
        repeat: bool,
    },
    Resolved {
        at: Timestamp,
    },
}

struct Model {
    deadline: Timestamp,
    /// A formal (final or corrected) report is linked.
    formally_reported: bool,
    alarm: Option<engine::Alarm>,
    sent: Vec<Sent>,
    ticks: usize,
    fault: Option<Fault>,
}

/// What goes wrong with the next evaluations.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// An evaluation that never returns (a wedged catalog call).
    Hang,
    /// Evaluations that fail.
    Fail,
}

struct MemBackend {
    steps: Vec<Step>,
    repeat: Option<Duration>,
    model: Mutex<Model>,
}

impl MemBackend {
    fn new(deadline: Timestamp) -> Arc<MemBackend> {
        Arc::new(MemBackend {
            steps: vec![
                Step {
                    after: Duration::ZERO,
                    notify: vec!["team".into()],
                },
                Step {
                    after: Duration::from_secs(3600),
                    notify: vec!["pager".into()],
                },
            ],
            repeat: Some(Duration::from_secs(4 * 3600)),
            model: Mutex::new(Model {
                deadline,
                formally_reported: false,
                alarm: None,
                sent: Vec::new(),
                ticks: 0,
                fault: None,
            }),
        })
    }

    fn sent(&self) -> Vec<Sent> {
        self.model.lock().expect("model").sent.clone()
    }
}

impl Backend for MemBackend {
    async fn tick(&self, now: Timestamp) -> anyhow::Result<Option<Timestamp>> {
        let plan = Plan {
            steps: &self.steps,
            repeat_every: self.repeat,
        };
        let fault = self.model.lock().expect("model").fault;
        match fault {
            Some(Fault::Hang) => std::future::pending::<()>().await,
            Some(Fault::Fail) => anyhow::bail!("the catalog is unavailable"),
            None => {}
        }
        let mut m = self.model.lock().expect("model");
        m.ticks += 1;
        let live = m
            .alarm
            .as_ref()
            .is_some_and(|a| a.state != engine::State::Resolved);
        if !live && !m.formally_reported && m.deadline <= now && m.alarm.is_none() {
            m.alarm = Some(engine::raise(m.deadline, plan));
        }
        if let Some(alarm) = m.alarm.clone() {
            let outcome = engine::advance(&alarm, plan, !m.formally_reported, now);
            for a in &outcome.actions {
                match a {
                    Action::Notify { step, repeat, .. } => m.sent.push(Sent::Step {
                        at: now,
                        step: *step,
                        repeat: *repeat,
                    }),
                    Action::Resolve => m.sent.push(Sent::Resolved { at: now }),
                    Action::Rearm => {}
                }
            }
            m.alarm = Some(outcome.alarm);
        }
        let next = match &m.alarm {
            None if m.deadline > now => Some(m.deadline),
            None => None,
            Some(a) => engine::next_wake(a),
        };
        Ok(next)
    }

    async fn changed_elsewhere(&self) -> bool {
        false
    }
}

/// Starts the scheduler on the paused clock; returns what drives it.
fn start(backend: &Arc<MemBackend>) -> (TokioClock, Arc<Notify>, CancellationToken) {
    let (clock, wake, stop, _) = start_watched(backend);
    (clock, wake, stop)
}

/// [`start`], with the liveness the scheduler reports to.
fn start_watched(
    backend: &Arc<MemBackend>,
) -> (TokioClock, Arc<Notify>, CancellationToken, Arc<Liveness>) {
    let clock = TokioClock::starting_at(ts(BASE));
    let wake = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let liveness = Arc::new(Liveness::new(clock.now()));
    tokio::spawn(super::run(
        Arc::clone(backend),
        clock.clone(),
        Arc::clone(&wake),
        Arc::clone(&liveness),
        stop.clone(),
    ));
    (clock, wake, stop, liveness)
}

async fn advance_to(clock: &TokioClock, t: Timestamp) {
    let d = t.duration_since(clock.now());
    if let Ok(d) = Duration::try_from(d) {
        tokio::time::sleep(d).await;
    }
    // Let the scheduler run what fell due.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn the_alarm_fires_within_a_second_of_the_deadline_then_escalates_and_repeats() {
    let backend = MemBackend::new(ts("2026-11-20T12:00:00Z"));
    let (clock, _wake, stop) = start(&backend);
    advance_to(&clock, ts("2026-11-20T11:59:59Z")).await;
    assert!(backend.sent().is_empty());
    advance_to(&clock, ts("2026-11-20T12:00:01Z")).await;
    let sent = backend.sent();
    let Some(Sent::Step {
        at,
        step: 0,
        repeat: false,
    }) = sent.first().cloned()
    else {
        panic!("no first step: {sent:?}");
    };
    assert!(
        at >= ts("2026-11-20T12:00:00Z") && at <= ts("2026-11-20T12:00:01Z"),
        "{at}"
    );
    advance_to(&clock, ts("2026-11-20T17:00:01Z")).await;
    let kinds: Vec<(usize, bool)> = backend
        .sent()
        .iter()
        .filter_map(|s| match s {
            Sent::Step { step, repeat, .. } => Some((*step, *repeat)),
            Sent::Resolved { .. } => None,
        })
        .collect();
    // Step 0 at the deadline, step 1 an hour later, a repeat 4 hours after that.
    assert_eq!(kinds, [(0, false), (1, false), (1, true)]);
    // The scheduler slept until the due times rather than polling the backend
    // every second for 5 hours (one tick per second would be ~18,000).
    let ticks = backend.model.lock().expect("model").ticks;
    assert!(ticks < 18_000 / 2, "{ticks} evaluations");
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_acknowledgement_holds_repeats_and_rearms_when_it_expires() {
    let backend = MemBackend::new(ts("2026-11-20T10:00:00Z"));
    let (clock, wake, stop) = start(&backend);
    advance_to(&clock, ts("2026-11-20T10:00:01Z")).await;
    {
        let mut m = backend.model.lock().expect("model");
        let a = m.alarm.clone().expect("raised");
        m.alarm = Some(engine::acknowledge(
            &a,
            clock.now(),
            Some(Duration::from_secs(3 * 3600)),
        ));
    }
    wake.notify_one();
    // Step 1 (due 11:00) is held while acknowledged.
    advance_to(&clock, ts("2026-11-20T12:59:00Z")).await;
    assert_eq!(backend.sent().len(), 1, "{:?}", backend.sent());
    // At 13:00:01 the acknowledgement has ended: step 1 goes out at once.
    advance_to(&clock, ts("2026-11-20T13:00:02Z")).await;
    let sent = backend.sent();
    assert!(
        matches!(
            sent.get(1),
            Some(Sent::Step {
                step: 1,
                repeat: false,
                ..
            })
        ),
        "{sent:?}"
    );
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_final_report_resolves_the_alarm_and_a_preliminary_one_does_not() {
    let backend = MemBackend::new(ts("2026-11-20T10:00:00Z"));
    let (clock, wake, stop) = start(&backend);
    advance_to(&clock, ts("2026-11-20T10:00:01Z")).await;
    // A preliminary report changes nothing the alarm looks at.
    wake.notify_one();
    advance_to(&clock, ts("2026-11-20T11:00:01Z")).await;
    assert_eq!(backend.sent().len(), 2, "{:?}", backend.sent());
    // A final report: resolved on the next evaluation, and nothing after it.
    backend.model.lock().expect("model").formally_reported = true;
    wake.notify_one();
    advance_to(&clock, ts("2026-11-20T11:00:02Z")).await;
    assert!(
        matches!(backend.sent().last(), Some(Sent::Resolved { .. })),
        "{:?}",
        backend.sent()
    );
    let count = backend.sent().len();
    advance_to(&clock, ts("2026-11-21T11:00:00Z")).await;
    assert_eq!(backend.sent().len(), count);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_scheduler_that_hangs_or_keeps_failing_is_reported() {
    let backend = MemBackend::new(ts("2026-11-21T10:00:00Z"));
    let (clock, wake, stop, liveness) = start_watched(&backend);
    // Nothing is due for a day: the scheduler sleeps in steps of POLL and
    // so keeps coming round.
    advance_to(&clock, ts("2026-11-20T10:10:00Z")).await;
    assert_eq!(liveness.problem(clock.now()), None);
    assert_eq!(liveness.last_evaluation(), Some(ts(BASE)));
    assert!(liveness.last_run() >= ts("2026-11-20T10:09:59Z"));

    // Evaluations that fail are retried every 5 s; after a minute of it the
    // scheduler is reported, though it still comes round.
    backend.model.lock().expect("model").fault = Some(Fault::Fail);
    wake.notify_one();
    advance_to(&clock, ts("2026-11-20T10:10:30Z")).await;
    assert_eq!(liveness.problem(clock.now()), None);
    advance_to(&clock, ts("2026-11-20T10:11:05Z")).await;
    let problem = liveness.problem(clock.now()).expect("failing");
    assert!(
        problem.starts_with("watchdog evaluations have failed for "),
        "{problem}"
    );
    // One success clears it.
    backend.model.lock().expect("model").fault = None;
    advance_to(&clock, ts("2026-11-20T10:11:11Z")).await;
    assert_eq!(liveness.problem(clock.now()), None);
    assert!(liveness.last_evaluation() >= Some(ts("2026-11-20T10:11:05Z")));

    // An evaluation that never returns stops the loop: reported once it
    // has not come round for STUCK_AFTER.
    backend.model.lock().expect("model").fault = Some(Fault::Hang);
    wake.notify_one();
    advance_to(&clock, ts("2026-11-20T10:11:50Z")).await;
    assert_eq!(liveness.problem(clock.now()), None);
    advance_to(&clock, ts("2026-11-20T10:12:20Z")).await;
    let problem = liveness.problem(clock.now()).expect("stuck");
    assert!(
        problem.starts_with("the watchdog scheduler has not run for "),
        "{problem}"
    );
    stop.cancel();
}
