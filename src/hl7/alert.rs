//! Fail-safe alert categories (Royal College of Radiologists / AoMRC 2022)
//! found in a report: by OBX-8 abnormal flag or by a phrase in the text.
//!
//! Matching is deliberately biased towards alerting. Negation is not
//! understood: "no critical finding" matches "critical finding". A false
//! alert costs someone a minute; a missed one can cost a patient.
//!
//! This module only classifies; raising, acknowledging and escalating an
//! alert is the caller's business.

use std::fmt;
use std::str::FromStr;

/// An alert category, ordered by how fast it must be acted on, so that
/// `max()` is the most severe: `SuspectedCancer < SignificantUnexpected <
/// Urgent < Critical`. Critical means act immediately, urgent within 24
/// hours; significant unexpected findings and suspected cancer are both
/// acted on within an agreed pathway, and the suspected-cancer pathway has
/// its own tracking, so it ranks lowest here.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Suspected cancer (the AoMRC/RCR 2022 alert).
    SuspectedCancer,
    /// Significant unexpected finding.
    SignificantUnexpected,
    /// Urgent: act within 24 hours.
    Urgent,
    /// Critical: act immediately.
    Critical,
}

impl Category {
    /// Every category, least severe first.
    pub const ALL: [Category; 4] = [
        Category::SuspectedCancer,
        Category::SignificantUnexpected,
        Category::Urgent,
        Category::Critical,
    ];

    /// `"critical"`, `"urgent"`, `"significant_unexpected"` or `"suspected_cancer"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::SuspectedCancer => "suspected_cancer",
            Category::SignificantUnexpected => "significant_unexpected",
            Category::Urgent => "urgent",
            Category::Critical => "critical",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A category name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown alert category {0:?}: expected critical, urgent, significant_unexpected or suspected_cancer"
)]
pub struct UnknownCategory(pub String);

impl FromStr for Category {
    type Err = UnknownCategory;

    /// Accepts the [`Category::as_str`] names in any case, with `-` or a
    /// space in place of `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .trim()
            .chars()
            .map(|c| {
                if c == '-' || c == ' ' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == norm)
            .ok_or_else(|| UnknownCategory(s.to_string()))
    }
}

/// A problem in the alert rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A pattern that is empty or only whitespace would match every report.
    #[error("alert pattern {index} is empty")]
    EmptyPattern {
        /// Its position in the list, from 0.
        index: usize,
    },
    /// An empty flag would never match.
    #[error("alert flag {index} is empty")]
    EmptyFlag {
        /// Its position in the list, from 0.
        index: usize,
    },
}

/// How abnormal flags and report text map to categories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRules {
    /// OBX-8 values (compared trimmed, case-insensitively) and their category.
    pub flags: Vec<(String, Category)>,
    /// Phrases and their category. A phrase matches case-insensitively, as
    /// whole words (not inside a longer word), with any run of whitespace
    /// (line breaks included) where the phrase has a space, and also with
    /// one trailing `s` (so "critical finding" matches "critical findings").
    pub patterns: Vec<(String, Category)>,
}

impl Default for AlertRules {
    /// Flags AA, HH, LL → critical (A, plain "abnormal", maps to nothing);
    /// phrases "critical finding"/"critical result" → critical, "urgent
    /// finding"/"urgent result" → urgent, "significant unexpected finding"
    /// → significant unexpected, "suspected cancer" → suspected cancer.
    fn default() -> Self {
        let pairs = |list: &[(&str, Category)]| {
            list.iter()
                .map(|&(s, c)| (s.to_string(), c))
                .collect::<Vec<_>>()
        };
        AlertRules {
            flags: pairs(&[
                ("AA", Category::Critical),
                ("HH", Category::Critical),
                ("LL", Category::Critical),
            ]),
            patterns: pairs(&[
                ("critical finding", Category::Critical),
                ("critical result", Category::Critical),
                ("urgent finding", Category::Urgent),
                ("urgent result", Category::Urgent),
                (
                    "significant unexpected finding",
                    Category::SignificantUnexpected,
                ),
                ("suspected cancer", Category::SuspectedCancer),
            ]),
        }
    }
}

impl AlertRules {
    /// Refuses empty patterns and flags.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(index) = self.flags.iter().position(|(f, _)| f.trim().is_empty()) {
            return Err(Error::EmptyFlag { index });
        }
        if let Some(index) = self.patterns.iter().position(|(p, _)| p.trim().is_empty()) {
            return Err(Error::EmptyPattern { index });
        }
        Ok(())
    }

    /// The most severe category any flag or pattern gives, if any.
    /// Empty flags and patterns (which [`AlertRules::validate`] refuses) never match.
    pub fn classify(&self, flags: &[String], text: &str) -> Option<Category> {
        let by_flag = self
            .flags
            .iter()
            .filter(|(rule, _)| {
                let rule = rule.trim();
                !rule.is_empty() && flags.iter().any(|f| f.trim().eq_ignore_ascii_case(rule))
            })
            .map(|&(_, c)| c);
        let mut best = by_flag.max();
        let active: Vec<&(String, Category)> = self
            .patterns
            .iter()
            .filter(|(_, c)| best.is_none_or(|b| *c > b))
            .collect();
        if active.is_empty() {
            return best;
        }
        let lower: String = text.chars().flat_map(char::to_lowercase).collect();
        // Made only once some pattern's first word occurs at all: most
        // reports match no pattern, and a substring search rules that out
        // far faster than trying a phrase at every position.
        let mut chars: Option<Vec<char>> = None;
        for (pattern, category) in active {
            if best.is_some_and(|b| *category <= b) {
                continue;
            }
            let words: Vec<String> = pattern
                .split_whitespace()
                .map(|w| w.chars().flat_map(char::to_lowercase).collect())
                .collect();
            let Some(first) = words.first() else {
                continue;
            };
            if !lower.contains(first.as_str()) {
                continue;
            }
            let text = chars.get_or_insert_with(|| lower.chars().collect());
            let words: Vec<Vec<char>> = words.iter().map(|w| w.chars().collect()).collect();
            if contains_phrase(text, &words) {
                best = Some(*category);
            }
        }
        best
    }
}

