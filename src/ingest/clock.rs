//! When a received instance says it was made, for the watchdog's
//! clock-skew check.
//!
//! A modality stamps each instance with its own clock: Instance Creation
//! Date/Time (0008,0012)/(0008,0013), or failing that Acquisition DateTime
//! (0008,002A), or Acquisition Date/Time (0008,0022)/(0008,0032). These are
//! local times: in the offset of Timezone Offset From UTC (0008,0201) when
//! the instance carries one, otherwise in the site's zone (DESIGN.md); an
//! Acquisition DateTime may carry its own offset, which wins. A value that
//! does not parse (a date alone, an ACR-NEMA `HH:MM:SS`, garbage) gives no
//! reading rather than a wrong one, and so does a date without a time: a
//! date alone reads as midnight, which says nothing about a clock.

use dicom_core::Tag;
use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};

use super::parse::{self, Summary};
use super::sr::{parse_dt, parse_offset};

pub const INSTANCE_CREATION_DATE: Tag = Tag(0x0008, 0x0012);
pub const INSTANCE_CREATION_TIME: Tag = Tag(0x0008, 0x0013);
pub const ACQUISITION_DATE: Tag = Tag(0x0008, 0x0022);
pub const ACQUISITION_DATETIME: Tag = Tag(0x0008, 0x002A);
pub const ACQUISITION_TIME: Tag = Tag(0x0008, 0x0032);
pub const TIMEZONE_OFFSET_FROM_UTC: Tag = Tag(0x0008, 0x0201);

/// The instant the instance says it was made, read as above, or `None`.
pub fn made_at(summary: &Summary, site: &TimeZone) -> Option<Timestamp> {
    let text = |tag| parse::text(summary, tag);
    let zone = match text(TIMEZONE_OFFSET_FROM_UTC) {
        Some(raw) => TimeZone::fixed(Offset::from_seconds(parse_offset(raw.trim())?).ok()?),
        None => site.clone(),
    };
    let pair = |date: Tag, time: Tag| {
        let (date, time) = (text(date)?, text(time)?);
        // DA is exactly eight digits; anything else (an old `YYYY.MM.DD`)
        // would make the pair read as some other time.
        if date.len() != 8 {
            return None;
        }
        parse_dt(&format!("{date}{time}"), &zone)
    };
    pair(INSTANCE_CREATION_DATE, INSTANCE_CREATION_TIME)
        .or_else(|| {
            let dt = text(ACQUISITION_DATETIME)?;
            // A date alone is no reading (see the module documentation).
            let whole = dt.split(['+', '-', '.']).next().unwrap_or("");
            if whole.len() <= 8 {
                return None;
            }
            parse_dt(&dt, &zone)
        })
        .or_else(|| pair(ACQUISITION_DATE, ACQUISITION_TIME))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn summary(values: &[(Tag, &str)]) -> Summary {
        Summary {
            values: values
                .iter()
                .map(|(tag, v)| (*tag, v.as_bytes().to_vec()))
                .collect::<HashMap<_, _>>(),
            ..Summary::default()
        }
    }

    fn london() -> TimeZone {
        TimeZone::get("Europe/London").unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn instance_creation_first_in_the_site_zone() {
        // Summer: London is UTC+1.
        let s = summary(&[
            (INSTANCE_CREATION_DATE, "20260701"),
            (INSTANCE_CREATION_TIME, "143000.25 "),
            (ACQUISITION_DATETIME, "20260701100000"),
        ]);
        assert_eq!(made_at(&s, &london()), Some(ts("2026-07-01T13:30:00.25Z")));
    }

    #[test]
    fn timezone_offset_from_utc_overrides_the_site_zone() {
        let s = summary(&[
            (INSTANCE_CREATION_DATE, "20261201"),
            (INSTANCE_CREATION_TIME, "0900"),
            (TIMEZONE_OFFSET_FROM_UTC, "-0500"),
        ]);
        assert_eq!(made_at(&s, &london()), Some(ts("2026-12-01T14:00:00Z")));
        let bad = summary(&[
            (INSTANCE_CREATION_DATE, "20261201"),
            (INSTANCE_CREATION_TIME, "0900"),
            (TIMEZONE_OFFSET_FROM_UTC, "EST"),
        ]);
        assert_eq!(made_at(&bad, &london()), None);
    }

    #[test]
    fn acquisition_datetime_then_acquisition_date_and_time() {
        let own_offset = summary(&[(ACQUISITION_DATETIME, "20261201090000+0100")]);
        assert_eq!(
            made_at(&own_offset, &london()),
            Some(ts("2026-12-01T08:00:00Z"))
        );
        let with_zone = summary(&[
            (ACQUISITION_DATETIME, "20261201090000"),
            (TIMEZONE_OFFSET_FROM_UTC, "+0200"),
        ]);
        assert_eq!(
            made_at(&with_zone, &london()),
            Some(ts("2026-12-01T07:00:00Z"))
        );
        let pair = summary(&[
            (ACQUISITION_DATE, "20261201"),
            (ACQUISITION_TIME, "101500"),
            (INSTANCE_CREATION_DATE, "20261201"),
        ]);
        assert_eq!(made_at(&pair, &london()), Some(ts("2026-12-01T10:15:00Z")));
    }

    #[test]
    fn dates_alone_and_unreadable_values_give_no_reading() {
        for values in [
            vec![(INSTANCE_CREATION_DATE, "20261201")],
            vec![(ACQUISITION_DATETIME, "20261201")],
            vec![(ACQUISITION_DATETIME, "20261201+0100")],
            vec![
                (INSTANCE_CREATION_DATE, "2026.12.01"),
                (INSTANCE_CREATION_TIME, "10:15:00"),
            ],
            vec![
                (INSTANCE_CREATION_DATE, "20261301"),
                (INSTANCE_CREATION_TIME, "101500"),
            ],
            vec![(ACQUISITION_TIME, "101500")],
            vec![],
        ] {
            assert_eq!(made_at(&summary(&values), &london()), None, "{values:?}");
        }
    }
}
