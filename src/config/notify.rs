//! `[notify]`: where alarm notifications go (email over SMTP, webhooks), what
//! they may say about a patient, and how hard delivery is retried.
//!
//! Like the rest of `config`, this never reads a file: secret files
//! (`password_file`, `secret_file`, `routing_key_file`, `url_file`) and CA files
//! are only named here and are read by [`crate::notify::Channel::from_config`]
//! when a channel is built. Secrets written inline (`password`, `secret`,
//! `routing_key`, a Teams URL carrying its `sig=`) are refused with a pointer to
//! the `*_file` key to use instead.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, duration, format_duration};
use crate::notify::{check_url, is_loopback};

mod defaults {
    pub const INCLUDE: [&str; 2] = ["accession", "hospital_number"];
    pub const RETRY_INITIAL: &str = "30s";
    pub const RETRY_MAX: &str = "1h";
    pub const GIVE_UP_AFTER: &str = "24h";
    pub const DIGEST_AT: &str = "08:00";
    pub const SMTP_TIMEOUT: &str = "30s";
    pub const WEBHOOK_TIMEOUT: &str = "10s";
    pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
}

/// The PagerDuty Events API v2 endpoint used when a `pagerduty` channel names no
/// `url` (accounts in PagerDuty's EU region set
/// `url = "https://events.eu.pagerduty.com/v2/enqueue"`).
pub const PAGERDUTY_URL: &str = defaults::PAGERDUTY_URL;

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// The dashboard's address as people outside this machine reach it; messages
    /// link to it. `None`: messages carry no link.
    pub dashboard_url: Option<String>,
    /// The patient identifiers a message may carry, in the order they are shown,
    /// without repeats. Anything not listed never leaves the gateway.
    pub include: Vec<Identifier>,
    /// The wait after the first failed attempt; it doubles after each further
    /// failure up to `retry_max` (see [`Notify::backoff`]).
    pub retry_initial: Duration,
    /// The longest wait between two attempts.
    pub retry_max: Duration,
    /// How long after it was queued a notification that could not be delivered
    /// is given up (and shown as failed).
    pub give_up_after: Duration,
    /// Local time (site time zone) at which each channel's daily digest is sent.
    pub digest_at: jiff::civil::Time,
    /// `[notify.smtp]`: present whenever an email channel is configured.
    pub smtp: Option<Smtp>,
    /// `[[notify.channels]]`, in file order, names unique.
    pub channels: Vec<ChannelConfig>,
}

impl Notify {
    /// The channel with this name.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// How long to wait before the next attempt after `failures` failed ones
    /// (1 for the first failure): `retry_initial × 2^(failures-1)`, at most
    /// `retry_max`. Zero failures wait nothing.
    pub fn backoff(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        self.retry_initial
            .checked_mul(factor)
            .map_or(self.retry_max, |d| d.min(self.retry_max))
    }

    /// Whether the identifier may appear in a message.
    pub fn includes(&self, id: Identifier) -> bool {
        self.include.contains(&id)
    }
}

/// A patient or study identifier that `notify.include` can allow into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identifier {
    /// The accession number (`accession`).
    Accession,
    /// The hospital number, i.e. the patient ID (`hospital_number`).
    HospitalNumber,
    /// The Study Instance UID (`study_uid`).
    StudyUid,
    /// The patient's name (`patient_name`); only ever sent when listed.
    PatientName,
}

impl Identifier {
    /// Every identifier, in the order of the documentation.
    pub const ALL: [Identifier; 4] = [
        Identifier::Accession,
        Identifier::HospitalNumber,
        Identifier::StudyUid,
        Identifier::PatientName,
    ];

    /// The spelling used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Identifier::Accession => "accession",
            Identifier::HospitalNumber => "hospital_number",
            Identifier::StudyUid => "study_uid",
            Identifier::PatientName => "patient_name",
        }
    }

    /// The label a message shows before the value.
    pub fn label(self) -> &'static str {
        match self {
            Identifier::Accession => "Accession",
            Identifier::HospitalNumber => "Hospital number",
            Identifier::StudyUid => "Study UID",
            Identifier::PatientName => "Patient name",
        }
    }

    fn parse(s: &str) -> Option<Identifier> {
        Identifier::ALL.into_iter().find(|i| i.as_str() == s)
    }
}

/// `[notify.smtp]`: the mail relay every email channel sends through.
///
/// NHSmail: `host = "send.nhs.net"`, `port = 587`, `security = "starttls"`,
/// `username` the NHSmail address that `from` also names, `password_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    /// Host name or IP address of the relay (also the name its TLS certificate
    /// must carry).
    pub host: String,
    /// Defaults by `security`: 25 for none, 587 for starttls, 465 for tls.
    pub port: u16,
    /// How the connection is protected.
    pub security: Security,
    /// The sender address (`addr@domain` or `Name <addr@domain>`).
    pub from: String,
    /// Credentials for SMTP AUTH (PLAIN or LOGIN, whichever the relay offers).
    pub auth: Option<SmtpAuth>,
    /// How long connecting and each SMTP exchange may take.
    pub timeout: Duration,
    /// A PEM file of extra root certificates to trust (an internal CA), besides
    /// the built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
}

