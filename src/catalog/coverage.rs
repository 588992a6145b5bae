//! What `rules coverage` reads: the studies received in a window, counted by
//! modality, source and the rule the watchdog recorded on them.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rusqlite::params;

use super::store::{collect, fmt_ts, split_modalities};
use super::{Error, Store};

/// Studies of one modality from one source that share a recorded outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoverageRow {
    /// `None` for studies whose instances named no modality.
    pub modality: Option<String>,
    pub source: String,
    /// `studies.rule`: the rule the watchdog chose; `None` when none matched
    /// (the 28-day ceiling) or it has not looked at them yet.
    pub rule: Option<String>,
    pub no_report_needed: bool,
    /// Whether the watchdog has decided these studies' rule (false while
    /// they wait for its next evaluation, e.g. with the server down).
    pub evaluated: bool,
    pub studies: u64,
}

impl Store {
    /// Studies with an instance received at or after `since`, counted by
    /// modality (a study of several counts under each), source and the
    /// outcome the watchdog recorded; sorted by modality (none last),
    /// source, then rule.
    pub fn coverage(&self, since: Timestamp) -> Result<Vec<CoverageRow>, Error> {
        let groups = collect(
            &self.conn,
            "SELECT modalities, source, rule, no_report_needed, deadline_stale = 0, count(*) \
             FROM studies WHERE last_received_at >= ?1 \
             GROUP BY modalities, source, rule, no_report_needed, deadline_stale",
            params![fmt_ts(since)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            },
        )?;
        type Key = (bool, Option<String>, String, Option<String>, bool, bool);
        let mut counts: BTreeMap<Key, u64> = BTreeMap::new();
        for (modalities, source, rule, no_report_needed, evaluated, n) in groups {
            let mut each: Vec<Option<String>> = split_modalities(&modalities)
                .map(|m| Some(m.to_owned()))
                .collect();
            if each.is_empty() {
                each.push(None);
            }
            for modality in each {
                let key = (
                    modality.is_none(),
                    modality,
                    source.clone(),
                    rule.clone(),
                    no_report_needed,
                    evaluated,
                );
                *counts.entry(key).or_default() += u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(counts
            .into_iter()
            .map(
                |((_, modality, source, rule, no_report_needed, evaluated), studies)| CoverageRow {
                    modality,
                    source,
                    rule,
                    no_report_needed,
                    evaluated,
                    studies,
                },
            )
            .collect())
    }
}
