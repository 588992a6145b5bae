//! `[reports]`: the HL7 listener, where fields are read from, linking, DICOM
//! reports and fail-safe alert categories.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ByteSize, Problems, duration, format_duration, parse_byte_size};
use crate::hl7::alert::{AlertRules, Category};
use crate::hl7::message::{Fields, Location};

mod defaults {
    pub const LISTEN: &str = "127.0.0.1:2575";
    pub const MAX_MESSAGE_BYTES: u64 = 1_048_576;
    pub const MAX_CONNECTIONS: i64 = 16;
    pub const FRAME_TIMEOUT: &str = "60s";
    pub const APPLICATION: &str = "STUDYWATCH";
    pub const PROBABLE: bool = false;
    pub const PROBABLE_WINDOW: &str = "2d";
    pub const REPORT_BEFORE_STUDY: &str = "30d";
    pub const PDF_IS_FINAL: bool = true;
}

/// `[reports]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reports {
    /// `[reports.hl7]`.
    pub hl7: Hl7,
    /// `[reports.linking]`.
    pub linking: Linking,
    /// `[reports.dicom]`.
    pub dicom: DicomReports,
    /// `[reports.alerts]`.
    pub alerts: AlertRules,
}

/// `[reports.hl7]`: the MLLP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7 {
    /// Where the MLLP listener binds.
    pub listen: SocketAddr,
    /// A frame longer than this is refused (AR) without being buffered.
    pub max_message_bytes: usize,
    /// Connections served at once; further ones are closed at once.
    pub max_connections: usize,
    /// A frame that has started must end within this time.
    pub frame_timeout: Duration,
    /// Senders allowed (MSH-3, and MSH-4 when given); empty allows every sender.
    pub allowed_senders: Vec<Sender>,
    /// Our MSH-3 and MSH-4 in ACKs, when the message did not name us.
    pub application: String,
    pub facility: String,
    /// `[reports.hl7.fields]`: where each value is read from.
    pub fields: Fields,
}

/// One `allowed_senders` entry: `"APP"` or `"APP^FACILITY"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub application: String,
    pub facility: Option<String>,
}

impl Sender {
    fn parse(s: &str) -> Result<Sender, String> {
        let (app, fac) = match s.split_once('^') {
            Some((a, f)) => (a.trim(), Some(f.trim())),
            None => (s.trim(), None),
        };
        if app.is_empty() {
            return Err(format!("`{s}`: the sending application (MSH-3) is empty"));
        }
        Ok(Sender {
            application: app.to_owned(),
            facility: fac.filter(|f| !f.is_empty()).map(str::to_owned),
        })
    }

    /// Whether a message from this application and facility is allowed by this
    /// entry. Only the first component (namespace ID) of each HD is compared,
    /// case-sensitively, as HL7 compares identifiers.
    pub fn allows(&self, application: &str, facility: &str) -> bool {
        let first = |hd: &str| hd.split('^').next().unwrap_or("").trim().to_owned();
        first(application) == self.application
            && self.facility.as_ref().is_none_or(|f| first(facility) == *f)
    }

    fn render(&self) -> String {
        match &self.facility {
            Some(f) => format!("{}^{f}", self.application),
            None => self.application.clone(),
        }
    }
}

impl Hl7 {
    /// Whether a message from this sender is taken.
    pub fn sender_allowed(&self, application: &str, facility: &str) -> bool {
        self.allowed_senders.is_empty()
            || self
                .allowed_senders
                .iter()
                .any(|s| s.allows(application, facility))
    }
}

/// `[reports.linking]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linking {
    /// Make probable links by patient ID and date, for a person to confirm.
    pub probable: bool,
    /// How far apart the study date and the exam time may be for one.
    pub probable_window: Duration,
    /// A report dated (exam, report or arrival time) more than this before
    /// a study's date is not that study's report: an accession or order
    /// number reused later (another year, another trust) links nothing.
    pub report_before_study: Duration,
}

/// `[reports.dicom]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomReports {
    /// Whether an Encapsulated PDF counts as a final report.
    pub pdf_is_final: bool,
}

