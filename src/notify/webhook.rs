//! Webhooks: one JSON POST per notification, in one of three shapes.
//!
//! Every request carries `Content-Type: application/json`,
//! `User-Agent: studywatch/<version>`, `X-Studywatch-Delivery: <notification
//! id>` (the idempotency key) and `X-Studywatch-Event: <event>`; and, when a
//! `secret_file` is configured, `X-Studywatch-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of the exact body bytes under the secret (see
//! [`verify_signature`]).
//!
//! The generic body (`format = "generic"`) is one object, stable across
//! versions (new keys may be added, none renamed; `version` changes only if
//! one must be):
//!
//! ```json
//! {
//!   "version": 1,
//!   "id": 42,                         // notification id (= X-Studywatch-Delivery)
//!   "event": "trigger",               // trigger | repeat | resolve | digest | test
//!   "severity": "critical",           // critical | error | warning | info
//!   "channel": "pager",
//!   "alarm_id": 7,                    // null for digest and test
//!   "alarm_kind": "overdue_report",   // null for digest and test
//!   "title": "Study overdue for a report",
//!   "fields": { "Accession": "RXX123", "Rule": "ED plain film", "Age": "26 h" },
//!   "dashboard_link": "https://studywatch.example.org/alarms/7",  // or null
//!   "dedup_key": "studywatch-alarm-7",
//!   "created_at": "2026-11-22T11:00:00Z"
//! }
//! ```
//!
//! `fields` holds each label once (a repeated label gets " (2)", " (3)"...).
//!
//! `format = "teams"` posts a Teams Workflows message with an Adaptive Card
//! 1.4; `format = "pagerduty"` posts an Events API v2 event (`trigger` for
//! every event but `resolve`, which resolves the incident of the same
//! `dedup_key`), to [`crate::config::PAGERDUTY_URL`] unless `url` says
//! otherwise. PagerDuty takes no digest.
//!
//! Answers: 2xx is delivered. 408, 429 and 5xx, connection failures and
//! timeouts are retryable (honouring `Retry-After` in seconds); any other
//! answer, redirects included (they are not followed: a signed POST is not
//! re-sent to another address), is a refusal for good.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{BuildError, Delivered, DeliveryError, Event, Notification, Secret, Severity, excerpt};
use super::{check_url, is_loopback};
use crate::config::{WebhookFormat, WebhookUrl};

/// The header carrying `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Studywatch-Signature";

/// How much of an error answer's body is kept for the message.
const BODY_EXCERPT: usize = 200;

/// The longest `Retry-After` we pass on; the outbox's backoff rules beyond.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

pub(super) struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL without query or user information, for messages: a query may
    /// hold a credential (Teams' `sig=`).
    shown_url: String,
    format: WebhookFormat,
    secret: Option<Secret>,
    routing_key: Option<Secret>,
}

