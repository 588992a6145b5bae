//! The alarm state machine, as pure functions of an alarm, its escalation
//! plan, whether its cause remains, and the time.
//!
//! States: `open` → `acknowledged` (by whom, why, until when) → `resolved`.
//! An open alarm fires its escalation steps in order, each `after` its due
//! time, then repeats the last step every `repeat_every` until it is
//! acknowledged or resolved. An acknowledgement with an end re-arms the alarm
//! when it expires and the cause remains: the current step is sent again and
//! repeats resume. When the cause clears, the alarm resolves and nothing more
//! is sent (except a resolve event to channels that track incidents).
//!
//! Catching up after downtime: each step that fell due while the process was
//! down is fired once, in order; repeats missed meanwhile are not replayed,
//! one repeat is sent and the next counts from now.

use std::time::Duration;

use jiff::Timestamp;

use super::rules::Step;

/// An alarm's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Open,
    Acknowledged,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acknowledged => "acknowledged",
            State::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "open" => State::Open,
            "acknowledged" => State::Acknowledged,
            "resolved" => State::Resolved,
            _ => return None,
        })
    }
}

/// What the engine needs of an alarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alarm {
    pub state: State,
    /// The time its steps count from (the missed deadline).
    pub due_at: Timestamp,
    /// The index of the next escalation step to fire.
    pub next_step: usize,
    /// When the next step or repeat is due; `None`: nothing more to send.
    pub next_action_at: Option<Timestamp>,
    /// When an acknowledgement ends; `None` with `Acknowledged`: until resolved.
    pub acknowledged_until: Option<Timestamp>,
}

/// How an alarm escalates.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    pub steps: &'a [Step],
    pub repeat_every: Option<Duration>,
}

/// One thing to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send to these channels: step `step`, or a repeat of it.
    Notify {
        step: usize,
        channels: Vec<String>,
        repeat: bool,
    },
    /// The acknowledgement expired and the cause remains.
    Rearm,
    /// The cause cleared.
    Resolve,
}

/// The result of [`advance`]: the actions and the alarm's new state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub actions: Vec<Action>,
    pub alarm: Alarm,
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    let d = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// A new alarm for a deadline missed at `due_at`.
pub fn raise(due_at: Timestamp, plan: Plan<'_>) -> Alarm {
    Alarm {
        state: State::Open,
        due_at,
        next_step: 0,
        next_action_at: plan.steps.first().map(|s| add(due_at, s.after)),
        acknowledged_until: None,
    }
}

/// Brings an alarm up to `now`.
pub fn advance(alarm: &Alarm, plan: Plan<'_>, cause_remains: bool, now: Timestamp) -> Outcome {
    let mut a = alarm.clone();
    let mut actions = Vec::new();
    if a.state == State::Resolved {
        return Outcome { actions, alarm: a };
    }
    if !cause_remains {
        a.state = State::Resolved;
        a.next_action_at = None;
        actions.push(Action::Resolve);
        return Outcome { actions, alarm: a };
    }
    if a.state == State::Acknowledged {
        match a.acknowledged_until {
            Some(until) if until <= now => {
                a.state = State::Open;
                a.acknowledged_until = None;
                actions.push(Action::Rearm);
                // Tell again at once: the step in progress, or a repeat of
                // the last one.
                if !plan.steps.is_empty() {
                    a.next_action_at = Some(now);
                    if a.next_step >= plan.steps.len() {
                        a.next_step = plan.steps.len();
                    }
                }
            }
            _ => return Outcome { actions, alarm: a },
        }
    }
    // Open: fire what is due. Bounded: each pass either fires a step (at most
    // steps.len() of them) or sends one repeat and moves past `now`.
    for _ in 0..=plan.steps.len() + 1 {
        let Some(at) = a.next_action_at.filter(|t| *t <= now) else {
            break;
        };
        if let Some(step) = plan.steps.get(a.next_step) {
            actions.push(Action::Notify {
                step: a.next_step,
                channels: step.notify.clone(),
                repeat: false,
            });
            a.next_step += 1;
            a.next_action_at = match plan.steps.get(a.next_step) {
                // A rearmed alarm resends its current step at once; the
                // following steps keep their schedule, or follow now.
                Some(next) => Some(add(a.due_at, next.after).max(at)),
                None => plan.repeat_every.map(|r| add(now, r)),
            };
        } else {
            match (plan.steps.last(), plan.repeat_every) {
                (Some(last), Some(r)) => {
                    actions.push(Action::Notify {
                        step: plan.steps.len() - 1,
                        channels: last.notify.clone(),
                        repeat: true,
                    });
                    a.next_action_at = Some(add(now, r));
                }
                (Some(last), None) if actions.contains(&Action::Rearm) => {
                    actions.push(Action::Notify {
                        step: plan.steps.len() - 1,
                        channels: last.notify.clone(),
                        repeat: true,
                    });
                    a.next_action_at = None;
                }
                _ => a.next_action_at = None,
            }
            break;
        }
    }
    Outcome { actions, alarm: a }
}

/// An acknowledgement by a person, for `for_` or until resolved.
pub fn acknowledge(alarm: &Alarm, now: Timestamp, for_: Option<Duration>) -> Alarm {
    let mut a = alarm.clone();
    if a.state != State::Resolved {
        a.state = State::Acknowledged;
        a.acknowledged_until = for_.map(|d| add(now, d));
    }
    a
}

