//! `[watchdog]`: working hours, the bank-holiday calendar, thresholds of the
//! alarms that no rule sets, and `[[watchdog.rules]]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, duration, format_duration, parse_duration};
use crate::watchdog::calendar::WorkingHours;
use crate::watchdog::rules::{ClockStart, Hours, Match, Rule, Step, Within};

mod defaults {
    pub const CALENDAR: &str = "conf/calendars/england-and-wales.toml";
    pub const UNMATCHED_AFTER: &str = "24h";
    pub const FEED_SILENT_AFTER: &str = "0s";
    pub const ORDER_WITHOUT_IMAGES_AFTER: &str = "0s";
    pub const CLOCK_SKEW_AFTER: &str = "5m";
    pub const CRITICAL: &str = "1h";
    pub const URGENT: &str = "24h";
    pub const SIGNIFICANT_UNEXPECTED: &str = "7d";
    pub const SUSPECTED_CANCER: &str = "7d";
}

/// `[watchdog]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watchdog {
    /// The bank-holiday data file; `None` (`calendar = ""`) for none.
    pub calendar: Option<PathBuf>,
    pub working_hours: WorkingHours,
    /// A report linked to nothing for this long raises `unmatched_report`.
    pub unmatched_report_after: Duration,
    /// No HL7 message for this much working time raises `feed_silent`;
    /// `None` (`"0s"`) turns the check off.
    pub feed_silent_after: Option<Duration>,
    /// An HL7 order whose examination the RIS reported complete, with no
    /// study of its accession or study UID this long after, raises
    /// `order_without_images`; `None` (`"0s"`) turns the check off.
    pub order_without_images_after: Option<Duration>,
    /// A sender whose clock (HL7 MSH-7, DICOM Instance Creation or
    /// Acquisition time) runs ahead of ours by more than this raises
    /// `clock_skew`; `None` (`"0s"`) turns the check off.
    pub clock_skew_after: Option<Duration>,
    /// Channels told of alarms no rule raises (unmatched reports, feed
    /// silent, integrity, storage low).
    pub alarm_notify: Vec<String>,
    /// `[watchdog.failsafe]`.
    pub failsafe: Failsafe,
    /// `[[watchdog.rules]]`, in file order (first match wins).
    pub rules: Vec<Rule>,
}

/// `[watchdog.failsafe]`: how long the referrer's side has to acknowledge a
/// report carrying each alert category, and whom to tell when it has not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failsafe {
    pub critical: Duration,
    pub urgent: Duration,
    pub significant_unexpected: Duration,
    pub suspected_cancer: Duration,
    pub notify: Vec<String>,
}

impl Failsafe {
    /// The acknowledgement window of a stored alert category.
    pub fn window(&self, category: &str) -> Option<Duration> {
        Some(match category {
            "critical" => self.critical,
            "urgent" => self.urgent,
            "significant_unexpected" => self.significant_unexpected,
            "suspected_cancer" => self.suspected_cancer,
            _ => return None,
        })
    }
}

impl Watchdog {
    /// Every channel name the watchdog may notify (to check against
    /// `[[notify.channels]]`), with the key that names it.
    pub fn channel_references(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, c) in self.alarm_notify.iter().enumerate() {
            out.push((format!("watchdog.alarm_notify[{i}]"), c.clone()));
        }
        for (i, c) in self.failsafe.notify.iter().enumerate() {
            out.push((format!("watchdog.failsafe.notify[{i}]"), c.clone()));
        }
        for (r, rule) in self.rules.iter().enumerate() {
            for (s, step) in rule.escalate.iter().enumerate() {
                for (n, c) in step.notify.iter().enumerate() {
                    out.push((
                        format!("watchdog.rules[{r}].escalate[{s}].notify[{n}]"),
                        c.clone(),
                    ));
                }
            }
        }
        out
    }
}

// --- the file ---------------------------------------------------------------

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWatchdog {
    #[serde(skip_serializing_if = "Option::is_none")]
    calendar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_hours: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unmatched_report_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    feed_silent_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_without_images_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_skew_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alarm_notify: Option<Vec<String>>,
    #[serde(default)]
    failsafe: FileFailsafe,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rules: Vec<FileRule>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileFailsafe {
    #[serde(skip_serializing_if = "Option::is_none")]
    critical: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    urgent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    significant_unexpected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suspected_cancer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notify: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    matcher: Option<FileMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_within: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hours: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clock: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    escalate: Vec<FileStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repeat_every: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    no_report_needed: Option<bool>,
}

// Not deny_unknown_fields: every key that is not a match key is taken as a
// DICOM attribute keyword, and checked against the dictionary instead.
#[derive(Debug, Default, Deserialize, Serialize)]
struct FileMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    modality: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    modality_only: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    source: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    calling_ae: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    patient_class: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    priority: Vec<String>,
    /// Any other key is a DICOM attribute keyword.
    #[serde(flatten)]
    attributes: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileStep {
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default)]
    notify: Vec<String>,
}

