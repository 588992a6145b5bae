//! The checks an instance must pass before it is answered with success
//! (DESIGN.md, "Intact means"), as a pure function of what the walk found
//! and what the command said. A failed check is a result — a DIMSE status
//! and an Error Comment — never an error: the association goes on.

use dicom_core::Tag;

use super::parse::{self, Encoding, Pixels, Summary};
use crate::dimse::status;
use crate::uid::{self, Uid};

/// What the sender's command claimed and how the data set was encoded.
#[derive(Clone, Debug)]
pub struct Claim<'a> {
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub transfer_syntax: &'a str,
}

/// The identity of an instance that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub sop_class: Uid,
    pub sop_instance: Uid,
    pub study: Uid,
    pub series: Uid,
}

/// Why an instance is refused: the status to answer and a short reason,
/// which becomes the Error Comment and the log line (never patient data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// A short fixed label for counting refusals by cause.
    pub kind: &'static str,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: u16, kind: &'static str, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            kind,
            reason: reason.into(),
        }
    }
    fn invalid_uid(reason: impl Into<String>) -> Refusal {
        Refusal::new(status::CANNOT_UNDERSTAND, "invalid_uid", reason)
    }
    fn pixels(reason: impl Into<String>) -> Refusal {
        Refusal::new(status::CANNOT_UNDERSTAND, "pixel_data", reason)
    }
    fn mismatch(reason: impl Into<String>) -> Refusal {
        Refusal::new(status::DATA_SET_MISMATCH, "command_mismatch", reason)
    }
}

/// The transfer syntaxes whose data set is deflated after the file meta.
pub fn is_deflated(ts: &str) -> bool {
    matches!(ts, "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95")
}

/// How a transfer syntax encodes the data set.
pub fn encoding(ts: &str) -> Encoding {
    match ts {
        "1.2.840.10008.1.2" => Encoding::IMPLICIT_LE,
        "1.2.840.10008.1.2.2" => Encoding::EXPLICIT_BE,
        _ => Encoding::EXPLICIT_LE,
    }
}

/// True when pixel data in this transfer syntax is native (not encapsulated).
pub fn is_native(ts: &str) -> bool {
    matches!(
        ts,
        "1.2.840.10008.1.2"
            | "1.2.840.10008.1.2.1"
            | "1.2.840.10008.1.2.2"
            | "1.2.840.10008.1.2.1.99"
            | "1.2.840.10008.1.2.4.95"
    )
}

/// The MPEG-2, MPEG-4 and HEVC video transfer syntaxes, whose frames are
/// not one fragment each.
pub fn is_video(ts: &str) -> bool {
    ts.strip_prefix("1.2.840.10008.1.2.4.")
        .map(|rest| {
            let major = rest.split('.').next().unwrap_or("");
            matches!(
                major,
                "100" | "101" | "102" | "103" | "104" | "105" | "106" | "107" | "108"
            )
        })
        .unwrap_or(false)
}

const SOP_CLASS_UID: Tag = Tag(0x0008, 0x0016);
const SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0018);
const STUDY_INSTANCE_UID: Tag = Tag(0x0020, 0x000D);
const SERIES_INSTANCE_UID: Tag = Tag(0x0020, 0x000E);

