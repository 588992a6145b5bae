//! Reports that arrive as DICOM objects: Structured Reports and Encapsulated PDF.
//!
//! Which SOP classes can be a formal report is fixed by the standard's
//! document types: the narrative SR classes (Basic Text, Enhanced,
//! Comprehensive, Comprehensive 3D) count when their Completion Flag is
//! COMPLETE and their Verification Flag VERIFIED (otherwise they are kept as a
//! preliminary report: shown, not counted); an Encapsulated PDF has no such
//! flags and counts as final unless configured otherwise. Every other SR-like
//! class — dose reports, CAD, Key Object Selection, presentation states — is
//! never a report, whatever its flags say.
//!
//! This runs on the stored file after the streaming walk has proved it parses
//! to its end within its length, so dicom-object never allocates more than the
//! file holds; a PDF is read only up to its document.

use std::path::Path;

use dicom_core::Tag;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use jiff::Timestamp;

use crate::catalog::{NewReport, PatientId, ReportOrigin, ReportStatus};
use crate::hl7::alert::AlertRules;
use crate::uid::Uid;

use super::parse::{ISSUER_OF_ACCESSION_SEQUENCE, LOCAL_NAMESPACE_ENTITY_ID};

/// SR classes that carry a narrative report.
const REPORT_SR_CLASSES: &[&str] = &[
    "1.2.840.10008.5.1.4.1.1.88.11", // Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22", // Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33", // Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34", // Comprehensive 3D SR
];
/// Encapsulated PDF Storage.
const ENCAPSULATED_PDF: &str = "1.2.840.10008.5.1.4.1.1.104.1";

/// Beyond this size an SR's content tree is not read for alert phrases (the
/// flags and references, which come before it, still are).
const MAX_CONTENT_READ: u64 = 16 * 1024 * 1024;

const STUDY_INSTANCE_UID: Tag = Tag(0x0020, 0x000D);
const ACCESSION_NUMBER: Tag = Tag(0x0008, 0x0050);
const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const ISSUER_OF_PATIENT_ID: Tag = Tag(0x0010, 0x0021);
const CONTENT_DATE: Tag = Tag(0x0008, 0x0023);
const CONTENT_TIME: Tag = Tag(0x0008, 0x0033);
const TIMEZONE_OFFSET: Tag = Tag(0x0008, 0x0201);
const COMPLETION_FLAG: Tag = Tag(0x0040, 0xA491);
const VERIFICATION_FLAG: Tag = Tag(0x0040, 0xA493);
const PRELIMINARY_FLAG: Tag = Tag(0x0040, 0xA496);
const VERIFYING_OBSERVER_SEQUENCE: Tag = Tag(0x0040, 0xA073);
const VERIFICATION_DATETIME: Tag = Tag(0x0040, 0xA030);
const VERIFYING_OBSERVER_NAME: Tag = Tag(0x0040, 0xA075);
const REFERENCED_REQUEST_SEQUENCE: Tag = Tag(0x0040, 0xA370);
const EVIDENCE_SEQUENCE: Tag = Tag(0x0040, 0xA375);
const PLACER_ORDER_NUMBER: Tag = Tag(0x0040, 0x2016);
const FILLER_ORDER_NUMBER: Tag = Tag(0x0040, 0x2017);
const CONTENT_SEQUENCE: Tag = Tag(0x0040, 0xA730);
const TEXT_VALUE: Tag = Tag(0x0040, 0xA160);
const DOCUMENT_TITLE: Tag = Tag(0x0042, 0x0010);
const ENCAPSULATED_DOCUMENT: Tag = Tag(0x0042, 0x0011);

/// How DICOM reports are read.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Whether an Encapsulated PDF counts as a final report.
    pub pdf_is_final: bool,
    /// Alert categories from phrases in an SR's text.
    pub alerts: AlertRules,
    /// The site's zone, for date/times without an offset.
    pub timezone: jiff::tz::TimeZone,
}