// --- validation -------------------------------------------------------------

pub(super) fn validate(file: &FileWatchdog, problems: &mut Problems) -> Watchdog {
    let calendar = match file.calendar.as_deref().unwrap_or(defaults::CALENDAR) {
        "" => None,
        p => Some(PathBuf::from(p)),
    };
    let working_hours = match &file.working_hours {
        None => WorkingHours::default(),
        Some(map) => WorkingHours::parse(map).unwrap_or_else(|e| {
            problems.push("watchdog.working_hours", e);
            WorkingHours::default()
        }),
    };
    let unmatched_report_after = duration(
        "watchdog.unmatched_report_after",
        file.unmatched_report_after.as_deref(),
        defaults::UNMATCHED_AFTER,
        true,
        problems,
    );
    let feed_silent = duration(
        "watchdog.feed_silent_after",
        file.feed_silent_after.as_deref(),
        defaults::FEED_SILENT_AFTER,
        false,
        problems,
    );
    let order_without_images = duration(
        "watchdog.order_without_images_after",
        file.order_without_images_after.as_deref(),
        defaults::ORDER_WITHOUT_IMAGES_AFTER,
        false,
        problems,
    );
    let clock_skew = duration(
        "watchdog.clock_skew_after",
        file.clock_skew_after.as_deref(),
        defaults::CLOCK_SKEW_AFTER,
        false,
        problems,
    );
    // DICOM and HL7 times are read to the second, and clocks kept by NTP
    // differ by milliseconds: a threshold under a second would alarm on
    // rounding alone.
    if !clock_skew.is_zero() && clock_skew < Duration::from_secs(1) {
        problems.push(
            "watchdog.clock_skew_after",
            "must be at least 1s (senders' times are read to the second), or \"0s\" to turn the check off",
        );
    }
    let f = &file.failsafe;
    let mut window = |key: &str, v: &Option<String>, d: &str| {
        duration(
            &format!("watchdog.failsafe.{key}"),
            v.as_deref(),
            d,
            true,
            problems,
        )
    };
    let failsafe = Failsafe {
        critical: window("critical", &f.critical, defaults::CRITICAL),
        urgent: window("urgent", &f.urgent, defaults::URGENT),
        significant_unexpected: window(
            "significant_unexpected",
            &f.significant_unexpected,
            defaults::SIGNIFICANT_UNEXPECTED,
        ),
        suspected_cancer: window(
            "suspected_cancer",
            &f.suspected_cancer,
            defaults::SUSPECTED_CANCER,
        ),
        notify: f.notify.clone().unwrap_or_default(),
    };
    let mut rules = Vec::new();
    for (i, r) in file.rules.iter().enumerate() {
        rules.push(validate_rule(&format!("watchdog.rules[{i}]"), r, problems));
    }
    for (i, r) in rules.iter().enumerate() {
        if rules[..i].iter().any(|o| o.name == r.name) {
            problems.push(
                format!("watchdog.rules[{i}].name"),
                format!("`{}` is used by an earlier rule", r.name),
            );
        }
    }
    Watchdog {
        calendar,
        working_hours,
        unmatched_report_after,
        feed_silent_after: (!feed_silent.is_zero()).then_some(feed_silent),
        order_without_images_after: (!order_without_images.is_zero())
            .then_some(order_without_images),
        clock_skew_after: (!clock_skew.is_zero()).then_some(clock_skew),
        alarm_notify: file.alarm_notify.clone().unwrap_or_default(),
        failsafe,
        rules,
    }
}

