//! Watchdog rules: which rule a study falls under, and the deadline it sets.
//!
//! Pure functions of explicit values: a study's facts, the rules, a
//! [`Clock`], and times. First match wins. A study that matches no rule gets
//! the built-in ceiling as its deadline: every study outside a
//! `no_report_needed` rule alarms after [`CEILING`] unreported at the latest,
//! whatever its rule says.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use super::calendar::Clock;

/// The longest any study may stay unreported without alarming (28 days).
pub const CEILING: Duration = Duration::from_secs(28 * 86_400);

/// One `[[watchdog.rules]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub matcher: Match,
    /// Absent only for `no_report_needed` rules.
    pub report_within: Option<Within>,
    pub hours: Hours,
    pub clock: ClockStart,
    pub escalate: Vec<Step>,
    pub repeat_every: Option<Duration>,
    pub no_report_needed: bool,
}

/// How long a rule allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Within {
    /// Elapsed time (calendar hours) or working time (working hours).
    Time(Duration),
    /// `"Nd"` under working hours: N working days, same working-clock time.
    WorkingDays(u32),
}

/// `hours = "calendar" | "working"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hours {
    Calendar,
    Working,
}

/// `clock = "received" | "study_time"`: where the deadline counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockStart {
    Received,
    StudyTime,
}

/// One escalation step: `after` the deadline, notify these channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub after: Duration,
    pub notify: Vec<String>,
}

/// What a rule matches on. Every list given must match (AND); within a list
/// any value matches (OR). Comparisons ignore case and surrounding spaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Match {
    /// Any of the study's modalities is one of these.
    pub modality: Vec<String>,
    /// Every one of the study's modalities is one of these (e.g. a study made
    /// only of presentation states and dose reports).
    pub modality_only: Vec<String>,
    /// The source label of the peer that sent it.
    pub source: Vec<String>,
    pub calling_ae: Vec<String>,
    /// From HL7 orders: PV1-2 patient class.
    pub patient_class: Vec<String>,
    /// From HL7 orders: priority (OBR-27.6 / TQ1-9).
    pub priority: Vec<String>,
    /// DICOM attributes by keyword (e.g. `BodyPartExamined`), values as text.
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// What is known of a study when its rule is chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StudyFacts {
    pub modalities: Vec<String>,
    pub source: String,
    pub calling_ae: String,
    pub patient_class: Option<String>,
    pub priority: Option<String>,
    /// DICOM attributes by keyword, as collected at ingest.
    pub attributes: BTreeMap<String, String>,
    pub first_received_at: Option<Timestamp>,
    /// Study Date + Study Time, read in the site's zone.
    pub study_time: Option<Timestamp>,
}

fn eq(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

fn any_of(wanted: &[String], value: Option<&str>) -> bool {
    wanted.is_empty() || value.is_some_and(|v| wanted.iter().any(|w| eq(w, v)))
}

impl Match {
    /// Whether the study's facts satisfy every condition given.
    pub fn matches(&self, s: &StudyFacts) -> bool {
        let modality = self.modality.is_empty()
            || s.modalities
                .iter()
                .any(|m| self.modality.iter().any(|w| eq(w, m)));
        let modality_only = self.modality_only.is_empty()
            || (!s.modalities.is_empty()
                && s.modalities
                    .iter()
                    .all(|m| self.modality_only.iter().any(|w| eq(w, m))));
        let attributes = self
            .attributes
            .iter()
            .all(|(k, wanted)| any_of(wanted, s.attributes.get(k).map(String::as_str)));
        modality
            && modality_only
            && any_of(&self.source, Some(&s.source))
            && any_of(&self.calling_ae, Some(&s.calling_ae))
            && any_of(&self.patient_class, s.patient_class.as_deref())
            && any_of(&self.priority, s.priority.as_deref())
            && attributes
    }
}

/// The rule a study falls under (first match), if any.
pub fn select<'r>(rules: &'r [Rule], facts: &StudyFacts) -> Option<&'r Rule> {
    rules.iter().find(|r| r.matcher.matches(facts))
}

