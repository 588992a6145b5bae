//! The watchdog benchmark's helper (`bench/watchdog.sh` drives it): builds a
//! large catalog through the library's public API, times the watchdog's
//! evaluation on it, and watches a running gateway's catalog for an alarm.
//!
//!   watchdog_bench generate --config CONF --catalog PATH [--studies 1000000]
//!                  [--unreported 10000] [--overdue-percent 50] [--days 60]
//!                  [--batch 5000] [--report-bytes 600] [--seed 1]
//!   watchdog_bench measure --config CONF [--catalog PATH] [--runs 50]
//!                  [--probe-ae WDLATENCY]
//!   watchdog_bench watch-alarm --config CONF [--catalog PATH] --study-uid UID
//!                  [--timeout 30]
//!
//! `--catalog` defaults to the config's `[catalog] path`. Each command prints
//! one JSON object on stdout; progress goes to stderr.
//!
//! # generate
//!
//! Creates a new catalog (refusing an existing file) of `--studies` studies
//! with one CT/MR/CR/DX/US instance each, first received over the last
//! `--days` days, in time order, through `Store::record_instances` in
//! transactions of `--batch` instances. All but `--unreported` of them get a
//! final report, linked by accession number, through `Store::record_reports`
//! (the path `report import` takes), 30 min to 20.5 h after the images. The
//! unreported ones are `--overdue-percent` overdue (received 24 h 10 min to
//! `--days` days ago) and the rest received within the last 23 h 59 min, so
//! their deadlines fall over the next day. That split assumes the config's
//! rule for these studies is `report_within = "24h"` (calendar hours);
//! generate checks it against the deadlines computed and fails otherwise.
//!
//! Generation opens the catalog with `synchronous = NORMAL` (the
//! `storage.fsync = false` setting): it only builds the test data, and a
//! power cut would merely mean generating again. Nothing it times is a
//! durable-path figure; `measure` and the server use `synchronous = FULL`.
//!
//! The deadlines are then computed by the watchdog's own `evaluate`, run
//! (in transactions, as the server does) until no study is stale, with `now`
//! set before the first study was received. A deadline is a pure function of
//! the study and its rule, so the stored deadlines are what a live watchdog
//! computes; evaluating "in the past" only keeps it from raising the overdue
//! alarms, which `measure` then raises and times. Last, every study is marked
//! stable (`Store::mark_stable`), as a gateway that has run for those days
//! leaves them.
//!
//! # measure
//!
//! Opens the catalog as the server does (`synchronous = FULL`, the link
//! policy and the watchdog clock from the config: site zone, working hours,
//! bank-holiday calendar) and times `evaluate(store, &settings, now)`, each
//! call inside `store.atomically` (one `BEGIN IMMEDIATE` transaction), as the
//! server's watchdog does:
//! - catch-up: evaluations at the wall clock until one returns a time after
//!   its `now` (`evaluate` handles at most 2,000 rows of a kind per call and
//!   asks to be called again at once for the rest): the first run after a
//!   start, raising the overdue alarms;
//! - steady state: one untimed evaluation at a fixed `now`, then `--runs`
//!   timed ones at that same `now`, which find nothing new to do: the cost of
//!   computing the next due set when nothing changed;
//! - the catalog queries `evaluate` makes when nothing is due (as of the
//!   catalog API this was written against), timed one by one (median of 5),
//!   to show where the time goes;
//! - a probe: one study recorded from calling AE `--probe-ae` (the config
//!   must give that AE a short deadline, e.g. `report_within = "5s"`), then
//!   the scheduler's loop in-process (evaluate, sleep until the returned time
//!   but at most 1 s, evaluate again) until its alarm is committed. This
//!   leaves the probe study and its alarm in the catalog.
//!
//! # watch-alarm
//!
//! Polls the catalog every 5 ms (read-only queries, beside a running server)
//! until an `overdue_report` alarm for `--study-uid` is visible, and prints
//! its `due_at`, its `raised_at` (the time the server's evaluation started)
//! and when it was first seen (committed), relative to the deadline.
//!
//! Exit status: 0 done; 1 on any failure (printed on stderr).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use studywatch::catalog::{
    AlarmFilter, AlarmRow, NewInstance, NewReport, PatientId, ReportOrigin, ReportStatus, Settling,
    Store, StudyFilter, StudyState,
};
use studywatch::config::Config;
use studywatch::watchdog::tick::{Settings, evaluate};

