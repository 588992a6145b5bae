//! One HL7 v2 message → the facts the gateway needs, or the reason it is refused.
//!
//! [`parse`] reads the bytes of one MLLP frame. It is tolerant of what real
//! RIS send (CR, LF or CRLF between segments, Latin-1 text, v2.7's fifth
//! encoding character, lines broken inside report text) and strict about
//! what it cannot act on: a message it cannot read, or of a type, version
//! or processing ID it does not take, is refused with AR; a report missing
//! what the gateway needs (an OBR, a result status, any link key) with AE.
//! Either way [`Rejected`] carries a reason short enough for MSA-3 and as
//! much of MSH as could be read, so the caller can always answer.
//!
//! Structure comes from `hl7-parser`, one segment at a time. Two of its
//! conveniences are deliberately not used because peer input can break them:
//! its escape decoding (`Separators::decode`, used by its `display` module)
//! slices strings by character index and panics on non-ASCII text with
//! escapes, so [`unescape`] is ours; and its jiff conversions construct
//! dates with panicking constructors, so [`parse_timestamp`] builds jiff
//! values with the fallible ones. Whole-message parsing is also done here,
//! not by `Message::parse`: that would misnumber every MSH field after a
//! five-character MSH-2 and silently drop all segments after a malformed line.
//!
//! This module validates nothing beyond the message itself: Study Instance
//! UIDs are only trimmed (the caller checks the UID grammar), and nothing is
//! looked up, stored or deduplicated here.

// `Rejected` carries the header so the ACK can use the sender's separators;
// it is built at most once per message, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use hl7_parser::message::{Field, Repeat, Separators};
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};

/// MSA-3 (text message) is at most this many characters.
pub const MAX_REASON_CHARS: usize = 80;

// ---------------------------------------------------------------- Location

/// Where a value is read from: a segment, a field and optionally a
/// component and subcomponent (all 1-based), written `OBR-27.6` or `PID-3.4.1`.
///
/// When the component (or subcomponent) is omitted, the first one is read,
/// except where a reader says otherwise (author names and patient IDs read
/// the whole field's structure).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Location {
    /// Segment name, three upper-case letters or digits, e.g. `OBR`.
    pub segment: String,
    /// Field number, from 1.
    pub field: usize,
    /// Component number, from 1.
    pub component: Option<usize>,
    /// Subcomponent number, from 1.
    pub subcomponent: Option<usize>,
}

/// Why a location string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// Nothing was given.
    #[error("empty HL7 location: expected e.g. OBR-18 or OBR-27.6")]
    Empty,
    /// The segment name is not three letters or digits.
    #[error("HL7 location {0:?}: the segment must be 3 letters or digits, e.g. OBR-18")]
    Segment(String),
    /// No field number follows the segment.
    #[error("HL7 location {0:?}: a field number must follow the segment, e.g. OBR-18")]
    NoField(String),
    /// A number is missing, not a number, zero or too large.
    #[error("HL7 location {input:?}: {part} {value:?} is not a number from 1 to 999")]
    Number {
        /// The whole location as given.
        input: String,
        /// Which part is wrong: field, component or subcomponent.
        part: &'static str,
        /// The part as given.
        value: String,
    },
    /// More than segment-field.component.subcomponent.
    #[error("HL7 location {0:?}: at most segment-field.component.subcomponent, e.g. PID-3.4.1")]
    TooDeep(String),
}

impl Location {
    /// Parses `OBR-18`, `OBR-27.6`, `PID-3.4.1`; `OBR.18` (dots only) is accepted too.
    pub fn parse(s: &str) -> Result<Location, LocationError> {
        let input = s.trim();
        if input.is_empty() {
            return Err(LocationError::Empty);
        }
        let segment = input
            .get(..3)
            .filter(|name| name.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or_else(|| LocationError::Segment(input.to_string()))?;
        let rest = input.get(3..).unwrap_or_default();
        let numbers = rest
            .strip_prefix('-')
            .or_else(|| rest.strip_prefix('.'))
            .ok_or_else(|| {
                if rest.is_empty() {
                    LocationError::NoField(input.to_string())
                } else {
                    LocationError::Segment(input.to_string())
                }
            })?;
        let parts: Vec<&str> = numbers.split('.').collect();
        if parts.len() > 3 {
            return Err(LocationError::TooDeep(input.to_string()));
        }
        let number = |i: usize, part: &'static str| -> Result<Option<usize>, LocationError> {
            let Some(value) = parts.get(i) else {
                return Ok(None);
            };
            match value.parse::<usize>() {
                Ok(n) if (1..=999).contains(&n) && value.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(Some(n))
                }
                _ => Err(LocationError::Number {
                    input: input.to_string(),
                    part,
                    value: value.to_string(),
                }),
            }
        };
        let field = number(0, "field")?.ok_or_else(|| LocationError::NoField(input.to_string()))?;
        Ok(Location {
            segment: segment.to_ascii_uppercase(),
            field,
            component: number(1, "component")?,
            subcomponent: number(2, "subcomponent")?,
        })
    }

    /// Whether this names a whole field of type EI (entity identifier), whose
    /// component 2 is the namespace that issued the identifier.
    fn is_entity_identifier(&self) -> bool {
        self.component.is_none()
            && matches!(
                (self.segment.as_str(), self.field),
                ("OBR", 2 | 3) | ("ORC", 2..=4) | ("IPC", 1 | 2 | 4)
            )
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.segment, self.field)?;
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
            if let Some(s) = self.subcomponent {
                write!(f, ".{s}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Location {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Location::parse(s)
    }
}

impl TryFrom<String> for Location {
    type Error = LocationError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Location::parse(&s)
    }
}

impl From<Location> for String {
    fn from(l: Location) -> String {
        l.to_string()
    }
}

// ---------------------------------------------------------------- Fields