/// Whether instances of this SOP class may be a report; only those are read.
pub fn may_be_report(sop_class_uid: &str) -> bool {
    sop_class_uid == ENCAPSULATED_PDF || REPORT_SR_CLASSES.contains(&sop_class_uid)
}

/// Reads the report an instance carries, if its class is a report class.
/// `Ok(None)` for every other class. An error means the file could not be
/// read as DICOM after all; the caller keeps the instance and logs it.
pub fn read(
    path: &Path,
    size: u64,
    sop_class_uid: &str,
    sop_instance_uid: &str,
    received_at: Timestamp,
    policy: &Policy,
) -> Result<Option<NewReport>, dicom_object::ReadError> {
    let pdf = sop_class_uid == ENCAPSULATED_PDF;
    if !pdf && !REPORT_SR_CLASSES.contains(&sop_class_uid) {
        return Ok(None);
    }
    let mut options = OpenFileOptions::new();
    if pdf {
        options = options.read_until(ENCAPSULATED_DOCUMENT);
    } else if size > MAX_CONTENT_READ {
        options = options.read_until(CONTENT_SEQUENCE);
    }
    let file = options.open_file(path)?;
    let obj: &InMemDicomObject = &file;

    let tz = offset_zone(obj).unwrap_or_else(|| policy.timezone.clone());
    let content_time = datetime_of(obj, CONTENT_DATE, CONTENT_TIME, &tz);
    let mut report = NewReport {
        origin: ReportOrigin::DicomSr,
        received_at,
        status: ReportStatus::Preliminary,
        withdrawn: false,
        reported_at: content_time,
        exam_at: None,
        author: None,
        accession_number: text(obj, ACCESSION_NUMBER),
        issuer_of_accession: issuer_of_accession(obj),
        study_uids: Vec::new(),
        placer_number: None,
        filler_number: None,
        patient_ids: text(obj, PATIENT_ID)
            .map(|id| PatientId {
                id,
                authority: text(obj, ISSUER_OF_PATIENT_ID),
                kind: None,
            })
            .into_iter()
            .collect(),
        procedure: text(obj, DOCUMENT_TITLE),
        text: None,
        alert_category: None,
        sop_instance_uid: Some(sop_instance_uid.to_owned()),
        recorded_by: None,
    };

    // The studies it reports on: those of its requests and evidence first,
    // then its own (often the same).
    for item in items(obj, REFERENCED_REQUEST_SEQUENCE) {
        push_uid(&mut report.study_uids, text(item, STUDY_INSTANCE_UID));
        if report.accession_number.is_none() {
            report.accession_number = text(item, ACCESSION_NUMBER);
            report.issuer_of_accession = issuer_of_accession(item);
        }
        if report.placer_number.is_none() {
            report.placer_number = text(item, PLACER_ORDER_NUMBER);
        }
        if report.filler_number.is_none() {
            report.filler_number = text(item, FILLER_ORDER_NUMBER);
        }
    }
    for item in items(obj, EVIDENCE_SEQUENCE) {
        push_uid(&mut report.study_uids, text(item, STUDY_INSTANCE_UID));
    }
    push_uid(&mut report.study_uids, text(obj, STUDY_INSTANCE_UID));

    if pdf {
        if policy.pdf_is_final {
            report.status = ReportStatus::Final;
        }
        return Ok(Some(report));
    }

    let complete = text(obj, COMPLETION_FLAG).is_some_and(|f| f.eq_ignore_ascii_case("COMPLETE"));
    let verified = text(obj, VERIFICATION_FLAG).is_some_and(|f| f.eq_ignore_ascii_case("VERIFIED"));
    let preliminary =
        text(obj, PRELIMINARY_FLAG).is_some_and(|f| f.eq_ignore_ascii_case("PRELIMINARY"));
    if complete && verified && !preliminary {
        report.status = ReportStatus::Final;
    }
    // The latest verification is the one that made it final.
    let mut latest: Option<(Timestamp, Option<String>)> = None;
    for item in items(obj, VERIFYING_OBSERVER_SEQUENCE) {
        let when = text(item, VERIFICATION_DATETIME).and_then(|dt| parse_dt(&dt, &tz));
        if let Some(when) = when {
            if latest.as_ref().is_none_or(|(t, _)| when > *t) {
                latest = Some((when, text(item, VERIFYING_OBSERVER_NAME).map(person_name)));
            }
        }
    }
    if let Some((when, author)) = latest {
        report.reported_at = Some(when);
        report.author = author;
    }

    let mut lines = Vec::new();
    collect_text(obj, &mut lines, 0);
    if !lines.is_empty() {
        let text = lines.join("\n");
        report.alert_category = policy
            .alerts
            .classify(&[], &text)
            .map(|c| c.as_str().to_owned());
        report.text = Some(text);
    }
    Ok(Some(report))
}