/// The UID root of everything this benchmark makes (the same root as the
/// test peers' `make_study.py`).
const UID_ROOT: &str = "1.2.826.0.1.3680043.10.1234";
/// What `evaluate` handles of each kind per call (`tick::BATCH`, private).
const EVALUATE_BATCH: usize = 2000;

#[derive(Parser)]
#[command(about = "Helper of bench/watchdog.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a new catalog of studies, reports and deadlines.
    Generate(GenerateArgs),
    /// Time the watchdog's evaluation on a catalog.
    Measure(MeasureArgs),
    /// Wait until an overdue alarm for a study is visible in the catalog.
    WatchAlarm(WatchArgs),
}

#[derive(clap::Args)]
struct GenerateArgs {
    #[arg(long)]
    config: PathBuf,
    /// The catalog to create (must not exist).
    #[arg(long)]
    catalog: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    studies: u64,
    #[arg(long, default_value_t = 10_000)]
    unreported: u64,
    /// Of the unreported studies, the share already past their deadline.
    #[arg(long, default_value_t = 50)]
    overdue_percent: u64,
    /// First receipts spread over this many days before now.
    #[arg(long, default_value_t = 60)]
    days: u64,
    /// Instances (and reports) per transaction.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Length of each report's text.
    #[arg(long, default_value_t = 600)]
    report_bytes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args)]
struct MeasureArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Timed steady-state evaluations.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Calling AE of the probe study; the config must give it a short deadline.
    #[arg(long, default_value = "WDLATENCY")]
    probe_ae: String,
}

#[derive(clap::Args)]
struct WatchArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    catalog: Option<PathBuf>,
    #[arg(long)]
    study_uid: String,
    /// Seconds to wait for the alarm.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Generate(a) => generate(&a),
        Command::Measure(a) => measure(&a),
        Command::WatchAlarm(a) => watch_alarm(&a),
    };
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("watchdog_bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))
}

// --- generate ----------------------------------------------------------------

/// One study to create.
struct Planned {
    received_us: i64,
    /// When its final report arrives; `None`: unreported.
    report_us: Option<i64>,
}

/// SplitMix64: a small deterministic generator, so that a seed always makes
/// the same catalog.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)` (microseconds).
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi - lo).unwrap_or(1).max(1);
        lo + i64::try_from(self.next() % span).unwrap_or(0)
    }
}

/// Spreads `k` of `n` evenly: whether item `i` is one of them.
fn picked(i: u64, k: u64, n: u64) -> bool {
    (i + 1) * k / n > i * k / n
}

const MINUTE_US: i64 = 60_000_000;
const HOUR_US: i64 = 60 * MINUTE_US;
const DAY_US: i64 = 24 * HOUR_US;

/// What a study's modality, SOP class and sending AE are, by its number.
const KINDS: [(&str, &str, &str, &str); 5] = [
    (
        "CT",
        "1.2.840.10008.5.1.4.1.1.2",
        "CT_MAIN",
        "CT HEAD WITHOUT CONTRAST",
    ),
    ("MR", "1.2.840.10008.5.1.4.1.1.4", "MR_1", "MR LUMBAR SPINE"),
    ("CR", "1.2.840.10008.5.1.4.1.1.1", "CR_ED", "XR CHEST PA"),
    ("DX", "1.2.840.10008.5.1.4.1.1.1.1", "DX_2", "XR LEFT WRIST"),
    ("US", "1.2.840.10008.5.1.4.1.1.6.1", "US_1", "US ABDOMEN"),
];

fn study_uid(k: usize) -> String {
    format!("{UID_ROOT}.7.{}", k + 1)
}