/// Where each value is read from. Each list is tried in order and the first
/// non-empty value wins; an empty list reads nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// Accession number; default OBR-18, then OBR-3.
    pub accession: Vec<Location>,
    /// Accession issuer; none by default. When none is found and the
    /// accession came from a whole EI field (OBR-2/3, ORC-2/3/4, IPC-1/2/4),
    /// that field's namespace (component 2) is used if non-empty.
    pub accession_issuer: Vec<Location>,
    /// Study Instance UID; default ZDS-1 (IHE v2.3.1), then IPC-3 (v2.5.1).
    pub study_uid: Vec<Location>,
    /// Patient identifier list (CX, every repeat); default PID-3. Its
    /// component and subcomponent, if given, are ignored.
    pub patient_id: Location,
    /// Result status; default OBR-25.
    pub result_status: Vec<Location>,
    /// Time the report was made; default OBR-22.
    pub report_time: Vec<Location>,
    /// Time of the examination; default OBR-7.
    pub exam_time: Vec<Location>,
    /// Reporting radiologist; default OBR-32 (a whole NDL/CN field is
    /// rendered as a readable name).
    pub author: Vec<Location>,
    /// Patient class; default PV1-2.
    pub patient_class: Vec<Location>,
    /// Priority; default OBR-27.6, TQ1-9, ORC-7.6.
    pub priority: Vec<Location>,
    /// Placer order number; default OBR-2, ORC-2.
    pub placer: Vec<Location>,
    /// Filler order number; default OBR-3, ORC-3.
    pub filler: Vec<Location>,
}

impl Default for Fields {
    fn default() -> Self {
        fn locs(list: &[(&str, usize, Option<usize>)]) -> Vec<Location> {
            list.iter()
                .map(|&(segment, field, component)| Location {
                    segment: segment.to_string(),
                    field,
                    component,
                    subcomponent: None,
                })
                .collect()
        }
        Fields {
            accession: locs(&[("OBR", 18, None), ("OBR", 3, None)]),
            accession_issuer: Vec::new(),
            study_uid: locs(&[("ZDS", 1, None), ("IPC", 3, None)]),
            patient_id: Location {
                segment: "PID".to_string(),
                field: 3,
                component: None,
                subcomponent: None,
            },
            result_status: locs(&[("OBR", 25, None)]),
            report_time: locs(&[("OBR", 22, None)]),
            exam_time: locs(&[("OBR", 7, None)]),
            author: locs(&[("OBR", 32, None)]),
            patient_class: locs(&[("PV1", 2, None)]),
            priority: locs(&[("OBR", 27, Some(6)), ("TQ1", 9, None), ("ORC", 7, Some(6))]),
            placer: locs(&[("OBR", 2, None), ("ORC", 2, None)]),
            filler: locs(&[("OBR", 3, None), ("ORC", 3, None)]),
        }
    }
}

// ---------------------------------------------------------------- results

/// MSA-1 acknowledgement code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Application accept: stored.
    AA,
    /// Application error: a type we take, missing content we need.
    AE,
    /// Application reject: unreadable, or a type, version or processing ID we do not take.
    AR,
}

impl AckCode {
    /// `"AA"`, `"AE"` or `"AR"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
        }
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was read from MSH. String values are as sent (not unescaped), so
/// that they can be echoed in the ACK and compared for duplicates exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// MSH-1.
    pub field_separator: char,
    /// MSH-2 exactly as sent (4 characters, or 5 from v2.7 on).
    pub encoding_characters: String,
    /// MSH-3, all components as sent.
    pub sending_application: String,
    /// MSH-4, all components as sent.
    pub sending_facility: String,
    /// MSH-5, all components as sent.
    pub receiving_application: String,
    /// MSH-6, all components as sent.
    pub receiving_facility: String,
    /// MSH-9.1, e.g. `ORU`.
    pub message_type: String,
    /// MSH-9.2, e.g. `R01`.
    pub trigger_event: String,
    /// MSH-9.3, e.g. `ORU_R01` (empty before v2.3.1).
    pub message_structure: String,
    /// MSH-10, the message control ID.
    pub control_id: String,
    /// MSH-11.1: P, D or T.
    pub processing_id: String,
    /// MSH-12.1, e.g. `2.5.1`.
    pub version: String,
    /// MSH-7, when present and valid.
    pub sent_at: Option<Timestamp>,
}

impl Header {
    /// The separators this message was written with (MSH-1 and MSH-2).
    pub fn separators(&self) -> Separators {
        let mut enc = self.encoding_characters.chars();
        let d = Separators::default();
        Separators {
            field: self.field_separator,
            component: enc.next().unwrap_or(d.component),
            repetition: enc.next().unwrap_or(d.repetition),
            escape: enc.next().unwrap_or(d.escape),
            subcomponent: enc.next().unwrap_or(d.subcomponent),
            lenient_newlines: false,
        }
    }
}

/// What a taken message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// ORU^R01 (also ORU with an empty trigger, as v2.1 senders write it).
    /// ORU^R30–R32 are point-of-care observations, not reports, and are refused.
    Report,
    /// ORM^O01 or OMI^O23 (ORM with an empty trigger is taken as O01).
    Order,
}

impl Kind {
    /// `"report"` or `"order"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Report => "report",
            Kind::Order => "order",
        }
    }
}

/// OBR-25 result status (HL7 table 0123), as far as the gateway cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultStatus {
    /// P (preliminary) or R (results stored, not yet verified).
    Preliminary,
    /// F.
    Final,
    /// C.
    Corrected,
    /// X: the order was cancelled.
    Cancelled,
    /// Any other single letter (I, S, O, A, D, Y, Z, …): not a report yet.
    Other(char),
}

impl ResultStatus {
    /// Reads a status code; `None` unless it is a single letter (any case).
    pub fn parse(raw: &str) -> Option<ResultStatus> {
        let mut chars = raw.trim().chars();
        let c = chars.next()?.to_ascii_uppercase();
        if chars.next().is_some() || !c.is_ascii_alphabetic() {
            return None;
        }
        Some(match c {
            'P' | 'R' => ResultStatus::Preliminary,
            'F' => ResultStatus::Final,
            'C' => ResultStatus::Corrected,
            'X' => ResultStatus::Cancelled,
            other => ResultStatus::Other(other),
        })
    }