/// Text values of the content tree, depth first, in document order.
fn collect_text(obj: &InMemDicomObject, out: &mut Vec<String>, depth: usize) {
    if depth > 32 {
        return;
    }
    for item in items(obj, CONTENT_SEQUENCE) {
        if let Some(t) = text(item, TEXT_VALUE) {
            out.push(t);
        }
        collect_text(item, out, depth + 1);
    }
}

/// The issuer of the Accession Number beside it in `obj`: the Local
/// Namespace Entity ID of the first Issuer of Accession Number item, the
/// counterpart of the namespace ID an HL7 EI carries.
fn issuer_of_accession(obj: &InMemDicomObject) -> Option<String> {
    items(obj, ISSUER_OF_ACCESSION_SEQUENCE)
        .first()
        .and_then(|item| text(item, LOCAL_NAMESPACE_ENTITY_ID))
}

fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .unwrap_or(&[])
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let element = obj.element_opt(tag).ok().flatten()?;
    let value = element.to_str().ok()?;
    let value = value.trim_matches(|c: char| c == ' ' || c == '\0');
    (!value.is_empty()).then(|| value.to_owned())
}

fn push_uid(uids: &mut Vec<String>, uid: Option<String>) {
    // Only UIDs that pass the grammar are ever used as link keys.
    if let Some(uid) = uid.as_deref().and_then(|u| Uid::parse(u).ok()) {
        let uid = uid.to_string();
        if !uids.contains(&uid) {
            uids.push(uid);
        }
    }
}

/// `FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX` as `GIVEN FAMILY`.
fn person_name(pn: String) -> String {
    let first_group = pn.split('=').next().unwrap_or("");
    let parts: Vec<&str> = first_group.split('^').map(str::trim).collect();
    let family = parts.first().copied().unwrap_or("");
    let given = parts.get(1).copied().unwrap_or("");
    let name = [given, family]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if name.is_empty() { pn } else { name }
}

/// The zone given by Timezone Offset From UTC (`+HHMM`/`-HHMM`), if any.
fn offset_zone(obj: &InMemDicomObject) -> Option<jiff::tz::TimeZone> {
    let raw = text(obj, TIMEZONE_OFFSET)?;
    let seconds = parse_offset(&raw)?;
    Some(jiff::tz::TimeZone::fixed(
        jiff::tz::Offset::from_seconds(seconds).ok()?,
    ))
}