fn accession(k: usize) -> String {
    format!("WB{:08}", k + 1)
}

fn patient_id(k: usize) -> String {
    // About 2.5 studies per patient.
    format!("RWB{:07}", (k * 7919) % 400_000)
}

fn generate(a: &GenerateArgs) -> anyhow::Result<serde_json::Value> {
    if a.studies == 0 || a.unreported > a.studies || a.overdue_percent > 100 || a.days < 2 {
        bail!(
            "need 0 < --studies, --unreported <= --studies, --overdue-percent <= 100, --days >= 2"
        );
    }
    if a.catalog.exists() {
        bail!(
            "{} exists; generate makes a new catalog",
            a.catalog.display()
        );
    }
    let config = load_config(&a.config)?;
    let clock = studywatch::app::watchdog_clock(&config)?;
    let tz = config.site.timezone.clone();
    let t0 = Instant::now();
    let now = Timestamp::now();
    let now_us = now.as_microsecond();
    let start_us = now_us - i64::try_from(a.days)? * DAY_US;

    // The plan, then sorted by first receipt so that studies are recorded
    // (and numbered) in the order they would have arrived.
    let mut rng = Rng(a.seed);
    let mut plan: Vec<Planned> = Vec::with_capacity(usize::try_from(a.studies)?);
    let (mut unreported_seen, mut overdue_planned) = (0u64, 0u64);
    for i in 0..a.studies {
        if picked(i, a.unreported, a.studies) {
            let overdue = picked(unreported_seen, a.overdue_percent, 100);
            unreported_seen += 1;
            let received_us = if overdue {
                overdue_planned += 1;
                rng.between(start_us, now_us - DAY_US - 10 * MINUTE_US)
            } else {
                rng.between(now_us - DAY_US + MINUTE_US, now_us)
            };
            plan.push(Planned {
                received_us,
                report_us: None,
            });
        } else {
            let received_us = rng.between(start_us, now_us - 2 * HOUR_US);
            let report_us = (received_us + 30 * MINUTE_US + rng.between(0, 20 * HOUR_US))
                .min(now_us - MINUTE_US);
            plan.push(Planned {
                received_us,
                report_us: Some(report_us),
            });
        }
    }
    plan.sort_by_key(|p| p.received_us);

    eprintln!(
        "generate: {} studies ({} unreported, {} of them overdue) into {}; \
         synchronous = NORMAL while generating",
        a.studies,
        a.unreported,
        overdue_planned,
        a.catalog.display()
    );
    let mut store = Store::open(&a.catalog, false).context("cannot create the catalog")?;
    store.set_link_policy(studywatch::app::link_policy(&config));

    // 1. Studies, one instance each.
    let t_studies = Instant::now();
    let mut batch: Vec<NewInstance> = Vec::with_capacity(a.batch);
    for (k, p) in plan.iter().enumerate() {
        batch.push(instance(k, p, &tz)?);
        if batch.len() == a.batch || k + 1 == plan.len() {
            for (j, r) in store.record_instances(&batch).into_iter().enumerate() {
                r.with_context(|| format!("recording study {}", batch[j].study_uid))?;
            }
            batch.clear();
            if (k + 1) % 100_000 == 0 || k + 1 == plan.len() {
                eprintln!(
                    "generate: {} studies recorded ({:.1} s)",
                    k + 1,
                    t_studies.elapsed().as_secs_f64()
                );
            }
        }
    }
    let secs_studies = t_studies.elapsed().as_secs_f64();

    // 2. Final reports, in the order they arrived, linked by accession.
    let t_reports = Instant::now();
    let mut order: Vec<(i64, usize)> = plan
        .iter()
        .enumerate()
        .filter_map(|(k, p)| p.report_us.map(|r| (r, k)))
        .collect();
    order.sort_unstable();
    let text = report_text(a.report_bytes);
    let mut reports: Vec<NewReport> = Vec::with_capacity(a.batch);
    let mut done = 0usize;
    for (n, &(report_us, k)) in order.iter().enumerate() {
        reports.push(report(k, plan[k].received_us, report_us, &text)?);
        if reports.len() == a.batch || n + 1 == order.len() {
            let results = store
                .record_reports(&reports)
                .context("recording a batch of reports")?;
            for (r, (_, links)) in reports.iter().zip(&results) {
                if links.len() != 1 {
                    bail!(
                        "the report for accession {:?} made {} links, not 1",
                        r.accession_number,
                        links.len()
                    );
                }
            }
            done += reports.len();
            reports.clear();
            if done % 100_000 < a.batch || n + 1 == order.len() {
                eprintln!(
                    "generate: {done} reports recorded ({:.1} s)",
                    t_reports.elapsed().as_secs_f64()
                );
            }
        }
    }
    let secs_reports = t_reports.elapsed().as_secs_f64();

    // 3. Deadlines, by the watchdog itself, before any study was received.
    let t_deadlines = Instant::now();
    let settings = Settings::from_config(&config, clock, now);
    let before_all = Timestamp::from_microsecond(start_us - 2 * DAY_US)?;
    let mut passes = 0u64;
    while store.has_stale_studies()? {
        store.atomically(|s| evaluate(s, &settings, before_all))?;
        passes += 1;
    }
    let secs_deadlines = t_deadlines.elapsed().as_secs_f64();
    eprintln!("generate: deadlines computed in {passes} evaluations ({secs_deadlines:.1} s)");

    // 4. Stable, as a gateway that has run for these days leaves them: its
    //    stability task marked each study stable through the same
    //    `Store::mark_stable` (without it, a server started on the catalog
    //    spends its first minutes marking a million studies, and the idle
    //    measurement times that instead).
    let t_stable = Instant::now();
    let mut after: Option<Settling> = None;
    loop {
        let page = store.settling(now, after.as_ref(), a.batch)?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        store.atomically(|s| {
            for st in &page {
                s.mark_stable(&st.study_uid, st.last_received_at, false, now)?;
            }
            Ok(())
        })?;
        after = Some(last);
    }
    let secs_stable = t_stable.elapsed().as_secs_f64();
    eprintln!("generate: studies marked stable ({secs_stable:.1} s)");

    // The catalog must hold what was planned.
    let counts = store.counts()?;
    let unreported = store.studies_at(
        &StudyFilter {
            state: Some(StudyState::Unreported),
            limit: None,
        },
        now,
    )?;
    let overdue = unreported
        .iter()
        .filter(|s| s.state(now) == StudyState::Overdue)
        .count() as u64;
    let earliest_future = unreported
        .iter()
        .filter_map(|s| s.deadline)
        .filter(|d| *d > now)
        .min();
    if counts.studies != a.studies
        || unreported.len() as u64 != a.unreported
        || overdue != overdue_planned
    {
        bail!(
            "the catalog holds {} studies, {} unreported, {} overdue; planned {}, {}, {} \
             (is the config's rule for these studies report_within = \"24h\"?)",
            counts.studies,
            unreported.len(),
            overdue,
            a.studies,
            a.unreported,
            overdue_planned
        );
    }
    drop(store);
    let bytes = std::fs::metadata(&a.catalog)?.len();
    Ok(json!({
        "generated_at": now.to_string(),
        "studies": counts.studies,
        "instances": counts.instances,
        "reported": a.studies - a.unreported,
        "unreported": a.unreported,
        "overdue_at_generation": overdue,
        "earliest_future_deadline": earliest_future.map(|t| t.to_string()),
        "days": a.days,
        "batch": a.batch,
        "seconds_studies": round3(secs_studies),
        "seconds_reports": round3(secs_reports),
        "seconds_deadlines": round3(secs_deadlines),
        "seconds_stable": round3(secs_stable),
        "deadline_evaluations": passes,
        "seconds_total": round3(t0.elapsed().as_secs_f64()),
        "catalog_bytes": bytes,
    }))
}

