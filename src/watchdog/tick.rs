//! One evaluation of the watchdog against the catalog.
//!
//! In order, in one transaction: compute the rule and deadline of every
//! study marked stale; raise `overdue_report` for unreported studies past
//! their deadline, `failsafe_unacknowledged` for alert reports past their
//! acknowledgement window, `unmatched_report` for reports that link to
//! nothing past the threshold, `feed_silent` when the HL7 feed has been
//! quiet for too much working time, and the alarms of the system itself
//! (`integrity`, `storage_low`, `incomplete_transfer`, `forward_stalled`,
//! `calendar_expiring`, `clock_skew`); then advance every alarm that has
//! something due (a step, a repeat, the end of an acknowledgement, a cause
//! that cleared), queueing its notifications in the outbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

use super::Backend;
use super::calendar::{CALENDAR_HORIZON_DAYS, Clock};
use super::engine::{self, Action, Plan};
use super::rules::{self, Rule, Step, StudyFacts};
use crate::catalog::orders;
use crate::catalog::{
    AlarmRow, AlarmUpdate, Catalog, DeadlineUpdate, NewAlarm, NewNotification, Store, StudyForRules,
};
use crate::config::{Config, Failsafe, Identifier};
use crate::notify::{
    Event, Identifiers, Notification, Severity, alarm_dedup_key, identifier_fields,
};

/// At most this many rows of each kind per evaluation; the rest follow at once.
const BATCH: usize = 2000;
/// How often an unmatched report, and a silent feed, are repeated.
const SYSTEM_REPEAT: Duration = Duration::from_secs(24 * 3600);
/// How recent a sender's clock reading must be to keep `clock_skew` raised:
/// a sender that has sent nothing for a day is no longer evidence.
pub const CLOCK_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Everything an evaluation needs from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub rules: Vec<Rule>,
    pub clock: Clock,
    pub failsafe: Failsafe,
    pub unmatched_report_after: Duration,
    pub feed_silent_after: Option<Duration>,
    /// An order the RIS reported complete with no study this long after
    /// raises `order_without_images`; `None`: off.
    pub order_without_images_after: Option<Duration>,
    pub alarm_notify: Vec<String>,
    pub include: Vec<Identifier>,
    pub dashboard_url: Option<String>,
    /// When the process started: a feed is not silent before it could speak.
    pub started_at: Timestamp,
    /// Free space of the storage file system, when known.
    pub storage_free: Option<FreeSpace>,
    /// Below this much free space, `storage_low` is raised (twice the floor
    /// at which stores are refused, so people hear before senders do).
    pub storage_low_below: u64,
    /// Channels that take the daily digest, and its local time.
    pub digest_channels: Vec<String>,
    pub digest_at: jiff::civil::Time,
    /// With forward destinations configured: how long an instance may wait
    /// for one before `forward_stalled` is raised for it.
    pub forward_alarm_after: Option<Duration>,
    /// The bank-holiday calendar file the clock was loaded from; `None`
    /// (`calendar = ""`) when the site chose to have none, and then
    /// `calendar_expiring` is never raised.
    pub calendar_file: Option<std::path::PathBuf>,
    /// A sender whose latest clock reading of the last [`CLOCK_WINDOW`] is
    /// ahead of ours by more than this raises `clock_skew`; `None`: off.
    pub clock_skew_after: Option<Duration>,
}

/// How much space the storage file system has free.
#[derive(Clone)]
pub struct FreeSpace(pub Arc<dyn Fn() -> Option<u64> + Send + Sync>);

impl std::fmt::Debug for FreeSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FreeSpace")
    }
}

impl Settings {
    pub fn from_config(config: &Config, clock: Clock, started_at: Timestamp) -> Settings {
        Settings {
            rules: config.watchdog.rules.clone(),
            clock,
            failsafe: config.watchdog.failsafe.clone(),
            unmatched_report_after: config.watchdog.unmatched_report_after,
            feed_silent_after: config.watchdog.feed_silent_after,
            order_without_images_after: config.watchdog.order_without_images_after,
            alarm_notify: config.watchdog.alarm_notify.clone(),
            include: config.notify.include.clone(),
            dashboard_url: config.notify.dashboard_url.clone(),
            started_at,
            storage_free: None,
            storage_low_below: config.storage.min_free_bytes.saturating_mul(2),
            digest_channels: config
                .notify
                .channels
                .iter()
                .filter(|c| c.digest)
                .map(|c| c.name.clone())
                .collect(),
            digest_at: config.notify.digest_at,
            forward_alarm_after: (!config.forward.destinations.is_empty())
                .then_some(config.forward.alarm_after),
            calendar_file: config.watchdog.calendar.clone(),
            clock_skew_after: config.watchdog.clock_skew_after,
        }
    }

