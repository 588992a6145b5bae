//! How the dashboard writes times, durations, sizes and the catalog's codes
//! for people: local times in the site's zone, relative times ("overdue
//! 3 h"), and plain-English labels.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use maud::{Markup, html};

/// A time as a `<time>` element: the local date and time (site zone) as
/// text, RFC 3339 UTC in `datetime`, and the full local time with its zone
/// as the tooltip.
pub fn time(ts: Timestamp, tz: &TimeZone) -> Markup {
    let z = ts.to_zoned(tz.clone());
    html! {
        time datetime=(ts.to_string()) title=(z.strftime("%A %-d %B %Y %H:%M:%S %Z").to_string()) {
            (z.strftime("%a %-d %b %Y %H:%M").to_string())
        }
    }
}

/// A time with the seconds and zone, for the footer.
pub fn full(ts: Timestamp, tz: &TimeZone) -> String {
    ts.to_zoned(tz.clone())
        .strftime("%a %-d %b %Y %H:%M:%S %Z")
        .to_string()
}

/// `ts` relative to `now`: "in 40 min" / "3 h ago".
pub fn ago(ts: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - ts.as_second();
    if secs >= 0 {
        format!("{} ago", span(secs))
    } else {
        format!("in {}", span(-secs))
    }
}

/// The time left to a deadline: "due in 40 min", "due now", "overdue 3 h".
pub fn to_deadline(deadline: Timestamp, now: Timestamp) -> String {
    let secs = deadline.as_second() - now.as_second();
    if secs >= 60 {
        format!("due in {}", span(secs))
    } else if secs > -60 {
        "due now".to_owned()
    } else {
        format!("overdue {}", span(-secs))
    }
}

/// A positive number of seconds, rounded down to what a person needs:
/// minutes under an hour, hours and minutes under six hours, hours under
/// two days, then days (and hours under a week).
pub fn span(secs: i64) -> String {
    let mins = secs.max(0) / 60;
    let hours = mins / 60;
    let days = hours / 24;
    match () {
        _ if mins < 1 => "less than a minute".to_owned(),
        _ if mins < 60 => format!("{mins} min"),
        _ if hours < 6 && mins % 60 != 0 => format!("{hours} h {} min", mins % 60),
        _ if hours < 48 => format!("{hours} h"),
        _ if days < 7 && hours % 24 != 0 => format!("{days} days {} h", hours % 24),
        _ => format!("{days} days"),
    }
}

/// A count with thousands separators: 10,000.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n` and the noun, singular or plural: "1 instance", "2,000 instances".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A DICOM study date (DA, `YYYYMMDD`) and time (TM, `HHMMSS.FFFFFF`) as
/// people write them ("20 Nov 2026 10:15"), in the site's local time as
/// the modality recorded them. Anything unreadable is shown as it came.
pub fn dicom_date_time(date: Option<&str>, time: Option<&str>) -> String {
    let Some(date) = date.map(str::trim).filter(|d| !d.is_empty()) else {
        return "—".to_owned();
    };
    let Ok(day) = jiff::civil::Date::strptime("%Y%m%d", date) else {
        return format!("{date} {}", time.unwrap_or("")).trim().to_owned();
    };
    let mut text = day.strftime("%-d %b %Y").to_string();
    let digits: String = time
        .unwrap_or("")
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if digits.len() >= 4 {
        text.push_str(&format!(" {}:{}", &digits[..2], &digits[2..4]));
    }
    text
}

/// A size in bytes with SI units: "412.3 GB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What an alarm kind means, for people.
pub fn alarm_kind(kind: &str) -> &str {
    match kind {
        "overdue_report" => "Overdue report",
        "failsafe_unacknowledged" => "Fail-safe alert not acknowledged",
        "unmatched_report" => "Report matches no study",
        "feed_silent" => "HL7 feed silent",
        "integrity" => "Integrity problem",
        "storage_low" => "Storage space low",
        "forward_stalled" => "Not reaching a forward destination",
        "incomplete_transfer" => "Incomplete transfer",
        "order_without_images" => "Order without images",
        "calendar_expiring" => "Bank-holiday calendar running out",
        "clock_skew" => "Sender's clock ahead of ours",
        other => other,
    }
}