fn instance(k: usize, p: &Planned, tz: &jiff::tz::TimeZone) -> anyhow::Result<NewInstance> {
    let (modality, sop_class, ae, description) = KINDS[k % KINDS.len()];
    let study = study_uid(k);
    let series = format!("{study}.1");
    let sop = format!("{series}.1");
    let received_at = Timestamp::from_microsecond(p.received_us)?;
    let local = received_at.to_zoned(tz.clone());
    let mut h = Rng(k as u64);
    let sha256 = (0..4).map(|_| format!("{:016x}", h.next())).collect();
    Ok(NewInstance {
        rel_path: format!("{study}/{series}/{sop}.dcm"),
        study_uid: study,
        series_uid: series,
        sop_instance_uid: sop,
        sop_class_uid: sop_class.to_owned(),
        transfer_syntax: "1.2.840.10008.1.2.1".to_owned(),
        patient_id: Some(patient_id(k)),
        issuer_of_patient_id: None,
        accession_number: Some(accession(k)),
        issuer_of_accession: None,
        modality: Some(modality.to_owned()),
        study_date: Some(local.strftime("%Y%m%d").to_string()),
        study_time: Some(local.strftime("%H%M%S").to_string()),
        study_description: Some(description.to_owned()),
        referring_physician: Some("REFERRER^BENCH".to_owned()),
        institution_name: Some("BENCH GENERAL HOSPITAL".to_owned()),
        series_number: Some(1),
        series_description: Some(description.to_owned()),
        size_bytes: 527_000,
        sha256,
        received_at,
        calling_ae: ae.to_owned(),
        source: ae.to_owned(),
        report: None,
        attributes: Vec::new(),
        forward_to: Vec::new(),
        clock: None,
    })
}