    /// The escalation of an alarm: its rule's, or for alarms no rule raises
    /// (and overdue studies that no rule matched), one step to
    /// `alarm_notify` repeated daily.
    fn plan(&self, kind: &str, rule: Option<&str>) -> (Vec<Step>, Option<Duration>) {
        let system = || {
            let steps = if self.alarm_notify.is_empty() {
                vec![]
            } else {
                vec![Step {
                    after: Duration::ZERO,
                    notify: self.alarm_notify.clone(),
                }]
            };
            (steps, Some(SYSTEM_REPEAT))
        };
        match kind {
            "overdue_report" => match rule.and_then(|n| self.rules.iter().find(|r| r.name == n)) {
                Some(r) if !r.escalate.is_empty() => (r.escalate.clone(), r.repeat_every),
                _ => system(),
            },
            "failsafe_unacknowledged" => {
                let steps = if self.failsafe.notify.is_empty() {
                    vec![]
                } else {
                    vec![Step {
                        after: Duration::ZERO,
                        notify: self.failsafe.notify.clone(),
                    }]
                };
                (steps, Some(Duration::from_secs(3600)))
            }
            _ => system(),
        }
    }
}

/// The watchdog's view of the catalog.
pub struct CatalogBackend {
    catalog: Catalog,
    settings: Arc<Settings>,
    data_version: AtomicI64,
}

impl CatalogBackend {
    pub fn new(catalog: Catalog, settings: Settings) -> CatalogBackend {
        CatalogBackend {
            catalog,
            settings: Arc::new(settings),
            data_version: AtomicI64::new(-1),
        }
    }
}

impl Backend for CatalogBackend {
    async fn tick(&self, now: Timestamp) -> anyhow::Result<Option<Timestamp>> {
        let settings = Arc::clone(&self.settings);
        let next = self
            .catalog
            .call(move |store| store.atomically(|store| evaluate(store, &settings, now)))
            .await?;
        Ok(next)
    }

    async fn changed_elsewhere(&self) -> bool {
        let Ok(v) = self.catalog.call(|store| store.data_version()).await else {
            return false;
        };
        self.data_version.swap(v, Ordering::Relaxed) != v
    }
}