/// What the rules decide for a study.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The rule's name, or `None` when no rule matched (the ceiling applies).
    pub rule: Option<String>,
    pub no_report_needed: bool,
    /// When the study must be reported by; `None` only with `no_report_needed`.
    pub deadline: Option<Timestamp>,
    /// Whether the built-in ceiling, not the rule, set the deadline.
    pub ceiling: bool,
}

/// Chooses the rule and computes the deadline.
pub fn decide(rules: &[Rule], facts: &StudyFacts, clock: &Clock) -> Decision {
    let received = facts.first_received_at;
    let rule = select(rules, facts);
    if let Some(r) = rule.filter(|r| r.no_report_needed) {
        return Decision {
            rule: Some(r.name.clone()),
            no_report_needed: true,
            deadline: None,
            ceiling: false,
        };
    }
    let ceiling = received.map(|t| clock.add_calendar(t, CEILING));
    let by_rule = rule.and_then(|r| {
        let start = match r.clock {
            ClockStart::Received => received,
            // No study time (or an unreadable one): count from receipt.
            ClockStart::StudyTime => facts.study_time.or(received),
        }?;
        Some(match (r.report_within?, r.hours) {
            (Within::Time(d), Hours::Calendar) => clock.add_calendar(start, d),
            (Within::Time(d), Hours::Working) => clock.add_working(start, d),
            (Within::WorkingDays(n), Hours::Working) => clock.add_working_days(start, n),
            (Within::WorkingDays(n), Hours::Calendar) => {
                clock.add_calendar(start, Duration::from_secs(u64::from(n) * 86_400))
            }
        })
    });
    let (deadline, by_ceiling) = match (by_rule, ceiling) {
        (Some(d), Some(c)) if c < d => (Some(c), true),
        (Some(d), _) => (Some(d), false),
        (None, c) => (c, true),
    };
    Decision {
        rule: rule.map(|r| r.name.clone()),
        no_report_needed: false,
        deadline,
        ceiling: by_ceiling,
    }
}

/// How the rules stand for studies known by one modality and source, as
/// `rules coverage` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coverage<'r> {
    /// Rules, in order, that come before [`Coverage::otherwise`] and take
    /// such a study only when its other facts match too, each with those
    /// conditions in words (calling AE, patient class, priority, DICOM
    /// attributes).
    pub only_if: Vec<(&'r Rule, Vec<String>)>,
    /// The rule that takes every other such study: what [`select`] chooses
    /// for a study with only this modality and source. `None`: no rule
    /// matches, and the [`CEILING`] applies.
    pub otherwise: Option<&'r Rule>,
}

/// The rules that can take a study of this one `modality` (none: a study
/// without one) from `source`, judged by [`Match::matches`] itself: a rule
/// whose modality and source conditions hold and that asks for nothing
/// more takes every such study; one that asks for more takes only those
/// whose other facts match, and is listed with what it asks.
pub fn coverage<'r>(rules: &'r [Rule], modality: Option<&str>, source: &str) -> Coverage<'r> {
    let facts = StudyFacts {
        modalities: modality.map(str::to_owned).into_iter().collect(),
        source: source.to_owned(),
        ..StudyFacts::default()
    };
    let otherwise = select(rules, &facts);
    let mut only_if = Vec::new();
    for rule in rules {
        if otherwise.is_some_and(|o| std::ptr::eq(o, rule)) {
            break;
        }
        let m = &rule.matcher;
        let by_modality_and_source = Match {
            modality: m.modality.clone(),
            modality_only: m.modality_only.clone(),
            source: m.source.clone(),
            ..Match::default()
        };
        if by_modality_and_source.matches(&facts) {
            only_if.push((rule, m.other_conditions()));
        }
    }
    Coverage { only_if, otherwise }
}

