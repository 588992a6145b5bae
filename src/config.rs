//! Configuration: reading `studywatch.toml`, checking it, and describing it back.
//!
//! This module is responsible for turning a TOML file into a validated [`Config`]
//! that the rest of the gateway can use without further checks. It works in two
//! stages, as ripgrep does: serde reads the file into raw `File*` structs that
//! mirror the TOML exactly (unknown keys are refused, `version = 1` is required),
//! then `validate` turns those into typed values (durations, socket addresses,
//! time zones, byte counts) and fills in defaults. Validation never stops at the
//! first mistake: every problem is collected with the dotted key path it concerns
//! (`dicom.peers[2].ae_title`, array indices counting from 0) and returned together
//! in one [`Error`], so that an operator fixes a file in one pass. `check-config`
//! runs exactly this code and prints [`Config::effective_toml`].
//!
//! This module must never open a socket, create a directory or touch the catalog:
//! it only reads the one file it is given. Relative paths stay relative; the caller
//! resolves them against the process's working directory. Secrets will come from
//! files named by `*_file` keys and are never accepted inline.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod forward;
mod http;
mod notify;
mod reports;
mod watchdog;

pub use forward::{Destination, Forward, Match};
pub use http::Http;
pub use notify::{
    ChannelConfig, ChannelKind, Email, Identifier, Notify, PAGERDUTY_URL, Security, Smtp, SmtpAuth,
    Webhook, WebhookFormat, WebhookUrl,
};
pub use reports::{DicomReports, Hl7, Linking, Reports, Sender};
pub use watchdog::{Failsafe, Watchdog};

/// The only configuration file format version this build reads.
pub const VERSION: i64 = 1;

/// Smallest and largest `dicom.max_pdu` we accept (bytes). DICOM PS3.8 lets an
/// association negotiate any value, but below 4 KiB throughput collapses and above
/// 4 MiB a single malicious peer can make us allocate too much per association.
const MAX_PDU_RANGE: std::ops::RangeInclusive<i64> = 4096..=4_194_304;

const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

mod defaults {
    pub const TIMEZONE: &str = "Europe/London";
    pub const SHUTDOWN_GRACE: &str = "30s";
    pub const LOG_LEVEL: &str = "info";
    pub const LOG_FORMAT: &str = "text";
    pub const AE_TITLE: &str = "STUDYWATCH";
    pub const LISTEN: &str = "127.0.0.1:11112";
    pub const MAX_ASSOCIATIONS: i64 = 32;
    pub const MAX_PDU: i64 = 65_536;
    pub const READ_TIMEOUT: &str = "60s";
    pub const ACCEPT_UNKNOWN_CALLERS: bool = false;
    pub const STORAGE_PATH: &str = "var/storage";
    pub const FSYNC: bool = true;
    pub const MIN_FREE_BYTES: u64 = 1_073_741_824;
    pub const RETAIN_FOR: &str = "7d";
    pub const STABLE_AFTER: &str = "60s";
    pub const CATALOG_PATH: &str = "var/catalog.sqlite3";
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A configuration that cannot be used, with every problem found in it.
///
/// Its `Display` lists the problems one per line, in the order of the file's
/// sections, so that `check-config` can print it as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_problems(&self.problems))]
pub struct Error {
    /// Never empty.
    pub problems: Vec<Problem>,
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `dicom.peers[2].ae_title` (indices count from 0).
    /// Empty when the problem concerns the whole file (it cannot be read, or it is
    /// not TOML) and no key can be named.
    pub key: String,
    /// What is wrong, as a sentence fragment without a trailing full stop.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

fn display_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    fn single(key: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            problems: vec![Problem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }
}

/// Collects problems while validation carries on with a fallback value.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }
}

// ---------------------------------------------------------------------------
// The validated configuration
// ---------------------------------------------------------------------------

/// A validated configuration: every value has its default filled in and has passed
/// every rule, so users of it need no further checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[site]`.
    pub site: Site,
    /// `[server]`.
    pub server: Server,
    /// `[log]`.
    pub log: Log,
    /// `[dicom]`.
    pub dicom: Dicom,
    /// `[storage]`.
    pub storage: Storage,
    /// `[catalog]`.
    pub catalog: Catalog,
    /// `[reports]`.
    pub reports: Reports,
    /// `[notify]`.
    pub notify: Notify,
    /// `[watchdog]`.
    pub watchdog: Watchdog,
    /// `[http]`.
    pub http: Http,
    /// `[forward]`.
    pub forward: Forward,
    /// The file this was loaded from; `None` when built from a string.
    pub source_path: Option<PathBuf>,
}

/// `[site]`: facts about the hospital the gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The zone in which working hours, bank holidays and DICOM local date/times
    /// are interpreted.
    pub timezone: jiff::tz::TimeZone,
    /// The IANA name of `timezone` as the time zone database spells it.
    pub timezone_name: String,
}

/// `[server]`: process-wide behaviour of `studywatch serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// How long in-flight work may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

/// `[log]`: what is logged and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// One of `error`, `warn`, `info`, `debug`, `trace` (always lower case).
    pub level: String,
    /// How each line is written.
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The spelling used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `[dicom]`: the DICOM listener and the peers it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dicom {
    /// Our own AE title (trimmed of spaces).
    pub ae_title: String,
    /// The address the DICOM listener binds.
    pub listen: SocketAddr,
    /// Associations served at once; further ones are rejected (transient).
    pub max_associations: usize,
    /// The maximum PDU length we announce and accept, in bytes.
    pub max_pdu: u32,
    /// How long an association may stay silent while we wait for a PDU.
    pub read_timeout: Duration,
    /// Whether callers whose AE title matches no peer are served.
    pub accept_unknown_callers: bool,
    /// The known peers, in file order, AE titles unique.
    pub peers: Vec<Peer>,
    /// A study is stable once no instance has arrived for this long (a
    /// peer may override it); stability starts the checks that need the
    /// whole study (completeness, storage commitment towards PACS).
    pub stable_after: Duration,
}