impl Webhook {
    pub(super) fn new(
        channel: &str,
        config: &crate::config::Webhook,
    ) -> Result<Webhook, BuildError> {
        let url_text = match &config.url {
            WebhookUrl::Inline(u) => u.clone(),
            WebhookUrl::File(path) => {
                let secret = super::read_secret(channel, "url_file", path)?;
                let text = secret
                    .as_str()
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_owned();
                // The URL is a secret: the problem is described, never quoted.
                check_url(&text, false).map_err(|_| BuildError::BadFile {
                    channel: channel.to_owned(),
                    key: "url_file",
                    path: path.clone(),
                    message: "does not hold one http:// or https:// URL".to_owned(),
                })?;
                text
            }
        };
        let invalid = |message: String| BuildError::Invalid {
            channel: channel.to_owned(),
            message,
        };
        let url = reqwest::Url::parse(&url_text).map_err(|e| invalid(format!("url: {e}")))?;
        let shown_url = shown(&url);

        let secret = config
            .secret_file
            .as_deref()
            .map(|p| super::read_secret(channel, "secret_file", p))
            .transpose()?;
        let routing_key = config
            .routing_key_file
            .as_deref()
            .map(|p| super::read_secret(channel, "routing_key_file", p))
            .transpose()?;
        if config.format == WebhookFormat::PagerDuty {
            match routing_key.as_ref().map(Secret::as_str) {
                Some(Some(_)) => {}
                Some(None) => {
                    return Err(BuildError::BadFile {
                        channel: channel.to_owned(),
                        key: "routing_key_file",
                        path: config.routing_key_file.clone().unwrap_or_default(),
                        message: "is not UTF-8 text".to_owned(),
                    });
                }
                None => return Err(invalid("a pagerduty channel needs routing_key_file".into())),
            }
        }

        let mut builder = reqwest::Client::builder()
            .user_agent(super::USER_AGENT)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if url.host_str().is_some_and(is_loopback) {
            // A receiver on this machine is never reached through a proxy.
            builder = builder.no_proxy();
        }
        if let Some(path) = &config.ca_file {
            let pem = super::read_file(channel, "ca_file", path)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| BuildError::BadFile {
                    channel: channel.to_owned(),
                    key: "ca_file",
                    path: path.clone(),
                    message: "holds no PEM certificate".to_owned(),
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| invalid(format!("HTTP client: {}", e.without_url())))?;

        Ok(Webhook {
            client,
            url,
            shown_url,
            format: config.format,
            secret,
            routing_key,
        })
    }

    pub(super) fn accepts(&self, event: Event) -> bool {
        !(self.format == WebhookFormat::PagerDuty && event == Event::Digest)
    }

    pub(super) fn kind_label(&self) -> &'static str {
        match self.format {
            WebhookFormat::Generic => "webhook generic",
            WebhookFormat::Teams => "webhook teams",
            WebhookFormat::PagerDuty => "webhook pagerduty",
        }
    }

    pub(super) async fn deliver(&self, n: &Notification) -> Result<Delivered, DeliveryError> {
        if !self.accepts(n.event) {
            return Ok(Delivered {
                detail: format!(
                    "not sent: {} takes no {}",
                    self.kind_label(),
                    n.event.as_str()
                ),
            });
        }
        let body = match self.format {
            WebhookFormat::Generic => generic(n),
            WebhookFormat::Teams => teams(n),
            WebhookFormat::PagerDuty => {
                let key = self
                    .routing_key
                    .as_ref()
                    .and_then(Secret::as_str)
                    .unwrap_or_default();
                pagerduty(n, key)
            }
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| DeliveryError::permanent(format!("cannot encode the body: {e}")))?;
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Studywatch-Delivery", n.id.to_string())
            .header("X-Studywatch-Event", n.event.as_str());
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, sign(secret.bytes(), &body));
        }
        let response = request.body(body).send().await.map_err(|e| {
            let e = e.without_url();
            let what = if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                format!("cannot connect: {}", error_chain(&e))
            } else {
                error_chain(&e)
            };
            // Whatever went wrong on the way, the next attempt may go better.
            DeliveryError::retryable(excerpt(&format!("POST {}: {what}", self.shown_url), 300))
        })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = read_excerpt(response).await;
        let said = if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        };
        let line = format!("POST {}: HTTP {status}{said}", self.shown_url);
        if status.is_success() {
            return Ok(Delivered {
                detail: excerpt(&format!("HTTP {status}{said}"), 300),
            });
        }
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        let message = if status.is_redirection() {
            let to = "redirects are not followed; set url to the final address";
            excerpt(&format!("{line} ({to})"), 300)
        } else {
            excerpt(&line, 300)
        };
        Err(DeliveryError {
            retryable,
            message,
            retry_after: if retryable { retry_after } else { None },
        })
    }
}

/// `scheme://host[:port]/path`, without user information or query.
fn shown(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// An error and its causes on one line ("error sending request: connection
/// refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The start of an answer's body, on one line; reads at most a few KiB.
async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < 4096 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    excerpt(&String::from_utf8_lossy(&bytes), BODY_EXCERPT)
}

// ---------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length (longer ones are hashed first).
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
}

