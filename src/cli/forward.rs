//! `forward status` and `forward retry`: the forward queue, read and
//! nudged from the catalog file, beside a running server or without one.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use jiff::Timestamp;

use super::reports::actor;
use super::{EXIT_PROBLEM, open_store, print_json};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ForwardCommand {
    /// Per destination: instances waiting, the oldest of them, failures,
    /// the last error.
    Status(StatusArgs),
    /// Make failed instances, and those waiting for their next attempt,
    /// due now. The server picks them up within a second.
    Retry(RetryArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Only this destination (its `name`); default: every destination.
    #[arg(long)]
    pub destination: Option<String>,
    /// Who asks (default: the OS user), for the audit log.
    #[arg(long)]
    pub by: Option<String>,
}

pub fn run(config: &Config, command: ForwardCommand) -> anyhow::Result<ExitCode> {
    match command {
        ForwardCommand::Status(args) => status(config, &args),
        ForwardCommand::Retry(args) => retry(config, args),
    }
}

fn status(config: &Config, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(config)?;
    let now = Timestamp::now();
    let rows = store.forward_status(now)?;
    // Every configured destination is listed, queued or not; a destination
    // removed from the config still shows while it has rows.
    let mut shapes: Vec<crate::json::ForwardDestination> = config
        .forward
        .destinations
        .iter()
        .map(|d| {
            let row = rows.iter().find(|r| r.destination == d.name);
            crate::json::ForwardDestination::new(&d.name, Some(d), row)
        })
        .collect();
    for r in &rows {
        if config.forward.destination(&r.destination).is_none() {
            shapes.push(crate::json::ForwardDestination::new(
                &r.destination,
                None,
                Some(r),
            ));
        }
    }
    if args.json {
        return print_json(&shapes);
    }
    let mut out = std::io::stdout().lock();
    if shapes.is_empty() {
        writeln!(out, "no forward destinations are configured")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<20}  {:<26}  {:>8}  {:>8}  {:>8}  {:>6}  {:<27}  LAST ERROR",
        "DESTINATION", "AE@ADDRESS", "PENDING", "SENT", "FAILED", "TRIES", "OLDEST PENDING"
    )?;
    for s in &shapes {
        writeln!(
            out,
            "{:<20}  {:<26}  {:>8}  {:>8}  {:>8}  {:>6}  {:<27}  {}",
            s.destination,
            match (&s.ae_title, &s.address) {
                (Some(ae), Some(addr)) => format!("{ae}@{addr}"),
                _ => "(not configured)".to_owned(),
            },
            s.pending,
            s.sent,
            s.failed,
            s.max_attempts,
            s.oldest_pending_at.as_deref().unwrap_or("-"),
            s.last_error.as_deref().unwrap_or("-"),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn retry(config: &Config, args: RetryArgs) -> anyhow::Result<ExitCode> {
    if let Some(d) = &args.destination {
        let known = config.forward.destination(d).is_some();
        let store = open_store(config)?;
        let queued = store
            .forward_status(Timestamp::now())?
            .iter()
            .any(|r| &r.destination == d);
        if !known && !queued {
            eprintln!("studywatch: no forward destination named `{d}`");
            return Ok(ExitCode::from(EXIT_PROBLEM));
        }
    }
    let by = actor(args.by);
    let mut store = open_store(config)?;
    let changed = store.forward_retry(args.destination.as_deref(), &by, Timestamp::now())?;
    println!(
        "{changed} queued instance(s) for {} made due now (by {by})",
        args.destination.as_deref().unwrap_or("every destination")
    );
    Ok(ExitCode::SUCCESS)
}