fn validate_rule(key: &str, r: &FileRule, problems: &mut Problems) -> Rule {
    let name = r.name.clone().unwrap_or_default().trim().to_owned();
    if name.is_empty() {
        problems.push(format!("{key}.name"), "missing: every rule needs a name");
    }
    let hours = match r.hours.as_deref().unwrap_or("calendar") {
        "calendar" => Hours::Calendar,
        "working" => Hours::Working,
        other => {
            problems.push(
                format!("{key}.hours"),
                format!("`{other}` is not one of calendar, working"),
            );
            Hours::Calendar
        }
    };
    let clock = match r.clock.as_deref().unwrap_or("received") {
        "received" => ClockStart::Received,
        "study_time" => ClockStart::StudyTime,
        other => {
            problems.push(
                format!("{key}.clock"),
                format!("`{other}` is not one of received, study_time"),
            );
            ClockStart::Received
        }
    };
    let no_report_needed = r.no_report_needed.unwrap_or(false);
    let report_within = match (&r.report_within, no_report_needed) {
        (Some(_), true) => {
            problems.push(
                format!("{key}.report_within"),
                "a no_report_needed rule sets no deadline",
            );
            None
        }
        (None, true) => None,
        (None, false) => {
            problems.push(
                format!("{key}.report_within"),
                "missing: say how soon a report is due (e.g. \"24h\"), or set no_report_needed = true",
            );
            None
        }
        (Some(text), false) => match parse_duration(text) {
            Err(e) => {
                problems.push(format!("{key}.report_within"), e);
                None
            }
            Ok(d) if d.is_zero() => {
                problems.push(format!("{key}.report_within"), "must be greater than zero");
                None
            }
            // "Nd" under working hours is N working days.
            Ok(d) if hours == Hours::Working && text.trim().ends_with('d') => Some(
                Within::WorkingDays(u32::try_from(d.as_secs() / 86_400).unwrap_or(u32::MAX)),
            ),
            Ok(d) => Some(Within::Time(d)),
        },
    };
    let mut escalate = Vec::new();
    for (s, step) in r.escalate.iter().enumerate() {
        let after = duration(
            &format!("{key}.escalate[{s}].after"),
            step.after.as_deref(),
            "0s",
            false,
            problems,
        );
        if step.notify.is_empty() {
            problems.push(format!("{key}.escalate[{s}].notify"), "names no channel");
        }
        if escalate
            .last()
            .is_some_and(|prev: &Step| prev.after > after)
        {
            problems.push(
                format!("{key}.escalate[{s}].after"),
                "steps must be in order of `after`",
            );
        }
        escalate.push(Step {
            after,
            notify: step.notify.clone(),
        });
    }
    if no_report_needed && !escalate.is_empty() {
        problems.push(
            format!("{key}.escalate"),
            "a no_report_needed rule never alarms",
        );
    }
    let repeat_every = r.repeat_every.as_deref().map(|t| {
        duration(
            &format!("{key}.repeat_every"),
            Some(t),
            "1h",
            true,
            problems,
        )
    });
    let m = r.matcher.as_ref();
    let mut attributes = BTreeMap::new();
    for (keyword, values) in m.map(|m| &m.attributes).into_iter().flatten() {
        use dicom_core::dictionary::DataDictionary;
        if dicom_dictionary_std::StandardDataDictionary
            .by_name(keyword)
            .is_none()
        {
            problems.push(
                format!("{key}.match.{keyword}"),
                "is neither a match key (modality, modality_only, source, calling_ae, patient_class, \
                 priority) nor a DICOM attribute keyword",
            );
        }
        attributes.insert(keyword.clone(), values.clone());
    }
    Rule {
        name,
        matcher: Match {
            modality: m.map(|m| m.modality.clone()).unwrap_or_default(),
            modality_only: m.map(|m| m.modality_only.clone()).unwrap_or_default(),
            source: m.map(|m| m.source.clone()).unwrap_or_default(),
            calling_ae: m.map(|m| m.calling_ae.clone()).unwrap_or_default(),
            patient_class: m.map(|m| m.patient_class.clone()).unwrap_or_default(),
            priority: m.map(|m| m.priority.clone()).unwrap_or_default(),
            attributes,
        },
        report_within,
        hours,
        clock,
        escalate,
        repeat_every,
        no_report_needed,
    }
}

// --- back to the file ---------------------------------------------------------

