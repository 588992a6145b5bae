//! Notification channels: delivering one [`Notification`] by email (SMTP) or
//! by webhook (generic JSON, Microsoft Teams Workflows, PagerDuty Events v2).
//!
//! This module is the delivery side of the notification outbox. It builds each
//! configured [`Channel`] once (reading its secret files then, so that a missing
//! or unreadable file is a start-up error that names the file), and
//! [`Channel::deliver`] makes one attempt and says whether a failure is worth
//! retrying. It never decides *when* to send, never retries by itself and never
//! touches the catalog: the outbox (in the watchdog) owns retries, backoff
//! ([`crate::config::Notify::backoff`]) and giving up, and records every attempt.
//!
//! Patient data: renderers put into a message only what the [`Notification`]
//! carries (its title, its label/value fields, its dashboard link and its
//! ids). They add no identifier, no report text and no name of their own; the
//! watchdog decides which identifiers go in, using [`identifier_fields`], which
//! lets through only those `notify.include` allows. Secrets (SMTP password,
//! webhook key, routing key, a URL carrying a signature) are never logged,
//! never printed by `Debug` and never put into an error message.

mod email;
mod webhook;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ChannelConfig, ChannelKind, Identifier, Notify, Smtp};

pub use webhook::{SIGNATURE_HEADER, sign, verify_signature};

/// `User-Agent` of webhook requests and `User-Agent` header of emails.
pub const USER_AGENT: &str = concat!("studywatch/", env!("CARGO_PKG_VERSION"));

// ---------------------------------------------------------------------------
// What to send
// ---------------------------------------------------------------------------

/// One message to one channel, as the outbox stores it. Plain data: rendering
/// and sending are the channel's business.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The outbox row id. It is the idempotency key: every attempt of the same
    /// row carries it (email Message-ID, `X-Studywatch-Delivery`), so that a
    /// receiver can drop the duplicate that at-least-once delivery may cause.
    pub id: i64,
    /// The channel's name (`notify.channels[].name`).
    pub channel: String,
    /// Why it is sent.
    pub event: Event,
    /// How urgent it is (PagerDuty severity, Teams colour).
    pub severity: Severity,
    /// The alarm it concerns; `None` for a digest or a test.
    pub alarm_id: Option<i64>,
    /// The alarm's kind, e.g. `overdue_report`.
    pub alarm_kind: Option<String>,
    /// One line saying what happened, e.g. "Study overdue for a report".
    pub title: String,
    /// Label → value lines, in display order, e.g. ("Accession", "RXX123"),
    /// ("Rule", "ED plain film"), ("Age", "26 h"), ("Deadline", RFC 3339).
    /// Only identifiers that `notify.include` allows may be among them.
    pub fields: Vec<(String, String)>,
    /// A link to the alarm (or the dashboard), shown as such.
    pub dashboard_link: Option<String>,
    /// Groups the notifications of one alarm (PagerDuty's `dedup_key`, the
    /// email thread); [`alarm_dedup_key`] for alarms.
    pub dedup_key: String,
    /// When the outbox row was written; stable across attempts.
    pub created_at: jiff::Timestamp,
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An alarm was raised, or escalated to this channel.
    Trigger,
    /// The alarm is still open: a reminder.
    Repeat,
    /// The alarm was resolved.
    Resolve,
    /// The daily summary of open alarms and the unreported backlog.
    Digest,
    /// `studywatch notify test CHANNEL`.
    Test,
}

impl Event {
    /// The spelling in JSON (`event`) and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Trigger => "trigger",
            Event::Repeat => "repeat",
            Event::Resolve => "resolve",
            Event::Digest => "digest",
            Event::Test => "test",
        }
    }

    /// How people read it in an email or a card.
    pub fn label(self) -> &'static str {
        match self {
            Event::Trigger => "New alarm",
            Event::Repeat => "Reminder: alarm still open",
            Event::Resolve => "Alarm resolved",
            Event::Digest => "Daily digest",
            Event::Test => "Test notification",
        }
    }
}

/// How urgent a notification is; PagerDuty's four severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    /// The spelling in JSON and in PagerDuty's `payload.severity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// The `dedup_key` of every notification about one alarm.
pub fn alarm_dedup_key(alarm_id: i64) -> String {
    format!("studywatch-alarm-{alarm_id}")
}