/// Applies every check to a data set that parsed to its end.
pub fn check(summary: &Summary, claim: &Claim<'_>) -> Result<Identity, Refusal> {
    let required = |tag: Tag, name: &str| -> Result<Uid, Refusal> {
        let raw = summary
            .values
            .get(&tag)
            .ok_or_else(|| Refusal::invalid_uid(format!("missing {name}")))?;
        let text = String::from_utf8_lossy(raw);
        Uid::parse(&text).map_err(|e| Refusal::invalid_uid(format!("invalid {name}: {e}")))
    };
    let sop_class = required(SOP_CLASS_UID, "SOPClassUID")?;
    let sop_instance = required(SOP_INSTANCE_UID, "SOPInstanceUID")?;
    let study = required(STUDY_INSTANCE_UID, "StudyInstanceUID")?;
    let series = required(SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
    if sop_class.as_str() != uid::trim(claim.sop_class_uid) {
        return Err(Refusal::mismatch(
            "SOP Class UID in data set differs from command",
        ));
    }
    if sop_instance.as_str() != uid::trim(claim.sop_instance_uid) {
        return Err(Refusal::mismatch(
            "SOP Instance UID in data set differs from command",
        ));
    }
    if let Some(pixels) = &summary.pixels {
        check_pixels(summary, pixels, claim.transfer_syntax)?;
    }
    Ok(Identity {
        sop_class,
        sop_instance,
        study,
        series,
    })
}

fn check_pixels(summary: &Summary, pixels: &Pixels, ts: &str) -> Result<(), Refusal> {
    let enc = encoding(ts);
    let frames = match parse::int(summary, Tag(0x0028, 0x0008)) {
        None => 1u64,
        Some(n) if n >= 1 => n as u64,
        Some(n) => return Err(Refusal::pixels(format!("NumberOfFrames is {n}"))),
    };
    if pixels.encapsulated {
        if is_native(ts) {
            return Err(Refusal::pixels(
                "encapsulated pixel data in a native transfer syntax",
            ));
        }
        if !is_video(ts) && pixels.fragments < frames {
            return Err(Refusal::pixels(format!(
                "pixel data has {} fragments for {frames} frames",
                pixels.fragments
            )));
        }
        return Ok(());
    }
    if !is_native(ts) {
        return Err(Refusal::pixels(
            "native pixel data in an encapsulated transfer syntax",
        ));
    }
    let need = |tag: Tag, name: &str| {
        parse::us(summary, tag, enc)
            .map(u64::from)
            .ok_or_else(|| Refusal::pixels(format!("pixel data without {name}")))
    };
    let rows = need(Tag(0x0028, 0x0010), "Rows")?;
    let columns = need(Tag(0x0028, 0x0011), "Columns")?;
    let expected = match pixels.tag {
        parse::FLOAT_PIXEL_DATA => rows
            .saturating_mul(columns)
            .saturating_mul(frames)
            .saturating_mul(4),
        parse::DOUBLE_FLOAT_PIXEL_DATA => rows
            .saturating_mul(columns)
            .saturating_mul(frames)
            .saturating_mul(8),
        _ => {
            let bits = need(Tag(0x0028, 0x0100), "BitsAllocated")?;
            let samples = parse::us(summary, Tag(0x0028, 0x0002), enc)
                .map(u64::from)
                .unwrap_or(1);
            let photometric = parse::text(summary, Tag(0x0028, 0x0004)).unwrap_or_default();
            // YBR_*_422 stores two luminance and one pair of chrominance
            // samples for every two pixels: two samples per pixel.
            let samples = if photometric.ends_with("_422") {
                2
            } else {
                samples
            };
            if bits == 1 {
                rows.saturating_mul(columns)
                    .saturating_mul(frames)
                    .saturating_mul(samples)
                    .div_ceil(8)
            } else if bits % 8 == 0 && bits > 0 {
                rows.saturating_mul(columns)
                    .saturating_mul(frames)
                    .saturating_mul(samples)
                    .saturating_mul(bits / 8)
            } else {
                return Err(Refusal::pixels(format!("BitsAllocated is {bits}")));
            }
        }
    };
    let padded = expected.saturating_add(expected % 2);
    if pixels.length != expected && pixels.length != padded {
        return Err(Refusal::pixels(format!(
            "pixel data is {} bytes, attributes need {expected}",
            pixels.length
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(values: &[(Tag, &[u8])], pixels: Option<Pixels>) -> Summary {
        Summary {
            values: values.iter().map(|(t, v)| (*t, v.to_vec())).collect(),
            pixels,
            ..Summary::default()
        }
    }

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";

    fn base() -> Vec<(Tag, &'static [u8])> {
        vec![
            (SOP_CLASS_UID, b"1.2.840.10008.5.1.4.1.1.2\0"),
            (SOP_INSTANCE_UID, b"1.2.3.4"),
            (STUDY_INSTANCE_UID, b"1.2.3"),
            (SERIES_INSTANCE_UID, b"1.2.3.1"),
            (Tag(0x0028, 0x0010), &[3, 0]),
            (Tag(0x0028, 0x0011), &[3, 0]),
            (Tag(0x0028, 0x0100), &[8, 0]),
        ]
    }

    fn claim() -> Claim<'static> {
        Claim {
            sop_class_uid: CT,
            sop_instance_uid: "1.2.3.4",
            transfer_syntax: "1.2.840.10008.1.2.1",
        }
    }

    fn native(length: u64) -> Option<Pixels> {
        Some(Pixels {
            tag: parse::PIXEL_DATA,
            encapsulated: false,
            length,
            fragments: 0,
        })
    }

    #[test]
    fn odd_native_length_accepts_even_padding() {
        assert!(check(&summary(&base(), native(9)), &claim()).is_ok());
        assert!(check(&summary(&base(), native(10)), &claim()).is_ok());
        let r = check(&summary(&base(), native(8)), &claim()).unwrap_err();
        assert_eq!(r.status, 0xC000);
        assert!(r.reason.contains("pixel"));
    }

    #[test]
    fn command_mismatch_is_a900() {
        let mut c = claim();
        c.sop_instance_uid = "1.2.3.5";
        let r = check(&summary(&base(), native(9)), &c).unwrap_err();
        assert_eq!(r.status, 0xA900);
        assert!(r.reason.contains("SOP Instance"));
        let mut c = claim();
        c.sop_class_uid = "1.2.840.10008.5.1.4.1.1.4";
        assert!(
            check(&summary(&base(), native(9)), &c)
                .unwrap_err()
                .reason
                .contains("SOP Class")
        );
    }

    #[test]
    fn invalid_uids_name_the_attribute() {
        let mut v = base();
        v[2] = (STUDY_INSTANCE_UID, b"1.2.03");
        let r = check(&summary(&v, None), &claim()).unwrap_err();
        assert_eq!(
            (r.status, r.reason.contains("StudyInstanceUID")),
            (0xC000, true)
        );
        let v: Vec<_> = base()
            .into_iter()
            .filter(|(t, _)| *t != SOP_INSTANCE_UID)
            .collect();
        assert!(
            check(&summary(&v, None), &claim())
                .unwrap_err()
                .reason
                .contains("missing SOPInstanceUID")
        );
    }

    #[test]
    fn fragments_must_cover_frames_except_video() {
        let mut v = base();
        v.push((Tag(0x0028, 0x0008), b"3 "));
        let enc = Some(Pixels {
            tag: parse::PIXEL_DATA,
            encapsulated: true,
            length: 0,
            fragments: 2,
        });
        let mut c = claim();
        c.transfer_syntax = "1.2.840.10008.1.2.4.50";
        assert!(
            check(&summary(&v, enc.clone()), &c)
                .unwrap_err()
                .reason
                .contains("fragments")
        );
        c.transfer_syntax = "1.2.840.10008.1.2.4.102";
        assert!(check(&summary(&v, enc), &c).is_ok());
    }

    #[test]
    fn one_bit_and_422_lengths() {
        let mut v = base();
        v[6] = (Tag(0x0028, 0x0100), &[1, 0]);
        // 3×3 = 9 bits → 2 bytes.
        assert!(check(&summary(&v, native(2)), &claim()).is_ok());
        let mut v = base();
        v.push((Tag(0x0028, 0x0002), &[3, 0]));
        v.push((Tag(0x0028, 0x0004), b"YBR_FULL_422"));
        // 3×3 pixels × 2 samples = 18 bytes.
        assert!(check(&summary(&v, native(18)), &claim()).is_ok());
        assert!(check(&summary(&v, native(27)), &claim()).is_err());
    }
}