/// One evaluation, inside a transaction the caller owns. Returns when the
/// next one is due.
pub fn evaluate(
    store: &mut Store,
    s: &Settings,
    now: Timestamp,
) -> Result<Option<Timestamp>, crate::catalog::Error> {
    let mut more = false;

    // 1. Deadlines of studies that are new or changed.
    let stale = store.stale_studies(BATCH)?;
    more |= stale.len() == BATCH;
    let updates: Vec<DeadlineUpdate> = stale
        .iter()
        .map(|st| {
            let d = rules::decide(&s.rules, &facts(st, &s.clock), &s.clock);
            DeadlineUpdate {
                study_uid: st.study_uid.clone(),
                rule: d.rule,
                no_report_needed: d.no_report_needed,
                deadline: d.deadline,
            }
        })
        .collect();
    if !updates.is_empty() {
        store.set_deadlines(&updates)?;
    }

    // 2. New alarms.
    let overdue = store.overdue_unalarmed(now, BATCH)?;
    more |= overdue.len() == BATCH;
    for (uid, deadline, rule) in overdue {
        let detail = match &rule {
            Some(r) => format!("no formal report by its deadline {deadline} (rule {r})"),
            None => format!("no formal report by {deadline} (the 28-day ceiling; no rule matched)"),
        };
        raise(
            store,
            s,
            NewAlarm {
                kind: "overdue_report".into(),
                subject: uid.clone(),
                study_uid: Some(uid),
                report_id: None,
                rule,
                due_at: deadline,
                detail,
                next_action_at: None,
            },
            now,
        )?;
    }
    let shortest = [
        s.failsafe.critical,
        s.failsafe.urgent,
        s.failsafe.significant_unexpected,
        s.failsafe.suspected_cancer,
    ]
    .into_iter()
    .min()
    .unwrap_or_default();
    for (report_id, category, received_at, study) in
        store.failsafe_candidates(sub(now, shortest), BATCH)?
    {
        let Some(window) = s.failsafe.window(&category) else {
            continue;
        };
        let due = add(received_at, window);
        if due > now {
            continue;
        }
        raise(
            store,
            s,
            NewAlarm {
                kind: "failsafe_unacknowledged".into(),
                subject: format!("report:{report_id}"),
                study_uid: study,
                report_id: Some(report_id),
                rule: None,
                due_at: due,
                detail: format!(
                    "report {report_id} carries a {category} alert not acknowledged within {}",
                    crate::config::format_duration(window)
                ),
                next_action_at: None,
            },
            now,
        )?;
    }
    for (report_id, received_at, accession) in
        store.unmatched_unalarmed(sub(now, s.unmatched_report_after), BATCH)?
    {
        let due = add(received_at, s.unmatched_report_after);
        raise(
            store,
            s,
            NewAlarm {
                kind: "unmatched_report".into(),
                subject: format!("report:{report_id}"),
                study_uid: None,
                report_id: Some(report_id),
                rule: None,
                due_at: due,
                detail: format!(
                    "report {report_id} (accession {}) links to no study",
                    accession.as_deref().unwrap_or("-")
                ),
                next_action_at: None,
            },
            now,
        )?;
    }
    let (orders_more, order_due) = orders_without_images(store, s, now)?;
    more |= orders_more;

    let feed_silent = match s.feed_silent_after {
        Some(limit) => {
            let since = store
                .last_hl7_message_at()?
                .unwrap_or(s.started_at)
                .max(s.started_at);
            let quiet = s.clock.working_time_between(since, now);
            if quiet >= limit {
                raise(
                    store,
                    s,
                    NewAlarm {
                        kind: "feed_silent".into(),
                        subject: "hl7".into(),
                        study_uid: None,
                        report_id: None,
                        rule: None,
                        due_at: now,
                        detail: format!(
                            "no HL7 message since {since}: {} of working time",
                            crate::config::format_duration(Duration::from_secs(quiet.as_secs()))
                        ),
                        next_action_at: None,
                    },
                    now,
                )?;
            }
            quiet >= limit
        }
        None => false,
    };

    for (id, study, sop, at) in store.conflicts_unalarmed(BATCH)? {
        raise(
            store,
            s,
            system_alarm(
                "integrity",
                format!("conflict:{id}"),
                study,
                at,
                format!(
                    "different content received under stored SOP Instance {sop}; the new copy is in quarantine"
                ),
            ),
            now,
        )?;
    }
    for (ae, count, latest, reason) in store.rejections_unalarmed()? {
        raise(
            store,
            s,
            system_alarm(
                "integrity",
                format!("rejected:{ae}"),
                None,
                latest,
                format!("{count} instance(s) from calling AE {ae} refused; latest: {reason}"),
            ),
            now,
        )?;
    }
    let storage_low = match &s.storage_free {
        Some(free) => match (free.0)() {
            Some(bytes) if bytes < s.storage_low_below => {
                raise(
                    store,
                    s,
                    system_alarm(
                        "storage_low",
                        "storage".into(),
                        None,
                        now,
                        format!(
                            "{} MiB free on the storage file system; stores are refused below {} MiB",
                            bytes / (1024 * 1024),
                            s.storage_low_below / 2 / (1024 * 1024)
                        ),
                    ),
                    now,
                )?;
                true
            }
            _ => false,
        },
        None => false,
    };
    let calendar_expiring = calendar_expiring(store, s, now)?;
    let skewed = clock_skew(store, s, now)?;
    for (study, detail) in store.incomplete_unalarmed(BATCH)? {
        raise(
            store,
            s,
            system_alarm(
                "incomplete_transfer",
                study.clone(),
                Some(study),
                now,
                format!("the sender holds more of this study than arrived: {detail}"),
            ),
            now,
        )?;
    }
    // A system alarm whose cause has cleared is looked at in this pass, so
    // it resolves now rather than at its next escalation step.
    if !feed_silent {
        store.recheck_cleared("feed_silent", &[])?;
    }
    if !storage_low {
        store.recheck_cleared("storage_low", &[])?;
    }
    let (stalled, forward_due) = match s.forward_alarm_after {
        Some(limit) => forward_stalled(store, s, limit, now)?,
        None => (Vec::new(), None),
    };
    let next_digest = digest(store, s, now)?;

    // 3. Advance what is due.
    let due = store.alarms_to_advance(now, BATCH)?;
    more |= due.len() == BATCH;
    for alarm in due {
        let remains = match alarm.kind.as_str() {
            "feed_silent" => feed_silent,
            "storage_low" => storage_low,
            "calendar_expiring" => calendar_expiring,
            "clock_skew" => skewed.contains(&alarm.subject),
            "forward_stalled" => stalled.contains(&alarm.subject),
            _ => store.alarm_cause_remains(&alarm, now)?,
        };
        let (steps, repeat) = s.plan(&alarm.kind, alarm.rule.as_deref());
        let plan = Plan {
            steps: &steps,
            repeat_every: repeat,
        };
        let state = engine::State::parse(&alarm.state).unwrap_or(engine::State::Open);
        let current = engine::Alarm {
            state,
            due_at: alarm.due_at,
            next_step: alarm.next_step,
            next_action_at: alarm.next_action_at,
            acknowledged_until: alarm.acknowledged_until,
        };
        let outcome = engine::advance(&current, plan, remains, now);
        let mut update = AlarmUpdate {
            id: alarm.id,
            state: outcome.alarm.state.as_str().to_owned(),
            next_step: outcome.alarm.next_step,
            next_action_at: outcome.alarm.next_action_at,
            acknowledged_until: outcome.alarm.acknowledged_until,
            resolved_reason: None,
            audit: Vec::new(),
            notifications: Vec::new(),
        };
        for action in &outcome.actions {
            match action {
                Action::Notify {
                    step,
                    channels,
                    repeat,
                } => {
                    let event = if *repeat {
                        Event::Repeat
                    } else {
                        Event::Trigger
                    };
                    for channel in channels {
                        update.notifications.push(notification(
                            &alarm,
                            channel,
                            event,
                            Some(*step),
                            s,
                            now,
                        ));
                    }
                    update.audit.push((
                        if *repeat {
                            "alarm_repeated"
                        } else {
                            "alarm_escalated"
                        }
                        .to_owned(),
                        format!(
                            "alarm {} step {} to {}",
                            alarm.id,
                            step + 1,
                            if channels.is_empty() {
                                "no channel".to_owned()
                            } else {
                                channels.join(", ")
                            }
                        ),
                    ));
                }
                Action::Rearm => update.audit.push((
                    "alarm_rearmed".to_owned(),
                    format!(
                        "alarm {}: acknowledgement ended and the cause remains",
                        alarm.id
                    ),
                )),
                Action::Resolve => {
                    let reason = resolution(&alarm, store)?;
                    // Channels told of the alarm are told it is over.
                    let told: Vec<String> = steps
                        .iter()
                        .take(alarm.next_step)
                        .flat_map(|st| st.notify.clone())
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    for channel in &told {
                        update.notifications.push(notification(
                            &alarm,
                            channel,
                            Event::Resolve,
                            None,
                            s,
                            now,
                        ));
                    }
                    update.audit.push((
                        "alarm_resolved".to_owned(),
                        format!("alarm {}: {reason}", alarm.id),
                    ));
                    update.resolved_reason = Some(reason);
                }
            }
        }
        if !update.audit.is_empty() || update.state != alarm.state {
            store.update_alarm(&update, now)?;
        } else {
            store.alarm_checked(alarm.id)?;
        }
    }

    if more || store.has_stale_studies()? {
        return Ok(Some(now));
    }
    let next = store.next_watchdog_time(now)?;
    // Reports whose fail-safe window or unmatched threshold ends later.
    let (alerts, unmatched) = store.pending_report_times()?;
    let report_due = alerts
        .iter()
        .filter_map(|(category, received)| s.failsafe.window(category).map(|w| add(*received, w)))
        .chain(unmatched.map(|t| add(t, s.unmatched_report_after)))
        .filter(|t| *t > now)
        .min();
    // Free space and the feed are looked at again within a minute.
    let soon = add(now, Duration::from_secs(60));
    let periodic = (s.storage_free.is_some()
        || s.feed_silent_after.is_some()
        || s.forward_alarm_after.is_some()
        || s.calendar_file.is_some()
        || s.clock_skew_after.is_some())
    .then_some(soon);
    Ok([
        next,
        Some(next_digest),
        periodic,
        report_due,
        forward_due,
        order_due,
    ]
    .into_iter()
    .flatten()
    .min())
}