/// When the engine next needs to look at this alarm.
pub fn next_wake(alarm: &Alarm) -> Option<Timestamp> {
    match alarm.state {
        State::Open => alarm.next_action_at,
        State::Acknowledged => alarm.acknowledged_until,
        State::Resolved => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn h(n: u64) -> Duration {
        Duration::from_secs(n * 3600)
    }

    fn steps() -> Vec<Step> {
        vec![
            Step {
                after: Duration::ZERO,
                notify: vec!["team".into()],
            },
            Step {
                after: h(12),
                notify: vec!["pager".into()],
            },
        ]
    }

    fn notified(o: &Outcome) -> Vec<(usize, bool)> {
        o.actions
            .iter()
            .filter_map(|a| match a {
                Action::Notify { step, repeat, .. } => Some((*step, *repeat)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn steps_fire_in_order_then_repeat() {
        let s = steps();
        let plan = Plan {
            steps: &s,
            repeat_every: Some(h(4)),
        };
        let due = ts("2026-11-20T10:00:00Z");
        let a = raise(due, plan);
        assert_eq!(a.next_action_at, Some(due));
        let o = advance(&a, plan, true, due);
        assert_eq!(notified(&o), [(0, false)]);
        assert_eq!(o.alarm.next_action_at, Some(ts("2026-11-20T22:00:00Z")));
        // Nothing more before the next step.
        let early = advance(&o.alarm, plan, true, ts("2026-11-20T21:59:59Z"));
        assert!(early.actions.is_empty());
        let o = advance(&o.alarm, plan, true, ts("2026-11-20T22:00:00Z"));
        assert_eq!(notified(&o), [(1, false)]);
        assert_eq!(o.alarm.next_action_at, Some(ts("2026-11-21T02:00:00Z")));
        let o = advance(&o.alarm, plan, true, ts("2026-11-21T02:00:00Z"));
        assert_eq!(notified(&o), [(1, true)]);
        assert_eq!(o.alarm.next_action_at, Some(ts("2026-11-21T06:00:00Z")));
    }

    #[test]
    fn steps_missed_while_down_fire_once_each_and_repeats_do_not_pile_up() {
        let s = steps();
        let plan = Plan {
            steps: &s,
            repeat_every: Some(h(4)),
        };
        let a = raise(ts("2026-11-20T10:00:00Z"), plan);
        // Down for two days.
        let later = ts("2026-11-22T10:00:00Z");
        let o = advance(&a, plan, true, later);
        assert_eq!(notified(&o), [(0, false), (1, false)]);
        assert_eq!(o.alarm.next_action_at, Some(ts("2026-11-22T14:00:00Z")));
        // And again at the same time: nothing twice.
        assert!(advance(&o.alarm, plan, true, later).actions.is_empty());
    }

    #[test]
    fn acknowledgement_stops_repeats_and_rearms_when_it_expires() {
        let s = steps();
        let plan = Plan {
            steps: &s,
            repeat_every: Some(h(4)),
        };
        let due = ts("2026-11-20T10:00:00Z");
        let o = advance(&raise(due, plan), plan, true, due);
        let acked = acknowledge(&o.alarm, ts("2026-11-20T11:00:00Z"), Some(h(24)));
        assert_eq!(next_wake(&acked), Some(ts("2026-11-21T11:00:00Z")));
        // Step 1 would be due at 22:00, but the acknowledgement holds it.
        assert!(
            advance(&acked, plan, true, ts("2026-11-21T10:59:00Z"))
                .actions
                .is_empty()
        );
        let o = advance(&acked, plan, true, ts("2026-11-21T11:00:00Z"));
        assert_eq!(o.actions[0], Action::Rearm);
        assert_eq!(notified(&o), [(1, false)]);
        assert_eq!(o.alarm.state, State::Open);
        // Acknowledged until resolved: no wake, ever.
        let forever = acknowledge(&o.alarm, ts("2026-11-21T12:00:00Z"), None);
        assert_eq!(next_wake(&forever), None);
        assert!(
            advance(&forever, plan, true, ts("2027-01-01T00:00:00Z"))
                .actions
                .is_empty()
        );
    }

    #[test]
    fn a_cleared_cause_resolves_and_sends_no_further_step() {
        let s = steps();
        let plan = Plan {
            steps: &s,
            repeat_every: Some(h(4)),
        };
        let due = ts("2026-11-20T10:00:00Z");
        let o = advance(&raise(due, plan), plan, true, due);
        let o = advance(&o.alarm, plan, false, ts("2026-11-20T23:00:00Z"));
        assert_eq!(o.actions, [Action::Resolve]);
        assert_eq!(o.alarm.state, State::Resolved);
        assert!(
            advance(&o.alarm, plan, true, ts("2026-11-21T23:00:00Z"))
                .actions
                .is_empty()
        );
    }

    #[test]
    fn an_alarm_without_steps_is_raised_but_sends_nothing() {
        let plan = Plan {
            steps: &[],
            repeat_every: Some(h(1)),
        };
        let a = raise(ts("2026-11-20T10:00:00Z"), plan);
        assert_eq!(a.next_action_at, None);
        assert!(
            advance(&a, plan, true, ts("2026-11-21T10:00:00Z"))
                .actions
                .is_empty()
        );
    }
}