    /// `"preliminary"`, `"final"`, `"corrected"`, `"cancelled"`, or `"other"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ResultStatus::Preliminary => "preliminary",
            ResultStatus::Final => "final",
            ResultStatus::Corrected => "corrected",
            ResultStatus::Cancelled => "cancelled",
            ResultStatus::Other(_) => "other",
        }
    }

    /// Whether this stops the formal-report clock (final or corrected).
    pub fn is_formal(&self) -> bool {
        matches!(self, ResultStatus::Final | ResultStatus::Corrected)
    }
}

/// One repeat of PID-3 (CX).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientId {
    /// Component 1, the identifier.
    pub id: String,
    /// Component 4's first subcomponent (the assigning authority's namespace), e.g. `NHS`.
    pub assigning_authority: Option<String>,
    /// Component 4 as sent, all subcomponents (e.g. `NHS&2.16.840.1.113883.2.1.4.1&ISO`).
    pub assigning_authority_raw: Option<String>,
    /// Component 5, the identifier type code, e.g. `MR`, `NH`.
    pub type_code: Option<String>,
}

/// One order/observation group: an OBR, with the ORC before it (if any)
/// and the segments after it (OBX, ZDS, IPC, TQ1, NTE…) up to the next group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Placer order number (first component).
    pub placer: Option<String>,
    /// Filler order number (first component).
    pub filler: Option<String>,
    /// Accession number.
    pub accession: Option<String>,
    /// The authority that issued the accession number.
    pub accession_issuer: Option<String>,
    /// Study Instance UID, trimmed only (not validated).
    pub study_uid: Option<String>,
    /// Result status, when it is a single letter.
    pub result_status: Option<ResultStatus>,
    /// Result status as sent (unescaped, trimmed).
    pub raw_result_status: Option<String>,
    /// ORC-1 order control, e.g. `NW`, `CA`, `RE`.
    pub order_control: Option<String>,
    /// ORC-5 order status.
    pub order_status: Option<String>,
    /// When the report was made (OBR-22 by default).
    pub report_time: Option<Timestamp>,
    /// When the examination was done (OBR-7 by default).
    pub exam_time: Option<Timestamp>,
    /// The reporting radiologist, readable, e.g. `Dr Jane Smith (R123)`.
    pub author: Option<String>,
    /// Priority code as sent, e.g. `S`, `A`, `R`.
    pub priority: Option<String>,
    /// OBR-4 procedure: its text (component 2), else its code (component 1).
    pub procedure: Option<String>,
    /// Report text: one line per text OBX and per repeat, escapes decoded.
    pub text: String,
    /// OBX-8 abnormal flags, upper-cased, without duplicates, in order of appearance.
    pub abnormal_flags: Vec<String>,
    /// Whether any OBX-11 in this group is `W` (posted in error, withdrawn).
    pub withdrawn: bool,
}

impl Request {
    /// Whether any key that can link this to a study is present.
    pub fn has_link_key(&self) -> bool {
        self.study_uid.is_some()
            || self.accession.is_some()
            || self.placer.is_some()
            || self.filler.is_some()
    }
}

/// A message that was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// What MSH says.
    pub header: Header,
    /// Report or order.
    pub kind: Kind,
    /// Every identifier in the first PID's PID-3 (or the configured field).
    pub patient_ids: Vec<PatientId>,
    /// PV1-2 (or the configured field).
    pub patient_class: Option<String>,
    /// One per OBR (orders: per ORC/OBR pair), in message order.
    pub requests: Vec<Request>,
    /// Things worth a log line that did not stop the message (e.g. a
    /// malformed report time, which was ignored). Never patient names.
    pub warnings: Vec<String>,
}

/// A message that was refused, and everything needed to say so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Rejected {
    /// AE or AR.
    pub code: AckCode,
    /// Why, readable, at most [`MAX_REASON_CHARS`] characters, no patient data.
    pub reason: String,
    /// As much of MSH as could be read, so that the ACK uses the sender's separators.
    pub header: Option<Header>,
}

impl Rejected {
    fn new(code: AckCode, reason: impl Into<String>, header: Option<&Header>) -> Self {
        Rejected {
            code,
            reason: truncate_chars(&reason.into(), MAX_REASON_CHARS),
            header: header.cloned(),
        }
    }
}

// ---------------------------------------------------------------- parse

/// Parses one message (the bytes inside one MLLP frame) and extracts what
/// `fields` names. Local times without an offset are read in `tz`.
///
/// Never panics, whatever the bytes.
pub fn parse(raw: &[u8], fields: &Fields, tz: &TimeZone) -> Result<Parsed, Rejected> {
    let text = decode_text(raw);
    let text = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if !text.starts_with("MSH") {
        return Err(Rejected::new(
            AckCode::AR,
            "not an HL7 v2 message: it does not start with MSH",
            None,
        ));
    }
    if looks_binary(text) {
        return Err(Rejected::new(
            AckCode::AR,
            "message holds binary data (control characters), not HL7 text",
            None,
        ));
    }

    let mut warnings = Vec::new();
    let lines = logical_lines(text, &mut warnings);
    let msh_line = lines.first().map(|l| l.as_ref()).unwrap_or_default();
    let (header_start, seps) = read_separators(msh_line)?;
    // MSH re-assembled without MSH-1/MSH-2, so that MSH-n is fields[n - 3]
    // however many encoding characters were sent.
    let msh_rest = format!("MSH{}", header_start.rest);
    let msh = parse_segment(&msh_rest, &seps, 3, &mut warnings);
    let mut segs = vec![msh];
    for line in lines.iter().skip(1) {
        segs.push(parse_segment(line, &seps, 1, &mut warnings));
    }
    let msg = Msg { seps, segs };

    let header = msg.header(header_start.fs, header_start.encoding, tz, &mut warnings);
    let kind = check_header(&header)?;
    let requests = msg.requests(kind, fields, tz, &mut warnings, &header)?;
    let (patient_ids, patient_class) = msg.patient(fields, &mut warnings);

    Ok(Parsed {
        header,
        kind,
        patient_ids,
        patient_class,
        requests,
        warnings,
    })
}