/// `order_without_images`: raises it for each order the RIS reported
/// complete `order_without_images_after` ago whose study has not arrived,
/// and marks for a recheck the live ones whose study arrived or whose order
/// was cancelled, so they resolve in this pass. Returns whether a batch was
/// full, and when the next completed order falls due.
fn orders_without_images(
    store: &mut Store,
    s: &Settings,
    now: Timestamp,
) -> Result<(bool, Option<Timestamp>), crate::catalog::Error> {
    let mut more = false;
    let mut next = None;
    if let Some(after) = s.order_without_images_after {
        let due = store.orders_awaiting_images(sub(now, after), BATCH)?;
        more = due.len() == BATCH;
        let mut checked = Vec::with_capacity(due.len());
        for o in due {
            if o.without_images && !o.alarmed {
                let order = match (&o.accession_number, &o.study_uid) {
                    (Some(accession), _) => format!("accession {accession}"),
                    (None, Some(uid)) => format!("study UID {uid}"),
                    (None, None) => "-".to_owned(),
                };
                let detail = format!(
                    "the RIS reported the examination of order {} ({order}) complete at {}; \
                     no images of it have arrived in {}",
                    o.id,
                    o.completed_at,
                    crate::config::format_duration(after)
                );
                let due_at = add(o.completed_at, after);
                let subject = orders::subject(o.id);
                let alarm = system_alarm(orders::KIND, subject, o.study_uid, due_at, detail);
                raise(store, s, alarm, now)?;
            }
            checked.push(o.id);
        }
        store.orders_images_checked(&checked)?;
        next = store
            .earliest_awaiting_images()?
            .map(|t| add(t, after))
            .filter(|t| *t > now);
    }
    let holding = store.orders_still_without_images()?;
    store.recheck_cleared(orders::KIND, &holding)?;
    Ok((more, next))
}

/// Raises an alarm (if no live one of its kind and subject exists), its
/// first step scheduled by the plan of its kind and rule.
fn raise(
    store: &mut Store,
    s: &Settings,
    mut alarm: NewAlarm,
    now: Timestamp,
) -> Result<(), crate::catalog::Error> {
    let (steps, repeat) = s.plan(&alarm.kind, alarm.rule.as_deref());
    let fresh = engine::raise(
        alarm.due_at,
        Plan {
            steps: &steps,
            repeat_every: repeat,
        },
    );
    alarm.next_action_at = fresh.next_action_at;
    store.raise_alarm(&alarm, now)?;
    Ok(())
}

/// An alarm that no rule governs (integrity, storage, ...), for [`raise`].
fn system_alarm(
    kind: &str,
    subject: String,
    study_uid: Option<String>,
    due: Timestamp,
    detail: String,
) -> NewAlarm {
    NewAlarm {
        kind: kind.into(),
        subject,
        study_uid,
        report_id: None,
        rule: None,
        due_at: due,
        detail,
        next_action_at: None,
    }
}