/// The identifiers known for a study; any may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identifiers<'a> {
    pub accession: Option<&'a str>,
    pub hospital_number: Option<&'a str>,
    pub study_uid: Option<&'a str>,
    pub patient_name: Option<&'a str>,
}

/// The label/value fields for the identifiers that `include` allows, in the
/// order of `include`; missing or blank values are left out. This is the one
/// place where a patient identifier becomes message content.
pub fn identifier_fields(include: &[Identifier], ids: &Identifiers<'_>) -> Vec<(String, String)> {
    include
        .iter()
        .filter_map(|&which| {
            let value = match which {
                Identifier::Accession => ids.accession,
                Identifier::HospitalNumber => ids.hospital_number,
                Identifier::StudyUid => ids.study_uid,
                Identifier::PatientName => ids.patient_name,
            }?;
            let value = value.trim();
            (!value.is_empty()).then(|| (which.label().to_owned(), value.to_owned()))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------

/// A successful attempt: the peer took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// What the peer answered, e.g. `250 2.0.0 Ok: queued as 4F2` or
    /// `HTTP 202 Accepted`; or why nothing needed sending.
    pub detail: String,
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Whether another attempt may succeed: the peer was unreachable, slow, or
    /// answered "later" (SMTP 4xx, HTTP 5xx, 408, 429). False when the peer
    /// refused this message for good (SMTP 5xx, other HTTP 4xx) or the message
    /// cannot be built: trying again would fail the same way, so the outbox
    /// should mark it failed at once and show it.
    pub retryable: bool,
    /// One line for the audit log and the dashboard; never holds a secret.
    pub message: String,
    /// How long the peer asked us to wait (HTTP `Retry-After`), if it did.
    pub retry_after: Option<Duration>,
}

impl DeliveryError {
    pub(crate) fn retryable(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            retryable: true,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn permanent(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            retryable: false,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// A channel that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file named by the configuration cannot be read.
    #[error("notify channel `{channel}`: cannot read {key} {}: {source}", path.display())]
    ReadFile {
        channel: String,
        /// The configuration key naming the file, e.g. `password_file`.
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file was read but its content is unusable (empty secret, no
    /// certificate in a CA file, a URL file that holds no http(s) URL).
    #[error("notify channel `{channel}`: {key} {}: {message}", path.display())]
    BadFile {
        channel: String,
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    /// The configuration cannot make this channel (e.g. an email channel and
    /// no `[notify.smtp]`).
    #[error("notify channel `{channel}`: {message}")]
    Invalid { channel: String, message: String },
}

// ---------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------

/// A configured destination, ready to send.
pub struct Channel {
    name: String,
    digest: bool,
    inner: Inner,
}

enum Inner {
    Email(email::Email),
    Webhook(webhook::Webhook),
}

impl fmt::Debug for Channel {
    // Written by hand so that no secret can ever be printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("kind", &self.kind_label())
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Builds the channel, reading the secret and CA files it names. `smtp` is
    /// `[notify.smtp]`, needed by email channels.
    ///
    /// This reads small files with blocking I/O; call it at start-up (or from
    /// `spawn_blocking`), not on a busy tokio worker.
    pub fn from_config(config: &ChannelConfig, smtp: Option<&Smtp>) -> Result<Channel, BuildError> {
        let inner = match &config.kind {
            ChannelKind::Email(e) => {
                let Some(smtp) = smtp else {
                    return Err(BuildError::Invalid {
                        channel: config.name.clone(),
                        message: "an email channel needs [notify.smtp]".to_owned(),
                    });
                };
                Inner::Email(email::Email::new(&config.name, e, smtp)?)
            }
            ChannelKind::Webhook(w) => Inner::Webhook(webhook::Webhook::new(&config.name, w)?),
        };
        Ok(Channel {
            name: config.name.clone(),
            digest: config.digest,
            inner,
        })
    }

    /// Builds every configured channel, reporting every one that fails.
    pub fn all_from_config(notify: &Notify) -> Result<Vec<Channel>, Vec<BuildError>> {
        let mut channels = Vec::new();
        let mut errors = Vec::new();
        for c in &notify.channels {
            match Channel::from_config(c, notify.smtp.as_ref()) {
                Ok(ch) => channels.push(ch),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(channels)
        } else {
            Err(errors)
        }
    }

    /// The channel's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the daily digest goes to this channel (`digest` in config).
    pub fn takes_digest(&self) -> bool {
        self.digest
    }

    /// Whether this channel sends this kind of event. PagerDuty takes no
    /// digest (it would page someone every morning); everything else takes
    /// every event. [`Channel::deliver`] of an event not accepted sends
    /// nothing and says so in [`Delivered::detail`].
    pub fn accepts(&self, event: Event) -> bool {
        match &self.inner {
            Inner::Email(_) => true,
            Inner::Webhook(w) => w.accepts(event),
        }
    }

    /// `email`, `webhook generic`, `webhook teams` or `webhook pagerduty`.
    pub fn kind_label(&self) -> &'static str {
        match &self.inner {
            Inner::Email(_) => "email",
            Inner::Webhook(w) => w.kind_label(),
        }
    }

    /// Makes one attempt to deliver `n`. Cancel-safe: dropping the future
    /// abandons the attempt (the peer may or may not have the message; the
    /// outbox will send it again, which the idempotency key makes harmless).
    pub async fn deliver(&self, n: &Notification) -> Result<Delivered, DeliveryError> {
        let result = match &self.inner {
            Inner::Email(e) => e.deliver(n).await,
            Inner::Webhook(w) => w.deliver(n).await,
        };
        match &result {
            Ok(d) => tracing::debug!(
                channel = %self.name, notification = n.id, detail = %d.detail, "delivered"
            ),
            Err(e) => tracing::warn!(
                channel = %self.name, notification = n.id, retryable = e.retryable,
                error = %e.message, "delivery failed"
            ),
        }
        result
    }
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// A secret read from a file: Debug never shows it.
#[derive(Clone)]
pub(crate) struct Secret(Vec<u8>);

impl Secret {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Reads a secret file: its content without the final line ending (a file
/// written by `echo` or an editor ends in one). Refuses an empty secret, and
/// warns when the file can be read by every user of the machine.
pub(crate) fn read_secret(
    channel: &str,
    key: &'static str,
    path: &Path,
) -> Result<Secret, BuildError> {
    let mut bytes = read_file(channel, key, path)?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(BuildError::BadFile {
            channel: channel.to_owned(),
            key,
            path: path.to_owned(),
            message: "is empty".to_owned(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o004 != 0 {
                tracing::warn!(
                    channel, key, path = %path.display(),
                    "secret file is readable by every user; chmod o-r it"
                );
            }
        }
    }
    Ok(Secret(bytes))
}

pub(crate) fn read_file(
    channel: &str,
    key: &'static str,
    path: &Path,
) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::ReadFile {
        channel: channel.to_owned(),
        key,
        path: path.to_owned(),
        source,
    })
}

/// Makes text safe for a one-line slot (header, label, fact): control
/// characters, line breaks included, become spaces.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The first `max` characters of `s` on one line, with an ellipsis when cut.
pub(crate) fn excerpt(s: &str, max: usize) -> String {
    let line = one_line(s);
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max {
        out.push('…');
    }
    out
}

/// Checks an http or https URL. With `is_webhook`, also refuses URLs that carry
/// a credential (user information, or the `sig` query parameter of Teams
/// Workflows and other Azure Logic Apps URLs), which belong in `url_file`.
pub(crate) fn check_url(text: &str, is_webhook: bool) -> Result<(), String> {
    let t = text.trim();
    let url = url::Url::parse(t).map_err(|e| format!("`{t}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{t}` must start with http:// or https://, not {}:",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{t}` names no host"));
    }
    if is_webhook {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "carries a user name or password; put the URL in a file readable only by \
                 studywatch and name that file with url_file"
                    .to_owned(),
            );
        }
        if url.query_pairs().any(|(k, _)| k == "sig") {
            return Err(
                "carries its signature (sig=...), which is a secret; put the URL in a \
                 file readable only by studywatch and name that file with url_file"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

/// Whether a host name or address stays on this machine.
pub(crate) fn is_loopback(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}