/// Text of the message: UTF-8 when it is valid UTF-8, else ISO-8859-1
/// (every byte is a character; common from RIS), except that 0x80–0x9F are
/// read as Windows-1252 (quotes, dashes, €): that is what "Latin-1" senders
/// on Windows mean, and as ISO-8859-1 they would be control characters.
fn decode_text(raw: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(raw.iter().map(|&b| latin1_char(b)).collect()),
    }
}

/// Windows-1252 for 0x80–0x9F where it defines a character, else ISO-8859-1.
fn latin1_char(b: u8) -> char {
    const CP1252: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}',
        '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}',
        '\u{178}',
    ];
    match b {
        0x80..=0x9f => CP1252
            .get(usize::from(b - 0x80))
            .copied()
            .unwrap_or(char::from(b)),
        _ => char::from(b),
    }
}

/// More than a tenth control characters (other than CR, LF, tab and form
/// feed) means the payload is not text. A stray one in report text is fine.
fn looks_binary(text: &str) -> bool {
    let mut total = 0usize;
    let mut control = 0usize;
    for c in text.chars() {
        total += 1;
        if c.is_control() && !matches!(c, '\r' | '\n' | '\t' | '\u{0c}') {
            control += 1;
        }
    }
    control.saturating_mul(10) > total
}

/// Splits into segments on CR, LF or CRLF. Blank lines are skipped. A line
/// that does not start like a segment (three letters or digits, then the
/// field separator) is taken as the continuation of the previous segment
/// after a bare line break inside a value, typically report text: it is
/// joined back with a newline rather than lost.
fn logical_lines<'a>(text: &'a str, warnings: &mut Vec<String>) -> Vec<Cow<'a, str>> {
    // The MSH check before this guarantees a 4th character when there is one.
    let fs = text.chars().nth(3);
    let mut lines: Vec<Cow<'a, str>> = Vec::new();
    let mut joined = 0usize;
    for line in text.split(['\r', '\n']) {
        if line.trim().is_empty() {
            continue;
        }
        match lines.last_mut() {
            Some(last) if !starts_segment(line, fs) => {
                let last = last.to_mut();
                last.push('\n');
                last.push_str(line);
                joined += 1;
            }
            _ => lines.push(Cow::Borrowed(line)),
        }
    }
    if joined > 0 {
        warnings.push(format!(
            "{joined} line(s) not starting with a segment name were joined to the segment before"
        ));
    }
    lines
}

fn starts_segment(line: &str, fs: Option<char>) -> bool {
    let mut chars = line.chars();
    let name_ok = (0..3).all(|_| chars.next().is_some_and(|c| c.is_ascii_alphanumeric()));
    name_ok
        && match chars.next() {
            None => true,
            Some(c) => Some(c) == fs,
        }
}

struct MshStart<'a> {
    fs: char,
    encoding: &'a str,
    /// MSH after MSH-2: empty, or starting with the field separator.
    rest: &'a str,
}

/// Reads MSH-1 and MSH-2 and checks that they make usable separators.
fn read_separators(msh: &str) -> Result<(MshStart<'_>, Separators), Rejected> {
    let after = msh.get(3..).unwrap_or_default();
    let mut chars = after.chars();
    let Some(fs) = chars.next() else {
        return Err(Rejected::new(
            AckCode::AR,
            "MSH-1 (field separator) is missing",
            None,
        ));
    };
    if !fs.is_ascii_punctuation() {
        return Err(Rejected::new(
            AckCode::AR,
            "MSH-1 (field separator) must be a symbol such as |",
            None,
        ));
    }
    let after_fs = chars.as_str();
    let enc_len = after_fs.find(fs).unwrap_or(after_fs.len());
    let (encoding, rest) = after_fs.split_at(enc_len);
    let enc: Vec<char> = encoding.chars().collect();
    let mut all = enc.clone();
    all.push(fs);
    let distinct = all
        .iter()
        .enumerate()
        .all(|(i, c)| !all.iter().skip(i + 1).any(|d| d == c));
    if !(4..=5).contains(&enc.len()) || !enc.iter().all(|c| c.is_ascii_punctuation()) || !distinct {
        return Err(Rejected::new(
            AckCode::AR,
            "MSH-2 (encoding characters) must be 4 or 5 distinct symbols, e.g. ^~\\&",
            None,
        ));
    }
    let seps = Separators {
        field: fs,
        component: enc.first().copied().unwrap_or('^'),
        repetition: enc.get(1).copied().unwrap_or('~'),
        escape: enc.get(2).copied().unwrap_or('\\'),
        subcomponent: enc.get(3).copied().unwrap_or('&'),
        lenient_newlines: false,
    };
    Ok((MshStart { fs, encoding, rest }, seps))
}

/// A segment with its name normalised to upper case. `first` is the number
/// of the field at `fields[0]`: 3 for MSH (MSH-1 and MSH-2 are the
/// separators), 1 otherwise.
struct Seg<'a> {
    name: String,
    fields: Vec<Field<'a>>,
    first: usize,
}

impl<'a> Seg<'a> {
    fn field(&self, number: usize) -> Option<&Field<'a>> {
        self.fields.get(number.checked_sub(self.first)?)
    }
}