pub(super) fn parse_offset(raw: &str) -> Option<i32> {
    let (sign, digits) = match raw.as_bytes().first()? {
        b'+' => (1, &raw[1..]),
        b'-' => (-1, &raw[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    Some(sign * (hours * 3600 + minutes * 60))
}

/// A DICOM DA + TM pair as an instant in `tz`.
fn datetime_of(
    obj: &InMemDicomObject,
    date: Tag,
    time: Tag,
    tz: &jiff::tz::TimeZone,
) -> Option<Timestamp> {
    let d = text(obj, date)?;
    let t = text(obj, time).unwrap_or_default();
    parse_dt(&format!("{d}{t}"), tz)
}

/// A DICOM DT (`YYYYMMDDHHMMSS.FFFFFF&ZZXX`, every part after the year
/// optional) as an instant: with its own offset when it has one, else in `tz`.
pub fn parse_dt(raw: &str, tz: &jiff::tz::TimeZone) -> Option<Timestamp> {
    let raw = raw.trim();
    let (body, offset) = match raw.find(['+', '-']) {
        Some(i) => (&raw[..i], Some(parse_offset(&raw[i..])?)),
        None => (raw, None),
    };
    let (whole, fraction) = match body.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (body, None),
    };
    if whole.len() < 8 || whole.len() % 2 != 0 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A fraction belongs to the seconds only.
    if fraction.is_some() && whole.len() != 14 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i32> {
        whole.get(range).map_or(Some(0), |s| s.parse().ok())
    };
    let year = i16::try_from(num(0..4)?).ok()?;
    let month = i8::try_from(num(4..6)?).ok()?;
    let day = i8::try_from(num(6..8)?).ok()?;
    let hour = i8::try_from(num(8..10)?).ok()?;
    let minute = i8::try_from(num(10..12)?).ok()?;
    let second = i8::try_from(num(12..14)?).ok()?;
    let nanos = match fraction {
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<9}");
            padded.parse::<i32>().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    let civil = jiff::civil::DateTime::new(year, month, day, hour, minute, second, nanos).ok()?;
    match offset {
        Some(seconds) => {
            let offset = jiff::tz::Offset::from_seconds(seconds).ok()?;
            offset.to_timestamp(civil).ok()
        }
        None => tz
            .to_ambiguous_zoned(civil)
            .compatible()
            .ok()
            .map(|z| z.timestamp()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get("Europe/London").expect("tz")
    }

    #[test]
    fn dicom_datetimes_follow_their_offset_or_the_site_zone() {
        let tz = london();
        let ts = |s: &str| s.parse::<Timestamp>().expect("ts");
        // Summer time: local 14:30 is 13:30 UTC.
        assert_eq!(
            parse_dt("20260720143000", &tz),
            Some(ts("2026-07-20T13:30:00Z"))
        );
        assert_eq!(
            parse_dt("20261120143000", &tz),
            Some(ts("2026-11-20T14:30:00Z"))
        );
        assert_eq!(
            parse_dt("20261120143000.25+0100", &tz),
            Some(ts("2026-11-20T13:30:00.25Z"))
        );
        assert_eq!(parse_dt("20261120", &tz), Some(ts("2026-11-20T00:00:00Z")));
        for bad in [
            "",
            "2026",
            "2026112",
            "20261320",
            "20261120xx",
            "20261120.5",
            "20261120+1",
        ] {
            assert_eq!(parse_dt(bad, &tz), None, "{bad}");
        }
    }

    #[test]
    fn only_narrative_sr_and_pdf_may_be_reports() {
        assert!(may_be_report("1.2.840.10008.5.1.4.1.1.88.11"));
        assert!(may_be_report("1.2.840.10008.5.1.4.1.1.104.1"));
        for never in [
            "1.2.840.10008.5.1.4.1.1.88.67", // X-Ray Radiation Dose SR
            "1.2.840.10008.5.1.4.1.1.88.50", // Mammography CAD SR
            "1.2.840.10008.5.1.4.1.1.88.59", // Key Object Selection
            "1.2.840.10008.5.1.4.1.1.11.1",  // Grayscale Softcopy Presentation State
            "1.2.840.10008.5.1.4.1.1.2",     // CT Image
        ] {
            assert!(!may_be_report(never), "{never}");
        }
    }

    #[test]
    fn person_names_read_given_then_family() {
        assert_eq!(person_name("REPORTER^ANNA".into()), "ANNA REPORTER");
        assert_eq!(person_name("Smith".into()), "Smith");
        assert_eq!(person_name("^^".into()), "^^");
    }
}