impl Match {
    /// The conditions other than modality and source, in words
    /// (`patient class I or E`), in a fixed order.
    pub fn other_conditions(&self) -> Vec<String> {
        let list = |name: &str, values: &[String]| {
            (!values.is_empty()).then(|| format!("{name} {}", values.join(" or ")))
        };
        let mut out: Vec<String> = [
            list("calling AE", &self.calling_ae),
            list("patient class", &self.patient_class),
            list("priority", &self.priority),
        ]
        .into_iter()
        .flatten()
        .collect();
        out.extend(
            self.attributes
                .iter()
                .filter_map(|(keyword, values)| list(keyword, values)),
        );
        out
    }
}

/// A rule's `report_within` as a person would write it: whole days of two
/// or more as `Nd` (under working hours only for working days, as the config
/// reads them), other whole hours as `Nh` (`24h`), anything else in its
/// largest exact unit (`90m`); `None` for a rule that needs no report.
pub fn within_text(rule: &Rule) -> Option<String> {
    Some(match rule.report_within? {
        Within::WorkingDays(n) => format!("{n}d"),
        Within::Time(d) => {
            let secs = d.as_secs();
            let whole_days = rule.hours == Hours::Calendar && secs >= 2 * 86_400;
            if d.subsec_nanos() == 0 && secs % 86_400 == 0 && whole_days {
                format!("{}d", secs / 86_400)
            } else if d.subsec_nanos() == 0 && secs % 3600 == 0 {
                format!("{}h", secs / 3600)
            } else {
                crate::config::format_duration(d)
            }
        }
    })
}