/// One `[[dicom.peers]]` entry: a DICOM node we know by its AE title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its AE title (trimmed of spaces); unique among peers.
    pub ae_title: String,
    /// Where to reach it when we open an association to it (for example to send
    /// storage commitment results). Given together with `port`, or not at all.
    pub host: Option<String>,
    /// Its port (1-65535); present exactly when `host` is.
    pub port: Option<u16>,
    /// The source label recorded on studies it sends; defaults to its AE title.
    pub source: String,
    /// Its own `stable_after`, overriding `[dicom] stable_after`.
    pub stable_after: Option<Duration>,
    /// Whether it answers C-FIND (Study Root), so that the completeness of
    /// what it sent can be checked against what it holds. Needs host and port.
    pub query_retrieve: bool,
}

/// `[storage]`: where received instances are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// The directory under which instance files are kept (may be relative).
    pub path: PathBuf,
    /// Whether every file, directory and catalog commit is synced to disk before
    /// success is reported. Turning it off is only for storage with its own
    /// power-loss protection.
    pub fsync: bool,
    /// Below this much free space, stores are refused with status 0xA700.
    pub min_free_bytes: u64,
    /// A local file is pruned once it is this old and every destination
    /// that takes it has it (committed, where the destination commits).
    pub retain_for: Duration,
}

/// `[catalog]`: the SQLite database that is the single source of truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// The database file (may be relative).
    pub path: PathBuf,
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::single("", format!("cannot read {}: {e}", path.display())))?;
        let mut config = Config::from_toml_str(&text)?;
        config.source_path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates configuration text.
    pub fn from_toml_str(s: &str) -> Result<Config, Error> {
        check_version(s)?;
        let file: FileConfig = toml::from_str(s).map_err(|e| toml_error(s, &e))?;
        validate(&file)
    }

    /// The effective configuration, every default filled in, as TOML that loads
    /// back to an equal `Config` (apart from `source_path`).
    pub fn effective_toml(&self) -> String {
        let file = self.to_file();
        // `FileConfig` holds only strings, integers (`i64`), booleans, tables and
        // arrays of tables, with absent optional keys skipped, which TOML always
        // represents; serialisation therefore cannot fail.
        let body = toml::to_string(&file)
            .expect("FileConfig contains only values that TOML can represent");
        let mut out = String::from("# studywatch effective configuration (defaults filled in)\n");
        if let Some(path) = &self.source_path {
            // Debug formatting escapes newlines, so the comment stays one line.
            out.push_str(&format!("# loaded from {:?}\n", path.display().to_string()));
        }
        out.push('\n');
        out.push_str(&body);
        out
    }

    /// The peer with this AE title. Trailing and leading spaces (and the NUL
    /// padding some devices send) are ignored, as DICOM says they are insignificant.
    pub fn peer(&self, ae_title: &str) -> Option<&Peer> {
        let wanted = ae_title.trim_matches(|c| c == ' ' || c == '\0');
        self.dicom.peers.iter().find(|p| p.ae_title == wanted)
    }

    /// Settings that are valid but that an operator should be told about at start:
    /// the server logs each of these as a warning and `check-config` prints them.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut out = Problems::default();
        if self.dicom.accept_unknown_callers {
            out.push(
                "dicom.accept_unknown_callers",
                "any caller is served, whatever its AE title; \
                 list peers and set this to false in production",
            );
        } else if self.dicom.peers.is_empty() {
            out.push(
                "dicom.peers",
                "no peers are configured and unknown callers are refused, \
                 so every association will be rejected",
            );
        }
        if !self.storage.fsync {
            out.push(
                "storage.fsync",
                "fsync is off: acknowledged instances can be lost on power failure",
            );
        }
        notify::warnings(&self.notify, &mut out);
        http::warnings(&self.http, &mut out);
        out.0
    }

    fn to_file(&self) -> FileConfig {
        FileConfig {
            version: Some(VERSION),
            site: FileSite {
                timezone: Some(self.site.timezone_name.clone()),
            },
            server: FileServer {
                shutdown_grace: Some(format_duration(self.server.shutdown_grace)),
            },
            log: FileLog {
                level: Some(self.log.level.clone()),
                format: Some(self.log.format.as_str().to_owned()),
            },
            dicom: FileDicom {
                ae_title: Some(self.dicom.ae_title.clone()),
                listen: Some(self.dicom.listen.to_string()),
                max_associations: Some(
                    i64::try_from(self.dicom.max_associations).unwrap_or(i64::MAX),
                ),
                max_pdu: Some(i64::from(self.dicom.max_pdu)),
                read_timeout: Some(format_duration(self.dicom.read_timeout)),
                accept_unknown_callers: Some(self.dicom.accept_unknown_callers),
                peers: self
                    .dicom
                    .peers
                    .iter()
                    .map(|p| FilePeer {
                        ae_title: Some(p.ae_title.clone()),
                        host: p.host.clone(),
                        port: p.port.map(i64::from),
                        source: Some(p.source.clone()),
                        stable_after: p.stable_after.map(format_duration),
                        query_retrieve: p.query_retrieve.then_some(true),
                    })
                    .collect(),
                stable_after: Some(format_duration(self.dicom.stable_after)),
            },
            storage: FileStorage {
                path: Some(self.storage.path.display().to_string()),
                fsync: Some(self.storage.fsync),
                min_free_bytes: Some(ByteSize::Int(
                    i64::try_from(self.storage.min_free_bytes).unwrap_or(i64::MAX),
                )),
                retain_for: Some(format_duration(self.storage.retain_for)),
            },
            catalog: FileCatalog {
                path: Some(self.catalog.path.display().to_string()),
            },
            reports: reports::to_file(&self.reports),
            notify: notify::to_file(&self.notify),
            watchdog: watchdog::to_file(&self.watchdog),
            http: http::to_file(&self.http),
            forward: forward::to_file(&self.forward),
        }
    }
}

// ---------------------------------------------------------------------------
// Stage one: the file as written
// ---------------------------------------------------------------------------