/// Raises `forward_stalled` for each destination whose oldest waiting
/// instance has waited `limit` or longer (it is unreachable, or refuses
/// with failure statuses), or which has instances given up on that wait
/// for `forward retry`. Returns the alarm subjects whose cause holds now,
/// and when the next destination's oldest instance will reach `limit`.
fn forward_stalled(
    store: &mut Store,
    s: &Settings,
    limit: Duration,
    now: Timestamp,
) -> Result<(Vec<String>, Option<Timestamp>), crate::catalog::Error> {
    let mut causes: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut due: Option<Timestamp> = None;
    for (destination, oldest, waiting) in store.forward_oldest_pending()? {
        let waited = now.duration_since(oldest);
        if waited.as_secs() < 0 || waited.unsigned_abs() < limit {
            let at = add(oldest, limit);
            due = Some(due.map_or(at, |d: Timestamp| d.min(at)));
        } else {
            causes.entry(destination.clone()).or_default().push(format!(
                "{waiting} instance(s) wait to be forwarded to {destination}, \
                 the oldest since {oldest} ({})",
                human(waited.unsigned_abs())
            ));
        }
    }
    for (destination, failed) in store.forward_failed_counts()? {
        causes.entry(destination.clone()).or_default().push(format!(
            "{failed} instance(s) could not be sent to {destination} and wait for \
             `studywatch forward retry` (see `studywatch forward status`)"
        ));
    }
    for open in store.commit_open()? {
        let destination = &open.destination;
        if let Some(sent) = open.oldest_sent {
            let waited = now.duration_since(sent);
            if waited.as_secs() < 0 || waited.unsigned_abs() < limit {
                let at = add(sent, limit);
                due = Some(due.map_or(at, |d: Timestamp| d.min(at)));
            } else {
                causes.entry(destination.clone()).or_default().push(format!(
                    "{} instance(s) sent to {destination} are not committed in it, \
                     the oldest sent {sent} ({})",
                    open.waiting,
                    human(waited.unsigned_abs())
                ));
            }
        }
        if open.failed > 0 {
            causes.entry(destination.clone()).or_default().push(format!(
                "{destination} refused to commit {} instance(s) (see `studywatch study UID`)",
                open.failed
            ));
        }
    }
    let mut stalled = Vec::with_capacity(causes.len());
    for (destination, detail) in causes {
        let subject = format!("forward:{destination}");
        raise(
            store,
            s,
            system_alarm(
                "forward_stalled",
                subject.clone(),
                None,
                now,
                detail.join("; "),
            ),
            now,
        )?;
        stalled.push(subject);
    }
    store.recheck_cleared("forward_stalled", &stalled)?;
    Ok((stalled, due))
}

/// Raises `calendar_expiring` while the bank-holiday calendar has no data for
/// some day of the next [`CALENDAR_HORIZON_DAYS`] days, and marks a live one
/// for its cause check when the calendar covers them again (the calendar is
/// read at start, so a restart with a completed file resolves it). Returns
/// whether the cause holds now.
fn calendar_expiring(
    store: &mut Store,
    s: &Settings,
    now: Timestamp,
) -> Result<bool, crate::catalog::Error> {
    const SUBJECT: &str = "calendar";
    let gap = s.calendar_file.as_ref().and_then(|file| {
        Some((
            file,
            s.clock.first_uncovered_date(now, CALENDAR_HORIZON_DAYS)?,
        ))
    });
    let Some((file, first)) = gap else {
        store.recheck_cleared("calendar_expiring", &[])?;
        return Ok(false);
    };
    let calendar = &s.clock.calendar;
    let covered = match (calendar.first_year(), calendar.last_year()) {
        (Some(a), Some(b)) => format!("it covers {a} to {b}"),
        _ => "it covers no year".to_owned(),
    };
    raise(
        store,
        s,
        system_alarm(
            "calendar_expiring",
            SUBJECT.into(),
            None,
            now,
            format!(
                "bank-holiday calendar \"{}\" ({}) has no data from {first} ({covered}), \
                 which is within the next {CALENDAR_HORIZON_DAYS} days: working-hours deadlines \
                 from then on would count bank holidays as working days; add {} to the file \
                 and restart the server",
                calendar.name(),
                file.display(),
                first.year()
            ),
        ),
        now,
    )?;
    store.recheck_cleared("calendar_expiring", &[SUBJECT.to_owned()])?;
    Ok(true)
}

/// Raises `clock_skew` (subject `clock:SENDER`) for each sender whose latest
/// clock reading of the last [`CLOCK_WINDOW`] is ahead of ours by more than
/// `clock_skew_after`, and marks for their cause check the live ones whose
/// sender is back in line (a later reading within the threshold) or silent.
/// Returns the subjects whose cause holds now.
fn clock_skew(
    store: &mut Store,
    s: &Settings,
    now: Timestamp,
) -> Result<Vec<String>, crate::catalog::Error> {
    let Some(limit) = s.clock_skew_after else {
        store.recheck_cleared("clock_skew", &[])?;
        return Ok(Vec::new());
    };
    let mut holding: Vec<String> = Vec::new();
    for row in store.clocks_ahead(sub(now, CLOCK_WINDOW), limit)? {
        let subject = format!("clock:{}", row.sender);
        if holding.contains(&subject) {
            continue;
        }
        let (who, what) = match row.via.as_str() {
            "hl7" => ("HL7 sender", "its message time (MSH-7)"),
            _ => ("DICOM calling AE", "its instance's creation time"),
        };
        let ahead = Duration::from_millis(row.ahead_ms.unsigned_abs());
        raise(
            store,
            s,
            system_alarm(
                "clock_skew",
                subject.clone(),
                None,
                row.received_at,
                format!(
                    "the clock of {who} {} is {} ahead of ours: {what} was {} when we \
                     received it at {} (more than clock_skew_after, {}); its times, and \
                     deadlines counted from study times it sets, are wrong by as much",
                    row.sender,
                    human(ahead),
                    row.sender_time,
                    row.received_at,
                    crate::config::format_duration(limit)
                ),
            ),
            now,
        )?;
        holding.push(subject);
    }
    store.recheck_cleared("clock_skew", &holding)?;
    Ok(holding)
}