/// An RCR fail-safe alert category, for people.
pub fn alert_category(category: &str) -> &str {
    match category {
        "critical" => "Critical: act immediately",
        "urgent" => "Urgent: act within 24 h",
        "significant_unexpected" => "Significant unexpected finding",
        "suspected_cancer" => "Suspected cancer",
        other => other,
    }
}

/// A link rule, for people.
pub fn link_rule(rule: &str) -> &str {
    match rule {
        "study_uid" => "by study UID",
        "accession" => "by accession number",
        "order" => "through the order number",
        "patient_date" => "by patient ID and date (probable)",
        other => other,
    }
}

/// A report origin, for people.
pub fn origin(origin: &str) -> &str {
    match origin {
        "hl7" => "HL7 message",
        "dicom_sr" => "DICOM report",
        "manual" => "entered by hand",
        "import" => "imported",
        other => other,
    }
}

/// An audit action, for people.
pub fn action(action: &str) -> &str {
    match action {
        "study_received" => "First instance received",
        "ingest_rejected" => "Instance refused",
        "integrity_conflict" => "Instance resent with different content",
        "report_received" => "Report received",
        "report_linked" => "Report linked",
        "report_probable_link" => "Probable report link (needs a person)",
        "report_link_refused" => "Report not linked: patient IDs differ",
        "link_confirmed" => "Probable link confirmed",
        "link_rejected" => "Probable link rejected",
        "study_reported" => "Formally reported",
        "study_reopened" => "Reopened: no formal report counts",
        "order_cancelled" => "Order cancelled by the RIS",
        "alarm_raised" => "Alarm raised",
        "alarm_escalated" => "Alarm escalated",
        "alarm_repeated" => "Alarm repeated",
        "alarm_rearmed" => "Alarm re-armed",
        "alarm_acknowledged" => "Alarm acknowledged",
        "alarm_resolved" => "Alarm resolved",
        "alert_acknowledged" => "Fail-safe alert acknowledged",
        "notification_sent" => "Notification sent",
        "notification_failed" => "Notification attempt failed",
        "notify_failed" => "Notification given up",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test time")
    }

    #[test]
    fn deadlines_read_as_people_say_them() {
        let now = ts("2026-11-23T10:00:00Z");
        let cases = [
            ("2026-11-23T10:40:00Z", "due in 40 min"),
            ("2026-11-23T11:20:00Z", "due in 1 h 20 min"),
            ("2026-11-23T13:00:00Z", "due in 3 h"),
            ("2026-11-23T10:00:30Z", "due now"),
            ("2026-11-23T07:00:00Z", "overdue 3 h"),
            ("2026-11-23T09:59:00Z", "overdue 1 min"),
            ("2026-11-21T06:00:00Z", "overdue 2 days 4 h"),
            ("2026-11-13T10:00:00Z", "overdue 10 days"),
            ("2026-11-25T10:00:00Z", "due in 2 days"),
        ];
        for (deadline, text) in cases {
            assert_eq!(to_deadline(ts(deadline), now), text, "{deadline}");
        }
    }

    #[test]
    fn counts_and_sizes() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(10_000), "10,000");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(412_300_000_000), "412.3 GB");
    }

    #[test]
    fn dicom_dates_read_as_people_write_them() {
        assert_eq!(
            dicom_date_time(Some("20261120"), Some("101500")),
            "20 Nov 2026 10:15"
        );
        assert_eq!(
            dicom_date_time(Some("20261120"), Some("0930")),
            "20 Nov 2026 09:30"
        );
        assert_eq!(dicom_date_time(Some("20261120"), None), "20 Nov 2026");
        assert_eq!(dicom_date_time(Some("2026-11"), Some("10")), "2026-11 10");
        assert_eq!(dicom_date_time(None, Some("101500")), "—");
        assert_eq!(plural(1, "instance", "instances"), "1 instance");
        assert_eq!(plural(2000, "instance", "instances"), "2,000 instances");
    }

    #[test]
    fn times_are_local_to_the_site() {
        let tz = TimeZone::get("Europe/London").expect("zone");
        // British Summer Time: UTC+1.
        let html = time(ts("2026-07-01T09:30:00Z"), &tz).into_string();
        assert!(html.contains("Wed 1 Jul 2026 10:30"), "{html}");
        assert!(html.contains("datetime=\"2026-07-01T09:30:00Z\""), "{html}");
        assert_eq!(
            ago(ts("2026-07-01T07:30:00Z"), ts("2026-07-01T09:30:00Z")),
            "2 h ago"
        );
    }
}