// Every key is optional here so that a missing key gets its default in stage two,
// and integers are read as `i64` so that an out-of-range value becomes a collected
// problem with its key rather than a serde error that hides every other problem.

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    #[serde(default)]
    site: FileSite,
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    dicom: FileDicom,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    catalog: FileCatalog,
    #[serde(default)]
    reports: reports::FileReports,
    #[serde(default)]
    notify: notify::FileNotify,
    #[serde(default)]
    watchdog: watchdog::FileWatchdog,
    #[serde(default)]
    http: http::FileHttp,
    #[serde(default)]
    forward: forward::FileForward,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileSite {
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileDicom {
    #[serde(skip_serializing_if = "Option::is_none")]
    ae_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_associations: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_pdu: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accept_unknown_callers: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    peers: Vec<FilePeer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stable_after: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FilePeer {
    // Optional so that a missing AE title is reported with the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    ae_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stable_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_retrieve: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fsync: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_free_bytes: Option<ByteSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retain_for: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileCatalog {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

/// A byte count written either as an integer or as a string with a unit
/// (`"500MB"`, `"1GiB"`).
#[derive(Debug, Deserialize, Serialize)]
#[serde(
    untagged,
    expecting = "must be an integer or a string such as \"1GiB\""
)]
enum ByteSize {
    Int(i64),
    Str(String),
}

/// Reads only `version`, so that a file written for another version gets that one
/// clear answer instead of a list of keys this build does not know.
fn check_version(s: &str) -> Result<(), Error> {
    #[derive(Deserialize)]
    struct Probe {
        version: Option<toml::Value>,
    }
    let probe: Probe = toml::from_str(s).map_err(|e| toml_error(s, &e))?;
    match probe.version {
        None | Some(toml::Value::Integer(VERSION)) => Ok(()),
        Some(toml::Value::Integer(n)) => Err(Error::single(
            "version",
            format!("unsupported version {n}; this build of studywatch reads version {VERSION}"),
        )),
        Some(other) => Err(Error::single(
            "version",
            format!("must be the integer {VERSION}, not a {}", other.type_str()),
        )),
    }
}

/// Turns a TOML syntax or shape error into one problem on one line, naming the key
/// when toml knows it and always the line and column.
fn toml_error(input: &str, err: &toml::de::Error) -> Error {
    // Rendering without the input makes toml print the message followed by
    // "in `key.path`" instead of a multi-line snippet of the file.
    let mut bare = err.clone();
    bare.set_input(None);
    let rendered = bare.to_string();
    let mut key = String::new();
    let mut lines = Vec::new();
    for line in rendered.lines() {
        match line.strip_prefix("in `").and_then(|l| l.strip_suffix('`')) {
            Some(k) => key = k.to_owned(),
            None if !line.trim().is_empty() => lines.push(line.trim()),
            None => {}
        }
    }
    let mut message = if lines.is_empty() {
        err.message().to_owned()
    } else {
        lines.join("; ")
    };
    if let Some(span) = err.span() {
        let (line, column) = line_column(input, span.start);
        message = format!("{message} (line {line}, column {column})");
    }
    Error::single(key, message)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(input: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(input.len());
    while !input.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &input[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

// ---------------------------------------------------------------------------
// Stage two: validation
// ---------------------------------------------------------------------------

fn validate(file: &FileConfig) -> Result<Config, Error> {
    let mut problems = Problems::default();

    if file.version.is_none() {
        problems.push(
            "version",
            format!("missing; the file must start with `version = {VERSION}`"),
        );
    }

    let site = validate_site(&file.site, &mut problems);
    let server = Server {
        shutdown_grace: duration(
            "server.shutdown_grace",
            file.server.shutdown_grace.as_deref(),
            defaults::SHUTDOWN_GRACE,
            false,
            &mut problems,
        ),
    };
    let log = validate_log(&file.log, &mut problems);
    let dicom = validate_dicom(&file.dicom, &mut problems);
    let storage = Storage {
        path: non_empty_path(
            "storage.path",
            file.storage.path.as_deref(),
            defaults::STORAGE_PATH,
            &mut problems,
        ),
        fsync: file.storage.fsync.unwrap_or(defaults::FSYNC),
        min_free_bytes: match &file.storage.min_free_bytes {
            None => defaults::MIN_FREE_BYTES,
            Some(ByteSize::Int(n)) => u64::try_from(*n).unwrap_or_else(|_| {
                problems.push("storage.min_free_bytes", "must not be negative");
                0
            }),
            Some(ByteSize::Str(s)) => parse_byte_size(s).unwrap_or_else(|e| {
                problems.push("storage.min_free_bytes", e);
                0
            }),
        },
        retain_for: duration(
            "storage.retain_for",
            file.storage.retain_for.as_deref(),
            defaults::RETAIN_FOR,
            true,
            &mut problems,
        ),
    };
    let catalog = Catalog {
        path: non_empty_path(
            "catalog.path",
            file.catalog.path.as_deref(),
            defaults::CATALOG_PATH,
            &mut problems,
        ),
    };

    let reports = reports::validate(&file.reports, &mut problems);
    let notify = notify::validate(&file.notify, &mut problems);
    let watchdog = watchdog::validate(&file.watchdog, &mut problems);
    let http = http::validate(&file.http, &mut problems);
    let forward = forward::validate(&file.forward, &mut problems);
    for (key, name) in watchdog.channel_references() {
        if notify.channel(&name).is_none() {
            problems.push(
                key,
                format!("`{name}` is not the name of any [[notify.channels]] entry"),
            );
        }
    }

    if !problems.0.is_empty() {
        return Err(Error {
            problems: problems.0,
        });
    }
    Ok(Config {
        site,
        server,
        log,
        dicom,
        storage,
        catalog,
        reports,
        notify,
        watchdog,
        http,
        forward,
        source_path: None,
    })
}

fn validate_site(file: &FileSite, problems: &mut Problems) -> Site {
    let name = file.timezone.as_deref().unwrap_or(defaults::TIMEZONE);
    match jiff::tz::TimeZone::get(name) {
        Ok(tz) => Site {
            timezone_name: tz.iana_name().unwrap_or(name).to_owned(),
            timezone: tz,
        },
        Err(e) => {
            problems.push(
                "site.timezone",
                format!("`{name}` is not a time zone in the IANA database: {e}"),
            );
            Site {
                timezone: jiff::tz::TimeZone::UTC,
                timezone_name: name.to_owned(),
            }
        }
    }
}

fn validate_log(file: &FileLog, problems: &mut Problems) -> Log {
    let level = file
        .level
        .as_deref()
        .unwrap_or(defaults::LOG_LEVEL)
        .trim()
        .to_ascii_lowercase();
    if !LOG_LEVELS.contains(&level.as_str()) {
        problems.push(
            "log.level",
            format!("`{level}` is not one of {}", LOG_LEVELS.join(", ")),
        );
    }
    let format = match file.format_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            problems.push("log.format", format!("`{other}` is not one of text, json"));
            LogFormat::Text
        }
    };
    Log { level, format }
}

impl FileLog {
    fn format_str(&self) -> &str {
        self.format.as_deref().unwrap_or(defaults::LOG_FORMAT)
    }
}

fn validate_dicom(file: &FileDicom, problems: &mut Problems) -> Dicom {
    let ae_title = match ae_title(file.ae_title.as_deref().unwrap_or(defaults::AE_TITLE)) {
        Ok(t) => t,
        Err(e) => {
            problems.push("dicom.ae_title", e);
            String::new()
        }
    };

    let listen_text = file.listen.as_deref().unwrap_or(defaults::LISTEN);
    let listen = listen_text
        .trim()
        .parse::<SocketAddr>()
        .unwrap_or_else(|e| {
            problems.push(
                "dicom.listen",
                format!(
                    "`{listen_text}` is not an address and port such as 127.0.0.1:11112 \
                 or [::]:104 ({e})"
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        });

    let max_associations = match file.max_associations.unwrap_or(defaults::MAX_ASSOCIATIONS) {
        n if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
        n => {
            problems.push(
                "dicom.max_associations",
                format!("must be at least 1, not {n}"),
            );
            1
        }
    };

    let max_pdu_value = file.max_pdu.unwrap_or(defaults::MAX_PDU);
    let max_pdu = match u32::try_from(max_pdu_value) {
        Ok(n) if MAX_PDU_RANGE.contains(&max_pdu_value) => n,
        _ => {
            problems.push(
                "dicom.max_pdu",
                format!(
                    "must be between {} and {} bytes, not {max_pdu_value}",
                    MAX_PDU_RANGE.start(),
                    MAX_PDU_RANGE.end()
                ),
            );
            4096
        }
    };

    let read_timeout = duration(
        "dicom.read_timeout",
        file.read_timeout.as_deref(),
        defaults::READ_TIMEOUT,
        true,
        problems,
    );

    let mut peers: Vec<Peer> = Vec::with_capacity(file.peers.len());
    for (i, p) in file.peers.iter().enumerate() {
        let key = format!("dicom.peers[{i}]");
        let peer = validate_peer(&key, p, problems);
        if !peer.ae_title.is_empty() {
            if let Some(first) = peers.iter().position(|q| q.ae_title == peer.ae_title) {
                problems.push(
                    format!("{key}.ae_title"),
                    format!(
                        "`{}` is already the AE title of dicom.peers[{first}]; \
                         each peer needs its own",
                        peer.ae_title
                    ),
                );
            }
        }
        peers.push(peer);
    }

    Dicom {
        ae_title,
        listen,
        max_associations,
        max_pdu,
        read_timeout,
        accept_unknown_callers: file
            .accept_unknown_callers
            .unwrap_or(defaults::ACCEPT_UNKNOWN_CALLERS),
        peers,
        stable_after: duration(
            "dicom.stable_after",
            file.stable_after.as_deref(),
            defaults::STABLE_AFTER,
            true,
            problems,
        ),
    }
}

fn validate_peer(key: &str, file: &FilePeer, problems: &mut Problems) -> Peer {
    let ae = match file.ae_title.as_deref() {
        None => {
            problems.push(format!("{key}.ae_title"), "missing; every peer needs one");
            String::new()
        }
        Some(raw) => ae_title(raw).unwrap_or_else(|e| {
            problems.push(format!("{key}.ae_title"), e);
            String::new()
        }),
    };

    let host = file.host.as_deref().map(|h| {
        let h = h.trim();
        if h.is_empty() || h.len() > 253 || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(
                format!("{key}.host"),
                "must be a host name or IP address (1-253 characters, no spaces)",
            );
        }
        h.to_owned()
    });

    let port = file.port.map(|n| match u16::try_from(n) {
        Ok(p) if p >= 1 => p,
        _ => {
            problems.push(
                format!("{key}.port"),
                format!("must be between 1 and 65535, not {n}"),
            );
            1
        }
    });

    match (&host, &port) {
        (Some(_), None) => problems.push(
            format!("{key}.port"),
            "missing; host and port are given together or not at all",
        ),
        (None, Some(_)) => problems.push(
            format!("{key}.host"),
            "missing; host and port are given together or not at all",
        ),
        _ => {}
    }

    let source = match file.source.as_deref() {
        None => ae.clone(),
        Some(raw) => {
            let s = raw.trim();
            if s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) {
                problems.push(
                    format!("{key}.source"),
                    "must be 1-64 characters without control characters",
                );
            }
            s.to_owned()
        }
    };

    let stable_after = file.stable_after.as_deref().map(|raw| {
        duration(
            &format!("{key}.stable_after"),
            Some(raw),
            defaults::STABLE_AFTER,
            true,
            problems,
        )
    });
    let query_retrieve = file.query_retrieve.unwrap_or(false);
    if query_retrieve && host.is_none() {
        problems.push(
            format!("{key}.query_retrieve"),
            "needs host and port: the completeness check opens an association to the peer",
        );
    }

    Peer {
        ae_title: ae,
        host,
        port,
        source,
        stable_after,
        query_retrieve,
    }
}

/// Checks an AE title (PS3.5 §6.2, VR AE) and returns it without its insignificant
/// leading and trailing spaces.
fn ae_title(raw: &str) -> Result<String, String> {
    let t = raw.trim_matches(' ');
    if t.is_empty() {
        return Err("must not be empty or all spaces".to_owned());
    }
    if let Some(c) = t.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "`{}` contains {c:?}; only printable ASCII is allowed",
            t.escape_debug()
        ));
    }
    if t.contains('\\') {
        return Err(format!("`{t}` contains a backslash, which DICOM forbids"));
    }
    if t.len() > 16 {
        return Err(format!(
            "`{t}` is {} characters; an AE title has 1-16",
            t.len()
        ));
    }
    Ok(t.to_owned())
}