/// Queues the daily digest when its time has come and it has not been sent
/// today; returns when the next one is due.
fn digest(
    store: &mut Store,
    s: &Settings,
    now: Timestamp,
) -> Result<Timestamp, crate::catalog::Error> {
    let local = now.to_zoned(s.clock.tz.clone());
    let at_on = |date: jiff::civil::Date| {
        s.clock
            .tz
            .to_ambiguous_zoned(date.to_datetime(s.digest_at))
            .compatible()
            .map(|z| z.timestamp())
            .unwrap_or(now)
    };
    let today = at_on(local.date());
    let tomorrow = local
        .date()
        .tomorrow()
        .map(at_on)
        .unwrap_or_else(|_| add(now, Duration::from_secs(86_400)));
    if s.digest_channels.is_empty() {
        return Ok(if now < today { today } else { tomorrow });
    }
    if now < today {
        return Ok(today);
    }
    if store.last_digest_at()?.is_some_and(|t| t >= today) {
        return Ok(tomorrow);
    }
    let (day, week, month, open) = store.backlog(now)?;
    let fields = vec![
        ("Open alarms".to_owned(), open.to_string()),
        ("Unreported > 24 h".to_owned(), day.to_string()),
        ("Unreported > 7 days".to_owned(), week.to_string()),
        ("Unreported > 28 days".to_owned(), month.to_string()),
    ];
    for channel in &s.digest_channels {
        let n = Notification {
            id: 0,
            channel: channel.clone(),
            event: Event::Digest,
            severity: if open > 0 {
                Severity::Warning
            } else {
                Severity::Info
            },
            alarm_id: None,
            alarm_kind: None,
            title: format!(
                "Daily digest: {open} open alarm(s), {day} studies unreported over 24 h"
            ),
            fields: fields.clone(),
            dashboard_link: s.dashboard_url.clone(),
            dedup_key: format!("studywatch-digest-{}", local.date()),
            created_at: now,
        };
        store.queue_notification(
            &NewNotification {
                alarm_id: None,
                channel: channel.clone(),
                event: "digest".into(),
                step: None,
                payload: serde_json::to_string(&n).unwrap_or_default(),
            },
            now,
        )?;
    }
    Ok(tomorrow)
}

/// What rules see of a study.
pub fn facts(st: &StudyForRules, clock: &Clock) -> StudyFacts {
    StudyFacts {
        modalities: st.modalities.clone(),
        source: st.source.clone(),
        calling_ae: st.calling_ae.clone(),
        patient_class: st.patient_class.clone(),
        priority: st.priority.clone(),
        attributes: st.attributes.iter().cloned().collect::<BTreeMap<_, _>>(),
        first_received_at: Some(st.first_received_at),
        study_time: study_time(
            st.study_date.as_deref(),
            st.study_time.as_deref(),
            &clock.tz,
        ),
    }
}

/// Why an alarm's cause cleared, for the audit log and the alarm row.
fn resolution(alarm: &AlarmRow, store: &Store) -> Result<String, crate::catalog::Error> {
    Ok(match alarm.kind.as_str() {
        "overdue_report" => match alarm
            .study_uid
            .as_deref()
            .map(|u| store.study_row(u))
            .transpose()?
        {
            Some(Some(st)) if st.reported_at.is_some() => format!(
                "formally reported at {}",
                st.reported_at.map(|t| t.to_string()).unwrap_or_default()
            ),
            Some(Some(st)) if st.no_report_needed => "its rule says no report is needed".to_owned(),
            _ => "its deadline moved (rule or study changed)".to_owned(),
        },
        "unmatched_report" => "the report now links to a study, or was replaced".to_owned(),
        "failsafe_unacknowledged" => "the report was withdrawn or replaced".to_owned(),
        "feed_silent" => "HL7 messages arrive again".to_owned(),
        "forward_stalled" => {
            "every instance for the destination was sent (and committed where it commits), \
             or waits less than `alarm_after`"
                .to_owned()
        }
        "incomplete_transfer" => "the study is complete now".to_owned(),
        orders::KIND => "its study arrived, or the order was cancelled".to_owned(),
        "clock_skew" => "a later message or instance from the sender is within \
             clock_skew_after, or none ahead of it has come for 24 h"
            .to_owned(),
        "calendar_expiring" => {
            format!("the bank-holiday calendar covers the next {CALENDAR_HORIZON_DAYS} days again")
        }
        _ => "the cause cleared".to_owned(),
    })
}

