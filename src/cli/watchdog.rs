//! `alarms`, `ack`, `audit`, `rules explain` and `notify test`.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use jiff::Timestamp;

use super::reports::{actor, parse_time};
use super::{EXIT_PROBLEM, open_store, print_json};
use crate::catalog::{AlarmFilter, NewNotification};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct AlarmsArgs {
    /// Only live alarms (open or acknowledged).
    #[arg(long)]
    pub open: bool,
    /// At most this many (default 200).
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AckArgs {
    pub alarm: i64,
    /// Who acknowledges (default: the OS user).
    #[arg(long)]
    pub by: Option<String>,
    /// Why: what is being done about it.
    #[arg(long)]
    pub reason: String,
    /// For how long (e.g. "4h"); when it ends and the cause remains, the
    /// alarm re-arms. Default: until resolved.
    #[arg(long = "for")]
    pub for_: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[arg(long)]
    pub study: Option<String>,
    /// RFC 3339, or a local date/time in the site's zone.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Which rule a study falls under, and the deadline it sets.
    Explain { uid: String },
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Queue a test notification to a channel; the server delivers it.
    Test { channel: String },
}

pub fn alarms(config: &Config, args: &AlarmsArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(config)?;
    let rows = store.alarms(&AlarmFilter {
        live: args.open,
        limit: Some(args.limit.unwrap_or(200)),
        ..AlarmFilter::default()
    })?;
    let shapes: Vec<crate::json::Alarm> = rows.iter().map(crate::json::Alarm::from).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        return print_json(&shapes);
    }
    writeln!(
        out,
        "{:>6}  {:<24}  {:<12}  {:<20}  {:<16}  DETAIL",
        "ID", "KIND", "STATE", "RAISED", "ACCESSION"
    )?;
    for a in &shapes {
        writeln!(
            out,
            "{:>6}  {:<24}  {:<12}  {:<20}  {:<16}  {}",
            a.id,
            a.kind,
            a.state,
            a.raised_at.get(..19).unwrap_or(&a.raised_at),
            a.accession_number.as_deref().unwrap_or("-"),
            a.detail
        )?;
    }
    let failed = store.outbox(Some("failed"), 1000)?;
    if !failed.is_empty() {
        writeln!(
            out,
            "\n{} notification(s) could not be delivered (notify_failed); see `studywatch audit`",
            failed.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn ack(config: &Config, args: AckArgs) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now();
    let until = match crate::watchdog::ack_until(now, args.for_.as_deref()) {
        Ok(until) => until,
        Err(e) => {
            eprintln!("studywatch: --for: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if args.reason.trim().is_empty() {
        eprintln!("studywatch: --reason must say why");
        return Ok(ExitCode::from(2));
    }
    let by = actor(args.by);
    let mut store = open_store(config)?;
    match store.acknowledge_alarm(args.alarm, &by, args.reason.trim(), until, now)? {
        Some(a) => {
            println!(
                "alarm {} ({}) acknowledged by {by} {}",
                a.id,
                a.kind,
                until.map_or("until resolved".to_owned(), |u| format!("until {u}"))
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("studywatch: no open or acknowledged alarm {}", args.alarm);
            Ok(ExitCode::from(EXIT_PROBLEM))
        }
    }
}

pub fn audit(config: &Config, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let since = match args.since.as_deref() {
        None => None,
        Some(t) => match parse_time(t, &config.site.timezone) {
            Ok(ts) => Some(ts),
            Err(e) => {
                eprintln!("studywatch: --since: {e}");
                return Ok(ExitCode::from(2));
            }
        },
    };
    let store = open_store(config)?;
    let rows = store.audit(args.study.as_deref(), since)?;
    let shapes: Vec<crate::json::AuditEntry> =
        rows.iter().map(crate::json::AuditEntry::from).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        return print_json(&shapes);
    }
    for a in &shapes {
        writeln!(
            out,
            "{}  {:<10}  {:<22}  {}  {}",
            a.at,
            a.actor,
            a.action,
            a.study_uid.as_deref().unwrap_or("-"),
            a.detail
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rules(config: &Config, command: RulesCommand) -> anyhow::Result<ExitCode> {
    let RulesCommand::Explain { uid } = command;
    let clock = crate::app::watchdog_clock(config)?;
    let store = open_store(config)?;
    let Some(detail) = store.study(&uid)? else {
        eprintln!("studywatch: no study {uid} in the catalog");
        return Ok(ExitCode::from(EXIT_PROBLEM));
    };
    let facts = store.rule_facts(&uid)?;
    let facts = crate::watchdog::tick::facts(&facts, &clock);
    println!("study        {uid}");
    println!("modalities   {}", facts.modalities.join(","));
    println!(
        "source       {} (calling AE {})",
        facts.source, facts.calling_ae
    );
    println!(
        "order        patient class {}, priority {}",
        facts.patient_class.as_deref().unwrap_or("-"),
        facts.priority.as_deref().unwrap_or("-")
    );
    for (k, v) in &facts.attributes {
        println!("attribute    {k} = {v}");
    }
    let mut matched = false;
    for rule in &config.watchdog.rules {
        let hit = rule.matcher.matches(&facts);
        println!(
            "rule         {:<30} {}",
            format!("\"{}\"", rule.name),
            if hit && !matched {
                "MATCHES (first match wins)"
            } else if hit {
                "matches, but an earlier rule won"
            } else {
                "no match"
            }
        );
        matched |= hit;
    }
    let d = crate::watchdog::rules::decide(&config.watchdog.rules, &facts, &clock);
    match (&d.rule, d.no_report_needed) {
        (Some(r), true) => println!("decision     rule \"{r}\": no report needed"),
        (r, _) => println!(
            "decision     {}: deadline {}{}",
            r.as_ref()
                .map_or("no rule matched".to_owned(), |r| format!("rule \"{r}\"")),
            d.deadline.map_or("-".to_owned(), |t| t.to_string()),
            if d.ceiling {
                " (the 28-day ceiling)"
            } else {
                ""
            }
        ),
    }
    if detail.study.deadline != d.deadline && !d.no_report_needed {
        println!(
            "stored       deadline {} (the server recomputes it when the study, its rule or its reports change)",
            detail
                .study
                .deadline
                .map_or("not computed yet".to_owned(), |t| t.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn notify(config: &Config, command: NotifyCommand) -> anyhow::Result<ExitCode> {
    let NotifyCommand::Test { channel } = command;
    if config.notify.channel(&channel).is_none() {
        eprintln!("studywatch: no [[notify.channels]] entry named `{channel}`");
        return Ok(ExitCode::from(EXIT_PROBLEM));
    }
    let now = Timestamp::now();
    let n = crate::notify::Notification {
        id: 0,
        channel: channel.clone(),
        event: crate::notify::Event::Test,
        severity: crate::notify::Severity::Info,
        alarm_id: None,
        alarm_kind: None,
        title: "Test notification from studywatch".into(),
        fields: vec![("Sent by".into(), actor(None))],
        dashboard_link: config.notify.dashboard_url.clone(),
        dedup_key: format!("studywatch-test-{}", now.as_millisecond()),
        created_at: now,
    };
    let mut store = open_store(config)?;
    let id = store.queue_notification(
        &NewNotification {
            alarm_id: None,
            channel: channel.clone(),
            event: "test".into(),
            step: None,
            payload: serde_json::to_string(&n)?,
        },
        now,
    )?;
    println!(
        "test notification {id} queued for `{channel}`; the running server delivers it \
         (see `studywatch audit --since {now}`)"
    );
    Ok(ExitCode::SUCCESS)
}
