//! The command line: argument definitions and every command other than
//! `serve`. Commands work on the catalog directly (SQLite WAL lets them run
//! beside the server, and they work when it is down).
//!
//! Exit codes (DESIGN.md): 0 success; 1 the command ran and found a
//! problem; 2 usage error (clap); 78 configuration error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::catalog::{Store, StudyFilter, StudyState};
use crate::config::Config;

mod forward;
mod reports;
mod user;
mod watchdog;

pub const EXIT_PROBLEM: u8 = 1;
pub const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "studywatch",
    version,
    about = "DICOM image-store gateway that watches every study until it is reported"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        default_value = "conf/studywatch.toml",
        env = "STUDYWATCH_CONFIG"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: every listener, until SIGTERM or SIGINT.
    Serve,
    /// Validate the configuration and print the effective settings.
    CheckConfig,
    /// List studies.
    Studies(StudiesArgs),
    /// Show one study: series, instances, failures, audit trail.
    Study {
        uid: String,
        #[arg(long)]
        json: bool,
    },
    /// Re-hash stored files against the catalog (fixity check).
    Verify {
        /// Only this study.
        #[arg(long)]
        study: Option<String>,
    },
    /// Record, import or confirm reports by hand.
    Report {
        #[command(subcommand)]
        command: reports::ReportCommand,
    },
    /// List reports: the latest, or those that link to no study.
    Reports(reports::ReportsArgs),
    /// List alarms: all, or only live ones (`--open`).
    Alarms(watchdog::AlarmsArgs),
    /// Acknowledge an alarm: repeats stop until it ends (`--for`) or the
    /// alarm resolves.
    Ack(watchdog::AckArgs),
    /// Print the audit log.
    Audit(watchdog::AuditArgs),
    /// Watchdog rules.
    Rules {
        #[command(subcommand)]
        command: watchdog::RulesCommand,
    },
    /// Notification channels.
    Notify {
        #[command(subcommand)]
        command: watchdog::NotifyCommand,
    },
    /// The forward queue: per-destination status, and retrying failures.
    Forward {
        #[command(subcommand)]
        command: forward::ForwardCommand,
    },
    /// Users who sign in to the dashboard, and API tokens.
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
    /// Send a C-ECHO to AE@HOST:PORT.
    Echo {
        peer: crate::scu::Peer,
        /// Calling AE title (default: ours from the configuration).
        #[arg(long)]
        aet: Option<String>,
    },
    /// Send DICOM files with C-STORE, each in its own transfer syntax.
    Send {
        #[arg(long)]
        to: crate::scu::Peer,
        /// Calling AE title (default: ours from the configuration).
        #[arg(long)]
        aet: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct StudiesArgs {
    #[arg(long, group = "state")]
    pub unreported: bool,
    #[arg(long, group = "state")]
    pub overdue: bool,
    #[arg(long, group = "state")]
    pub reported: bool,
    /// At most this many studies.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// Loads the configuration, printing every problem and returning the
/// config exit code on failure.
pub fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("studywatch: configuration {} is not valid:", path.display());
        for p in &e.problems {
            if p.key.is_empty() {
                eprintln!("  {}", p.message);
            } else {
                eprintln!("  {}: {}", p.key, p.message);
            }
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Runs a command other than `serve`.
pub fn run(cli: Cli) -> ExitCode {
    let config = match load_config(&cli.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Serve => unreachable!("serve is handled by main"),
        Command::CheckConfig => check_config(&config),
        Command::Studies(args) => studies(&config, &args),
        Command::Study { uid, json } => study(&config, &uid, json),
        Command::Verify { study } => verify(&config, study.as_deref()),
        Command::Report { command } => reports::run(&config, command),
        Command::Reports(args) => reports::list(&config, &args),
        Command::Alarms(args) => watchdog::alarms(&config, &args),
        Command::Ack(args) => watchdog::ack(&config, args),
        Command::Audit(args) => watchdog::audit(&config, &args),
        Command::Rules { command } => watchdog::rules(&config, command),
        Command::Notify { command } => watchdog::notify(&config, command),
        Command::Forward { command } => forward::run(&config, command),
        Command::User { command } => user::run(&config, command),
        Command::Echo { peer, aet } => echo(&config, &peer, aet),
        Command::Send { to, aet, files } => send(&config, &to, aet, &files),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("studywatch: {e:#}");
            ExitCode::from(EXIT_PROBLEM)
        }
    }
}

/// Prints a JSON shape (`--json`) to stdout, pretty, with a final newline.
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

fn check_config(config: &Config) -> anyhow::Result<ExitCode> {
    print!("{}", config.effective_toml());
    for w in config.warnings() {
        eprintln!("warning: {}: {}", w.key, w.message);
    }
    // The files the config names, read as `serve` will read them.
    let mut problems = Vec::new();
    match crate::app::watchdog_clock(config) {
        Ok(clock) => {
            if let Some(w) = clock.data_warning(jiff::Timestamp::now()) {
                eprintln!("warning: watchdog.calendar: {w}");
            }
            explain_sample(config, &clock);
        }
        Err(e) => problems.push(format!("watchdog.calendar: {e:#}")),
    }
    if let Err(errors) = crate::notify::Channel::all_from_config(&config.notify) {
        problems.extend(errors.iter().map(|e| e.to_string()));
    }
    if let Err(e) = crate::http::auth::Auth::load(&config.http) {
        problems.push(e);
    }
    if problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("studywatch: configuration files named by the config cannot be used:");
    for p in &problems {
        eprintln!("  {p}");
    }
    Ok(ExitCode::from(EXIT_CONFIG))
}

/// For the most recent studies of an existing catalog, which rule each
/// matches and the deadline it gets: a rule that excludes a modality by
/// mistake shows here before it hides a study.
fn explain_sample(config: &Config, clock: &crate::watchdog::calendar::Clock) {
    if !config.catalog.path.exists() {
        return;
    }
    let Ok(store) = open_store(config) else {
        return;
    };
    let Ok(rows) = store.recent_studies(5) else {
        return;
    };
    if rows.is_empty() {
        return;
    }
    println!(
        "\n# Rules as they apply to the {} most recent studies:",
        rows.len()
    );
    for uid in rows {
        let Ok(facts) = store.rule_facts(&uid) else {
            continue;
        };
        let facts = crate::watchdog::tick::facts(&facts, clock);
        let d = crate::watchdog::rules::decide(&config.watchdog.rules, &facts, clock);
        let what = match (&d.rule, d.no_report_needed) {
            (Some(r), true) => format!("rule \"{r}\": no report needed"),
            (r, _) => format!(
                "{}, due {}{}",
                r.as_ref()
                    .map_or("no rule".to_owned(), |r| format!("rule \"{r}\"")),
                d.deadline.map_or("-".to_owned(), |t| t.to_string()),
                if d.ceiling { " (28-day ceiling)" } else { "" }
            ),
        };
        println!("#   {uid} [{}]: {what}", facts.modalities.join(","));
    }
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    let mut store = Store::open(&config.catalog.path, config.storage.fsync).with_context(|| {
        format!(
            "cannot open the catalog at {}",
            config.catalog.path.display()
        )
    })?;
    store.set_link_policy(crate::app::link_policy(config));
    Ok(store)
}

fn studies(config: &Config, args: &StudiesArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(config)?;
    let state = if args.unreported {
        Some(StudyState::Unreported)
    } else if args.overdue {
        Some(StudyState::Overdue)
    } else if args.reported {
        Some(StudyState::Reported)
    } else {
        None
    };
    let rows = store.studies(&StudyFilter {
        state,
        limit: args.limit,
    })?;
    let now = jiff::Timestamp::now();
    let shapes: Vec<crate::json::Study> = rows
        .iter()
        .map(|r| crate::json::Study::from_row(r, now))
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        return print_json(&shapes);
    }
    writeln!(
        out,
        "{:<64}  {:<16}  {:<10}  {:>6}  {:<11}  FIRST RECEIVED",
        "STUDY UID", "ACCESSION", "MODALITIES", "IMAGES", "STATE"
    )?;
    for s in &shapes {
        writeln!(
            out,
            "{:<64}  {:<16}  {:<10}  {:>6}  {:<11}  {}",
            s.study_uid,
            s.accession_number.as_deref().unwrap_or("-"),
            s.modalities.join(","),
            s.instance_count,
            s.state,
            s.first_received_at,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn study(config: &Config, uid: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(config)?;
    let Some(detail) = store.study(uid)? else {
        eprintln!("studywatch: no study {uid} in the catalog");
        return Ok(ExitCode::from(EXIT_PROBLEM));
    };
    let alarms = store.alarms(&crate::catalog::AlarmFilter {
        study_uid: Some(uid.to_owned()),
        ..Default::default()
    })?;
    let shape = crate::json::StudyDetail::from_detail(&detail, &alarms, jiff::Timestamp::now());
    let mut out = std::io::stdout().lock();
    if json {
        return print_json(&shape);
    }
    let s = &shape.study;
    writeln!(out, "study        {}", s.study_uid)?;
    let issued_by = |issuer: &Option<String>| {
        issuer
            .as_deref()
            .map(|i| format!(" (issued by {i})"))
            .unwrap_or_default()
    };
    writeln!(
        out,
        "accession    {}{}",
        s.accession_number.as_deref().unwrap_or("-"),
        issued_by(&s.issuer_of_accession)
    )?;
    writeln!(
        out,
        "patient id   {}{}",
        s.patient_id.as_deref().unwrap_or("-"),
        issued_by(&s.issuer_of_patient_id)
    )?;
    writeln!(out, "modalities   {}", s.modalities.join(","))?;
    writeln!(
        out,
        "source       {} (calling AE {})",
        s.source, s.calling_ae
    )?;
    writeln!(
        out,
        "received     {} .. {}",
        s.first_received_at, s.last_received_at
    )?;
    writeln!(out, "state        {}", s.state)?;
    if let Some(at) = &s.reported_at {
        writeln!(out, "reported at  {at}")?;
    }
    if let Some(status) = &s.report_status {
        writeln!(out, "last report  {status}")?;
    }
    writeln!(out, "series       {}", s.series_count)?;
    writeln!(out, "instances    {}", s.instance_count)?;
    let t = &shape.transfer;
    writeln!(
        out,
        "stable       {}",
        t.stable_at
            .as_deref()
            .map_or("no: instances may still arrive".to_owned(), |at| format!(
                "since {at}"
            ))
    )?;
    if let Some(state) = &t.completeness {
        writeln!(
            out,
            "complete     {state}{}",
            t.completeness_detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )?;
    }
    for f in &shape.forwarding {
        let committed = if f.commits {
            format!(
                ", {} committed in PACS{}",
                f.committed,
                f.last_committed_at
                    .as_deref()
                    .map(|at| format!(" (last {at})"))
                    .unwrap_or_default()
            )
        } else {
            String::new()
        };
        writeln!(
            out,
            "forwarded    to {}: {} sent, {} waiting, {} failed{committed}",
            f.destination, f.sent, f.pending, f.failed
        )?;
    }
    for i in &shape.instances {
        writeln!(
            out,
            "  {}  {}  {} bytes  sha256 {}",
            i.sop_instance_uid, i.transfer_syntax, i.size_bytes, i.sha256
        )?;
        // received → verified (catalogued) → forwarded → committed in PACS
        for d in &i.delivery {
            let step = match (d.state.as_str(), d.commit_state.as_deref()) {
                ("sent", Some("committed")) => format!(
                    "committed in PACS at {}",
                    d.committed_at.as_deref().unwrap_or("-")
                ),
                ("sent", Some("failed")) => format!(
                    "forwarded, commitment refused ({})",
                    d.commit_failure.as_deref().unwrap_or("-")
                ),
                ("sent", Some(_)) => "forwarded, awaiting commitment".to_owned(),
                ("sent", None) => {
                    format!("forwarded at {}", d.sent_at.as_deref().unwrap_or("-"))
                }
                (state, _) => format!(
                    "{state}{}",
                    d.last_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            };
            writeln!(out, "    {}: {step}", d.destination)?;
        }
        if let Some(at) = &i.pruned_at {
            writeln!(out, "    pruned locally at {at}")?;
        }
    }
    for f in &shape.ingest_failures {
        writeln!(out, "  refused {}  {:#06X}  {}", f.at, f.status, f.reason)?;
    }
    writeln!(out, "reports      {}", shape.reports.len())?;
    for r in &shape.reports {
        let link = r.links.iter().find(|l| l.study_uid == s.study_uid);
        writeln!(
            out,
            "  report {}  {}{}  {}  from {}  linked by {}{}{}",
            r.id,
            r.status,
            if r.withdrawn { " (withdrawn)" } else { "" },
            r.reported_at.as_deref().unwrap_or("-"),
            r.origin,
            link.map_or("-", |l| l.rule.as_str()),
            match link {
                Some(l) if !l.counts => " (not counted: unconfirmed or rejected)",
                _ => "",
            },
            if r.current { "" } else { " (superseded)" },
        )?;
        if let Some(alert) = &r.alert_category {
            writeln!(out, "    alert: {alert}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(config: &Config, study: Option<&str>) -> anyhow::Result<ExitCode> {
    let store = open_store(config)?;
    let instances = store.instances(study)?;
    let (mut ok, mut bad, mut pruned) = (0usize, 0usize, 0usize);
    for inst in &instances {
        let path = config.storage.path.join(&inst.rel_path);
        if let Some(at) = inst.pruned_at {
            // Pruned on purpose once every destination had it: not a fault.
            pruned += 1;
            println!(
                "PRUNED   {}  (local copy removed {at})",
                inst.sop_instance_uid
            );
            continue;
        }
        match crate::ingest::hash_stored_file(&path) {
            Ok(hash) if hash == inst.sha256 => ok += 1,
            Ok(hash) => {
                bad += 1;
                println!(
                    "CHANGED  {}  {}  (catalog {}, file {})",
                    inst.sop_instance_uid,
                    path.display(),
                    inst.sha256,
                    hash
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bad += 1;
                println!("MISSING  {}  {}", inst.sop_instance_uid, path.display());
            }
            Err(e) => {
                bad += 1;
                println!(
                    "UNREADABLE  {}  {}: {e}",
                    inst.sop_instance_uid,
                    path.display()
                );
            }
        }
    }
    println!(
        "{ok} intact, {pruned} pruned after delivery, {bad} missing or changed, of {} instances",
        instances.len()
    );
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEM)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Multi-threaded: dicom-ul's P-DATA writer flushes on drop with
    // `block_in_place`, which a current-thread runtime does not allow.
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

fn echo(config: &Config, peer: &crate::scu::Peer, aet: Option<String>) -> anyhow::Result<ExitCode> {
    let calling = aet.unwrap_or_else(|| config.dicom.ae_title.clone());
    let status = runtime()?.block_on(crate::scu::echo(&calling, peer))?;
    println!(
        "C-ECHO {}@{}: {:#06X} {}",
        peer.ae_title,
        peer.address,
        status,
        crate::scp::status_name(status)
    );
    Ok(if status == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEM)
    })
}

fn send(
    config: &Config,
    peer: &crate::scu::Peer,
    aet: Option<String>,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let calling = aet.unwrap_or_else(|| config.dicom.ae_title.clone());
    let results = runtime()?.block_on(crate::scu::send(&calling, peer, files))?;
    let mut failed = 0;
    for r in &results {
        match r.status {
            Some(s) => {
                if s != 0 && (s & 0xF000) != 0xB000 {
                    failed += 1;
                }
                let comment = r
                    .comment
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                println!(
                    "{}: {:#06X} {}{}",
                    r.path.display(),
                    s,
                    crate::scp::status_name(s),
                    comment
                );
            }
            None => {
                failed += 1;
                println!(
                    "{}: not sent: {}",
                    r.path.display(),
                    r.comment.as_deref().unwrap_or("unknown error")
                );
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEM)
    })
}