fn duration(
    key: &str,
    value: Option<&str>,
    default: &str,
    must_be_positive: bool,
    problems: &mut Problems,
) -> Duration {
    let text = value.unwrap_or(default);
    match parse_duration(text) {
        Ok(d) if must_be_positive && d.is_zero() => {
            problems.push(key, "must be greater than zero");
            Duration::from_secs(1)
        }
        Ok(d) => d,
        Err(e) => {
            problems.push(key, e);
            Duration::from_secs(1)
        }
    }
}

fn non_empty_path(
    key: &str,
    value: Option<&str>,
    default: &str,
    problems: &mut Problems,
) -> PathBuf {
    let text = value.unwrap_or(default);
    if text.trim().is_empty() {
        problems.push(key, "must not be empty");
    } else if text.contains('\0') {
        problems.push(key, "must not contain a NUL character");
    }
    PathBuf::from(text)
}

// ---------------------------------------------------------------------------
// Value syntaxes shared with other modules
// ---------------------------------------------------------------------------

/// Parses a duration written as a whole number and a unit: `"500ms"`, `"90s"`,
/// `"45m"`, `"24h"`, `"7d"` (a day is 24 hours here; the watchdog gives `d` its
/// working-day meaning itself). No spaces, signs, fractions or compound forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    if s.is_empty() {
        return Err("empty duration; write e.g. \"90s\", \"45m\", \"24h\" or \"7d\"".to_owned());
    }
    if number.is_empty() {
        return Err(format!(
            "`{s}` is not a duration; write a whole number and a unit, e.g. \"90s\""
        ));
    }
    let too_long = || format!("`{s}` is too long a duration");
    let n: u64 = number.parse().map_err(|_| too_long())?;
    let seconds_per = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "" => {
            return Err(format!(
                "`{s}` has no unit; add one of ms, s, m, h, d (e.g. \"{s}s\")"
            ));
        }
        _ => {
            return Err(format!(
                "`{s}` has an unknown unit `{unit}`; use one of ms, s, m, h, d"
            ));
        }
    };
    n.checked_mul(seconds_per)
        .map(Duration::from_secs)
        .ok_or_else(too_long)
}