fn report(k: usize, received_us: i64, report_us: i64, text: &str) -> anyhow::Result<NewReport> {
    let at = Timestamp::from_microsecond(report_us)?;
    Ok(NewReport {
        origin: ReportOrigin::Import,
        received_at: at,
        status: ReportStatus::Final,
        withdrawn: false,
        reported_at: Some(at),
        exam_at: Some(Timestamp::from_microsecond(received_us)?),
        author: Some("REPORTER^BENCH".to_owned()),
        accession_number: Some(accession(k)),
        issuer_of_accession: None,
        study_uids: Vec::new(),
        placer_number: None,
        filler_number: None,
        patient_ids: vec![PatientId {
            id: patient_id(k),
            authority: None,
            kind: Some("MR".to_owned()),
        }],
        procedure: Some(KINDS[k % KINDS.len()].3.to_owned()),
        text: Some(text.to_owned()),
        alert_category: None,
        sop_instance_uid: None,
        recorded_by: None,
    })
}

/// Plain report text of about `bytes` bytes, with no alert phrase in it.
fn report_text(bytes: usize) -> String {
    const SENTENCE: &str = "The appearances are within normal limits for the age of the \
        patient and no acute abnormality is demonstrated. ";
    let mut text = String::from("Clinical details: pain. Findings: ");
    while text.len() < bytes {
        text.push_str(SENTENCE);
    }
    text.truncate(bytes.max(1));
    text
}

// --- measure -----------------------------------------------------------------