/// SMTP AUTH credentials; the password is read from `password_file` when the
/// channel is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpAuth {
    pub username: String,
    pub password_file: PathBuf,
}

/// `notify.smtp.security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP; for a relay on this machine or an isolated network.
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

impl Security {
    /// The spelling used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::None => "none",
            Security::StartTls => "starttls",
            Security::Tls => "tls",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Security::None => 25,
            Security::StartTls => 587,
            Security::Tls => 465,
        }
    }
}

/// One `[[notify.channels]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Unique; rules name it in `notify = [...]`, `notify test` takes it.
    pub name: String,
    /// Whether the daily digest is sent here. Defaults to true, except for
    /// PagerDuty, which pages and so takes no digest.
    pub digest: bool,
    /// What kind of channel, with its settings.
    pub kind: ChannelKind,
}

/// `kind` and the keys that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// `kind = "email"`: sent through `[notify.smtp]`.
    Email(Email),
    /// `kind = "webhook"`: an HTTP POST of JSON.
    Webhook(Webhook),
}

/// The settings of an email channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Recipients (`addr@domain` or `Name <addr@domain>`), at least one.
    pub to: Vec<String>,
}

/// The settings of a webhook channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Where to POST.
    pub url: WebhookUrl,
    /// The JSON shape sent.
    pub format: WebhookFormat,
    /// The HMAC-SHA256 key for `X-Studywatch-Signature` (generic and teams).
    pub secret_file: Option<PathBuf>,
    /// The PagerDuty integration's routing key (pagerduty only, required there).
    pub routing_key_file: Option<PathBuf>,
    /// How long one POST may take, connection included.
    pub timeout: Duration,
    /// A PEM file of extra root certificates to trust (an internal CA).
    pub ca_file: Option<PathBuf>,
}

/// A webhook's address: written in the file (`url`) or, when the URL itself is
/// a credential (Teams Workflows' `sig=`), read from a file (`url_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookUrl {
    /// `url`: an http or https URL, checked.
    Inline(String),
    /// `url_file`: a file holding the URL, checked when it is read.
    File(PathBuf),
}

/// `format` of a webhook channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// studywatch's own documented JSON object.
    Generic,
    /// A Microsoft Teams Workflows message carrying an Adaptive Card.
    Teams,
    /// A PagerDuty Events API v2 event (trigger or resolve).
    PagerDuty,
}

impl WebhookFormat {
    /// The spelling used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Generic => "generic",
            WebhookFormat::Teams => "teams",
            WebhookFormat::PagerDuty => "pagerduty",
        }
    }
}