fn parse_segment<'a>(
    line: &'a str,
    seps: &Separators,
    first: usize,
    warnings: &mut Vec<String>,
) -> Seg<'a> {
    let name: String = line
        .chars()
        .take(3)
        .collect::<String>()
        .to_ascii_uppercase();
    let has_fields = line.chars().nth(3).is_some();
    let fields = if has_fields {
        match hl7_parser::parser::parse_segment_with_separators(line, *seps) {
            Ok(segment) => segment.fields,
            Err(_) => {
                warnings.push(format!(
                    "segment {} could not be read; ignored",
                    shown(&name, 3)
                ));
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    Seg {
        name,
        fields,
        first,
    }
}

/// The parsed segments, MSH first, and the separators.
struct Msg<'a> {
    seps: Separators,
    segs: Vec<Seg<'a>>,
}

/// Segments read message-wide (first occurrence), never per order group.
const MESSAGE_LEVEL: &[&str] = &["MSH", "SFT", "EVN", "PID", "PD1", "PV1", "PV2"];

/// An order group: indexes into `Msg::segs`.
struct Group {
    start: usize,
    end: usize,
    orc: Option<usize>,
    obr: Option<usize>,
}

impl<'a> Msg<'a> {
    fn msh(&self) -> Option<&Seg<'a>> {
        self.segs.first()
    }

    fn header(
        &self,
        fs: char,
        encoding: &str,
        tz: &TimeZone,
        warnings: &mut Vec<String>,
    ) -> Header {
        let msh = self.msh();
        let field = |n: usize| msh.and_then(|s| s.field(n));
        let whole = |n: usize| {
            field(n)
                .map(|f| f.raw_value().to_string())
                .unwrap_or_default()
        };
        let comp = |n: usize, c: usize| {
            field(n)
                .and_then(|f| f.repeats.first())
                .and_then(|r| component(r, c))
                .unwrap_or_default()
                .to_string()
        };
        let sent_raw = comp(7, 1);
        let sent_at = match parse_timestamp(&unescape(&sent_raw, &self.seps), tz) {
            Ok(t) => t,
            Err(e) => {
                warnings.push(format!("MSH-7 (message time) ignored: {e}"));
                None
            }
        };
        Header {
            field_separator: fs,
            encoding_characters: encoding.to_string(),
            sending_application: whole(3),
            sending_facility: whole(4),
            receiving_application: whole(5),
            receiving_facility: whole(6),
            message_type: comp(9, 1),
            trigger_event: comp(9, 2),
            message_structure: comp(9, 3),
            control_id: whole(10),
            processing_id: comp(11, 1),
            version: comp(12, 1),
            sent_at,
        }
    }

    /// Order groups: an ORC starts one; an OBR joins the group of an ORC
    /// that has no OBR yet, else starts one. Everything up to the next group
    /// belongs to the group before it.
    fn groups(&self) -> (usize, Vec<Group>) {
        let mut groups: Vec<Group> = Vec::new();
        for (i, seg) in self.segs.iter().enumerate().skip(1) {
            match seg.name.as_str() {
                "ORC" => groups.push(Group {
                    start: i,
                    end: i,
                    orc: Some(i),
                    obr: None,
                }),
                "OBR" => match groups.last_mut() {
                    Some(g) if g.orc.is_some() && g.obr.is_none() => g.obr = Some(i),
                    _ => groups.push(Group {
                        start: i,
                        end: i,
                        orc: None,
                        obr: Some(i),
                    }),
                },
                _ => {}
            }
        }
        let len = self.segs.len();
        let starts: Vec<usize> = groups.iter().map(|g| g.start).collect();
        for (n, g) in groups.iter_mut().enumerate() {
            g.end = starts.get(n + 1).copied().unwrap_or(len);
        }
        let preamble_end = starts.first().copied().unwrap_or(len);
        (preamble_end, groups)
    }

    /// Segments a location may be read from for a group: message-level
    /// segments message-wide; others from the group, and for the first
    /// group also from before it (e.g. a ZDS sent ahead of the first OBR).
    fn candidates<'s>(
        &'s self,
        name: &'s str,
        group: &Group,
        first_group: bool,
        preamble_end: usize,
    ) -> impl Iterator<Item = &'s Seg<'a>> + 's {
        let message_level = MESSAGE_LEVEL.contains(&name);
        let own = if message_level {
            0..self.segs.len()
        } else {
            group.start..group.end
        };
        let before = if first_group && !message_level {
            0..preamble_end.min(group.start)
        } else {
            0..0
        };
        own.chain(before)
            .filter_map(|i| self.segs.get(i))
            .filter(move |s| s.name == name)
    }

    /// The first non-empty value at any of `locs`, with where it was found.
    fn first_value<'s>(
        &'s self,
        locs: &'s [Location],
        group: &Group,
        first_group: bool,
        preamble_end: usize,
    ) -> Option<(String, &'s Location, &'s Seg<'a>)> {
        locs.iter().find_map(|loc| {
            self.candidates(&loc.segment, group, first_group, preamble_end)
                .find_map(|seg| self.leaf(seg, loc).map(|v| (v, loc, seg)))
        })
    }

    /// The value at `loc` in `seg` (first repeat; first component and
    /// subcomponent where not given), unescaped, trimmed, non-empty.
    fn leaf(&self, seg: &Seg<'a>, loc: &Location) -> Option<String> {
        let repeat = seg.field(loc.field)?.repeats.first()?;
        self.leaf_in_repeat(
            repeat,
            loc.component.unwrap_or(1),
            loc.subcomponent.unwrap_or(1),
        )
    }

    fn leaf_in_repeat(&self, repeat: &Repeat<'a>, comp: usize, sub: usize) -> Option<String> {
        let component = repeat.components.get(comp.checked_sub(1)?)?;
        let value = component.subcomponents.get(sub.checked_sub(1)?)?.value;
        clean(&unescape(value, &self.seps))
    }

    fn requests(
        &self,
        kind: Kind,
        fields: &Fields,
        tz: &TimeZone,
        warnings: &mut Vec<String>,
        header: &Header,
    ) -> Result<Vec<Request>, Rejected> {
        let (preamble_end, groups) = self.groups();
        let groups: Vec<&Group> = groups
            .iter()
            .filter(|g| kind == Kind::Order || g.obr.is_some())
            .collect();
        if groups.is_empty() {
            let reason = match kind {
                Kind::Report => "no OBR segment: a report needs one",
                Kind::Order => "no ORC or OBR segment: an order needs one",
            };
            return Err(Rejected::new(AckCode::AE, reason, Some(header)));
        }
        let several = groups.len() > 1;
        let mut requests = Vec::with_capacity(groups.len());
        for (n, group) in groups.into_iter().enumerate() {
            let label = if several {
                format!("OBR {}: ", n + 1)
            } else {
                String::new()
            };
            let request = self.request(group, n == 0, preamble_end, fields, tz, &label, warnings);
            let problem = if kind == Kind::Report {
                result_status_problem(&request, fields)
            } else {
                None
            };
            let problem = problem.or_else(|| {
                (!request.has_link_key()).then(|| {
                    "no link key: study UID, accession, placer and filler are all empty".to_string()
                })
            });
            if let Some(problem) = problem {
                return Err(Rejected::new(
                    AckCode::AE,
                    format!("{label}{problem}"),
                    Some(header),
                ));
            }
            requests.push(request);
        }
        Ok(requests)
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        group: &Group,
        first: bool,
        preamble_end: usize,
        fields: &Fields,
        tz: &TimeZone,
        label: &str,
        warnings: &mut Vec<String>,
    ) -> Request {
        let value = |locs: &[Location]| {
            self.first_value(locs, group, first, preamble_end)
                .map(|(v, _, _)| v)
        };
        let accession = self.first_value(&fields.accession, group, first, preamble_end);
        let accession_issuer = value(&fields.accession_issuer).or_else(|| {
            let (_, loc, seg) = accession.as_ref()?;
            if !loc.is_entity_identifier() {
                return None;
            }
            let repeat = seg.field(loc.field)?.repeats.first()?;
            self.leaf_in_repeat(repeat, 2, 1)
        });
        let mut time = |locs: &[Location], what: &str| -> Option<Timestamp> {
            let (raw, loc, _) = self.first_value(locs, group, first, preamble_end)?;
            match parse_timestamp(&raw, tz) {
                Ok(t) => t,
                Err(e) => {
                    warnings.push(format!("{label}{loc} ({what}) ignored: {e}"));
                    None
                }
            }
        };
        let report_time = time(&fields.report_time, "report time");
        let exam_time = time(&fields.exam_time, "exam time");
        let raw_result_status = value(&fields.result_status);
        let orc = group.orc.and_then(|i| self.segs.get(i));
        let obr = group.obr.and_then(|i| self.segs.get(i));
        let at = |seg: Option<&Seg<'a>>, field: usize, comp: usize| {
            let repeat = seg?.field(field)?.repeats.first()?;
            self.leaf_in_repeat(repeat, comp, 1)
        };
        let mut request = Request {
            placer: value(&fields.placer),
            filler: value(&fields.filler),
            accession_issuer,
            accession: accession.map(|(v, _, _)| v),
            study_uid: value(&fields.study_uid)
                .and_then(|v| clean(v.trim_matches(|c: char| c.is_whitespace() || c == '\0'))),
            result_status: raw_result_status.as_deref().and_then(ResultStatus::parse),
            raw_result_status,
            order_control: at(orc, 1, 1),
            order_status: at(orc, 5, 1),
            report_time,
            exam_time,
            author: self.author(&fields.author, group, first, preamble_end),
            priority: value(&fields.priority),
            procedure: at(obr, 4, 2).or_else(|| at(obr, 4, 1)),
            ..Request::default()
        };
        self.observations(group, &mut request);
        request
    }

    /// The author: a whole field is read as a name (NDL, CNN or XCN); a
    /// location with a component is read as plain text.
    fn author(
        &self,
        locs: &[Location],
        group: &Group,
        first: bool,
        preamble_end: usize,
    ) -> Option<String> {
        locs.iter().find_map(|loc| {
            self.candidates(&loc.segment, group, first, preamble_end)
                .find_map(|seg| {
                    if loc.component.is_some() {
                        return self.leaf(seg, loc);
                    }
                    seg.field(loc.field)?
                        .repeats
                        .iter()
                        .find_map(|r| self.person_name(r))
                })
        })
    }

    /// `ID^FAMILY^GIVEN^MIDDLE^SUFFIX^PREFIX^DEGREE` (CN/XCN components) or,
    /// in an NDL, the same as subcomponents of component 1 → `PREFIX GIVEN
    /// MIDDLE FAMILY SUFFIX DEGREE (ID)`.
    fn person_name(&self, repeat: &Repeat<'a>) -> Option<String> {
        let first = repeat.components.first()?;
        let parts: Vec<Option<String>> = if first.subcomponents.len() > 1 {
            first
                .subcomponents
                .iter()
                .map(|s| clean(&unescape(s.value, &self.seps)))
                .collect()
        } else {
            (1..=7).map(|c| self.leaf_in_repeat(repeat, c, 1)).collect()
        };
        let part = |i: usize| parts.get(i).cloned().flatten();
        let name: Vec<String> = [5, 2, 3, 1, 4, 6].iter().filter_map(|&i| part(i)).collect();
        let id = part(0);
        match (name.is_empty(), id) {
            (true, id) => id,
            (false, Some(id)) => Some(format!("{} ({id})", name.join(" "))),
            (false, None) => Some(name.join(" ")),
        }
    }

    /// Text, abnormal flags and withdrawal from the group's OBX segments.
    fn observations(&self, group: &Group, request: &mut Request) {
        let mut lines: Vec<String> = Vec::new();
        let obxs = (group.start..group.end)
            .filter_map(|i| self.segs.get(i))
            .filter(|s| s.name == "OBX");
        for obx in obxs {
            let value_type = obx
                .field(2)
                .and_then(|f| f.repeats.first())
                .and_then(|r| self.leaf_in_repeat(r, 1, 1))
                .unwrap_or_default()
                .to_ascii_uppercase();
            let repeats = obx
                .field(5)
                .map(|f| f.repeats.as_slice())
                .unwrap_or_default();
            match value_type.as_str() {
                // An OBX without a value type is read as text: better a report
                // shown verbatim than one silently dropped.
                "TX" | "FT" | "ST" | "" => {
                    if repeats.is_empty() {
                        lines.push(String::new());
                    }
                    for r in repeats {
                        lines.push(unescape(r.raw_value(), &self.seps));
                    }
                }
                "CE" | "CWE" | "CNE" => {
                    for r in repeats {
                        if let Some(t) = self
                            .leaf_in_repeat(r, 2, 1)
                            .or_else(|| self.leaf_in_repeat(r, 9, 1))
                        {
                            lines.push(t);
                        }
                    }
                }
                _ => {}
            }
            for r in obx
                .field(8)
                .map(|f| f.repeats.as_slice())
                .unwrap_or_default()
            {
                if let Some(flag) = self.leaf_in_repeat(r, 1, 1) {
                    let flag = flag.to_uppercase();
                    if !request.abnormal_flags.contains(&flag) {
                        request.abnormal_flags.push(flag);
                    }
                }
            }
            let status = obx
                .field(11)
                .and_then(|f| f.repeats.first())
                .and_then(|r| self.leaf_in_repeat(r, 1, 1));
            if status.is_some_and(|s| s.eq_ignore_ascii_case("W")) {
                request.withdrawn = true;
            }
        }
        let text = lines.join("\n").replace("\r\n", "\n").replace('\r', "\n");
        request.text = text.trim_start_matches('\n').trim_end().to_string();
    }

    /// Patient IDs from the first patient segment, and the patient class.
    fn patient(
        &self,
        fields: &Fields,
        warnings: &mut Vec<String>,
    ) -> (Vec<PatientId>, Option<String>) {
        let loc = &fields.patient_id;
        let mut with_name = self.segs.iter().filter(|s| s.name == loc.segment);
        let ids = with_name
            .next()
            .and_then(|seg| seg.field(loc.field))
            .map(|f| {
                f.repeats
                    .iter()
                    .filter_map(|r| self.patient_id(r))
                    .collect()
            })
            .unwrap_or_default();
        let more = with_name.count();
        if more > 0 {
            warnings.push(format!(
                "{} more {} segment(s) ignored: patient IDs come from the first",
                more,
                shown(&loc.segment, 3)
            ));
        }
        let class = fields.patient_class.iter().find_map(|loc| {
            self.segs
                .iter()
                .filter(|s| s.name == loc.segment)
                .find_map(|s| self.leaf(s, loc))
        });
        (ids, class)
    }

    fn patient_id(&self, repeat: &Repeat<'a>) -> Option<PatientId> {
        let id = self.leaf_in_repeat(repeat, 1, 1)?;
        let raw = repeat
            .components
            .get(3)
            .map(|c| c.raw_value().trim().to_string())
            .filter(|s| !s.is_empty());
        Some(PatientId {
            id,
            assigning_authority: self.leaf_in_repeat(repeat, 4, 1),
            assigning_authority_raw: raw,
            type_code: self.leaf_in_repeat(repeat, 5, 1),
        })
    }
}