fn measure(a: &MeasureArgs) -> anyhow::Result<serde_json::Value> {
    let config = load_config(&a.config)?;
    let catalog = a
        .catalog
        .clone()
        .unwrap_or_else(|| config.catalog.path.clone());
    if !catalog.exists() {
        bail!("{} does not exist", catalog.display());
    }
    let mut store = Store::open(&catalog, true).context("cannot open the catalog")?;
    store.set_link_policy(studywatch::app::link_policy(&config));
    let clock = studywatch::app::watchdog_clock(&config)?;
    let settings = Settings::from_config(&config, clock, Timestamp::now());

    // What the catalog holds at the start.
    let start = Timestamp::now();
    let counts = store.counts()?;
    let unreported = store.studies_at(
        &StudyFilter {
            state: Some(StudyState::Unreported),
            limit: None,
        },
        start,
    )?;
    let overdue = unreported
        .iter()
        .filter(|s| s.state(start) == StudyState::Overdue)
        .count();
    let earliest_future = unreported
        .iter()
        .filter_map(|s| s.deadline)
        .filter(|d| *d > start)
        .min();
    let live_before = live_alarms(&store)?;
    eprintln!(
        "measure: {} studies, {} unreported ({} overdue), {} live alarms",
        counts.studies,
        unreported.len(),
        overdue,
        live_before
    );

    // Catch-up: as the server's first evaluations after a start.
    let mut catch_up: Vec<f64> = Vec::new();
    loop {
        let now = Timestamp::now();
        let t = Instant::now();
        let next = store.atomically(|s| evaluate(s, &settings, now))?;
        catch_up.push(ms(t.elapsed()));
        if next.is_none_or(|n| n > now) {
            break;
        }
        if catch_up.len() >= 10_000 {
            bail!("the catch-up did not finish in 10,000 evaluations");
        }
    }
    let live_after_catch_up = live_alarms(&store)?;
    eprintln!(
        "measure: catch-up in {} evaluation(s), {:.1} ms in all, {} alarms raised",
        catch_up.len(),
        catch_up.iter().sum::<f64>(),
        live_after_catch_up.saturating_sub(live_before)
    );

    // Steady state: nothing new at a fixed `now`.
    let fixed = Timestamp::now();
    let next_due = store.atomically(|s| evaluate(s, &settings, fixed))?;
    let live_steady_before = live_alarms(&store)?;
    let mut steady: Vec<f64> = Vec::with_capacity(a.runs);
    for _ in 0..a.runs {
        let t = Instant::now();
        let next = store.atomically(|s| evaluate(s, &settings, fixed))?;
        steady.push(ms(t.elapsed()));
        if next != next_due {
            bail!("a steady-state evaluation returned {next:?}, the one before {next_due:?}");
        }
    }
    let steady_changed = live_alarms(&store)? != live_steady_before;
    eprintln!(
        "measure: steady state: median {:.1} ms, max {:.1} ms over {} evaluations",
        percentile(&steady, 50.0),
        percentile(&steady, 100.0),
        a.runs
    );

    // Where the time goes: the queries `evaluate` makes, one by one.
    let windows = [
        settings.failsafe.critical,
        settings.failsafe.urgent,
        settings.failsafe.significant_unexpected,
        settings.failsafe.suspected_cancer,
    ];
    let shortest = windows.into_iter().min().unwrap_or_default();
    let mut parts: Vec<serde_json::Value> = Vec::new();
    let mut part = |name: &str, f: &mut dyn FnMut() -> anyhow::Result<usize>| {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..5 {
            let t = Instant::now();
            rows = f()?;
            times.push(ms(t.elapsed()));
        }
        parts.push(
            json!({"query": name, "rows": rows, "median_ms": round3(percentile(&times, 50.0))}),
        );
        anyhow::Ok(())
    };
    part("Store::stale_studies", &mut || {
        Ok(store.stale_studies(EVALUATE_BATCH)?.len())
    })?;
    part("Store::overdue_unalarmed", &mut || {
        Ok(store.overdue_unalarmed(fixed, EVALUATE_BATCH)?.len())
    })?;
    part("Store::failsafe_candidates", &mut || {
        Ok(store
            .failsafe_candidates(minus(fixed, shortest), EVALUATE_BATCH)?
            .len())
    })?;
    part("Store::unmatched_unalarmed", &mut || {
        Ok(store
            .unmatched_unalarmed(
                minus(fixed, settings.unmatched_report_after),
                EVALUATE_BATCH,
            )?
            .len())
    })?;
    if settings.feed_silent_after.is_some() {
        part("Store::last_hl7_message_at", &mut || {
            Ok(usize::from(store.last_hl7_message_at()?.is_some()))
        })?;
    }
    part("Store::conflicts_unalarmed", &mut || {
        Ok(store.conflicts_unalarmed(EVALUATE_BATCH)?.len())
    })?;
    part("Store::rejections_unalarmed", &mut || {
        Ok(store.rejections_unalarmed()?.len())
    })?;
    part("Store::alarms_to_advance", &mut || {
        Ok(store.alarms_to_advance(fixed, EVALUATE_BATCH)?.len())
    })?;
    part("Store::has_stale_studies", &mut || {
        Ok(usize::from(store.has_stale_studies()?))
    })?;
    part("Store::next_watchdog_time", &mut || {
        Ok(usize::from(store.next_watchdog_time(fixed)?.is_some()))
    })?;
    part("Store::pending_report_times", &mut || {
        let (alerts, unmatched) = store.pending_report_times()?;
        Ok(alerts.len() + usize::from(unmatched.is_some()))
    })?;
    part("Store::incomplete_unalarmed", &mut || {
        Ok(store.incomplete_unalarmed(EVALUATE_BATCH)?.len())
    })?;
    part("Store::orders_still_without_images", &mut || {
        Ok(store.orders_still_without_images()?.len())
    })?;
    if let Some(after) = settings.order_without_images_after {
        part("Store::orders_awaiting_images", &mut || {
            Ok(store
                .orders_awaiting_images(minus(fixed, after), EVALUATE_BATCH)?
                .len())
        })?;
        part("Store::earliest_awaiting_images", &mut || {
            Ok(usize::from(store.earliest_awaiting_images()?.is_some()))
        })?;
    }

    // The probe: a study due in a few seconds, and the scheduler's loop.
    let probe = probe(&mut store, &settings, &a.probe_ae)?;

    Ok(json!({
        "catalog": {
            "studies": counts.studies,
            "unreported": unreported.len(),
            "overdue": overdue,
            "earliest_future_deadline": earliest_future.map(|t| t.to_string()),
            "live_alarms_before": live_before,
        },
        "catch_up": {
            "evaluations": catch_up.len(),
            "ms_each": catch_up.iter().map(|v| round3(*v)).collect::<Vec<_>>(),
            "ms_total": round3(catch_up.iter().sum()),
            "alarms_raised": live_after_catch_up.saturating_sub(live_before),
        },
        "steady": {
            "runs": a.runs,
            "min_ms": round3(percentile(&steady, 0.0)),
            "median_ms": round3(percentile(&steady, 50.0)),
            "p90_ms": round3(percentile(&steady, 90.0)),
            "max_ms": round3(percentile(&steady, 100.0)),
            "next_due": next_due.map(|t| t.to_string()),
            "changed_anything": steady_changed,
        },
        "queries": parts,
        "probe": probe,
    }))
}