// --- the file as written --------------------------------------------------------

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileNotify {
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    include: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_initial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_max: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    give_up_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp: Option<FileSmtp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    channels: Vec<FileChannel>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileSmtp {
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
    /// Read only to refuse it with a clear message: secrets are never inline.
    #[serde(default, skip_serializing)]
    password: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileChannel {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<bool>,
    // email
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<Vec<String>>,
    // webhook
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routing_key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
    /// Read only to refuse them with a clear message: secrets are never inline.
    #[serde(default, skip_serializing)]
    secret: Option<toml::Value>,
    #[serde(default, skip_serializing)]
    routing_key: Option<toml::Value>,
    #[serde(default, skip_serializing)]
    password: Option<toml::Value>,
}

// --- validation -------------------------------------------------------------

pub(super) fn validate(file: &FileNotify, problems: &mut Problems) -> Notify {
    let dashboard_url = file
        .dashboard_url
        .as_deref()
        .and_then(|u| match check_url(u, false) {
            Ok(()) => Some(u.trim().to_owned()),
            Err(e) => {
                problems.push("notify.dashboard_url", e);
                None
            }
        });

    let mut include = Vec::new();
    match &file.include {
        None => include.extend(
            defaults::INCLUDE
                .iter()
                .filter_map(|s| Identifier::parse(s)),
        ),
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                match Identifier::parse(s.trim()) {
                    Some(id) if !include.contains(&id) => include.push(id),
                    Some(_) => {}
                    None => problems.push(
                        format!("notify.include[{i}]"),
                        format!(
                            "`{s}` is not one of {}",
                            Identifier::ALL.map(Identifier::as_str).join(", ")
                        ),
                    ),
                }
            }
        }
    }

    let retry_initial = duration(
        "notify.retry_initial",
        file.retry_initial.as_deref(),
        defaults::RETRY_INITIAL,
        true,
        problems,
    );
    let retry_max = duration(
        "notify.retry_max",
        file.retry_max.as_deref(),
        defaults::RETRY_MAX,
        true,
        problems,
    );
    if retry_max < retry_initial {
        problems.push(
            "notify.retry_max",
            format!(
                "must not be shorter than notify.retry_initial ({})",
                format_duration(retry_initial)
            ),
        );
    }
    let give_up_after = duration(
        "notify.give_up_after",
        file.give_up_after.as_deref(),
        defaults::GIVE_UP_AFTER,
        true,
        problems,
    );
    if give_up_after < retry_initial {
        problems.push(
            "notify.give_up_after",
            format!(
                "must not be shorter than notify.retry_initial ({}): \
                 a failed notification would never be retried",
                format_duration(retry_initial)
            ),
        );
    }

    let digest_text = file.digest_at.as_deref().unwrap_or(defaults::DIGEST_AT);
    let digest_at = parse_time_of_day(digest_text).unwrap_or_else(|e| {
        problems.push("notify.digest_at", e);
        jiff::civil::Time::midnight()
    });

    let smtp = file.smtp.as_ref().map(|s| validate_smtp(s, problems));

    let mut channels: Vec<ChannelConfig> = Vec::with_capacity(file.channels.len());
    for (i, c) in file.channels.iter().enumerate() {
        let key = format!("notify.channels[{i}]");
        let Some(channel) = validate_channel(&key, c, problems) else {
            continue;
        };
        if let Some(first) = channels.iter().position(|o| o.name == channel.name) {
            problems.push(
                format!("{key}.name"),
                format!(
                    "`{}` is already the name of notify.channels[{first}]; \
                     each channel needs its own",
                    channel.name
                ),
            );
        }
        if matches!(channel.kind, ChannelKind::Email(_)) && file.smtp.is_none() {
            problems.push(
                format!("{key}.kind"),
                "an email channel needs a [notify.smtp] section saying how to send mail",
            );
        }
        channels.push(channel);
    }

    Notify {
        dashboard_url,
        include,
        retry_initial,
        retry_max,
        give_up_after,
        digest_at,
        smtp,
        channels,
    }
}

fn validate_smtp(file: &FileSmtp, problems: &mut Problems) -> Smtp {
    if file.password.is_some() {
        problems.push(
            "notify.smtp.password",
            "passwords are never written in the configuration; put it in a file \
             readable only by studywatch and name that file with password_file",
        );
    }
    let host = match file.host.as_deref().map(str::trim) {
        None => {
            problems.push("notify.smtp.host", "missing; name the mail relay");
            String::new()
        }
        Some(h) => {
            if let Err(e) = check_host(h) {
                problems.push("notify.smtp.host", e);
            }
            h.to_owned()
        }
    };
    let security = match file.security.as_deref().map(str::trim) {
        None => Security::None,
        Some("none") => Security::None,
        Some("starttls") => Security::StartTls,
        Some("tls") => Security::Tls,
        Some(other) => {
            problems.push(
                "notify.smtp.security",
                format!("`{other}` is not one of none, starttls, tls"),
            );
            Security::None
        }
    };
    let port = match file.port {
        None => security.default_port(),
        Some(n) => match u16::try_from(n) {
            Ok(p) if p >= 1 => p,
            _ => {
                problems.push(
                    "notify.smtp.port",
                    format!("must be between 1 and 65535, not {n}"),
                );
                1
            }
        },
    };
    let from = match file.from.as_deref().map(str::trim) {
        None => {
            problems.push(
                "notify.smtp.from",
                "missing; give the sender address, e.g. \"studywatch@example.org\"",
            );
            String::new()
        }
        Some(f) => {
            if let Err(e) = check_mailbox(f) {
                problems.push("notify.smtp.from", e);
            }
            f.to_owned()
        }
    };
    let auth = match (&file.username, &file.password_file) {
        (None, None) => None,
        (Some(u), Some(p)) => {
            if u.trim().is_empty() {
                problems.push("notify.smtp.username", "must not be empty");
            }
            check_file_path("notify.smtp.password_file", p, problems);
            if security == Security::None && !is_loopback(&host) {
                problems.push(
                    "notify.smtp.security",
                    "is \"none\" but a username and password are configured: they would \
                     cross the network in clear text; use \"starttls\" or \"tls\"",
                );
            }
            Some(SmtpAuth {
                username: u.trim().to_owned(),
                password_file: PathBuf::from(p),
            })
        }
        (Some(_), None) => {
            problems.push(
                "notify.smtp.password_file",
                "missing; username and password_file are given together or not at all",
            );
            None
        }
        (None, Some(_)) => {
            problems.push(
                "notify.smtp.username",
                "missing; username and password_file are given together or not at all",
            );
            None
        }
    };
    let timeout = duration(
        "notify.smtp.timeout",
        file.timeout.as_deref(),
        defaults::SMTP_TIMEOUT,
        true,
        problems,
    );
    let ca_file = file.ca_file.as_deref().map(|p| {
        check_file_path("notify.smtp.ca_file", p, problems);
        PathBuf::from(p)
    });
    if ca_file.is_some() && security == Security::None {
        problems.push(
            "notify.smtp.ca_file",
            "is only used with security = \"starttls\" or \"tls\"",
        );
    }
    Smtp {
        host,
        port,
        security,
        from,
        auth,
        timeout,
        ca_file,
    }
}