/// The `X-Studywatch-Signature` value for `body`: `sha256=` and the lower-case
/// hex HMAC-SHA256 of the body under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// Whether `header` (an `X-Studywatch-Signature` value) is the signature of
/// `body` under `secret`. The comparison takes the same time wherever the
/// first difference is, so a forger learns nothing from timing.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let header = header.trim();
    let Some(hex_part) = header
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sha256="))
        .and_then(|_| header.get(7..))
    else {
        return false;
    };
    let Ok(given) = hex::decode(hex_part) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(body);
    m.verify_slice(&given).is_ok()
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

/// The fields as one JSON object; a repeated label gets " (2)", " (3)"...
fn fields_object(n: &Notification) -> Map<String, Value> {
    let mut map = Map::new();
    for (label, value) in &n.fields {
        let mut key = label.clone();
        let mut i = 1;
        while map.contains_key(&key) {
            i += 1;
            key = format!("{label} ({i})");
        }
        map.insert(key, Value::String(value.clone()));
    }
    map
}

/// `format = "generic"`: see the module documentation.
pub(super) fn generic(n: &Notification) -> Value {
    json!({
        "version": 1,
        "id": n.id,
        "event": n.event.as_str(),
        "severity": n.severity.as_str(),
        "channel": n.channel,
        "alarm_id": n.alarm_id,
        "alarm_kind": n.alarm_kind,
        "title": n.title,
        "fields": fields_object(n),
        "dashboard_link": n.dashboard_link,
        "dedup_key": n.dedup_key,
        "created_at": n.created_at.to_string(),
    })
}