// --- the file ---------------------------------------------------------------

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileReports {
    #[serde(default)]
    hl7: FileHl7,
    #[serde(default)]
    linking: FileLinking,
    #[serde(default)]
    dicom: FileDicomReports,
    #[serde(default)]
    alerts: FileAlerts,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileHl7 {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_message_bytes: Option<ByteSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frame_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_senders: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    facility: Option<String>,
    #[serde(default)]
    fields: FileFields,
}

/// Each field is a list of locations (a single string is accepted too).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    accession: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accession_issuer: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    study_uid: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patient_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_status: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_time: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exam_time: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patient_class: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    placer: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filler: Option<OneOrMany>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(
    untagged,
    expecting = "must be a location such as \"OBR-18\" or a list of them"
)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileLinking {
    #[serde(skip_serializing_if = "Option::is_none")]
    probable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probable_window: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_before_study: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileDicomReports {
    #[serde(skip_serializing_if = "Option::is_none")]
    pdf_is_final: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileAlerts {
    /// OBX-8 flag → category. Replaces the defaults when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<BTreeMap<String, String>>,
    /// Phrase → category. Replaces the defaults when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    patterns: Option<BTreeMap<String, String>>,
}

// --- validation -------------------------------------------------------------

pub(super) fn validate(file: &FileReports, problems: &mut Problems) -> Reports {
    let h = &file.hl7;
    let listen_text = h.listen.as_deref().unwrap_or(defaults::LISTEN);
    let listen = listen_text.parse().unwrap_or_else(|_| {
        problems.push(
            "reports.hl7.listen",
            format!("`{listen_text}` is not an address and port such as \"127.0.0.1:2575\""),
        );
        SocketAddr::from(([127, 0, 0, 1], 2575))
    });
    let max_message_bytes = match &h.max_message_bytes {
        None => defaults::MAX_MESSAGE_BYTES,
        Some(ByteSize::Int(n)) => u64::try_from(*n).unwrap_or(0),
        Some(ByteSize::Str(s)) => parse_byte_size(s).unwrap_or_else(|e| {
            problems.push("reports.hl7.max_message_bytes", e);
            defaults::MAX_MESSAGE_BYTES
        }),
    };
    if !(1024..=64 * 1024 * 1024).contains(&max_message_bytes) {
        problems.push(
            "reports.hl7.max_message_bytes",
            "must be between 1 KiB and 64 MiB",
        );
    }
    let max_connections = h.max_connections.unwrap_or(defaults::MAX_CONNECTIONS);
    if !(1..=1024).contains(&max_connections) {
        problems.push("reports.hl7.max_connections", "must be between 1 and 1024");
    }
    let frame_timeout = duration(
        "reports.hl7.frame_timeout",
        h.frame_timeout.as_deref(),
        defaults::FRAME_TIMEOUT,
        true,
        problems,
    );
    let mut allowed_senders = Vec::new();
    for (i, s) in h.allowed_senders.iter().flatten().enumerate() {
        match Sender::parse(s) {
            Ok(sender) => allowed_senders.push(sender),
            Err(e) => problems.push(format!("reports.hl7.allowed_senders[{i}]"), e),
        }
    }
    let application = h
        .application
        .as_deref()
        .unwrap_or(defaults::APPLICATION)
        .trim()
        .to_owned();
    let facility = h.facility.as_deref().unwrap_or("").trim().to_owned();
    for (key, value) in [
        ("reports.hl7.application", &application),
        ("reports.hl7.facility", &facility),
    ] {
        if value.chars().any(|c| "|^~\\&\r\n".contains(c)) {
            problems.push(
                key,
                "must not contain HL7 separators (| ^ ~ \\ &) or line breaks",
            );
        }
    }
    if application.is_empty() {
        problems.push("reports.hl7.application", "must not be empty");
    }

    let fields = validate_fields(&h.fields, problems);

    let linking = Linking {
        probable: file.linking.probable.unwrap_or(defaults::PROBABLE),
        probable_window: duration(
            "reports.linking.probable_window",
            file.linking.probable_window.as_deref(),
            defaults::PROBABLE_WINDOW,
            true,
            problems,
        ),
        report_before_study: duration(
            "reports.linking.report_before_study",
            file.linking.report_before_study.as_deref(),
            defaults::REPORT_BEFORE_STUDY,
            true,
            problems,
        ),
    };
    let dicom = DicomReports {
        pdf_is_final: file.dicom.pdf_is_final.unwrap_or(defaults::PDF_IS_FINAL),
    };

    let mut alerts = AlertRules::default();
    if let Some(flags) = &file.alerts.flags {
        alerts.flags = categories("reports.alerts.flags", flags, problems);
    }
    if let Some(patterns) = &file.alerts.patterns {
        alerts.patterns = categories("reports.alerts.patterns", patterns, problems);
    }
    // One order whatever the file's, so that equal settings compare equal.
    alerts.flags.sort();
    alerts.patterns.sort();
    if let Err(e) = alerts.validate() {
        problems.push("reports.alerts", e.to_string());
    }

    Reports {
        hl7: Hl7 {
            listen,
            max_message_bytes: usize::try_from(max_message_bytes).unwrap_or(usize::MAX),
            max_connections: usize::try_from(max_connections).unwrap_or(1),
            frame_timeout,
            allowed_senders,
            application,
            facility,
            fields,
        },
        linking,
        dicom,
        alerts,
    }
}

fn categories(
    key: &str,
    map: &BTreeMap<String, String>,
    problems: &mut Problems,
) -> Vec<(String, Category)> {
    let mut out = Vec::new();
    for (name, category) in map {
        match category.parse::<Category>() {
            Ok(c) => out.push((name.clone(), c)),
            Err(e) => problems.push(format!("{key}.{name:?}"), e.to_string()),
        }
    }
    out
}

fn validate_fields(f: &FileFields, problems: &mut Problems) -> Fields {
    let mut fields = Fields::default();
    let mut list = |name: &str, value: &Option<OneOrMany>, target: &mut Vec<Location>| {
        let Some(value) = value else { return };
        let mut locations = Vec::new();
        for (i, item) in value.items().into_iter().enumerate() {
            match Location::parse(item) {
                Ok(l) => locations.push(l),
                Err(e) => problems.push(format!("reports.hl7.fields.{name}[{i}]"), e.to_string()),
            }
        }
        *target = locations;
    };
    list("accession", &f.accession, &mut fields.accession);
    list(
        "accession_issuer",
        &f.accession_issuer,
        &mut fields.accession_issuer,
    );
    list("study_uid", &f.study_uid, &mut fields.study_uid);
    list("result_status", &f.result_status, &mut fields.result_status);
    list("report_time", &f.report_time, &mut fields.report_time);
    list("exam_time", &f.exam_time, &mut fields.exam_time);
    list("author", &f.author, &mut fields.author);
    list("patient_class", &f.patient_class, &mut fields.patient_class);
    list("priority", &f.priority, &mut fields.priority);
    list("placer", &f.placer, &mut fields.placer);
    list("filler", &f.filler, &mut fields.filler);
    if let Some(p) = &f.patient_id {
        match Location::parse(p) {
            Ok(l) => fields.patient_id = l,
            Err(e) => problems.push("reports.hl7.fields.patient_id", e.to_string()),
        }
    }
    if fields.result_status.is_empty() {
        problems.push(
            "reports.hl7.fields.result_status",
            "must name at least one location: a report's status decides whether it counts",
        );
    }
    fields
}

// --- back to the file ---------------------------------------------------------

pub(super) fn to_file(r: &Reports) -> FileReports {
    let many = |v: &[Location]| Some(OneOrMany::Many(v.iter().map(|l| l.to_string()).collect()));
    let f = &r.hl7.fields;
    FileReports {
        hl7: FileHl7 {
            listen: Some(r.hl7.listen.to_string()),
            max_message_bytes: Some(ByteSize::Int(
                i64::try_from(r.hl7.max_message_bytes).unwrap_or(i64::MAX),
            )),
            max_connections: Some(i64::try_from(r.hl7.max_connections).unwrap_or(i64::MAX)),
            frame_timeout: Some(format_duration(r.hl7.frame_timeout)),
            allowed_senders: Some(r.hl7.allowed_senders.iter().map(Sender::render).collect()),
            application: Some(r.hl7.application.clone()),
            facility: Some(r.hl7.facility.clone()),
            fields: FileFields {
                accession: many(&f.accession),
                accession_issuer: many(&f.accession_issuer),
                study_uid: many(&f.study_uid),
                patient_id: Some(f.patient_id.to_string()),
                result_status: many(&f.result_status),
                report_time: many(&f.report_time),
                exam_time: many(&f.exam_time),
                author: many(&f.author),
                patient_class: many(&f.patient_class),
                priority: many(&f.priority),
                placer: many(&f.placer),
                filler: many(&f.filler),
            },
        },
        linking: FileLinking {
            probable: Some(r.linking.probable),
            probable_window: Some(format_duration(r.linking.probable_window)),
            report_before_study: Some(format_duration(r.linking.report_before_study)),
        },
        dicom: FileDicomReports {
            pdf_is_final: Some(r.dicom.pdf_is_final),
        },
        alerts: FileAlerts {
            flags: Some(
                r.alerts
                    .flags
                    .iter()
                    .map(|(k, c)| (k.clone(), c.as_str().to_owned()))
                    .collect(),
            ),
            patterns: Some(
                r.alerts
                    .patterns
                    .iter()
                    .map(|(k, c)| (k.clone(), c.as_str().to_owned()))
                    .collect(),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn problems(s: &str) -> Vec<(String, String)> {
        Config::from_toml_str(s)
            .expect_err("should be refused")
            .problems
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect()
    }

    #[test]
    fn defaults_listen_on_loopback_with_the_documented_fields() {
        let c = Config::from_toml_str("version = 1").expect("defaults");
        let r = &c.reports;
        assert_eq!(r.hl7.listen, "127.0.0.1:2575".parse().expect("addr"));
        assert_eq!(r.hl7.max_message_bytes, 1_048_576);
        assert!(r.hl7.allowed_senders.is_empty());
        assert!(r.hl7.sender_allowed("ANY", "WHERE"));
        assert_eq!(r.hl7.fields, crate::hl7::message::Fields::default());
        assert!(!r.linking.probable);
        assert!(r.dicom.pdf_is_final);
        assert_eq!(r.alerts.flags.len(), 3);
    }

    #[test]
    fn fields_senders_and_alerts_are_read_and_checked() {
        let c = Config::from_toml_str(
            "version = 1\n[reports.hl7]\nallowed_senders = [\"CRIS^RXX\", \"PACSRIS\"]\n\
             [reports.hl7.fields]\naccession = \"OBR-3\"\nstudy_uid = []\n\
             [reports.alerts]\nflags = { A = \"urgent\" }\n",
        )
        .expect("valid");
        let h = &c.reports.hl7;
        assert_eq!(h.fields.accession.len(), 1);
        assert_eq!(h.fields.accession[0].to_string(), "OBR-3");
        assert!(h.fields.study_uid.is_empty());
        assert!(h.sender_allowed("CRIS", "RXX"));
        assert!(h.sender_allowed("CRIS^1.2.3^ISO", "RXX^^"));
        assert!(!h.sender_allowed("CRIS", "RYY"));
        assert!(h.sender_allowed("PACSRIS", "ANYWHERE"));
        assert!(!h.sender_allowed("OTHER", "RXX"));
        assert_eq!(c.reports.alerts.flags.len(), 1);

        let found = problems(
            "version = 1\n[reports.hl7]\nlisten = \"nowhere\"\nmax_message_bytes = 10\n\
             allowed_senders = [\"^RXX\"]\napplication = \"A|B\"\n\
             [reports.hl7.fields]\naccession = [\"OBR\", \"OBR-18\"]\nresult_status = []\n\
             [reports.alerts]\npatterns = { \"bad\" = \"severe\", \" \" = \"critical\" }\n",
        );
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "reports.hl7.listen",
            "reports.hl7.max_message_bytes",
            "reports.hl7.allowed_senders[0]",
            "reports.hl7.application",
            "reports.hl7.fields.accession[0]",
            "reports.hl7.fields.result_status",
            "reports.alerts.patterns.\"bad\"",
            "reports.alerts",
        ] {
            assert!(keys.contains(&key), "{key} not in {found:?}");
        }
    }

    #[test]
    fn effective_toml_round_trips_the_reports_section() {
        let c = Config::from_toml_str(
            "version = 1\n[reports.hl7]\nallowed_senders = [\"CRIS^RXX\"]\n\
             [reports.linking]\nprobable = true\nprobable_window = \"36h\"\n",
        )
        .expect("valid");
        let again = Config::from_toml_str(&c.effective_toml()).expect("reloads");
        assert_eq!(again.reports, c.reports);
    }
}
