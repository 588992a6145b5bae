//! Reports entered by a person: `report link`, `report import`, `POST
//! /api/reports` and the dashboard's form all build theirs here, so a manual
//! report means the same thing whichever way it came in.

use jiff::Timestamp;

use crate::catalog::{NewReport, ReportOrigin, ReportStatus};
use crate::uid::Uid;

/// A report from the CLI's or a CSV row's values, or what is wrong with them.
#[allow(clippy::too_many_arguments)]
pub fn manual_report(
    origin: ReportOrigin,
    accession: Option<&str>,
    study_uid: Option<&str>,
    status: &str,
    time: Option<&str>,
    author: Option<&str>,
    by: &str,
    tz: &jiff::tz::TimeZone,
    now: Timestamp,
) -> Result<NewReport, String> {
    let accession = accession.map(str::trim).filter(|a| !a.is_empty());
    let study_uid = study_uid.map(str::trim).filter(|u| !u.is_empty());
    if accession.is_none() && study_uid.is_none() {
        return Err("an accession number or a study UID is needed".to_owned());
    }
    let study_uids = match study_uid {
        Some(u) => vec![
            Uid::parse(u)
                .map_err(|e| format!("study UID {u:?} is not valid: {e}"))?
                .to_string(),
        ],
        None => Vec::new(),
    };
    let status =
        ReportStatus::parse(status.trim().to_ascii_lowercase().as_str()).ok_or_else(|| {
            format!("status {status:?} is not one of final, preliminary, corrected, cancelled")
        })?;
    let reported_at = match time.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => parse_time(t, tz)?,
        None => now,
    };
    if reported_at > now + jiff::SignedDuration::from_mins(5) {
        return Err(format!("time {reported_at} is in the future"));
    }
    Ok(NewReport {
        origin,
        received_at: now,
        status,
        withdrawn: false,
        reported_at: Some(reported_at),
        exam_at: None,
        author: author
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned),
        accession_number: accession.map(str::to_owned),
        issuer_of_accession: None,
        study_uids,
        placer_number: None,
        filler_number: None,
        patient_ids: Vec::new(),
        procedure: None,
        text: None,
        alert_category: None,
        sop_instance_uid: None,
        recorded_by: Some(by.to_owned()),
    })
}

/// RFC 3339 with an offset, or a civil date/time (`2026-11-20 14:30`,
/// `2026-11-20T14:30:00`, `2026-11-20`) in the site's zone.
pub fn parse_time(s: &str, tz: &jiff::tz::TimeZone) -> Result<Timestamp, String> {
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts);
    }
    let civil = s
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| s.parse::<jiff::civil::Date>().map(|d| d.to_datetime(jiff::civil::Time::midnight())))
        .map_err(|_| {
            format!(
                "time {s:?} is not RFC 3339 (2026-11-20T14:30:00Z) nor a local date/time (2026-11-20 14:30)"
            )
        })?;
    tz.to_ambiguous_zoned(civil)
        .compatible()
        .map(|z| z.timestamp())
        .map_err(|e| format!("time {s:?}: {e}"))
}