/// The content of one notification: only identifiers `include` allows.
fn notification(
    alarm: &AlarmRow,
    channel: &str,
    event: Event,
    step: Option<usize>,
    s: &Settings,
    now: Timestamp,
) -> NewNotification {
    let title = match (event, alarm.kind.as_str()) {
        (Event::Resolve, _) => format!("Resolved: {}", kind_title(&alarm.kind)),
        (Event::Repeat, _) => format!("Still open: {}", kind_title(&alarm.kind)),
        _ => kind_title(&alarm.kind).to_owned(),
    };
    let mut fields = identifier_fields(
        &s.include,
        &Identifiers {
            accession: alarm.accession_number.as_deref(),
            hospital_number: alarm.patient_id.as_deref(),
            study_uid: alarm.study_uid.as_deref(),
            patient_name: None,
        },
    );
    if let Some(rule) = &alarm.rule {
        fields.push(("Rule".into(), rule.clone()));
    }
    fields.push(("Due".into(), alarm.due_at.to_string()));
    let age = now.duration_since(alarm.due_at);
    if age.is_positive() {
        fields.push(("Overdue by".into(), human(age.unsigned_abs())));
    }
    fields.push(("Alarm".into(), format!("#{} ({})", alarm.id, alarm.kind)));
    let severity = match (event, alarm.kind.as_str()) {
        (Event::Resolve, _) => Severity::Info,
        (_, "failsafe_unacknowledged") => Severity::Critical,
        (_, "overdue_report") => Severity::Error,
        _ => Severity::Warning,
    };
    let n = Notification {
        id: 0,
        channel: channel.to_owned(),
        event,
        severity,
        alarm_id: Some(alarm.id),
        alarm_kind: Some(alarm.kind.clone()),
        title,
        fields,
        dashboard_link: s
            .dashboard_url
            .as_ref()
            .map(|u| format!("{}/alarms/{}", u.trim_end_matches('/'), alarm.id)),
        dedup_key: alarm_dedup_key(alarm.id),
        created_at: now,
    };
    NewNotification {
        alarm_id: Some(alarm.id),
        channel: channel.to_owned(),
        event: event_name(event).to_owned(),
        step,
        payload: serde_json::to_string(&n).unwrap_or_default(),
    }
}

fn event_name(e: Event) -> &'static str {
    match e {
        Event::Trigger => "trigger",
        Event::Repeat => "repeat",
        Event::Resolve => "resolve",
        Event::Digest => "digest",
        Event::Test => "test",
    }
}

fn kind_title(kind: &str) -> &'static str {
    match kind {
        "overdue_report" => "Study not reported by its deadline",
        "failsafe_unacknowledged" => "Fail-safe alert not acknowledged",
        "unmatched_report" => "Report linked to no study",
        "feed_silent" => "HL7 feed silent",
        "integrity" => "Integrity problem in received images",
        "storage_low" => "Storage running low",
        "forward_stalled" => "Instances not reaching a forward destination",
        "incomplete_transfer" => "Study incomplete: the sender holds more than arrived",
        orders::KIND => "Examination complete in the RIS, but no images arrived",
        "calendar_expiring" => "Bank-holiday calendar runs out within 90 days",
        "clock_skew" => "A sender's clock runs ahead of ours",
        _ => "Alarm",
    }
}

/// `26 h`, `3 d 4 h`, `45 min`.
pub fn human(d: Duration) -> String {
    let mins = d.as_secs() / 60;
    let (days, hours, minutes) = (mins / 1440, (mins / 60) % 24, mins % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} min"),
        (0, h) => format!("{h} h {minutes} min"),
        (d, h) => format!("{d} d {h} h"),
    }
}