fn live_alarms(store: &Store) -> anyhow::Result<usize> {
    Ok(store
        .alarms(&AlarmFilter {
            live: true,
            ..AlarmFilter::default()
        })?
        .len())
}

/// Records one study from `ae` now, then runs the scheduler's loop
/// (evaluate; sleep until the time it returns, at most 1 s) until the study's
/// overdue alarm is committed.
fn probe(store: &mut Store, settings: &Settings, ae: &str) -> anyhow::Result<serde_json::Value> {
    let received_at = Timestamp::now();
    let study = format!("{UID_ROOT}.9.{}", received_at.as_microsecond());
    let series = format!("{study}.1");
    let sop = format!("{series}.1");
    let rec = NewInstance {
        rel_path: format!("{study}/{series}/{sop}.dcm"),
        study_uid: study.clone(),
        series_uid: series,
        sop_instance_uid: sop,
        sop_class_uid: KINDS[0].1.to_owned(),
        transfer_syntax: "1.2.840.10008.1.2.1".to_owned(),
        patient_id: Some("RWBPROBE".to_owned()),
        issuer_of_patient_id: None,
        accession_number: Some(format!("WBP{}", received_at.as_second())),
        issuer_of_accession: None,
        modality: Some("CT".to_owned()),
        study_date: None,
        study_time: None,
        study_description: None,
        referring_physician: None,
        institution_name: None,
        series_number: Some(1),
        series_description: None,
        size_bytes: 1,
        sha256: "0".repeat(64),
        received_at,
        calling_ae: ae.to_owned(),
        source: ae.to_owned(),
        report: None,
        attributes: Vec::new(),
        forward_to: Vec::new(),
        clock: None,
    };
    for r in store.record_instances(std::slice::from_ref(&rec)) {
        r.context("recording the probe study")?;
    }
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut evaluations = 0u32;
    loop {
        let now = Timestamp::now();
        let t = Instant::now();
        let next = store.atomically(|s| evaluate(s, settings, now))?;
        let took = ms(t.elapsed());
        let committed = Timestamp::now();
        evaluations += 1;
        if evaluations == 1 {
            let deadline = store.study_row(&study)?.and_then(|s| s.deadline);
            match deadline {
                Some(d) if d.duration_since(received_at) <= SignedDuration::from_secs(60) => {}
                other => bail!(
                    "the config gives the probe (calling AE {ae}) the deadline {other:?}, not one \
                     within a minute: add a rule matching calling_ae = [\"{ae}\"] with \
                     report_within = \"5s\""
                ),
            }
        }
        if let Some(alarm) = alarm_of(store, &study)? {
            return Ok(json!({
                "study_uid": study,
                "received_at": received_at.to_string(),
                "due_at": alarm.due_at.to_string(),
                "raised_at": alarm.raised_at.to_string(),
                "committed_at": committed.to_string(),
                "raised_after_due_ms": round3(since_ms(alarm.raised_at, alarm.due_at)),
                "committed_after_due_ms": round3(since_ms(committed, alarm.due_at)),
                "evaluation_ms": round3(took),
                "evaluations": evaluations,
            }));
        }
        if Instant::now() > give_up {
            bail!("no alarm for the probe study within 120 s");
        }
        let wait = next
            .map(|n| Duration::try_from(n.duration_since(Timestamp::now())).unwrap_or_default())
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        std::thread::sleep(wait);
    }
}