/// Writes a duration in the largest unit that represents it exactly, so that
/// [`parse_duration`] reads back the same value. Sub-millisecond parts (which
/// `parse_duration` never produces) are dropped.
pub fn format_duration(d: Duration) -> String {
    let millis = d.as_millis();
    if millis % 1000 != 0 {
        return format!("{millis}ms");
    }
    let secs = d.as_secs();
    for (unit, per) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs != 0 && secs % per == 0 {
            return format!("{}{unit}", secs / per);
        }
    }
    format!("{secs}s")
}

/// Parses a byte count such as `"1073741824"`, `"500MB"` or `"1 GiB"`. Units are
/// B, kB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024), in
/// any case. The result must fit in a TOML integer (at most `i64::MAX`).
fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let bad = || format!("`{s}` is not a byte count such as 1073741824, \"500MB\" or \"1GiB\"");
    if number.is_empty() {
        return Err(bad());
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let too_big = || format!("`{s}` is too large");
    number
        .parse::<u64>()
        .map_err(|_| too_big())?
        .checked_mul(multiplier)
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or_else(too_big)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(s: &str) -> Config {
        match Config::from_toml_str(s) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got:\n{e}"),
        }
    }

    fn problems(s: &str) -> Vec<Problem> {
        match Config::from_toml_str(s) {
            Ok(c) => panic!("expected problems, got {c:#?}"),
            Err(e) => e.problems,
        }
    }

    /// Asserts that exactly one problem names `key` and that its message contains
    /// `fragment`.
    #[track_caller]
    fn assert_problem(s: &str, key: &str, fragment: &str) {
        let ps = problems(s);
        let matching: Vec<_> = ps.iter().filter(|p| p.key == key).collect();
        assert_eq!(matching.len(), 1, "one problem at {key} in {ps:#?}");
        assert!(
            matching[0].message.contains(fragment),
            "{key}: {:?} should contain {fragment:?}",
            matching[0].message
        );
    }

    #[test]
    fn stability_completeness_and_retention_keys() {
        let c = load("version = 1");
        assert_eq!(c.dicom.stable_after, Duration::from_secs(60));
        assert_eq!(c.storage.retain_for, Duration::from_secs(7 * 24 * 3600));
        let c = load(
            r#"
            version = 1
            [dicom]
            stable_after = "5m"
            [[dicom.peers]]
            ae_title = "TRUSTB"
            host = "192.0.2.7"
            port = 11112
            stable_after = "20m"
            query_retrieve = true
            [storage]
            retain_for = "30d"
            "#,
        );
        assert_eq!(c.dicom.stable_after, Duration::from_secs(300));
        assert_eq!(
            c.dicom.peers[0].stable_after,
            Some(Duration::from_secs(1200))
        );
        assert!(c.dicom.peers[0].query_retrieve);
        assert_eq!(c.storage.retain_for, Duration::from_secs(30 * 24 * 3600));
        // Round trip through the effective config.
        let again = load(&c.effective_toml());
        assert_eq!(again.dicom, c.dicom);
        assert_eq!(again.storage, c.storage);
        assert_problem(
            "version = 1\n[[dicom.peers]]\nae_title = \"X\"\nquery_retrieve = true\n",
            "dicom.peers[0].query_retrieve",
            "needs host and port",
        );
        assert_problem(
            "version = 1\n[storage]\nretain_for = \"soon\"\n",
            "storage.retain_for",
            "",
        );
    }

    #[test]
    fn defaults_fill_every_key() {
        let c = load("version = 1");
        assert_eq!(c.site.timezone_name, "Europe/London");
        assert_eq!(
            c.site.timezone,
            jiff::tz::TimeZone::get("Europe/London").unwrap()
        );
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.dicom.ae_title, "STUDYWATCH");
        assert_eq!(c.dicom.listen, "127.0.0.1:11112".parse().unwrap());
        assert_eq!(c.dicom.max_associations, 32);
        assert_eq!(c.dicom.max_pdu, 65536);
        assert_eq!(c.dicom.read_timeout, Duration::from_secs(60));
        assert!(!c.dicom.accept_unknown_callers);
        assert!(c.dicom.peers.is_empty());
        assert_eq!(c.storage.path, PathBuf::from("var/storage"));
        assert!(c.storage.fsync);
        assert_eq!(c.storage.min_free_bytes, 1 << 30);
        assert_eq!(c.catalog.path, PathBuf::from("var/catalog.sqlite3"));
        assert_eq!(c.source_path, None);
    }

    #[test]
    fn explicit_values_are_used() {
        let c = load(
            r#"
            version = 1
            [site]
            timezone = "America/New_York"
            [server]
            shutdown_grace = "2m"
            [log]
            level = "DEBUG"
            format = "json"
            [dicom]
            ae_title = "  GATEWAY1 "
            listen = "[::]:104"
            max_associations = 4
            max_pdu = 4194304
            read_timeout = "1500ms"
            accept_unknown_callers = true
            [storage]
            path = "/srv/dicom"
            fsync = false
            min_free_bytes = 0
            [catalog]
            path = "/srv/catalog.db"
            "#,
        );
        assert_eq!(c.site.timezone_name, "America/New_York");
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(120));
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.dicom.ae_title, "GATEWAY1");
        assert_eq!(c.dicom.listen, "[::]:104".parse().unwrap());
        assert_eq!(c.dicom.max_associations, 4);
        assert_eq!(c.dicom.max_pdu, 4_194_304);
        assert_eq!(c.dicom.read_timeout, Duration::from_millis(1500));
        assert!(c.dicom.accept_unknown_callers);
        assert_eq!(c.storage.path, PathBuf::from("/srv/dicom"));
        assert!(!c.storage.fsync);
        assert_eq!(c.storage.min_free_bytes, 0);
        assert_eq!(c.catalog.path, PathBuf::from("/srv/catalog.db"));
    }

    #[test]
    fn version_is_required_and_must_be_one() {
        assert_problem("", "version", "missing");
        assert_problem("[log]\nlevel = \"info\"", "version", "missing");
        assert_problem("version = 2", "version", "unsupported version 2");
        assert_problem("version = \"1\"", "version", "integer 1");
        // A file for another version is not picked apart key by key.
        let ps = problems("version = 2\n[future]\nx = 1");
        assert_eq!(ps.len(), 1, "{ps:#?}");
    }

    #[test]
    fn unknown_keys_and_bad_syntax_are_one_problem_with_a_position() {
        let ps = problems("version = 1\n[dicom]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n");
        assert_eq!(ps.len(), 1, "{ps:#?}");
        assert!(ps[0].message.contains("unknown field `lisen`"), "{ps:#?}");
        assert!(ps[0].message.contains("line 4, column 1"), "{ps:#?}");
        assert_eq!(ps[0].key, "dicom");

        let ps = problems("version = 1\n[[dicom.peers]]\nae_title = \"A\"\ncolour = 1\n");
        assert_eq!(ps.len(), 1, "{ps:#?}");
        assert!(ps[0].message.contains("unknown field `colour`"), "{ps:#?}");
        assert!(ps[0].message.contains("line 4"), "{ps:#?}");

        let ps = problems("version = 1\n[bogus]\n");
        assert!(ps[0].message.contains("unknown field `bogus`"), "{ps:#?}");

        let ps = problems("version = 1\n[dicom\n");
        assert_eq!(ps.len(), 1, "{ps:#?}");
        assert!(ps[0].message.contains("line 2"), "{ps:#?}");
        assert!(!ps[0].message.contains('\n'), "one line: {ps:#?}");

        // A wrong type names the key when toml knows it.
        let ps = problems("version = 1\n[storage]\nfsync = \"yes\"\n");
        assert_eq!(ps.len(), 1, "{ps:#?}");
        assert_eq!(ps[0].key, "storage.fsync");
        assert!(ps[0].message.contains("line 3"), "{ps:#?}");
    }

    #[test]
    fn several_problems_are_reported_together() {
        let err = Config::from_toml_str(
            r#"
            [site]
            timezone = "Mars/Olympus_Mons"
            [server]
            shutdown_grace = "soon"
            [log]
            level = "loud"
            format = "xml"
            [dicom]
            ae_title = "THIS_TITLE_IS_TOO_LONG"
            listen = "localhost"
            max_associations = 0
            max_pdu = 100
            read_timeout = "0s"
            [[dicom.peers]]
            ae_title = "CT1"
            [[dicom.peers]]
            ae_title = "CT1"
            port = 0
            [storage]
            path = ""
            min_free_bytes = -5
            [catalog]
            path = " "
            "#,
        )
        .unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "version",
                "site.timezone",
                "server.shutdown_grace",
                "log.level",
                "log.format",
                "dicom.ae_title",
                "dicom.listen",
                "dicom.max_associations",
                "dicom.max_pdu",
                "dicom.read_timeout",
                "dicom.peers[1].port",
                "dicom.peers[1].host",
                "dicom.peers[1].ae_title",
                "storage.path",
                "storage.min_free_bytes",
                "catalog.path",
            ]
        );
        // Display: one line per problem, each starting with its key.
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), keys.len(), "{text}");
        for (line, key) in lines.iter().zip(&keys) {
            assert!(line.starts_with(&format!("{key}: ")), "{line}");
        }
    }

    #[test]
    fn timezone_must_be_iana() {
        assert_problem(
            "version = 1\n[site]\ntimezone = \"Europe/Londres\"",
            "site.timezone",
            "Europe/Londres",
        );
        assert_problem(
            "version = 1\n[site]\ntimezone = \"\"",
            "site.timezone",
            "IANA",
        );
        let c = load("version = 1\n[site]\ntimezone = \"UTC\"");
        assert_eq!(c.site.timezone, jiff::tz::TimeZone::UTC);
    }

    #[test]
    fn log_level_and_format_rules() {
        for level in ["error", "warn", "info", "debug", "trace", "Warn"] {
            let c = load(&format!("version = 1\n[log]\nlevel = \"{level}\""));
            assert_eq!(c.log.level, level.to_ascii_lowercase());
        }
        assert_problem(
            "version = 1\n[log]\nlevel = \"verbose\"",
            "log.level",
            "verbose",
        );
        assert_problem(
            "version = 1\n[log]\nformat = \"XML\"",
            "log.format",
            "text, json",
        );
    }

    #[test]
    fn ae_title_rules() {
        let ok = |t: &str| ae_title(t).unwrap();
        assert_eq!(ok("A"), "A");
        assert_eq!(ok("SIXTEEN_CHARS_XX"), "SIXTEEN_CHARS_XX");
        assert_eq!(ok("  PADDED  "), "PADDED");
        assert_eq!(ok("WITH SPACE"), "WITH SPACE");
        assert!(ae_title("").is_err());
        assert!(ae_title("    ").is_err());
        assert!(ae_title("SEVENTEEN_CHARS_X").is_err());
        assert!(ae_title("BACK\\SLASH").is_err());
        assert!(ae_title("TAB\tBED").is_err());
        assert!(ae_title("NEWLINE\n").is_err());
        assert!(ae_title("CAFÉ").is_err());

        assert_problem(
            "version = 1\n[dicom]\nae_title = \"   \"",
            "dicom.ae_title",
            "empty",
        );
        assert_problem(
            "version = 1\n[[dicom.peers]]\nae_title = \"A\"\n[[dicom.peers]]\nae_title = \"B\"\n\
             [[dicom.peers]]\nae_title = \"SEVENTEEN_CHARS_X\"",
            "dicom.peers[2].ae_title",
            "1-16",
        );
        assert_problem(
            "version = 1\n[[dicom.peers]]\nsource = \"x\"",
            "dicom.peers[0].ae_title",
            "missing",
        );
    }

    #[test]
    fn listen_must_be_a_socket_address() {
        assert_problem(
            "version = 1\n[dicom]\nlisten = \"localhost:104\"",
            "dicom.listen",
            "localhost:104",
        );
        assert_problem(
            "version = 1\n[dicom]\nlisten = \"127.0.0.1\"",
            "dicom.listen",
            "",
        );
        let c = load("version = 1\n[dicom]\nlisten = \"0.0.0.0:0\"");
        assert_eq!(c.dicom.listen.port(), 0);
    }

    #[test]
    fn numeric_limits() {
        assert_problem(
            "version = 1\n[dicom]\nmax_associations = -1",
            "dicom.max_associations",
            "at least 1",
        );
        assert_eq!(
            load("version = 1\n[dicom]\nmax_associations = 1")
                .dicom
                .max_associations,
            1
        );
        assert_eq!(
            load("version = 1\n[dicom]\nmax_pdu = 4096").dicom.max_pdu,
            4096
        );
        assert_problem(
            "version = 1\n[dicom]\nmax_pdu = 4095",
            "dicom.max_pdu",
            "4096",
        );
        assert_problem(
            "version = 1\n[dicom]\nmax_pdu = 4194305",
            "dicom.max_pdu",
            "4194304",
        );
        assert_problem(
            "version = 1\n[dicom]\nmax_pdu = 9999999999999",
            "dicom.max_pdu",
            "between",
        );
    }

    #[test]
    fn read_timeout_must_be_positive_but_grace_may_be_zero() {
        assert_problem(
            "version = 1\n[dicom]\nread_timeout = \"0s\"",
            "dicom.read_timeout",
            "greater than zero",
        );
        assert_problem(
            "version = 1\n[dicom]\nread_timeout = \"60\"",
            "dicom.read_timeout",
            "no unit",
        );
        let c = load("version = 1\n[server]\nshutdown_grace = \"0s\"");
        assert_eq!(c.server.shutdown_grace, Duration::ZERO);
    }

    #[test]
    fn peers() {
        let c = load(
            r#"
            version = 1
            [[dicom.peers]]
            ae_title = "CT1"
            host = "10.0.0.5"
            port = 104
            [[dicom.peers]]
            ae_title = "TRUSTB"
            source = "trust-b"
            "#,
        );
        assert_eq!(
            c.dicom.peers,
            [
                Peer {
                    ae_title: "CT1".into(),
                    host: Some("10.0.0.5".into()),
                    port: Some(104),
                    source: "CT1".into(),
                    stable_after: None,
                    query_retrieve: false,
                },
                Peer {
                    ae_title: "TRUSTB".into(),
                    host: None,
                    port: None,
                    source: "trust-b".into(),
                    stable_after: None,
                    query_retrieve: false,
                },
            ]
        );
        assert_eq!(c.peer("CT1").map(|p| p.source.as_str()), Some("CT1"));
        assert_eq!(
            c.peer("TRUSTB          ").map(|p| p.source.as_str()),
            Some("trust-b")
        );
        assert_eq!(
            c.peer("TRUSTB\0").map(|p| p.source.as_str()),
            Some("trust-b")
        );
        assert!(c.peer("ct1").is_none(), "AE titles are case-sensitive");
        assert!(c.peer("NOBODY").is_none());
    }

    #[test]
    fn peer_rules() {
        assert_problem(
            "version = 1\n[[dicom.peers]]\nae_title = \"A\"\n[[dicom.peers]]\nae_title = \" A\"",
            "dicom.peers[1].ae_title",
            "dicom.peers[0]",
        );
        assert_problem(
            "version = 1\n[[dicom.peers]]\nae_title = \"A\"\nhost = \"h\"\nport = 70000",
            "dicom.peers[0].port",
            "65535",
        );
        assert_problem(
            "version = 1\n[[dicom.peers]]\nae_title = \"A\"\nhost = \"h\"",
            "dicom.peers[0].port",
            "together",
        );
        assert_problem(
            "version = 1\n[[dicom.peers]]\nae_title = \"A\"\nport = 104",
            "dicom.peers[0].host",
            "together",
        );
        assert_problem(
            "version = 1\n[[dicom.peers]]\nae_title = \"A\"\nhost = \"a b\"\nport = 104",
            "dicom.peers[0].host",
            "no spaces",
        );
        assert_problem(
            "version = 1\n[[dicom.peers]]\nae_title = \"A\"\nsource = \"\"",
            "dicom.peers[0].source",
            "1-64",
        );
    }

    #[test]
    fn paths() {
        assert_problem(
            "version = 1\n[storage]\npath = \"\"",
            "storage.path",
            "empty",
        );
        assert_problem(
            "version = 1\n[catalog]\npath = \"\"",
            "catalog.path",
            "empty",
        );
        assert_problem(
            "version = 1\n[catalog]\npath = \"a\\u0000b\"",
            "catalog.path",
            "NUL",
        );
        // Relative paths stay relative.
        let c = load("version = 1\n[storage]\npath = \"data/x\"");
        assert_eq!(c.storage.path, PathBuf::from("data/x"));
    }

    #[test]
    fn min_free_bytes_accepts_integers_and_units() {
        let bytes = |v: &str| {
            load(&format!("version = 1\n[storage]\nmin_free_bytes = {v}"))
                .storage
                .min_free_bytes
        };
        assert_eq!(bytes("12345"), 12345);
        assert_eq!(bytes("\"500MB\""), 500_000_000);
        assert_eq!(bytes("\"1GiB\""), 1_073_741_824);
        assert_eq!(bytes("\"2 tib\""), 2 * (1 << 40));
        assert_eq!(bytes("\"10kB\""), 10_000);
        assert_problem(
            "version = 1\n[storage]\nmin_free_bytes = \"lots\"",
            "storage.min_free_bytes",
            "byte count",
        );
        assert_problem(
            "version = 1\n[storage]\nmin_free_bytes = \"9999999TiB\"",
            "storage.min_free_bytes",
            "too large",
        );
        assert_problem(
            "version = 1\n[storage]\nmin_free_bytes = -1",
            "storage.min_free_bytes",
            "negative",
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("45m"), Ok(Duration::from_secs(45 * 60)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(24 * 3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("007m"), Ok(Duration::from_secs(420)));
        for bad in [
            "", "s", "90", "1.5h", "-5s", "+5s", "5 s", " 5s", "5s ", "5sec", "5S", "1h30m", "ms",
            "5µs", "abc",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        // Overflow in the number and in the unit multiplication.
        assert!(parse_duration("99999999999999999999999s").is_err());
        assert!(parse_duration(&format!("{}d", u64::MAX / 86400 + 1)).is_err());
        assert!(parse_duration(&format!("{}s", u64::MAX)).is_ok());
    }

    #[test]
    fn durations_format_and_parse_back() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(86400 * 7), "7d"),
            (Duration::from_secs(90000), "25h"),
        ] {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s), Ok(d));
        }
    }

    #[test]
    fn effective_toml_round_trips() {
        for text in [
            "version = 1",
            include_str!("../conf/studywatch.toml"),
            include_str!("../conf/examples/production.toml"),
            r#"
            version = 1
            [site]
            timezone = "Asia/Kolkata"
            [server]
            shutdown_grace = "1500ms"
            [log]
            level = "trace"
            format = "json"
            [dicom]
            ae_title = "QUOTE\"AE'"
            listen = "[::1]:0"
            [[dicom.peers]]
            ae_title = "A B"
            host = "h"
            port = 1
            source = "Trust B (via \"gateway\")"
            [storage]
            path = "dir with \"quotes\" and \\ backslash"
            min_free_bytes = "1TB"
            "#,
        ] {
            let first = load(text);
            let rendered = first.effective_toml();
            let again = load(&rendered);
            assert_eq!(first, again, "effective TOML:\n{rendered}");
            // Rendering is stable.
            assert_eq!(rendered, again.effective_toml());
        }
    }

    #[test]
    fn effective_toml_names_every_default_key() {
        let rendered = load("version = 1").effective_toml();
        for key in [
            "version = 1",
            "timezone = \"Europe/London\"",
            "shutdown_grace = \"30s\"",
            "level = \"info\"",
            "format = \"text\"",
            "ae_title = \"STUDYWATCH\"",
            "listen = \"127.0.0.1:11112\"",
            "max_associations = 32",
            "max_pdu = 65536",
            "read_timeout = \"1m\"",
            "accept_unknown_callers = false",
            "path = \"var/storage\"",
            "fsync = true",
            "min_free_bytes = 1073741824",
            "path = \"var/catalog.sqlite3\"",
        ] {
            assert!(rendered.contains(key), "{key} missing from:\n{rendered}");
        }
    }

    #[test]
    fn load_reads_a_file_and_reports_io_errors() {
        let dir =
            std::env::temp_dir().join(format!("studywatch-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "version = 1\n[dicom]\nae_title = \"FROMFILE\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.dicom.ae_title, "FROMFILE");
        assert_eq!(c.source_path.as_deref(), Some(path.as_path()));
        assert!(c.effective_toml().contains("c.toml"));

        let missing = dir.join("missing.toml");
        let err = Config::load(&missing).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].message.contains("missing.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn warnings() {
        let open =
            load("version = 1\n[dicom]\naccept_unknown_callers = true\n[storage]\nfsync = false");
        let keys: Vec<_> = open.warnings().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["dicom.accept_unknown_callers", "storage.fsync"]);
        let closed = load("version = 1");
        let keys: Vec<_> = closed.warnings().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["dicom.peers"]);
        let normal = load("version = 1\n[[dicom.peers]]\nae_title = \"CT\"");
        assert!(normal.warnings().is_empty());
    }

    #[test]
    fn shipped_default_config() {
        let c = load(include_str!("../conf/studywatch.toml"));
        assert_eq!(c.dicom.listen, "127.0.0.1:11112".parse().unwrap());
        assert_eq!(c.dicom.ae_title, "STUDYWATCH");
        assert!(c.dicom.accept_unknown_callers);
        assert!(c.dicom.peers.is_empty());
        assert_eq!(c.storage.path, PathBuf::from("var/storage"));
        assert_eq!(c.catalog.path, PathBuf::from("var/catalog.sqlite3"));
        assert!(c.storage.fsync);
        // Apart from accept_unknown_callers, the file spells out the built-in
        // defaults, so that its comments cannot drift from the code.
        let mut builtin = load("version = 1");
        builtin.dicom.accept_unknown_callers = true;
        assert_eq!(c, builtin);
    }

    #[test]
    fn shipped_production_example() {
        let c = load(include_str!("../conf/examples/production.toml"));
        assert_eq!(c.dicom.listen, "0.0.0.0:104".parse().unwrap());
        assert!(!c.dicom.accept_unknown_callers);
        assert!(c.storage.fsync);
        assert!(c.storage.path.is_absolute());
        assert!(c.catalog.path.is_absolute());
        assert!(c.storage.path.starts_with("/var/lib/studywatch"));
        assert!(c.catalog.path.starts_with("/var/lib/studywatch"));
        assert!(c.dicom.peers.len() >= 2);
        assert!(c.dicom.peers.iter().any(|p| p.source == "trust-b"));
        assert_eq!(c.forward.destinations.len(), 2);
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }
}