fn validate_channel(
    key: &str,
    file: &FileChannel,
    problems: &mut Problems,
) -> Option<ChannelConfig> {
    for (inline, name, instead) in [
        (&file.secret, "secret", "secret_file"),
        (&file.routing_key, "routing_key", "routing_key_file"),
        (&file.password, "password", "notify.smtp.password_file"),
    ] {
        if inline.is_some() {
            problems.push(
                format!("{key}.{name}"),
                format!(
                    "secrets are never written in the configuration; put it in a file \
                     readable only by studywatch and name that file with {instead}"
                ),
            );
        }
    }

    let name = match file.name.as_deref().map(str::trim) {
        None => {
            problems.push(format!("{key}.name"), "missing; every channel needs one");
            String::new()
        }
        Some(n) => {
            if n.is_empty()
                || n.len() > 64
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                problems.push(
                    format!("{key}.name"),
                    format!("`{n}` must be 1-64 characters of letters, digits, `-`, `_` and `.`"),
                );
            }
            n.to_owned()
        }
    };

    // Keys that belong to the other kind are refused rather than ignored: a
    // `to` on a webhook is a mistake its writer wants to hear about.
    let email_keys: [(&str, bool); 1] = [("to", file.to.is_some())];
    let webhook_keys: [(&str, bool); 7] = [
        ("url", file.url.is_some()),
        ("url_file", file.url_file.is_some()),
        ("format", file.format.is_some()),
        ("secret_file", file.secret_file.is_some()),
        ("routing_key_file", file.routing_key_file.is_some()),
        ("timeout", file.timeout.is_some()),
        ("ca_file", file.ca_file.is_some()),
    ];
    let refuse = |keys: &[(&str, bool)], kind: &str, problems: &mut Problems| {
        for (k, present) in keys {
            if *present {
                problems.push(
                    format!("{key}.{k}"),
                    format!("is not a setting of {kind} channels"),
                );
            }
        }
    };

    let kind = match file.kind.as_deref().map(str::trim) {
        None => {
            problems.push(
                format!("{key}.kind"),
                "missing; give \"email\" or \"webhook\"",
            );
            return None;
        }
        Some("email") => {
            refuse(&webhook_keys, "email", problems);
            ChannelKind::Email(validate_email(key, file, problems))
        }
        Some("webhook") => {
            refuse(&email_keys, "webhook", problems);
            ChannelKind::Webhook(validate_webhook(key, file, problems))
        }
        Some(other) => {
            problems.push(
                format!("{key}.kind"),
                format!("`{other}` is not one of email, webhook"),
            );
            return None;
        }
    };

    let pages = matches!(
        &kind,
        ChannelKind::Webhook(Webhook {
            format: WebhookFormat::PagerDuty,
            ..
        })
    );
    let digest = file.digest.unwrap_or(!pages);
    if digest && pages {
        problems.push(
            format!("{key}.digest"),
            "a PagerDuty channel pages someone; it takes no daily digest",
        );
    }
    Some(ChannelConfig { name, digest, kind })
}

fn validate_email(key: &str, file: &FileChannel, problems: &mut Problems) -> Email {
    let mut to = Vec::new();
    match &file.to {
        None => problems.push(
            format!("{key}.to"),
            "missing; an email channel needs at least one recipient",
        ),
        Some(list) if list.is_empty() => {
            problems.push(format!("{key}.to"), "must list at least one recipient")
        }
        Some(list) => {
            for (i, a) in list.iter().enumerate() {
                let a = a.trim();
                if let Err(e) = check_mailbox(a) {
                    problems.push(format!("{key}.to[{i}]"), e);
                }
                to.push(a.to_owned());
            }
        }
    }
    Email { to }
}