fn alarm_of(store: &Store, study_uid: &str) -> anyhow::Result<Option<AlarmRow>> {
    Ok(store
        .alarms(&AlarmFilter {
            study_uid: Some(study_uid.to_owned()),
            ..AlarmFilter::default()
        })?
        .into_iter()
        .find(|a| a.kind == "overdue_report"))
}

// --- watch-alarm -------------------------------------------------------------

fn watch_alarm(a: &WatchArgs) -> anyhow::Result<serde_json::Value> {
    let config = load_config(&a.config)?;
    let catalog = a
        .catalog
        .clone()
        .unwrap_or_else(|| config.catalog.path.clone());
    let store = Store::open(&catalog, true).context("cannot open the catalog")?;
    let give_up = Instant::now() + Duration::from_secs(a.timeout);
    let mut polls = 0u64;
    loop {
        polls += 1;
        if let Some(alarm) = alarm_of(&store, &a.study_uid)? {
            let seen = Timestamp::now();
            let study = store.study_row(&a.study_uid)?;
            return Ok(json!({
                "study_uid": a.study_uid,
                "alarm_id": alarm.id,
                "first_received_at": study.as_ref().map(|s| s.first_received_at.to_string()),
                "deadline": study.as_ref().and_then(|s| s.deadline).map(|t| t.to_string()),
                "due_at": alarm.due_at.to_string(),
                "raised_at": alarm.raised_at.to_string(),
                "seen_at": seen.to_string(),
                "raised_after_due_ms": round3(since_ms(alarm.raised_at, alarm.due_at)),
                "seen_after_due_ms": round3(since_ms(seen, alarm.due_at)),
                "polls": polls,
            }));
        }
        if Instant::now() > give_up {
            bail!(
                "no overdue_report alarm for {} within {} s",
                a.study_uid,
                a.timeout
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// --- small helpers -----------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn since_ms(later: Timestamp, earlier: Timestamp) -> f64 {
    later.duration_since(earlier).as_secs_f64() * 1000.0
}

fn minus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Nearest-rank percentile (0 = min, 100 = max).
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}