/// `format = "teams"`: a message for a Teams Workflows "When a Teams webhook
/// request is received" trigger, holding one Adaptive Card 1.4.
pub(super) fn teams(n: &Notification) -> Value {
    let colour = match (n.event, n.severity) {
        (Event::Resolve, _) => "Good",
        (Event::Digest | Event::Test, _) | (_, Severity::Info) => "Default",
        (_, Severity::Critical | Severity::Error) => "Attention",
        (_, Severity::Warning) => "Warning",
    };
    let mut subtitle = n.event.label().to_owned();
    if let Some(kind) = &n.alarm_kind {
        subtitle.push_str(&format!(": {kind}"));
    }
    if let Some(id) = n.alarm_id {
        subtitle.push_str(&format!(" (alarm {id})"));
    }
    let facts: Vec<Value> = n
        .fields
        .iter()
        .map(|(title, value)| json!({ "title": title, "value": value }))
        .collect();
    let mut body = vec![
        json!({
            "type": "TextBlock",
            "text": n.title,
            "weight": "Bolder",
            "size": "Medium",
            "color": colour,
            "wrap": true,
        }),
        json!({
            "type": "TextBlock",
            "text": subtitle,
            "isSubtle": true,
            "spacing": "None",
            "wrap": true,
        }),
    ];
    if !facts.is_empty() {
        body.push(json!({ "type": "FactSet", "facts": facts }));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let Some(link) = &n.dashboard_link {
        card["actions"] = json!([{
            "type": "Action.OpenUrl",
            "title": "Open in studywatch",
            "url": link,
        }]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// `format = "pagerduty"`: an Events API v2 event. Resolve events carry only
/// what PagerDuty reads from them.
pub(super) fn pagerduty(n: &Notification, routing_key: &str) -> Value {
    if n.event == Event::Resolve {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": n.dedup_key,
        });
    }
    // PagerDuty refuses a summary longer than 1024 characters.
    let summary: String = n.title.chars().take(1024).collect();
    let mut payload = json!({
        "summary": summary,
        "source": "studywatch",
        "severity": n.severity.as_str(),
        "timestamp": n.created_at.to_string(),
        "custom_details": fields_object(n),
    });
    if let Some(kind) = &n.alarm_kind {
        payload["class"] = json!(kind);
    }
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": n.dedup_key,
        "payload": payload,
        "client": "studywatch",
    });
    if let Some(link) = &n.dashboard_link {
        event["client_url"] = json!(link);
        event["links"] = json!([{ "href": link, "text": "Open in studywatch" }]);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Notification {
        Notification {
            id: 42,
            channel: "pager".into(),
            event: Event::Trigger,
            severity: Severity::Critical,
            alarm_id: Some(7),
            alarm_kind: Some("overdue_report".into()),
            title: "Study overdue for a report".into(),
            fields: vec![
                ("Accession".into(), "RXX123".into()),
                ("Rule".into(), "ED plain film".into()),
                ("Age".into(), "26 h".into()),
            ],
            dashboard_link: Some("https://studywatch.example.org/alarms/7".into()),
            dedup_key: "studywatch-alarm-7".into(),
            created_at: "2026-11-22T11:00:00Z".parse().expect("timestamp"),
        }
    }

    /// Every string anywhere in a JSON value (keys and values).
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => {
                for (k, x) in o {
                    out.push(k.clone());
                    strings(x, out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn generic_is_the_documented_object() {
        let expected = json!({
            "version": 1,
            "id": 42,
            "event": "trigger",
            "severity": "critical",
            "channel": "pager",
            "alarm_id": 7,
            "alarm_kind": "overdue_report",
            "title": "Study overdue for a report",
            "fields": { "Accession": "RXX123", "Rule": "ED plain film", "Age": "26 h" },
            "dashboard_link": "https://studywatch.example.org/alarms/7",
            "dedup_key": "studywatch-alarm-7",
            "created_at": "2026-11-22T11:00:00Z",
        });
        assert_eq!(generic(&sample()), expected);

        let digest = Notification {
            event: Event::Digest,
            severity: Severity::Info,
            alarm_id: None,
            alarm_kind: None,
            dashboard_link: None,
            fields: vec![("Open".into(), "3".into()), ("Open".into(), "4".into())],
            ..sample()
        };
        let v = generic(&digest);
        assert_eq!(v["alarm_id"], Value::Null);
        assert_eq!(v["dashboard_link"], Value::Null);
        assert_eq!(v["fields"], json!({ "Open": "3", "Open (2)": "4" }));
    }

    #[test]
    fn teams_is_an_adaptive_card_message() {
        let v = teams(&sample());
        assert_eq!(v["type"], "message");
        let attachment = &v["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachment["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(card["body"][0]["type"], "TextBlock");
        assert_eq!(card["body"][0]["text"], "Study overdue for a report");
        assert_eq!(card["body"][0]["color"], "Attention");
        assert_eq!(
            card["body"][1]["text"],
            "New alarm: overdue_report (alarm 7)"
        );
        assert_eq!(card["body"][2]["type"], "FactSet");
        assert_eq!(
            card["body"][2]["facts"],
            json!([
                { "title": "Accession", "value": "RXX123" },
                { "title": "Rule", "value": "ED plain film" },
                { "title": "Age", "value": "26 h" },
            ])
        );
        assert_eq!(
            card["actions"],
            json!([{
                "type": "Action.OpenUrl",
                "title": "Open in studywatch",
                "url": "https://studywatch.example.org/alarms/7",
            }])
        );
        let resolved = teams(&Notification {
            event: Event::Resolve,
            dashboard_link: None,
            ..sample()
        });
        let card = &resolved["attachments"][0]["content"];
        assert_eq!(card["body"][0]["color"], "Good");
        assert!(card.get("actions").is_none());
    }

    #[test]
    fn pagerduty_triggers_and_resolves() {
        let v = pagerduty(&sample(), "R0UT1NGKEY");
        assert_eq!(
            v,
            json!({
                "routing_key": "R0UT1NGKEY",
                "event_action": "trigger",
                "dedup_key": "studywatch-alarm-7",
                "payload": {
                    "summary": "Study overdue for a report",
                    "source": "studywatch",
                    "severity": "critical",
                    "timestamp": "2026-11-22T11:00:00Z",
                    "class": "overdue_report",
                    "custom_details": {
                        "Accession": "RXX123", "Rule": "ED plain film", "Age": "26 h"
                    },
                },
                "client": "studywatch",
                "client_url": "https://studywatch.example.org/alarms/7",
                "links": [{
                    "href": "https://studywatch.example.org/alarms/7",
                    "text": "Open in studywatch",
                }],
            })
        );
        let r = pagerduty(
            &Notification {
                event: Event::Resolve,
                ..sample()
            },
            "R0UT1NGKEY",
        );
        assert_eq!(
            r,
            json!({
                "routing_key": "R0UT1NGKEY",
                "event_action": "resolve",
                "dedup_key": "studywatch-alarm-7",
            })
        );
        let long = Notification {
            title: "x".repeat(2000),
            ..sample()
        };
        let v = pagerduty(&long, "k");
        assert_eq!(
            v["payload"]["summary"].as_str().map(|s| s.chars().count()),
            Some(1024)
        );
    }

    #[test]
    fn bodies_hold_only_what_the_notification_gives() {
        // Every string in every body is a fixed word of the format or comes
        // from the notification; nothing else can slip in.
        let n = sample();
        let given: Vec<String> = [
            n.title.clone(),
            n.channel.clone(),
            n.dedup_key.clone(),
            n.created_at.to_string(),
            "overdue_report".into(),
            "https://studywatch.example.org/alarms/7".into(),
            "R0UT1NGKEY".into(),
            "New alarm: overdue_report (alarm 7)".into(),
        ]
        .into_iter()
        .chain(n.fields.iter().flat_map(|(l, v)| [l.clone(), v.clone()]))
        .collect();
        let fixed = [
            // generic
            "version",
            "id",
            "event",
            "trigger",
            "severity",
            "critical",
            "channel",
            "alarm_id",
            "alarm_kind",
            "title",
            "fields",
            "dashboard_link",
            "dedup_key",
            "created_at",
            // teams
            "type",
            "message",
            "attachments",
            "contentType",
            "application/vnd.microsoft.card.adaptive",
            "contentUrl",
            "content",
            "$schema",
            "http://adaptivecards.io/schemas/adaptive-card.json",
            "AdaptiveCard",
            "1.4",
            "body",
            "TextBlock",
            "text",
            "weight",
            "Bolder",
            "size",
            "Medium",
            "color",
            "Attention",
            "wrap",
            "isSubtle",
            "spacing",
            "None",
            "FactSet",
            "facts",
            "value",
            "actions",
            "Action.OpenUrl",
            "Open in studywatch",
            "url",
            // pagerduty
            "routing_key",
            "event_action",
            "payload",
            "summary",
            "source",
            "studywatch",
            "timestamp",
            "class",
            "custom_details",
            "client",
            "client_url",
            "links",
            "href",
        ];
        for body in [generic(&n), teams(&n), pagerduty(&n, "R0UT1NGKEY")] {
            let mut all = Vec::new();
            strings(&body, &mut all);
            for s in all {
                assert!(
                    given.contains(&s) || fixed.contains(&s.as_str()),
                    "`{s}` is neither given nor a fixed word of the format"
                );
            }
        }
    }

    #[test]
    fn signature_matches_rfc_4231_and_verifies_in_constant_form() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let expected = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), expected);
        let body = b"what do ya want for nothing?";
        assert!(verify_signature(b"Jefe", body, expected));
        assert!(verify_signature(b"Jefe", body, &expected.to_uppercase()));
        assert!(verify_signature(b"Jefe", body, &format!(" {expected} ")));
        assert!(!verify_signature(b"jefe", body, expected));
        assert!(!verify_signature(
            b"Jefe",
            b"what do ya want for nothing!",
            expected
        ));
        assert!(!verify_signature(
            b"Jefe",
            body,
            expected.trim_start_matches("sha256=")
        ));
        assert!(!verify_signature(b"Jefe", body, "sha1=5bdcc146"));
        assert!(!verify_signature(b"Jefe", body, "sha256=zz"));
        assert!(!verify_signature(b"Jefe", body, "sha256="));
        assert!(!verify_signature(
            b"Jefe",
            body,
            &expected[..expected.len() - 2]
        ));
        assert!(!verify_signature(b"Jefe", body, ""));
        assert!(!verify_signature(b"Jefe", body, "sha256=é"));
    }

    #[test]
    fn shown_urls_drop_credentials() {
        let u = reqwest::Url::parse(
            "https://user:pw@prod.logic.azure.com:443/workflows/1/invoke?api-version=1&sig=SECRET#x",
        )
        .expect("url");
        assert_eq!(shown(&u), "https://prod.logic.azure.com/workflows/1/invoke");
    }
}