fn component<'m>(repeat: &Repeat<'m>, number: usize) -> Option<&'m str> {
    Some(repeat.components.get(number.checked_sub(1)?)?.raw_value())
}

/// Checks type, version, processing ID and control ID; AR names the first problem.
fn check_header(h: &Header) -> Result<Kind, Rejected> {
    let reject = |reason: String| Err(Rejected::new(AckCode::AR, reason, Some(h)));
    let message_type = h.message_type.trim().to_ascii_uppercase();
    let trigger = h.trigger_event.trim().to_ascii_uppercase();
    let kind = match (message_type.as_str(), trigger.as_str()) {
        ("", _) => return reject("MSH-9 (message type) is empty".into()),
        ("ORU", "R01" | "") => Kind::Report,
        ("ORM", "O01" | "") | ("OMI", "O23") => Kind::Order,
        _ => {
            let sent = if trigger.is_empty() {
                message_type
            } else {
                format!("{message_type}^{trigger}")
            };
            return reject(format!(
                "message type {} is not taken: only ORU^R01, ORM^O01 and OMI^O23",
                shown(&sent, 12)
            ));
        }
    };
    let version = h.version.trim();
    if version.is_empty() {
        return reject("MSH-12 (version ID) is empty".into());
    }
    if !version_taken(version) {
        return reject(format!(
            "HL7 version {} is not taken: only 2.1 to 2.8.x",
            shown(version, 12)
        ));
    }
    let processing = h.processing_id.trim();
    if processing.is_empty() {
        return reject("MSH-11 (processing ID) is empty".into());
    }
    if !matches!(processing, "P" | "D" | "T") {
        return reject(format!(
            "processing ID {} is not taken: only P, D and T",
            shown(processing, 8)
        ));
    }
    if h.control_id.trim().is_empty() {
        return reject("MSH-10 (message control ID) is empty".into());
    }
    Ok(kind)
}

