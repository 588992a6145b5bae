//! `report link`, `report import`, `report confirm` and `reports`: reports
//! entered or decided by a person, and the list of reports that link to
//! nothing.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use jiff::Timestamp;

use super::{EXIT_PROBLEM, open_store, print_json};
use crate::catalog::{Link, ReportOrigin};
use crate::config::Config;
use crate::reports::manual::manual_report;
pub use crate::reports::manual::parse_time;

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Record a report entered by hand and link it to its study.
    Link(LinkArgs),
    /// Back-fill reports from a CSV file exported from a RIS.
    Import {
        /// CSV with a header row: accession (or study_uid), status, time, author.
        file: std::path::PathBuf,
        /// Who is importing (default: the OS user).
        #[arg(long)]
        by: Option<String>,
    },
    /// The referrer's side acknowledges a report's fail-safe alert (critical,
    /// urgent, significant unexpected, suspected cancer).
    Acknowledge {
        report: i64,
        #[arg(long)]
        by: Option<String>,
        /// What was done, e.g. "patient recalled, seen in ED".
        #[arg(long)]
        note: String,
    },
    /// Confirm (or reject) a probable link, made by patient ID and date.
    Confirm {
        /// The report's id (see `reports --unmatched`).
        report: i64,
        #[arg(long)]
        study_uid: String,
        /// Reject the link instead: it will never count.
        #[arg(long)]
        reject: bool,
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("key").required(true).args(["accession", "study_uid"])))]
pub struct LinkArgs {
    /// The accession number the report is for (links every study carrying it).
    #[arg(long)]
    pub accession: Option<String>,
    /// The Study Instance UID the report is for.
    #[arg(long)]
    pub study_uid: Option<String>,
    /// final | preliminary | corrected | cancelled.
    #[arg(long, value_parser = ["final", "preliminary", "corrected", "cancelled"])]
    pub status: String,
    /// The reporting clinician.
    #[arg(long)]
    pub author: Option<String>,
    /// When the report was made: RFC 3339 (`2026-11-20T14:30:00Z`), or a local
    /// time in the site's zone (`2026-11-20 14:30`). Default: now.
    #[arg(long)]
    pub time: Option<String>,
    /// Who is recording it (default: the OS user).
    #[arg(long)]
    pub by: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportsArgs {
    /// Only reports that count for no study (linked to nothing, or only by
    /// probable links nobody has confirmed).
    #[arg(long)]
    pub unmatched: bool,
    /// At most this many reports (default 100).
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// The person acting: `--by`, else the OS user.
pub fn actor(by: Option<String>) -> String {
    by.filter(|b| !b.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

pub fn run(config: &Config, command: ReportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReportCommand::Link(args) => link(config, args),
        ReportCommand::Import { file, by } => import(config, &file, actor(by)),
        ReportCommand::Acknowledge { report, by, note } => {
            let by = actor(by);
            let mut store = open_store(config)?;
            if store.acknowledge_alert(report, &by, note.trim(), Timestamp::now())? {
                println!("fail-safe alert of report {report} acknowledged by {by}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("studywatch: report {report} has no unacknowledged fail-safe alert");
                Ok(ExitCode::from(EXIT_PROBLEM))
            }
        }
        ReportCommand::Confirm {
            report,
            study_uid,
            reject,
            by,
        } => confirm(config, report, &study_uid, !reject, actor(by)),
    }
}

fn link(config: &Config, args: LinkArgs) -> anyhow::Result<ExitCode> {
    let tz = &config.site.timezone;
    let report = match manual_report(
        ReportOrigin::Manual,
        args.accession.as_deref(),
        args.study_uid.as_deref(),
        &args.status,
        args.time.as_deref(),
        args.author.as_deref(),
        &actor(args.by),
        tz,
        Timestamp::now(),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("studywatch: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut store = open_store(config)?;
    let (id, links) = store.record_report(&report)?;
    describe(id, &links);
    Ok(ExitCode::SUCCESS)
}

fn describe(id: i64, links: &[Link]) {
    if links.is_empty() {
        println!(
            "report {id} recorded; no study matches yet: it is listed by \
             `studywatch reports --unmatched` and links when the images arrive"
        );
    }
    for l in links {
        println!(
            "report {id} linked to {} by {}{}",
            l.study_uid,
            l.rule.as_str(),
            if l.probable {
                " (probable: confirm with `studywatch report confirm`)"
            } else {
                ""
            }
        );
    }
}

fn import(config: &Config, file: &Path, by: String) -> anyhow::Result<ExitCode> {
    let tz = &config.site.timezone;
    let mut reader = match csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(file)
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("studywatch: cannot read {}: {e}", file.display());
            return Ok(ExitCode::from(EXIT_PROBLEM));
        }
    };
    let headers: Vec<String> = reader
        .headers()?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let column = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
    let accession = column(&["accession", "accession_number"]);
    let study_uid = column(&["study_uid", "study_instance_uid"]);
    let status = column(&["status", "result_status"]);
    let time = column(&["time", "reported_at", "report_time"]);
    let author = column(&["author", "reporter"]);
    if (accession.is_none() && study_uid.is_none()) || status.is_none() {
        eprintln!(
            "studywatch: {}: the header row must name an accession (or study_uid) column and a \
             status column; found: {}",
            file.display(),
            headers.join(", ")
        );
        return Ok(ExitCode::from(EXIT_PROBLEM));
    }
    let mut good = Vec::new();
    let mut bad = 0usize;
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                bad += 1;
                let line = e.position().map_or(0, |p| p.line());
                eprintln!("line {line}: {e}");
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let get = |i: Option<usize>| i.and_then(|i| record.get(i));
        match manual_report(
            ReportOrigin::Import,
            get(accession),
            get(study_uid),
            get(status).unwrap_or(""),
            get(time),
            get(author),
            &by,
            tz,
            Timestamp::now(),
        ) {
            Ok(r) => good.push(r),
            Err(e) => {
                bad += 1;
                eprintln!("line {line}: {e}");
            }
        }
    }
    let mut store = open_store(config)?;
    let results = store.record_reports(&good)?;
    let linked = results
        .iter()
        .filter(|(_, links)| !links.is_empty())
        .count();
    println!(
        "imported {} reports ({linked} linked to a study, {} waiting for theirs); {bad} rows refused",
        results.len(),
        results.len() - linked
    );
    Ok(if bad > 0 {
        ExitCode::from(EXIT_PROBLEM)
    } else {
        ExitCode::SUCCESS
    })
}

fn confirm(
    config: &Config,
    report: i64,
    study_uid: &str,
    accept: bool,
    by: String,
) -> anyhow::Result<ExitCode> {
    let mut store = open_store(config)?;
    if store.decide_link(report, study_uid, accept, &by, Timestamp::now())? {
        println!(
            "probable link of report {report} to {study_uid} {}",
            if accept { "confirmed" } else { "rejected" }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("studywatch: report {report} has no probable link to {study_uid}");
        Ok(ExitCode::from(EXIT_PROBLEM))
    }
}

pub fn list(config: &Config, args: &ReportsArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(config)?;
    let limit = Some(args.limit.unwrap_or(100));
    let rows = if args.unmatched {
        store.unmatched_reports(limit)?
    } else {
        store.recent_reports(limit)?
    };
    let shapes: Vec<crate::json::Report> = rows.iter().map(crate::json::Report::from).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        return print_json(&shapes);
    }
    writeln!(
        out,
        "{:>6}  {:<20}  {:<8}  {:<11}  {:<16}  {:<10}  LINKS",
        "ID", "RECEIVED", "ORIGIN", "STATUS", "ACCESSION", "ALERT"
    )?;
    for r in &shapes {
        let links = if r.links.is_empty() {
            "none".to_owned()
        } else {
            r.links
                .iter()
                .map(|l| {
                    format!(
                        "{} by {}{}",
                        l.study_uid,
                        l.rule,
                        if l.counts { "" } else { " (unconfirmed)" }
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let status = if r.withdrawn {
            "withdrawn"
        } else {
            r.status.as_str()
        };
        writeln!(
            out,
            "{:>6}  {:<20}  {:<8}  {:<11}  {:<16}  {:<10}  {}",
            r.id,
            r.received_at.get(..19).unwrap_or(&r.received_at),
            r.origin,
            status,
            r.accession_number.as_deref().unwrap_or("-"),
            r.alert_category.as_deref().unwrap_or("-"),
            links
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
