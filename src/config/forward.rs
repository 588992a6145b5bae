//! `[[forward.destinations]]`: the PACS (or other DICOM nodes) that every
//! received instance is forwarded to, and which instances each one takes.
//!
//! Like the rest of `config`, nothing here opens a socket: a destination's
//! host is only checked for shape, never resolved. The decision "does this
//! destination take this instance" is [`Match::takes`], a pure function that
//! ingest calls before the instance's catalog row is written, so that the
//! queue rows are committed in the same transaction as the instance.

use serde::{Deserialize, Serialize};

use super::{Problems, ae_title, duration, format_duration};

mod defaults {
    pub const MAX_ASSOCIATIONS: i64 = 1;
    pub const STORAGE_COMMITMENT: bool = false;
    pub const ALARM_AFTER: &str = "1h";
}

/// At most this many parallel associations to one destination: a PACS
/// rarely serves more than a handful per caller, and each holds a task.
const MAX_ASSOCIATIONS_LIMIT: i64 = 16;

/// `[forward]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// `[[forward.destinations]]`, in file order, names unique.
    pub destinations: Vec<Destination>,
    /// `alarm_after`: an instance still waiting for a destination this long
    /// after it was queued raises `forward_stalled` for that destination.
    pub alarm_after: std::time::Duration,
}

impl Forward {
    /// The names of the destinations that take an instance with these
    /// facts, in file order.
    pub fn destinations_for(
        &self,
        source: &str,
        modality: Option<&str>,
        calling_ae: &str,
    ) -> Vec<String> {
        self.destinations
            .iter()
            .filter(|d| d.matcher.takes(source, modality, calling_ae))
            .map(|d| d.name.clone())
            .collect()
    }

    /// The destination with this name.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }
}

/// One `[[forward.destinations]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// How the queue, the CLI and metrics name it: 1-64 characters of
    /// letters, digits, `-`, `_` and `.`; unique.
    pub name: String,
    /// The AE title we call (trimmed of spaces).
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// Which instances it takes; an omitted `match` takes everything.
    pub matcher: Match,
    /// Associations open to it at the same time (1-16).
    pub max_associations: usize,
    /// Whether to ask it for storage commitment once a study is forwarded.
    /// Read and kept; nothing acts on it yet.
    pub storage_commitment: bool,
}

impl Destination {
    /// `HOST:PORT`, for connecting.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `match = { source = [...], modality = [...], calling_ae = [...] }`. Each
/// list that is given must contain the instance's value; a list left out
/// matches everything. The lists are combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// Source labels (`[[dicom.peers]] source`, or the caller's AE title).
    pub source: Option<Vec<String>>,
    /// Modalities (0008,0060), compared without regard to case.
    pub modality: Option<Vec<String>>,
    /// Calling AE titles.
    pub calling_ae: Option<Vec<String>>,
}