/// `2.1` … `2.8`, with any further numeric parts (`2.3.1`, `2.5.1`, `2.8.2`).
fn version_taken(v: &str) -> bool {
    let mut parts = v.split('.');
    let major = parts.next() == Some("2");
    let minor = parts
        .next()
        .and_then(|m| {
            m.parse::<u8>()
                .ok()
                .filter(|_| m.bytes().all(|b| b.is_ascii_digit()))
        })
        .is_some_and(|m| (1..=8).contains(&m));
    let rest: Vec<&str> = parts.collect();
    major
        && minor
        && rest.len() <= 2
        && rest
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The AE reason for a report's result status, if any.
fn result_status_problem(request: &Request, fields: &Fields) -> Option<String> {
    let loc = fields.result_status.first()?;
    match (&request.raw_result_status, request.result_status) {
        (None, _) => Some(format!("{loc} (result status) is empty")),
        (Some(raw), None) => Some(format!(
            "{loc} (result status) {:?} is not one letter (HL7 table 0123)",
            shown(raw, 8)
        )),
        _ => None,
    }
}

/// Trims; an empty value or HL7's explicit null `""` is `None`.
fn clean(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty() && t != "\"\"").then(|| t.to_string())
}

/// Peer text for a reason or warning: at most `max` characters, control characters replaced.
fn shown(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// At most `max` characters (not bytes).
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

// ---------------------------------------------------------------- escapes

/// Decodes HL7 escape sequences in a raw value written with `seps`:
/// `\F\ \S\ \T\ \R\ \E\` → the separator; `\.br\`, `\.sp\`, `\.ce\`,
/// `\X0D\`, `\X0A\` → newline; `\Xhh…\` → those bytes (UTF-8 if valid, else
/// Latin-1); highlighting (`\H\ \N\`) and other formatting commands are
/// dropped; anything else (e.g. `\Zxx\`, a lone escape) is kept as sent.
pub fn unescape(raw: &str, seps: &Separators) -> String {
    let esc = seps.escape;
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(esc) {
        let (before, from_esc) = rest.split_at(start);
        out.push_str(before);
        let after = from_esc.get(esc.len_utf8()..).unwrap_or_default();
        let Some(end) = after.find(esc) else {
            // A lone escape character: keep it and the rest as sent.
            out.push_str(from_esc);
            return out;
        };
        let (code, tail) = after.split_at(end);
        rest = tail.get(esc.len_utf8()..).unwrap_or_default();
        match code {
            "F" => out.push(seps.field),
            "S" => out.push(seps.component),
            "T" => out.push(seps.subcomponent),
            "R" => out.push(seps.repetition),
            "E" => out.push(esc),
            "H" | "N" => {}
            _ if code.starts_with(".br") || code.starts_with(".sp") || code.starts_with(".ce") => {
                out.push('\n')
            }
            _ if code.starts_with(".sk") => out.push(' '),
            _ if code.starts_with('.') && code.len() <= 8 => {}
            _ if code.starts_with('X') => match hex_text(code.get(1..).unwrap_or_default()) {
                Some(text) => out.push_str(&text),
                None => keep_escape(&mut out, esc, code),
            },
            _ => keep_escape(&mut out, esc, code),
        }
    }
    out.push_str(rest);
    out
}

fn keep_escape(out: &mut String, esc: char, code: &str) {
    out.push(esc);
    out.push_str(code);
    out.push(esc);
}

/// `\Xhh…\` contents → text, or `None` when not an even run of hex digits.
fn hex_text(hex: &str) -> Option<String> {
    if hex.is_empty() || hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = hex
        .as_bytes()
        .chunks(2)
        .filter_map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect();
    let text = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().into_iter().map(char::from).collect(),
    };
    Some(text.replace("\r\n", "\n").replace('\r', "\n"))
}

