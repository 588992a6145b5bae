//! The ACK message that answers a received message.
//!
//! The ACK is written with the sender's own separators and mirrors its
//! addressing, control ID, processing ID and version, so that any RIS can
//! match it to what it sent. Text the gateway supplies (the reason, our own
//! names, our control ID) is escaped, so no character in it can break the
//! ACK's structure. Framing is left to the caller ([`super::mllp::encode`]).

use hl7_parser::message::Separators;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::message::{AckCode, Header, MAX_REASON_CHARS, truncate_chars};

/// MSH-12 when the original's version is unknown.
pub const DEFAULT_VERSION: &str = "2.5.1";

/// Builds an ACK (segments ended by CR, unframed) answering the message
/// whose MSH is `header` (`None` when not even MSH could be read).
///
/// - MSH-1/2: the sender's separators and encoding characters as sent,
///   else `|` and `^~\&`.
/// - MSH-3/4: the original's receiving application/facility when present,
///   else `our_app`/`our_facility` (escaped: written as single values).
/// - MSH-5/6: the original's sending application/facility.
/// - MSH-7: `now` in `tz`, with its offset.
/// - MSH-9: `ACK^<original trigger>^ACK`, or `ACK` when the trigger is unknown.
/// - MSH-10: `control_id`, a new ID the caller supplies.
/// - MSH-11/12: the original's processing ID and version, else `P` and 2.5.1.
/// - `MSA|code|original MSH-10|reason`, the reason on one line, truncated
///   to 80 characters, then escaped.
#[allow(clippy::too_many_arguments)]
pub fn ack(
    header: Option<&Header>,
    code: AckCode,
    reason: &str,
    our_app: &str,
    our_facility: &str,
    control_id: &str,
    now: Timestamp,
    tz: &TimeZone,
) -> String {
    let seps = header.map(Header::separators).unwrap_or_default();
    let encoding = header
        .map(|h| h.encoding_characters.as_str())
        .filter(|e| !e.is_empty())
        .unwrap_or("^~\\&");
    let truncation = encoding.chars().nth(4);
    let fs = seps.field;
    let esc = |text: &str| escape(text, &seps, truncation);
    // Values echoed from the original are already encoded with these
    // separators; only what could end a field or segment, and control
    // characters, are removed.
    let echo = |text: &str| -> String {
        text.chars()
            .filter(|&c| c != fs && !c.is_control())
            .collect()
    };
    let original =
        |get: fn(&Header) -> &str| header.map(get).map(echo).filter(|v| !v.trim().is_empty());

    let msh3 = original(|h| &h.receiving_application).unwrap_or_else(|| esc(our_app));
    let msh4 = original(|h| &h.receiving_facility).unwrap_or_else(|| esc(our_facility));
    let msh5 = original(|h| &h.sending_application).unwrap_or_default();
    let msh6 = original(|h| &h.sending_facility).unwrap_or_default();
    let msh9 = match original(|h| &h.trigger_event) {
        Some(trigger) => {
            let trigger: String = trigger
                .chars()
                .filter(|&c| c != seps.component && c != seps.repetition)
                .collect();
            format!("ACK{c}{trigger}{c}ACK", c = seps.component)
        }
        None => "ACK".to_string(),
    };
    let msh11 = original(|h| &h.processing_id).unwrap_or_else(|| "P".to_string());
    let msh12 = original(|h| &h.version).unwrap_or_else(|| DEFAULT_VERSION.to_string());
    let original_id = original(|h| &h.control_id).unwrap_or_default();
    let one_line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let reason = esc(&truncate_chars(one_line.trim(), MAX_REASON_CHARS));

    let fields = [
        encoding.to_string(),
        msh3,
        msh4,
        msh5,
        msh6,
        hl7_time(now, tz),
        String::new(),
        msh9,
        esc(control_id),
        msh11,
        msh12,
    ];
    let mut out = format!("MSH{fs}{}\r", fields.join(&fs.to_string()));
    out.push_str(&format!("MSA{fs}{code}{fs}{original_id}"));
    if !reason.is_empty() {
        out.push_str(&format!("{fs}{reason}"));
    }
    out.push('\r');
    out
}