impl Match {
    /// Whether an instance from `source`, of `modality`, sent by
    /// `calling_ae` is taken.
    pub fn takes(&self, source: &str, modality: Option<&str>, calling_ae: &str) -> bool {
        let calling_ae = calling_ae.trim_matches(|c| c == ' ' || c == '\0');
        self.source
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == source))
            && self.modality.as_ref().is_none_or(|l| {
                modality.is_some_and(|m| l.iter().any(|x| x.eq_ignore_ascii_case(m.trim())))
            })
            && self
                .calling_ae
                .as_ref()
                .is_none_or(|l| l.iter().any(|a| a == calling_ae))
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileForward {
    #[serde(skip_serializing_if = "Option::is_none")]
    alarm_after: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    destinations: Vec<FileDestination>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileDestination {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ae_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<i64>,
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    matcher: Option<FileMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_associations: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_commitment: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modality: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calling_ae: Option<Vec<String>>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A match list: present lists must not be empty (an empty list would
/// match nothing, which is never what was meant; leave the key out to
/// match everything) and hold no blank values.
fn list(
    key: &str,
    values: Option<&Vec<String>>,
    problems: &mut Problems,
    check: impl Fn(&str) -> Result<String, String>,
) -> Option<Vec<String>> {
    let values = values?;
    if values.is_empty() {
        problems.push(
            key,
            "must not be an empty list (it would match nothing); leave the key out to match everything",
        );
    }
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        match check(v) {
            Ok(v) => out.push(v),
            Err(e) => problems.push(format!("{key}[{i}]"), e),
        }
    }
    Some(out)
}

fn text_value(v: &str) -> Result<String, String> {
    let t = v.trim();
    if t.is_empty() || t.chars().count() > 64 || t.chars().any(char::is_control) {
        Err("must be 1-64 characters without control characters".to_owned())
    } else {
        Ok(t.to_owned())
    }
}

pub(super) fn validate(file: &FileForward, problems: &mut Problems) -> Forward {
    let mut destinations: Vec<Destination> = Vec::with_capacity(file.destinations.len());
    for (i, d) in file.destinations.iter().enumerate() {
        let key = format!("forward.destinations[{i}]");
        let name = match d.name.as_deref() {
            None => {
                problems.push(
                    format!("{key}.name"),
                    "missing; every destination needs one",
                );
                String::new()
            }
            Some(n) if !valid_name(n) => {
                problems.push(
                    format!("{key}.name"),
                    format!(
                        "`{}` must be 1-64 letters, digits, '-', '_' or '.'",
                        n.escape_debug()
                    ),
                );
                n.to_owned()
            }
            Some(n) => {
                if let Some(first) = destinations.iter().position(|o| o.name == n) {
                    problems.push(
                        format!("{key}.name"),
                        format!(
                            "`{n}` is already the name of forward.destinations[{first}]; \
                             each destination needs its own"
                        ),
                    );
                }
                n.to_owned()
            }
        };
        let ae = match d.ae_title.as_deref() {
            None => {
                problems.push(
                    format!("{key}.ae_title"),
                    "missing; every destination needs one",
                );
                String::new()
            }
            Some(raw) => ae_title(raw).unwrap_or_else(|e| {
                problems.push(format!("{key}.ae_title"), e);
                String::new()
            }),
        };
        let host = match d.host.as_deref().map(str::trim) {
            None => {
                problems.push(
                    format!("{key}.host"),
                    "missing; every destination needs one",
                );
                String::new()
            }
            Some(h) => {
                if h.is_empty()
                    || h.len() > 253
                    || h.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    problems.push(
                        format!("{key}.host"),
                        "must be a host name or IP address (1-253 characters, no spaces)",
                    );
                }
                h.to_owned()
            }
        };
        let port = match d.port {
            None => {
                problems.push(
                    format!("{key}.port"),
                    "missing; every destination needs one",
                );
                1
            }
            Some(n) => match u16::try_from(n) {
                Ok(p) if p >= 1 => p,
                _ => {
                    problems.push(
                        format!("{key}.port"),
                        format!("must be between 1 and 65535, not {n}"),
                    );
                    1
                }
            },
        };
        let matcher = match &d.matcher {
            None => Match::default(),
            Some(m) => Match {
                source: list(
                    &format!("{key}.match.source"),
                    m.source.as_ref(),
                    problems,
                    text_value,
                ),
                modality: list(
                    &format!("{key}.match.modality"),
                    m.modality.as_ref(),
                    problems,
                    |v| {
                        let t = v.trim();
                        if t.is_empty()
                            || t.len() > 16
                            || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        {
                            Err(format!(
                                "`{}` is not a DICOM modality such as CT",
                                v.escape_debug()
                            ))
                        } else {
                            Ok(t.to_ascii_uppercase())
                        }
                    },
                ),
                calling_ae: list(
                    &format!("{key}.match.calling_ae"),
                    m.calling_ae.as_ref(),
                    problems,
                    ae_title,
                ),
            },
        };
        let max = d.max_associations.unwrap_or(defaults::MAX_ASSOCIATIONS);
        let max_associations = if (1..=MAX_ASSOCIATIONS_LIMIT).contains(&max) {
            usize::try_from(max).unwrap_or(1)
        } else {
            problems.push(
                format!("{key}.max_associations"),
                format!("must be between 1 and {MAX_ASSOCIATIONS_LIMIT}, not {max}"),
            );
            1
        };
        destinations.push(Destination {
            name,
            ae_title: ae,
            host,
            port,
            matcher,
            max_associations,
            storage_commitment: d.storage_commitment.unwrap_or(defaults::STORAGE_COMMITMENT),
        });
    }
    let alarm_after = duration(
        "forward.alarm_after",
        file.alarm_after.as_deref(),
        defaults::ALARM_AFTER,
        true,
        problems,
    );
    Forward {
        destinations,
        alarm_after,
    }
}

pub(super) fn to_file(f: &Forward) -> FileForward {
    FileForward {
        alarm_after: Some(format_duration(f.alarm_after)),
        destinations: f
            .destinations
            .iter()
            .map(|d| FileDestination {
                name: Some(d.name.clone()),
                ae_title: Some(d.ae_title.clone()),
                host: Some(d.host.clone()),
                port: Some(i64::from(d.port)),
                matcher: Some(FileMatch {
                    source: d.matcher.source.clone(),
                    modality: d.matcher.modality.clone(),
                    calling_ae: d.matcher.calling_ae.clone(),
                }),
                max_associations: Some(i64::try_from(d.max_associations).unwrap_or(1)),
                storage_commitment: Some(d.storage_commitment),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(text: &str) -> Vec<(String, String)> {
        match Config::from_toml_str(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.into_iter().map(|p| (p.key, p.message)).collect(),
        }
    }

    #[test]
    fn the_issue_example_loads_with_its_defaults() {
        let c = Config::from_toml_str(
            r#"version = 1
[[forward.destinations]]
name = "pacs"
ae_title = "PACS"
host = "127.0.0.1"
port = 4242
match = { source = ["CT1", "IEP"] }
max_associations = 2
storage_commitment = true

[[forward.destinations]]
name = "archive"
ae_title = " ARCHIVE "
host = "archive.example.org"
port = 104
"#,
        )
        .unwrap();
        let d = &c.forward.destinations;
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "pacs");
        assert_eq!(d[0].address(), "127.0.0.1:4242");
        assert_eq!(d[0].max_associations, 2);
        assert!(d[0].storage_commitment);
        assert_eq!(d[1].ae_title, "ARCHIVE");
        assert_eq!(d[1].max_associations, 1);
        assert!(!d[1].storage_commitment);
        // Omitted match takes everything; the first takes only its sources.
        assert_eq!(
            c.forward.destinations_for("CT1", Some("CT"), "ANY"),
            ["pacs", "archive"]
        );
        assert_eq!(c.forward.destinations_for("MR2", None, "ANY"), ["archive"]);
    }

    #[test]
    fn match_lists_combine_with_and() {
        let c = Config::from_toml_str(
            r#"version = 1
[[forward.destinations]]
name = "ct-only"
ae_title = "PACS"
host = "::1"
port = 104
match = { modality = ["ct"], calling_ae = ["SCANNER"] }
"#,
        )
        .unwrap();
        let d = &c.forward.destinations[0];
        assert_eq!(d.address(), "[::1]:104");
        assert!(d.matcher.takes("any", Some("CT"), "SCANNER "));
        assert!(!d.matcher.takes("any", Some("MR"), "SCANNER"));
        assert!(!d.matcher.takes("any", None, "SCANNER"));
        assert!(!d.matcher.takes("any", Some("CT"), "OTHER"));
    }

    #[test]
    fn every_problem_names_its_key() {
        let p = problems(
            r#"version = 1
[[forward.destinations]]
name = "pacs"
ae_title = "THIS AE TITLE IS TOO LONG"
host = "has space"
port = 0
match = { source = [], modality = ["C T"] }
max_associations = 0

[[forward.destinations]]
name = "pacs"

[[forward.destinations]]
name = "bad name!"
ae_title = "X"
host = "h"
port = 1
"#,
        );
        for key in [
            "forward.destinations[0].ae_title",
            "forward.destinations[0].host",
            "forward.destinations[0].port",
            "forward.destinations[0].match.source",
            "forward.destinations[0].match.modality[0]",
            "forward.destinations[0].max_associations",
            "forward.destinations[1].name",
            "forward.destinations[1].ae_title",
            "forward.destinations[1].host",
            "forward.destinations[1].port",
            "forward.destinations[2].name",
        ] {
            assert!(p.iter().any(|(k, _)| k == key), "{key} missing in {p:?}");
        }
        assert!(
            p.iter()
                .any(|(k, m)| k == "forward.destinations[1].name" && m.contains("already")),
            "{p:?}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let p = problems(
            "version = 1\n[[forward.destinations]]\nname = \"p\"\nae_title = \"P\"\nhost = \"h\"\nport = 1\nretries = 3\n",
        );
        assert!(p.iter().any(|(_, m)| m.contains("retries")), "{p:?}");
    }
}