pub(super) fn to_file(w: &Watchdog) -> FileWatchdog {
    FileWatchdog {
        calendar: Some(
            w.calendar
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        working_hours: Some(w.working_hours.render()),
        unmatched_report_after: Some(format_duration(w.unmatched_report_after)),
        feed_silent_after: Some(format_duration(
            w.feed_silent_after.unwrap_or(Duration::ZERO),
        )),
        order_without_images_after: Some(format_duration(
            w.order_without_images_after.unwrap_or(Duration::ZERO),
        )),
        clock_skew_after: Some(format_duration(
            w.clock_skew_after.unwrap_or(Duration::ZERO),
        )),
        alarm_notify: Some(w.alarm_notify.clone()),
        failsafe: FileFailsafe {
            critical: Some(format_duration(w.failsafe.critical)),
            urgent: Some(format_duration(w.failsafe.urgent)),
            significant_unexpected: Some(format_duration(w.failsafe.significant_unexpected)),
            suspected_cancer: Some(format_duration(w.failsafe.suspected_cancer)),
            notify: Some(w.failsafe.notify.clone()),
        },
        rules: w.rules.iter().map(rule_to_file).collect(),
    }
}

fn rule_to_file(r: &Rule) -> FileRule {
    let m = &r.matcher;
    FileRule {
        name: Some(r.name.clone()),
        matcher: Some(FileMatch {
            modality: m.modality.clone(),
            modality_only: m.modality_only.clone(),
            source: m.source.clone(),
            calling_ae: m.calling_ae.clone(),
            patient_class: m.patient_class.clone(),
            priority: m.priority.clone(),
            attributes: m.attributes.clone(),
        }),
        report_within: r.report_within.map(|w| match w {
            // Under working hours "Nd" means working days: write whole
            // days of working time in hours so they read back the same.
            Within::Time(d) if r.hours == Hours::Working && d.as_secs() % 3600 == 0 => {
                format!("{}h", d.as_secs() / 3600)
            }
            Within::Time(d) => format_duration(d),
            Within::WorkingDays(n) => format!("{n}d"),
        }),
        hours: Some(
            match r.hours {
                Hours::Calendar => "calendar",
                Hours::Working => "working",
            }
            .to_owned(),
        ),
        clock: Some(
            match r.clock {
                ClockStart::Received => "received",
                ClockStart::StudyTime => "study_time",
            }
            .to_owned(),
        ),
        escalate: r
            .escalate
            .iter()
            .map(|s| FileStep {
                after: Some(format_duration(s.after)),
                notify: s.notify.clone(),
            })
            .collect(),
        repeat_every: r.repeat_every.map(format_duration),
        no_report_needed: Some(r.no_report_needed),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;

    fn load(watchdog: &str) -> Result<Config, Vec<(String, String)>> {
        Config::from_toml_str(&format!(
            "version = 1\n[watchdog]\ncalendar = \"\"\n{watchdog}"
        ))
        .map_err(|e| e.problems.into_iter().map(|p| (p.key, p.message)).collect())
    }

    #[test]
    fn clock_skew_after_defaults_to_five_minutes_and_zero_turns_it_off() {
        let c = load("").unwrap();
        assert_eq!(c.watchdog.clock_skew_after, Some(Duration::from_secs(300)));
        assert!(c.effective_toml().contains("clock_skew_after = \"5m\""));
        let off = load("clock_skew_after = \"0s\"").unwrap();
        assert_eq!(off.watchdog.clock_skew_after, None);
        // Off reads back as off.
        let again = Config::from_toml_str(&off.effective_toml()).unwrap();
        assert_eq!(again.watchdog.clock_skew_after, None);
        let ten = load("clock_skew_after = \"10s\"").unwrap();
        assert_eq!(ten.watchdog.clock_skew_after, Some(Duration::from_secs(10)));
    }

    #[test]
    fn order_without_images_after_is_off_by_default_and_reads_back() {
        let c = load("").unwrap();
        assert_eq!(c.watchdog.order_without_images_after, None);
        assert!(
            c.effective_toml()
                .contains("order_without_images_after = \"0s\"")
        );
        let on = load("order_without_images_after = \"4h\"").unwrap();
        assert_eq!(
            on.watchdog.order_without_images_after,
            Some(Duration::from_secs(4 * 3600))
        );
        let again = Config::from_toml_str(&on.effective_toml()).unwrap();
        assert_eq!(again.watchdog, on.watchdog);
        let problems = load("order_without_images_after = \"soon\"").unwrap_err();
        assert!(
            problems
                .iter()
                .any(|(key, _)| key == "watchdog.order_without_images_after"),
            "{problems:?}"
        );
    }

    #[test]
    fn clock_skew_after_refuses_bad_and_sub_second_values() {
        for (value, says) in [
            ("\"500ms\"", "at least 1s"),
            ("\"soon\"", "not a duration"),
            ("5", "invalid type"),
        ] {
            let problems = load(&format!("clock_skew_after = {value}")).unwrap_err();
            assert!(
                problems.iter().any(
                    |(key, message)| key.contains("clock_skew_after") && message.contains(says)
                ),
                "{value}: {problems:?}"
            );
        }
    }
}