fn validate_webhook(key: &str, file: &FileChannel, problems: &mut Problems) -> Webhook {
    let format = match file.format.as_deref().map(str::trim) {
        None | Some("generic") => WebhookFormat::Generic,
        Some("teams") => WebhookFormat::Teams,
        Some("pagerduty") => WebhookFormat::PagerDuty,
        Some(other) => {
            problems.push(
                format!("{key}.format"),
                format!("`{other}` is not one of generic, teams, pagerduty"),
            );
            WebhookFormat::Generic
        }
    };
    let url = match (&file.url, &file.url_file) {
        (Some(_), Some(_)) => {
            problems.push(
                format!("{key}.url_file"),
                "give either url or url_file, not both",
            );
            WebhookUrl::File(PathBuf::new())
        }
        (Some(u), None) => {
            if let Err(e) = check_url(u, true) {
                problems.push(format!("{key}.url"), e);
            }
            WebhookUrl::Inline(u.trim().to_owned())
        }
        (None, Some(p)) => {
            check_file_path(&format!("{key}.url_file"), p, problems);
            WebhookUrl::File(PathBuf::from(p))
        }
        (None, None) if format == WebhookFormat::PagerDuty => {
            WebhookUrl::Inline(defaults::PAGERDUTY_URL.to_owned())
        }
        (None, None) => {
            problems.push(
                format!("{key}.url"),
                "missing; give the http or https URL to POST to (or url_file)",
            );
            WebhookUrl::Inline(String::new())
        }
    };
    let secret_file = file.secret_file.as_deref().map(|p| {
        check_file_path(&format!("{key}.secret_file"), p, problems);
        PathBuf::from(p)
    });
    let routing_key_file = file.routing_key_file.as_deref().map(|p| {
        check_file_path(&format!("{key}.routing_key_file"), p, problems);
        PathBuf::from(p)
    });
    match format {
        WebhookFormat::PagerDuty => {
            if routing_key_file.is_none() {
                problems.push(
                    format!("{key}.routing_key_file"),
                    "missing; a pagerduty channel needs the file holding its \
                     Events API v2 routing key",
                );
            }
            if secret_file.is_some() {
                problems.push(
                    format!("{key}.secret_file"),
                    "PagerDuty checks no signature; its routing key (routing_key_file) \
                     authenticates the events",
                );
            }
        }
        WebhookFormat::Generic | WebhookFormat::Teams => {
            if routing_key_file.is_some() {
                problems.push(
                    format!("{key}.routing_key_file"),
                    "is only used by format = \"pagerduty\"",
                );
            }
        }
    }
    let timeout = duration(
        &format!("{key}.timeout"),
        file.timeout.as_deref(),
        defaults::WEBHOOK_TIMEOUT,
        true,
        problems,
    );
    let ca_file = file.ca_file.as_deref().map(|p| {
        check_file_path(&format!("{key}.ca_file"), p, problems);
        PathBuf::from(p)
    });
    Webhook {
        url,
        format,
        secret_file,
        routing_key_file,
        timeout,
        ca_file,
    }
}

/// Checks a mailbox: `addr@domain` or `Display Name <addr@domain>`.
pub(crate) fn check_mailbox(text: &str) -> Result<(), String> {
    text.parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|_| format!("`{text}` is not an email address such as \"team@example.org\""))
}

fn check_host(h: &str) -> Result<(), String> {
    if h.is_empty() || h.len() > 253 || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be a host name or IP address (1-253 characters, no spaces)".to_owned());
    }
    Ok(())
}

fn check_file_path(key: &str, p: &str, problems: &mut Problems) {
    if p.trim().is_empty() {
        problems.push(key, "must not be empty");
    } else if p.contains('\0') {
        problems.push(key, "must not contain a NUL character");
    }
}

/// Reads `HH:MM` (or `HH:MM:SS`), 24-hour clock.
fn parse_time_of_day(s: &str) -> Result<jiff::civil::Time, String> {
    let bad = || format!("`{s}` is not a time of day such as \"08:00\" (24-hour HH:MM)");
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let number = |i: usize| parts.get(i).and_then(|p| p.parse::<i8>().ok()).unwrap_or(0);
    jiff::civil::Time::new(number(0), number(1), number(2), 0).map_err(|_| bad())
}

fn format_time_of_day(t: jiff::civil::Time) -> String {
    if t.second() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}

/// Settings that are valid but that an operator should hear about at start.
pub(super) fn warnings(n: &Notify, out: &mut Problems) {
    if !n.channels.is_empty() && n.dashboard_url.is_none() {
        out.push(
            "notify.dashboard_url",
            "not set: notifications will carry no link to the dashboard",
        );
    }
    if n.includes(Identifier::PatientName) {
        out.push(
            "notify.include",
            "patient names will be sent in notifications",
        );
    }
    if let Some(s) = &n.smtp {
        if s.security == Security::None && !is_loopback(&s.host) {
            out.push(
                "notify.smtp.security",
                "mail leaves this machine unencrypted; use \"starttls\" or \"tls\"",
            );
        }
    }
    for (i, c) in n.channels.iter().enumerate() {
        if let ChannelKind::Webhook(Webhook {
            url: WebhookUrl::Inline(u),
            ..
        }) = &c.kind
        {
            let plain = url::Url::parse(u)
                .is_ok_and(|u| u.scheme() == "http" && !u.host_str().is_some_and(is_loopback));
            if plain {
                out.push(
                    format!("notify.channels[{i}].url"),
                    "http:// sends patient identifiers unencrypted; use https",
                );
            }
        }
    }
}