/// A rule's deadline in words: `report within 24h (calendar time)`,
/// `report within 2d (working days), from the study time`, `no report
/// needed`; `None`: no rule matches, the 28-day ceiling.
pub fn describe_deadline(rule: Option<&Rule>) -> String {
    let Some(rule) = rule else {
        return "no rule matches: 28-day ceiling".to_owned();
    };
    if rule.no_report_needed {
        return "no report needed".to_owned();
    }
    let kind = match (rule.report_within, rule.hours) {
        (Some(Within::WorkingDays(_)), _) => "working days",
        (_, Hours::Working) => "working hours",
        (_, Hours::Calendar) => "calendar time",
    };
    let within = within_text(rule).unwrap_or_else(|| "28d".to_owned());
    let mut text = format!("report within {within} ({kind})");
    if rule.clock == ClockStart::StudyTime {
        text.push_str(", from the study time");
    }
    if matches!(rule.report_within, Some(Within::Time(d)) if d > CEILING) {
        text.push_str("; the 28-day ceiling comes first");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchdog::calendar::{Calendar, WorkingHours};

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn clock() -> Clock {
        Clock {
            tz: jiff::tz::TimeZone::get("Europe/London").expect("tz"),
            hours: WorkingHours::default(),
            calendar: Calendar::empty(),
        }
    }

    fn rule(name: &str, matcher: Match, within: Within, hours: Hours) -> Rule {
        Rule {
            name: name.into(),
            matcher,
            report_within: Some(within),
            hours,
            clock: ClockStart::Received,
            escalate: vec![],
            repeat_every: None,
            no_report_needed: false,
        }
    }

    fn facts(modalities: &[&str], source: &str) -> StudyFacts {
        StudyFacts {
            modalities: modalities.iter().map(|m| m.to_string()).collect(),
            source: source.into(),
            calling_ae: "AE1".into(),
            first_received_at: Some(ts("2026-11-20T10:00:00Z")),
            ..StudyFacts::default()
        }
    }

    #[test]
    fn first_matching_rule_wins_and_every_condition_must_hold() {
        let rules = vec![
            rule(
                "ED plain film",
                Match {
                    modality: vec!["CR".into(), "DX".into()],
                    source: vec!["ed".into()],
                    ..Match::default()
                },
                Within::Time(Duration::from_secs(86_400)),
                Hours::Calendar,
            ),
            rule(
                "inpatient",
                Match {
                    patient_class: vec!["I".into()],
                    ..Match::default()
                },
                Within::Time(Duration::from_secs(3600)),
                Hours::Calendar,
            ),
            rule(
                "chest by attribute",
                Match {
                    attributes: BTreeMap::from([("BodyPartExamined".into(), vec!["CHEST".into()])]),
                    ..Match::default()
                },
                Within::Time(Duration::from_secs(7200)),
                Hours::Calendar,
            ),
        ];
        assert_eq!(
            select(&rules, &facts(&["DX"], "ED")).map(|r| r.name.as_str()),
            Some("ED plain film")
        );
        assert_eq!(select(&rules, &facts(&["DX"], "ward")), None);
        let mut inpatient = facts(&["DX"], "ward");
        inpatient.patient_class = Some("I".into());
        assert_eq!(
            select(&rules, &inpatient).map(|r| r.name.as_str()),
            Some("inpatient")
        );
        let mut chest = facts(&["CT"], "ward");
        chest
            .attributes
            .insert("BodyPartExamined".into(), "chest".into());
        assert_eq!(
            select(&rules, &chest).map(|r| r.name.as_str()),
            Some("chest by attribute")
        );
    }

    #[test]
    fn modality_only_needs_every_modality_in_the_list() {
        let m = Match {
            modality_only: vec!["PR".into(), "SR".into(), "KO".into()],
            ..Match::default()
        };
        assert!(m.matches(&facts(&["PR", "SR"], "x")));
        assert!(!m.matches(&facts(&["CT", "SR"], "x")));
        assert!(!m.matches(&facts(&[], "x")));
    }

    #[test]
    fn the_ceiling_caps_any_rule_and_covers_studies_no_rule_matches() {
        let c = clock();
        let long = vec![rule(
            "slow",
            Match::default(),
            Within::Time(Duration::from_secs(60 * 86_400)),
            Hours::Calendar,
        )];
        let d = decide(&long, &facts(&["CT"], "x"), &c);
        assert_eq!(d.deadline, Some(ts("2026-12-18T10:00:00Z")));
        assert!(d.ceiling);
        let d = decide(&[], &facts(&["CT"], "x"), &c);
        assert_eq!(
            (d.rule, d.deadline, d.ceiling),
            (None, Some(ts("2026-12-18T10:00:00Z")), true)
        );
    }

    #[test]
    fn no_report_needed_has_no_deadline() {
        let mut r = rule(
            "dose",
            Match {
                modality_only: vec!["SR".into()],
                ..Match::default()
            },
            Within::Time(Duration::ZERO),
            Hours::Calendar,
        );
        r.no_report_needed = true;
        r.report_within = None;
        let d = decide(&[r], &facts(&["SR"], "x"), &clock());
        assert!(d.no_report_needed);
        assert_eq!(d.deadline, None);
    }

    #[test]
    fn deadlines_count_calendar_or_working_time_from_the_chosen_clock() {
        let c = clock();
        // Friday 2026-11-20 10:00 GMT.
        let mut f = facts(&["CT"], "x");
        let day = vec![rule(
            "24h",
            Match::default(),
            Within::Time(Duration::from_secs(86_400)),
            Hours::Calendar,
        )];
        assert_eq!(
            decide(&day, &f, &c).deadline,
            Some(ts("2026-11-21T10:00:00Z"))
        );
        let working = vec![rule(
            "2d",
            Match::default(),
            Within::WorkingDays(2),
            Hours::Working,
        )];
        // Two working days after Friday 10:00 is Tuesday 10:00.
        assert_eq!(
            decide(&working, &f, &c).deadline,
            Some(ts("2026-11-24T10:00:00Z"))
        );
        let mut by_study = day.clone();
        by_study[0].clock = ClockStart::StudyTime;
        f.study_time = Some(ts("2026-11-19T22:00:00Z"));
        assert_eq!(
            decide(&by_study, &f, &c).deadline,
            Some(ts("2026-11-20T22:00:00Z"))
        );
    }

    #[test]
    fn coverage_lists_conditional_rules_before_the_one_that_takes_the_rest() {
        let mut inpatient = rule(
            "inpatient MR",
            Match {
                modality: vec!["MR".into()],
                patient_class: vec!["I".into(), "E".into()],
                ..Match::default()
            },
            Within::Time(Duration::from_secs(4 * 3600)),
            Hours::Calendar,
        );
        inpatient.clock = ClockStart::StudyTime;
        let rules = vec![
            inpatient,
            rule(
                "chest",
                Match {
                    attributes: BTreeMap::from([("BodyPartExamined".into(), vec!["CHEST".into()])]),
                    calling_ae: vec!["CT1".into()],
                    ..Match::default()
                },
                Within::Time(Duration::from_secs(3600)),
                Hours::Calendar,
            ),
            rule(
                "main site",
                Match {
                    source: vec!["main".into()],
                    modality: vec!["CT".into(), "MR".into()],
                    ..Match::default()
                },
                Within::WorkingDays(2),
                Hours::Working,
            ),
            rule(
                "never reached for main",
                Match::default(),
                Within::Time(Duration::from_secs(60 * 86_400)),
                Hours::Calendar,
            ),
        ];
        let names = |c: &Coverage<'_>| {
            (
                c.only_if
                    .iter()
                    .map(|(r, why)| format!("{}: {}", r.name, why.join(", ")))
                    .collect::<Vec<_>>(),
                c.otherwise.map(|r| r.name.clone()),
            )
        };
        let mr = coverage(&rules, Some("mr"), "MAIN");
        assert_eq!(
            names(&mr),
            (
                vec![
                    "inpatient MR: patient class I or E".to_owned(),
                    "chest: calling AE CT1, BodyPartExamined CHEST".to_owned()
                ],
                Some("main site".to_owned())
            )
        );
        // What `select` and `decide` do for such a study, exactly.
        let bare = facts(&["MR"], "main");
        assert_eq!(
            select(
                &rules,
                &StudyFacts {
                    calling_ae: String::new(),
                    ..bare
                }
            )
            .map(|r| &r.name),
            mr.otherwise.map(|r| &r.name)
        );
        let us = coverage(&rules, Some("US"), "main");
        assert_eq!(
            names(&us),
            (
                vec!["chest: calling AE CT1, BodyPartExamined CHEST".to_owned()],
                Some("never reached for main".to_owned())
            )
        );
        let none = coverage(&rules[..3], None, "elsewhere");
        assert_eq!(names(&none).1, None);

        assert_eq!(
            describe_deadline(Some(&rules[0])),
            "report within 4h (calendar time), from the study time"
        );
        assert_eq!(
            describe_deadline(Some(&rules[2])),
            "report within 2d (working days)"
        );
        assert_eq!(
            describe_deadline(Some(&rules[3])),
            "report within 60d (calendar time); the 28-day ceiling comes first"
        );
        assert_eq!(describe_deadline(None), "no rule matches: 28-day ceiling");
        let within = |secs: u64, hours: Hours| {
            within_text(&rule(
                "r",
                Match::default(),
                Within::Time(Duration::from_secs(secs)),
                hours,
            ))
        };
        assert_eq!(within(86_400, Hours::Calendar).as_deref(), Some("24h"));
        assert_eq!(within(2 * 86_400, Hours::Calendar).as_deref(), Some("2d"));
        // Under working hours "2d" would read back as two working days.
        assert_eq!(within(2 * 86_400, Hours::Working).as_deref(), Some("48h"));
        assert_eq!(within(5400, Hours::Working).as_deref(), Some("90m"));
        let mut dose = rules[1].clone();
        dose.no_report_needed = true;
        assert_eq!(describe_deadline(Some(&dose)), "no report needed");
    }
}
