//! `alarms`, `ack`, `audit`, `rules explain`, `rules coverage` and
//! `notify test`.

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
    /// For every modality and source among the studies received lately,
    /// which rule takes them and the deadline it sets: a dry run of the
    /// configured rules against the catalog, to see what a rule leaves out.
    Coverage(CoverageArgs),
}

#[derive(Debug, Args)]
pub struct CoverageArgs {
    /// Studies with an instance received in this many days (default 90).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,
    #[arg(long)]
    pub json: bool,
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
    match command {
        RulesCommand::Explain { uid } => explain(config, &uid),
        RulesCommand::Coverage(args) => coverage(config, &args),
    }
}

/// `rules coverage`: each (modality, source) pair of the window, judged by
/// `watchdog::rules::coverage` against the configured rules, beside what the
/// watchdog recorded on those studies.
fn coverage(config: &Config, args: &CoverageArgs) -> anyhow::Result<ExitCode> {
    use crate::json::{Coverage, CoverageRule, RecordedRule};
    let now = Timestamp::now();
    let since = now
        .checked_sub(jiff::SignedDuration::from_hours(i64::from(args.days) * 24))
        .unwrap_or(Timestamp::MIN);
    let store = open_store(config)?;
    let rules = &config.watchdog.rules;
    let mut pairs: Vec<Coverage> = Vec::new();
    // Rows come sorted by modality and source: one pair per run of rows.
    for row in store.coverage(since)? {
        if let Some(pair) = pairs
            .last_mut()
            .filter(|p| p.modality == row.modality && p.source == row.source)
        {
            pair.studies += row.studies;
            pair.recorded.push(RecordedRule::from(&row));
            continue;
        }
        let c = crate::watchdog::rules::coverage(rules, row.modality.as_deref(), &row.source);
        pairs.push(Coverage {
            modality: row.modality.clone(),
            source: row.source.clone(),
            studies: row.studies,
            only_if: c
                .only_if
                .iter()
                .map(|(rule, conditions)| CoverageRule::new(Some(rule), conditions.clone()))
                .collect(),
            applies: CoverageRule::new(c.otherwise, Vec::new()),
            recorded: vec![RecordedRule::from(&row)],
        });
    }
    if args.json {
        return print_json(&pairs);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Rules coverage: studies with an instance received since {} (the last {} day(s)),\n\
         by modality and source, under the {} rule(s) of {}.\n",
        since.strftime("%Y-%m-%d %H:%M UTC"),
        args.days,
        rules.len(),
        config
            .source_path
            .as_ref()
            .map_or("the configuration".to_owned(), |p| p.display().to_string()),
    )?;
    writeln!(
        out,
        "How to read it: each pair is judged as the rules judge a study of that one modality \
         from that\n\
         source, first match wins. A rule that also asks for a calling AE, patient class, \
         priority or DICOM\n\
         attribute takes only the studies that have it: it is listed \"only if ...\", before \
         the rule that\n\
         takes the rest (\"otherwise\"). A study of several modalities counts under each \
         modality, but the\n\
         watchdog judges it with all of them. \"recorded\" is the rule the watchdog stored on \
         those studies,\n\
         with counts: it differs where studies have those other facts or several modalities, \
         or were\n\
         judged under an earlier configuration.\n"
    )?;
    if pairs.is_empty() {
        writeln!(out, "No studies in that window.")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<10} {:<20} {:>7}  RULE AND DEADLINE",
        "MODALITY", "SOURCE", "STUDIES"
    )?;
    let indent = " ".repeat(10 + 1 + 20 + 1 + 7 + 2);
    for pair in &pairs {
        let mut lines: Vec<String> = pair
            .only_if
            .iter()
            .map(|r| {
                format!(
                    "only if {}: rule \"{}\", {}",
                    r.conditions.join(", "),
                    r.rule.as_deref().unwrap_or("-"),
                    r.deadline
                )
            })
            .collect();
        let applies = match &pair.applies.rule {
            Some(name) => format!("rule \"{name}\", {}", pair.applies.deadline),
            None => pair.applies.deadline.clone(),
        };
        lines.push(if lines.is_empty() {
            applies
        } else {
            format!("otherwise {applies}")
        });
        let recorded: Vec<String> = pair
            .recorded
            .iter()
            .map(|r| {
                let what = match (&r.rule, r.evaluated) {
                    (_, false) => "not evaluated yet".to_owned(),
                    (Some(name), _) => format!("\"{name}\""),
                    (None, true) => "no rule (28-day ceiling)".to_owned(),
                };
                format!("{what} {}", r.studies)
            })
            .collect();
        lines.push(format!("recorded: {}", recorded.join(", ")));
        for (i, line) in lines.iter().enumerate() {
            if i == 0 {
                writeln!(
                    out,
                    "{:<10} {:<20} {:>7}  {line}",
                    pair.modality.as_deref().unwrap_or("-"),
                    pair.source,
                    pair.studies
                )?;
            } else {
                writeln!(out, "{indent}{line}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(config: &Config, uid: &str) -> anyhow::Result<ExitCode> {
    let clock = crate::app::watchdog_clock(config)?;
    let store = open_store(config)?;
    let Some(detail) = store.study(uid)? else {
        eprintln!("studywatch: no study {uid} in the catalog");
        return Ok(ExitCode::from(EXIT_PROBLEM));
    };
    let facts = store.rule_facts(uid)?;
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