/// `now` as an HL7 DTM in `tz`, with its offset: `YYYYMMDDHHMMSS+ZZZZ`.
fn hl7_time(now: Timestamp, tz: &TimeZone) -> String {
    let zoned = now.to_zoned(tz.clone());
    jiff::fmt::strtime::format("%Y%m%d%H%M%S%z", &zoned).unwrap_or_else(|_| {
        // Formatting a Zoned with these specifiers does not fail; should it
        // ever, UTC is still a correct answer.
        let utc = now.to_zoned(TimeZone::UTC);
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}+0000",
            utc.year(),
            utc.month(),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second()
        )
    })
}

/// Escapes `text` for a field written with `seps` (and the v2.7 truncation
/// character, if the sender declared one): each separator becomes its
/// escape sequence, CR and LF become `\X0D\` and `\X0A\`.
pub fn escape(text: &str, seps: &Separators, truncation: Option<char>) -> String {
    let e = seps.escape;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let code = if c == seps.field {
            "F"
        } else if c == seps.component {
            "S"
        } else if c == seps.subcomponent {
            "T"
        } else if c == seps.repetition {
            "R"
        } else if c == e {
            "E"
        } else if Some(c) == truncation {
            "P"
        } else if c == '\r' {
            "X0D"
        } else if c == '\n' {
            "X0A"
        } else {
            out.push(c);
            continue;
        };
        out.push(e);
        out.push_str(code);
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::message::{Fields, parse, unescape};

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn now() -> Timestamp {
        "2026-07-01T09:30:00Z".parse().unwrap()
    }

    fn header_of(msg: &str) -> Header {
        match parse(msg.as_bytes(), &Fields::default(), &utc()) {
            Ok(p) => p.header,
            Err(r) => r.header.expect("MSH readable"),
        }
    }

    /// Fields of the named segment of an ACK, read back with hl7-parser.
    fn fields_of(ack: &str, name: &str) -> Vec<String> {
        let m = hl7_parser::Message::parse(ack).expect("ACK parses");
        m.segment(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .fields
            .iter()
            .map(|f| f.raw_value().to_string())
            .collect()
    }

    const ORU: &str = "MSH|^~\\&|RIS|RADDEPT|STUDYWATCH|TRUST|20260701092900||ORU^R01^ORU_R01|MSG00042|P|2.5.1\r\
PID|||123456^^^RXX^MR\r\
OBR|1||ACC1|XR^Chest|||||||||||||ACC1|||||||F\r";

    #[test]
    fn mirrors_control_id_addresses_and_version() {
        let h = header_of(ORU);
        let a = ack(
            Some(&h),
            AckCode::AA,
            "",
            "SW",
            "HOSP",
            "ACK0001",
            now(),
            &utc(),
        );
        assert!(a.ends_with('\r'));
        assert!(!a.contains('\n'));
        let msh = fields_of(&a, "MSH");
        // hl7-parser: fields[0] is MSH-1, so MSH-n is fields[n - 1].
        assert_eq!(msh[2], "STUDYWATCH");
        assert_eq!(msh[3], "TRUST");
        assert_eq!(msh[4], "RIS");
        assert_eq!(msh[5], "RADDEPT");
        assert_eq!(msh[6], "20260701093000+0000");
        assert_eq!(msh[8], "ACK^R01^ACK");
        assert_eq!(msh[9], "ACK0001");
        assert_eq!(msh[10], "P");
        assert_eq!(msh[11], "2.5.1");
        let msa = fields_of(&a, "MSA");
        assert_eq!(msa, vec!["AA", "MSG00042"]);
    }

    #[test]
    fn time_is_local_with_offset() {
        let h = header_of(ORU);
        let london = TimeZone::get("Europe/London").unwrap();
        let a = ack(Some(&h), AckCode::AA, "", "SW", "HOSP", "1", now(), &london);
        assert_eq!(fields_of(&a, "MSH")[6], "20260701103000+0100");
    }

    #[test]
    fn reason_with_separators_is_escaped_and_truncated() {
        let h = header_of(ORU);
        let reason = format!("bad | value ^ here & there ~ and \\ {}", "x".repeat(200));
        let a = ack(
            Some(&h),
            AckCode::AE,
            &reason,
            "SW",
            "HOSP",
            "1",
            now(),
            &utc(),
        );
        let msa = fields_of(&a, "MSA");
        assert_eq!(msa.len(), 3, "the reason stays one field: {a:?}");
        let seps = Separators::default();
        let decoded = unescape(&msa[2], &seps);
        assert_eq!(decoded.chars().count(), 80);
        assert!(decoded.starts_with("bad | value ^ here & there ~ and \\ xxx"));
    }

    #[test]
    fn custom_separators_are_used() {
        let msg = "MSH#$~@%#RIS#RAD#SW#TRUST#20260701##ORU$R01#C-77#T#2.3.1\rOBR#1##F1\r";
        let h = header_of(msg);
        assert_eq!(h.field_separator, '#');
        assert_eq!(h.encoding_characters, "$~@%");
        let a = ack(
            Some(&h),
            AckCode::AR,
            "type # $ wrong",
            "SW",
            "HOSP",
            "9",
            now(),
            &utc(),
        );
        assert!(a.starts_with("MSH#$~@%#SW#TRUST#RIS#RAD#"), "{a:?}");
        let m = hl7_parser::Message::parse(&a).unwrap();
        assert_eq!(m.separators.field, '#');
        let msh = fields_of(&a, "MSH");
        assert_eq!(msh[8], "ACK$R01$ACK");
        assert_eq!(msh[10], "T");
        assert_eq!(msh[11], "2.3.1");
        let msa = fields_of(&a, "MSA");
        assert_eq!(msa[0], "AR");
        assert_eq!(msa[1], "C-77");
        assert_eq!(msa[2], "type @F@ @S@ wrong");
        assert_eq!(unescape(&msa[2], &m.separators), "type # $ wrong");
    }

    #[test]
    fn v27_five_encoding_characters_are_mirrored() {
        let msg = "MSH|^~\\&#|RIS|RAD|SW|TRUST|20260701||ORU^R01^ORU_R01|X1|P|2.7\rOBR|1||F1||||||||||||||||||||||F\r";
        let h = header_of(msg);
        assert_eq!(h.encoding_characters, "^~\\&#");
        assert_eq!(h.sending_application, "RIS");
        assert_eq!(h.control_id, "X1");
        let a = ack(Some(&h), AckCode::AA, "", "SW", "HOSP", "2", now(), &utc());
        assert!(a.starts_with("MSH|^~\\&#|SW|TRUST|RIS|RAD|"), "{a:?}");
        assert!(a.contains("\rMSA|AA|X1\r"), "{a:?}");
        // The truncation character in our text is escaped as \P\.
        let b = ack(
            Some(&h),
            AckCode::AE,
            "no # here",
            "SW",
            "HOSP",
            "2",
            now(),
            &utc(),
        );
        assert!(b.contains("MSA|AE|X1|no \\P\\ here\r"), "{b:?}");
    }

    #[test]
    fn without_header_defaults_are_used() {
        let a = ack(
            None,
            AckCode::AR,
            "not an HL7 v2 message",
            "STUDY|WATCH",
            "HOSP",
            "3",
            now(),
            &utc(),
        );
        let msh = fields_of(&a, "MSH");
        assert_eq!(msh[1], "^~\\&");
        assert_eq!(msh[2], "STUDY\\F\\WATCH");
        assert_eq!(msh[3], "HOSP");
        assert_eq!(msh[8], "ACK");
        assert_eq!(msh[10], "P");
        assert_eq!(msh[11], "2.5.1");
        assert_eq!(
            fields_of(&a, "MSA"),
            vec!["AR", "", "not an HL7 v2 message"]
        );
    }

    #[test]
    fn ack_uses_receiving_names_when_original_has_none_and_ours_otherwise() {
        let msg =
            "MSH|^~\\&|RIS|RAD|||20260701||ORU^R01|7|P|2.4\rOBR|1||F||||||||||||||||||||||F\r";
        let h = header_of(msg);
        let a = ack(Some(&h), AckCode::AA, "", "SW", "HOSP", "8", now(), &utc());
        assert!(a.starts_with("MSH|^~\\&|SW|HOSP|RIS|RAD|"), "{a:?}");
    }
}