/// DICOM Study Date + Study Time in the site's zone.
fn study_time(
    date: Option<&str>,
    time: Option<&str>,
    tz: &jiff::tz::TimeZone,
) -> Option<Timestamp> {
    let date = date?.trim();
    let time: String = time.unwrap_or("").trim().chars().take(6).collect();
    crate::ingest::sr::parse_dt(&format!("{date}{time}"), tz)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn sub(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{AlarmFilter, ClockReading, Hl7Content, NewHl7Message};
    use crate::watchdog::calendar::{Calendar, WorkingHours};

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn hours(n: i64) -> jiff::SignedDuration {
        jiff::SignedDuration::from_hours(n)
    }

    /// The defaults of an empty config, in London, with this calendar.
    fn settings(calendar: Calendar) -> Settings {
        let config = Config::from_toml_str("version = 1").expect("config");
        let clock = Clock {
            tz: jiff::tz::TimeZone::get("Europe/London").expect("tz"),
            hours: WorkingHours::default(),
            calendar,
        };
        Settings::from_config(&config, clock, ts("2026-11-01T00:00:00Z"))
    }

    fn calendar(first: i16, last: i16) -> Calendar {
        Calendar::parse(&format!(
            "name = \"Test\"\nsource = \"test\"\nfirst_year = {first}\nlast_year = {last}\n[holidays]\n"
        ))
        .expect("calendar")
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("catalog.sqlite3"), false).expect("open");
        (dir, store)
    }

    fn alarms(store: &Store, kind: &str) -> Vec<AlarmRow> {
        store
            .alarms(&AlarmFilter::default())
            .expect("alarms")
            .into_iter()
            .filter(|a| a.kind == kind)
            .collect()
    }

    fn evaluate_at(store: &mut Store, s: &Settings, now: Timestamp) {
        store
            .atomically(|st| evaluate(st, s, now))
            .expect("evaluate");
    }

    /// An HL7 message from RIS^HOSP received at `at`, its MSH-7 `ahead`.
    fn message(store: &mut Store, id: &str, at: Timestamp, ahead: jiff::SignedDuration) {
        let msg = NewHl7Message {
            received_at: at,
            peer: "127.0.0.1:5000".into(),
            sending_application: "RIS".into(),
            sending_facility: "HOSP".into(),
            control_id: id.into(),
            message_type: "ADT^A01".into(),
            version: "2.4".into(),
            raw: b"MSH|^~\\&|RIS|HOSP".to_vec(),
            raw_truncated: false,
            ack_code: "AA".into(),
            ack_reason: "stored".into(),
            clock: Some(ClockReading {
                via: "hl7",
                sender: "RIS^HOSP".into(),
                sender_time: at + ahead,
                received_at: at,
                threshold: Duration::from_secs(300),
            }),
        };
        store
            .record_hl7(&msg, &Hl7Content::Nothing)
            .expect("record");
    }

    #[test]
    fn clock_skew_holds_while_the_latest_reading_of_the_last_day_is_ahead() {
        let (_dir, mut store) = open();
        let mut s = settings(Calendar::empty());
        s.calendar_file = None;
        let at = ts("2026-11-23T10:00:00Z");

        message(&mut store, "1", at, hours(2));
        evaluate_at(&mut store, &s, at);
        let raised = alarms(&store, "clock_skew");
        assert_eq!(raised.len(), 1);
        assert_eq!(
            (raised[0].subject.as_str(), raised[0].state.as_str()),
            ("clock:RIS^HOSP", "open")
        );
        assert!(
            raised[0]
                .detail
                .contains("HL7 sender RIS^HOSP is 2 h 0 min ahead"),
            "{}",
            raised[0].detail
        );

        // Still ahead an hour later; no second alarm.
        evaluate_at(&mut store, &s, at + hours(1));
        assert_eq!(alarms(&store, "clock_skew").len(), 1);
        // Nothing ahead for a day: the sender is no longer evidence.
        evaluate_at(&mut store, &s, at + hours(25));
        let gone = alarms(&store, "clock_skew");
        assert_eq!(gone[0].state, "resolved");
        assert!(
            gone[0]
                .resolved_reason
                .as_deref()
                .is_some_and(|r| r.contains("within clock_skew_after")),
            "{:?}",
            gone[0].resolved_reason
        );

        // Ahead again, then a later message in line: raised, then resolved.
        message(
            &mut store,
            "2",
            at + hours(26),
            jiff::SignedDuration::from_mins(6),
        );
        evaluate_at(&mut store, &s, at + hours(26));
        let live: Vec<_> = alarms(&store, "clock_skew")
            .into_iter()
            .filter(|a| a.state == "open")
            .collect();
        assert_eq!(live.len(), 1);
        message(
            &mut store,
            "3",
            at + hours(27),
            jiff::SignedDuration::from_mins(-30),
        );
        evaluate_at(&mut store, &s, at + hours(27));
        assert!(
            alarms(&store, "clock_skew")
                .iter()
                .all(|a| a.state == "resolved")
        );

        // Turned off: a reading ahead raises nothing.
        s.clock_skew_after = None;
        message(&mut store, "4", at + hours(28), hours(3));
        evaluate_at(&mut store, &s, at + hours(28));
        assert!(
            alarms(&store, "clock_skew")
                .iter()
                .all(|a| a.state == "resolved")
        );
    }

    #[test]
    fn calendar_expiring_holds_until_the_calendar_covers_the_next_90_days() {
        let (_dir, mut store) = open();
        let at = ts("2026-11-23T10:00:00Z");
        let mut s = settings(calendar(2020, 2021));
        s.calendar_file = Some("conf/calendars/test.toml".into());
        evaluate_at(&mut store, &s, at);
        let raised = alarms(&store, "calendar_expiring");
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].subject, "calendar");
        for part in [
            "\"Test\"",
            "conf/calendars/test.toml",
            "no data from 2026-11-23",
            "it covers 2020 to 2021",
        ] {
            assert!(
                raised[0].detail.contains(part),
                "{part}: {}",
                raised[0].detail
            );
        }

        // Covering 2026 only: 90 days from 23 November reach into 2027.
        let mut short = settings(calendar(2020, 2026));
        short.calendar_file = s.calendar_file.clone();
        evaluate_at(&mut store, &short, at);
        let still = alarms(&store, "calendar_expiring");
        assert_eq!(
            (still.len(), still[0].state.as_str()),
            (1, "open"),
            "{still:?}"
        );

        // A restart with the year added: resolved.
        let mut fixed = settings(calendar(2020, 2027));
        fixed.calendar_file = s.calendar_file.clone();
        evaluate_at(&mut store, &fixed, at + hours(1));
        assert_eq!(alarms(&store, "calendar_expiring")[0].state, "resolved");

        // No calendar by choice (`calendar = ""`): never raised.
        let (_dir, mut other) = open();
        let mut none = settings(Calendar::empty());
        none.calendar_file = None;
        evaluate_at(&mut other, &none, at);
        assert!(alarms(&other, "calendar_expiring").is_empty());
    }
}