/// Whether `words` occur in `text` (both lower-cased) as a whole phrase:
/// preceded by a non-word character or the start, separated by whitespace
/// runs, followed (after an optional plural `s`) by a non-word character or the end.
fn contains_phrase(text: &[char], words: &[Vec<char>]) -> bool {
    let is_word = |c: char| c.is_alphanumeric();
    (0..text.len()).any(|start| {
        if start > 0 && text.get(start - 1).copied().is_some_and(is_word) {
            return false;
        }
        let mut at = start;
        for (n, word) in words.iter().enumerate() {
            if n > 0 {
                let gap = text
                    .get(at..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|c| c.is_whitespace())
                    .count();
                if gap == 0 {
                    return false;
                }
                at += gap;
            }
            if !text.get(at..).unwrap_or_default().starts_with(word) {
                return false;
            }
            at += word.len();
        }
        if text.get(at) == Some(&'s') {
            let after = text.get(at + 1).copied();
            if !after.is_some_and(is_word) {
                return true;
            }
        }
        !text.get(at).copied().is_some_and(is_word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AlertRules {
        AlertRules::default()
    }

    fn no_flags() -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn order_makes_critical_the_max() {
        assert!(Category::Critical > Category::Urgent);
        assert!(Category::Urgent > Category::SignificantUnexpected);
        assert!(Category::SignificantUnexpected > Category::SuspectedCancer);
        assert_eq!(Category::ALL.iter().max(), Some(&Category::Critical));
    }

    #[test]
    fn names_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>(), Ok(c));
        }
        assert_eq!(
            "Significant-Unexpected".parse(),
            Ok(Category::SignificantUnexpected)
        );
        assert_eq!("suspected cancer".parse(), Ok(Category::SuspectedCancer));
        assert!("severe".parse::<Category>().is_err());
    }

    #[test]
    fn flags_hh_aa_ll_are_critical_and_a_is_nothing() {
        let r = rules();
        assert_eq!(r.classify(&["HH".into()], ""), Some(Category::Critical));
        assert_eq!(r.classify(&[" ll ".into()], ""), Some(Category::Critical));
        assert_eq!(r.classify(&["A".into(), "N".into()], ""), None);
        assert_eq!(r.classify(&no_flags(), "Normal chest."), None);
    }

    #[test]
    fn phrases_match_case_insensitively_across_line_breaks() {
        let r = rules();
        assert_eq!(
            r.classify(&no_flags(), "IMPRESSION: Urgent\r\n  FINDING: pneumothorax"),
            Some(Category::Urgent)
        );
        assert_eq!(
            r.classify(&no_flags(), "Suspected cancer. Refer to 2WW."),
            Some(Category::SuspectedCancer)
        );
        assert_eq!(
            r.classify(&no_flags(), "Critical findings phoned to Dr Smith."),
            Some(Category::Critical),
            "a plural s is allowed"
        );
    }

    #[test]
    fn phrases_do_not_match_inside_longer_words() {
        let r = rules();
        assert_eq!(r.classify(&no_flags(), "noncritical finding"), None);
        assert_eq!(r.classify(&no_flags(), "critical findingless"), None);
        assert_eq!(r.classify(&no_flags(), "criticalfinding"), None);
        assert_eq!(r.classify(&no_flags(), "urgent findings2"), None);
    }

    #[test]
    fn the_most_severe_match_wins() {
        let r = rules();
        let text = "Suspected cancer in the right lung; also a critical result.";
        assert_eq!(r.classify(&no_flags(), text), Some(Category::Critical));
        assert_eq!(
            r.classify(&["HH".into()], "suspected cancer"),
            Some(Category::Critical)
        );
    }

    #[test]
    fn negation_is_not_understood_by_design() {
        // Fail-safe bias: a phrase that is negated still raises the alert.
        assert_eq!(
            rules().classify(&no_flags(), "There is no critical finding."),
            Some(Category::Critical)
        );
    }

    #[test]
    fn validate_refuses_empty_patterns_and_flags() {
        assert_eq!(rules().validate(), Ok(()));
        let mut r = rules();
        r.patterns.push(("   ".into(), Category::Urgent));
        assert_eq!(r.validate(), Err(Error::EmptyPattern { index: 6 }));
        // Even unvalidated, an empty pattern never matches everything.
        assert_eq!(r.classify(&no_flags(), "anything"), None);
        let mut r = rules();
        r.flags.push((String::new(), Category::Urgent));
        assert_eq!(r.validate(), Err(Error::EmptyFlag { index: 3 }));
    }

    #[test]
    fn custom_patterns_with_punctuation_and_non_ascii() {
        let r = AlertRules {
            flags: Vec::new(),
            patterns: vec![
                ("RCR-U1".into(), Category::Urgent),
                ("Befund kritisch".into(), Category::Critical),
            ],
        };
        assert_eq!(
            r.classify(&no_flags(), "code: rcr-u1."),
            Some(Category::Urgent)
        );
        assert_eq!(
            r.classify(&no_flags(), "BEFUND  KRITISCH"),
            Some(Category::Critical)
        );
        assert_eq!(r.classify(&no_flags(), "Befund kritischer"), None);
    }
}