// --- back to the file ---------------------------------------------------------

pub(super) fn to_file(n: &Notify) -> FileNotify {
    let path = |p: &PathBuf| p.display().to_string();
    FileNotify {
        dashboard_url: n.dashboard_url.clone(),
        include: Some(n.include.iter().map(|i| i.as_str().to_owned()).collect()),
        retry_initial: Some(format_duration(n.retry_initial)),
        retry_max: Some(format_duration(n.retry_max)),
        give_up_after: Some(format_duration(n.give_up_after)),
        digest_at: Some(format_time_of_day(n.digest_at)),
        smtp: n.smtp.as_ref().map(|s| FileSmtp {
            host: Some(s.host.clone()),
            port: Some(i64::from(s.port)),
            security: Some(s.security.as_str().to_owned()),
            from: Some(s.from.clone()),
            username: s.auth.as_ref().map(|a| a.username.clone()),
            password_file: s.auth.as_ref().map(|a| path(&a.password_file)),
            timeout: Some(format_duration(s.timeout)),
            ca_file: s.ca_file.as_ref().map(path),
            password: None,
        }),
        channels: n
            .channels
            .iter()
            .map(|c| {
                let mut f = FileChannel {
                    name: Some(c.name.clone()),
                    digest: Some(c.digest),
                    ..FileChannel::default()
                };
                match &c.kind {
                    ChannelKind::Email(e) => {
                        f.kind = Some("email".to_owned());
                        f.to = Some(e.to.clone());
                    }
                    ChannelKind::Webhook(w) => {
                        f.kind = Some("webhook".to_owned());
                        match &w.url {
                            WebhookUrl::Inline(u) => f.url = Some(u.clone()),
                            WebhookUrl::File(p) => f.url_file = Some(path(p)),
                        }
                        f.format = Some(w.format.as_str().to_owned());
                        f.secret_file = w.secret_file.as_ref().map(path);
                        f.routing_key_file = w.routing_key_file.as_ref().map(path);
                        f.timeout = Some(format_duration(w.timeout));
                        f.ca_file = w.ca_file.as_ref().map(path);
                    }
                }
                f
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `[notify]` part of a configuration file, read as the parent module
    /// reads it.
    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapper {
        #[serde(default)]
        notify: FileNotify,
    }

    fn load(s: &str) -> Result<Notify, Vec<(String, String)>> {
        let w: Wrapper = toml::from_str(s).map_err(|e| vec![(String::new(), e.to_string())])?;
        let mut problems = Problems::default();
        let n = validate(&w.notify, &mut problems);
        if problems.0.is_empty() {
            Ok(n)
        } else {
            Err(problems.0.into_iter().map(|p| (p.key, p.message)).collect())
        }
    }

    #[track_caller]
    fn ok(s: &str) -> Notify {
        load(s).unwrap_or_else(|e| panic!("expected a valid [notify], got {e:#?}"))
    }

    #[track_caller]
    fn problems(s: &str) -> Vec<(String, String)> {
        match load(s) {
            Ok(n) => panic!("expected problems, got {n:#?}"),
            Err(p) => p,
        }
    }

    /// Asserts that exactly one problem names `key` and that its message
    /// contains `fragment`.
    #[track_caller]
    fn assert_problem(s: &str, key: &str, fragment: &str) {
        let ps = problems(s);
        let matching: Vec<_> = ps.iter().filter(|(k, _)| k == key).collect();
        assert_eq!(matching.len(), 1, "one problem at {key} in {ps:#?}");
        assert!(
            matching[0].1.contains(fragment),
            "{key}: {:?} should contain {fragment:?}",
            matching[0].1
        );
    }

    const EXAMPLE: &str = r#"
        [notify]
        dashboard_url = "https://studywatch.example.org/"
        include = ["accession", "hospital_number", "study_uid"]
        retry_initial = "10s"
        retry_max = "15m"
        give_up_after = "12h"
        digest_at = "07:30"

        [notify.smtp]
        host = "send.nhs.net"
        port = 587
        security = "starttls"
        from = "Studywatch <studywatch@nhs.net>"
        username = "studywatch@nhs.net"
        password_file = "/etc/studywatch/smtp.password"
        timeout = "20s"

        [[notify.channels]]
        name = "reporting-team"
        kind = "email"
        to = ["reporting-team@example.org", "Duty Radiologist <duty@example.org>"]

        [[notify.channels]]
        name = "pager"
        kind = "webhook"
        url = "http://127.0.0.1:9000/hook"
        format = "generic"
        secret_file = "/etc/studywatch/webhook.secret"

        [[notify.channels]]
        name = "teams"
        kind = "webhook"
        url_file = "/etc/studywatch/teams.url"
        format = "teams"
        digest = false

        [[notify.channels]]
        name = "pagerduty"
        kind = "webhook"
        format = "pagerduty"
        routing_key_file = "/etc/studywatch/pagerduty.key"
        timeout = "5s"
    "#;

    #[test]
    fn defaults_with_no_section() {
        let n = ok("");
        assert_eq!(n.dashboard_url, None);
        assert_eq!(
            n.include,
            [Identifier::Accession, Identifier::HospitalNumber]
        );
        assert!(!n.includes(Identifier::PatientName));
        assert_eq!(n.retry_initial, Duration::from_secs(30));
        assert_eq!(n.retry_max, Duration::from_secs(3600));
        assert_eq!(n.give_up_after, Duration::from_secs(86_400));
        assert_eq!(n.digest_at, jiff::civil::time(8, 0, 0, 0));
        assert_eq!(n.smtp, None);
        assert!(n.channels.is_empty());
    }

    #[test]
    fn the_documented_example_is_read() {
        let n = ok(EXAMPLE);
        assert_eq!(
            n.dashboard_url.as_deref(),
            Some("https://studywatch.example.org/")
        );
        assert_eq!(n.include.len(), 3);
        assert_eq!(n.digest_at, jiff::civil::time(7, 30, 0, 0));
        let smtp = n.smtp.as_ref().expect("smtp");
        assert_eq!(smtp.host, "send.nhs.net");
        assert_eq!(smtp.port, 587);
        assert_eq!(smtp.security, Security::StartTls);
        assert_eq!(
            smtp.auth,
            Some(SmtpAuth {
                username: "studywatch@nhs.net".into(),
                password_file: "/etc/studywatch/smtp.password".into(),
            })
        );
        assert_eq!(smtp.timeout, Duration::from_secs(20));
        assert_eq!(n.channels.len(), 4);
        assert_eq!(
            n.channel("reporting-team").map(|c| &c.kind),
            Some(&ChannelKind::Email(Email {
                to: vec![
                    "reporting-team@example.org".into(),
                    "Duty Radiologist <duty@example.org>".into()
                ]
            }))
        );
        let pager = n.channel("pager").expect("pager");
        assert!(pager.digest);
        assert_eq!(
            pager.kind,
            ChannelKind::Webhook(Webhook {
                url: WebhookUrl::Inline("http://127.0.0.1:9000/hook".into()),
                format: WebhookFormat::Generic,
                secret_file: Some("/etc/studywatch/webhook.secret".into()),
                routing_key_file: None,
                timeout: Duration::from_secs(10),
                ca_file: None,
            })
        );
        assert!(!n.channel("teams").expect("teams").digest);
        let pd = n.channel("pagerduty").expect("pagerduty");
        assert!(!pd.digest, "PagerDuty takes no digest by default");
        let ChannelKind::Webhook(w) = &pd.kind else {
            panic!("webhook")
        };
        assert_eq!(w.url, WebhookUrl::Inline(PAGERDUTY_URL.into()));
        assert_eq!(w.timeout, Duration::from_secs(5));
    }

    #[test]
    fn smtp_port_defaults_follow_security() {
        for (security, port) in [("none", 25), ("starttls", 587), ("tls", 465)] {
            let n = ok(&format!(
                "[notify.smtp]\nhost = \"mail.example.org\"\nfrom = \"a@example.org\"\n\
                 security = \"{security}\"\n"
            ));
            assert_eq!(n.smtp.expect("smtp").port, port, "{security}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let found = problems(
            r#"
            [notify]
            dashboard_url = "ftp://example.org/"
            include = ["accession", "date_of_birth"]
            retry_initial = "0s"
            retry_max = "forever"
            give_up_after = "1"
            digest_at = "8am"

            [notify.smtp]
            port = 70000
            security = "ssl"
            from = "not an address"
            password = "hunter2"
            username = "someone"

            [[notify.channels]]
            name = "team"
            kind = "email"
            to = ["ok@example.org", "nobody"]
            url = "http://127.0.0.1/"

            [[notify.channels]]
            name = "team"
            kind = "email"
            to = []

            [[notify.channels]]
            name = "hook one"
            kind = "webhook"
            url = "mailto:x@example.org"
            format = "slack"
            secret = "inline"
            to = ["x@example.org"]

            [[notify.channels]]
            name = "pd"
            kind = "webhook"
            format = "pagerduty"
            secret_file = "/s"
            routing_key = "abc"
            digest = true

            [[notify.channels]]
            name = "teams"
            kind = "webhook"
            format = "teams"
            url = "https://prod.logic.azure.com/workflows/1/invoke?api-version=1&sig=SECRET"
            routing_key_file = "/k"

            [[notify.channels]]
            name = "both"
            kind = "webhook"
            url = "https://a.example.org/"
            url_file = "/u"

            [[notify.channels]]
            kind = "fax"

            [[notify.channels]]
            name = "nourl"
            kind = "webhook"
            "#,
        );
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "notify.dashboard_url",
            "notify.include[1]",
            "notify.retry_initial",
            "notify.retry_max",
            "notify.give_up_after",
            "notify.digest_at",
            "notify.smtp.password",
            "notify.smtp.host",
            "notify.smtp.port",
            "notify.smtp.security",
            "notify.smtp.from",
            "notify.smtp.password_file",
            "notify.channels[0].to[1]",
            "notify.channels[0].url",
            "notify.channels[1].to",
            "notify.channels[1].name",
            "notify.channels[2].name",
            "notify.channels[2].url",
            "notify.channels[2].format",
            "notify.channels[2].secret",
            "notify.channels[2].to",
            "notify.channels[3].routing_key",
            "notify.channels[3].routing_key_file",
            "notify.channels[3].secret_file",
            "notify.channels[3].digest",
            "notify.channels[4].url",
            "notify.channels[4].routing_key_file",
            "notify.channels[5].url_file",
            "notify.channels[6].name",
            "notify.channels[6].kind",
            "notify.channels[7].url",
        ] {
            assert!(keys.contains(&key), "{key} not in {found:#?}");
        }
        // Nothing is reported that the list above does not expect.
        assert_eq!(keys.len(), 31, "{found:#?}");
        // The inline secret's value is never repeated in a message.
        for (_, message) in &found {
            for secret in ["hunter2", "inline", "abc", "SECRET"] {
                assert!(!message.contains(secret), "{message}");
            }
        }
    }

    #[test]
    fn email_channels_need_the_smtp_section() {
        assert_problem(
            "[[notify.channels]]\nname = \"team\"\nkind = \"email\"\nto = [\"a@example.org\"]\n",
            "notify.channels[0].kind",
            "[notify.smtp]",
        );
    }

    #[test]
    fn credentials_never_cross_the_network_in_clear_text() {
        let base = "[notify.smtp]\nfrom = \"a@example.org\"\nusername = \"u\"\n\
                    password_file = \"/p\"\n";
        assert_problem(
            &format!("{base}host = \"mail.example.org\"\n"),
            "notify.smtp.security",
            "clear text",
        );
        // On this machine it is allowed: the relay is local.
        let n = ok(&format!("{base}host = \"127.0.0.1\"\n"));
        assert!(n.smtp.expect("smtp").auth.is_some());
        ok(&format!(
            "{base}host = \"mail.example.org\"\nsecurity = \"starttls\"\n"
        ));
    }

    #[test]
    fn digest_time_and_backoff() {
        assert_eq!(
            ok("[notify]\ndigest_at = \"23:59:30\"").digest_at,
            jiff::civil::time(23, 59, 30, 0)
        );
        for bad in ["24:00", "8:00", "08:60", "0800", "08:00:00:00", ""] {
            assert_problem(
                &format!("[notify]\ndigest_at = \"{bad}\""),
                "notify.digest_at",
                "HH:MM",
            );
        }
        let n = ok("[notify]\nretry_initial = \"30s\"\nretry_max = \"5m\"");
        let secs: Vec<u64> = (0..8).map(|f| n.backoff(f).as_secs()).collect();
        assert_eq!(secs, [0, 30, 60, 120, 240, 300, 300, 300]);
        assert_eq!(n.backoff(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn include_is_deduplicated_and_may_be_empty() {
        let n = ok("[notify]\ninclude = [\"study_uid\", \"accession\", \"study_uid\"]");
        assert_eq!(n.include, [Identifier::StudyUid, Identifier::Accession]);
        let n = ok("[notify]\ninclude = []");
        assert!(n.include.is_empty());
    }

    #[test]
    fn warnings_name_their_keys() {
        let n = ok(r#"
            [notify]
            include = ["patient_name"]
            [notify.smtp]
            host = "mail.example.org"
            from = "a@example.org"
            [[notify.channels]]
            name = "hook"
            kind = "webhook"
            url = "http://hooks.example.org/x"
            [[notify.channels]]
            name = "local"
            kind = "webhook"
            url = "http://127.0.0.1:9000/x"
        "#);
        let mut out = Problems::default();
        warnings(&n, &mut out);
        let keys: Vec<&str> = out.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "notify.dashboard_url",
                "notify.include",
                "notify.smtp.security",
                "notify.channels[0].url",
            ]
        );
        let mut none = Problems::default();
        warnings(&ok(""), &mut none);
        assert!(none.0.is_empty());
    }

    #[test]
    fn effective_toml_round_trips_the_notify_section() {
        for text in [EXAMPLE, ""] {
            let n = ok(text);
            let written = toml::to_string(&Wrapper {
                notify: to_file(&n),
            })
            .expect("serialises");
            let again = ok(&written);
            assert_eq!(again, n, "{written}");
        }
    }
}