// ---------------------------------------------------------------- times

/// Why an HL7 time was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an HL7 time (YYYYMMDD[HH[MM[SS[.S]]]][+/-ZZZZ])")]
pub struct BadTime {
    /// The value as sent (at most 40 characters).
    pub value: String,
}

/// Reads an HL7 DTM/TS value, `YYYYMMDD[HH[MM[SS[.S+]]]][+/-ZZZZ]`. With an
/// offset it is that instant; without, local time in `tz`, an ambiguous or
/// skipped local time resolved the way jiff's `compatible` does (the
/// earlier instant of a repeated hour; a skipped time moved forward by the
/// gap). A date alone means local midnight; less than a date is refused.
/// Fractional seconds beyond four digits are ignored. Empty (or `""`) is `Ok(None)`.
pub fn parse_timestamp(raw: &str, tz: &TimeZone) -> Result<Option<Timestamp>, BadTime> {
    let value = raw.trim();
    if value.is_empty() || value == "\"\"" {
        return Ok(None);
    }
    let bad = || BadTime {
        value: shown(value, 40),
    };
    let digits = trim_fraction(value);
    let ts = hl7_parser::datetime::parse_timestamp(&digits, false).map_err(|_| bad())?;
    let (Some(month), Some(day)) = (ts.month, ts.day) else {
        return Err(bad());
    };
    let year = i16::try_from(ts.year).map_err(|_| bad())?;
    let small = |v: u8| i8::try_from(v).map_err(|_| bad());
    let nanos = i32::try_from(ts.microsecond.unwrap_or(0))
        .ok()
        .and_then(|us| us.checked_mul(1000))
        .ok_or_else(bad)?;
    let dt = DateTime::new(
        year,
        small(month)?,
        small(day)?,
        small(ts.hour.unwrap_or(0))?,
        small(ts.minute.unwrap_or(0))?,
        small(ts.second.unwrap_or(0))?,
        nanos,
    )
    .map_err(|_| bad())?;
    // The offset sign is taken from the text: the parser loses it for -00MM.
    let sign_at = digits.rfind(['+', '-']);
    match (ts.offset, sign_at) {
        (Some(offset), Some(at)) => {
            if offset.minutes >= 60 {
                return Err(bad());
            }
            let magnitude =
                i32::from(offset.hours.unsigned_abs()) * 3600 + i32::from(offset.minutes) * 60;
            let seconds = if digits.get(at..=at) == Some("-") {
                -magnitude
            } else {
                magnitude
            };
            let offset = Offset::from_seconds(seconds).map_err(|_| bad())?;
            offset.to_timestamp(dt).map(Some).map_err(|_| bad())
        }
        // A sign without a full ±HHMM offset is malformed, not local time.
        (None, Some(_)) | (Some(_), None) => Err(bad()),
        (None, None) => tz
            .to_ambiguous_timestamp(dt)
            .compatible()
            .map(Some)
            .map_err(|_| bad()),
    }
}

/// Drops fractional-second digits beyond the four HL7 allows (some senders
/// write microseconds), keeping any offset after them.
fn trim_fraction(value: &str) -> Cow<'_, str> {
    let Some(dot) = value.find('.') else {
        return Cow::Borrowed(value);
    };
    let (head, frac) = value.split_at(dot);
    let frac = frac.get(1..).unwrap_or_default();
    let n = frac.bytes().take_while(|b| b.is_ascii_digit()).count();
    if n <= 4 {
        return Cow::Borrowed(value);
    }
    let kept = frac.get(..4).unwrap_or_default();
    let tail = frac.get(n..).unwrap_or_default();
    Cow::Owned(format!("{head}.{kept}{tail}"))
}
