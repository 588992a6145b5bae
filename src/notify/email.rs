//! Email over SMTP (lettre on tokio, rustls with ring for STARTTLS and TLS).
//!
//! One connection per delivery: notifications are rare, and a fresh
//! connection never fails on a relay that dropped an idle one. The relay's
//! answer decides retrying: 4xx, network errors, timeouts and TLS failures are
//! retryable; a 5xx is a refusal for good.

use std::time::{Duration, SystemTime};

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{BuildError, Delivered, DeliveryError, Event, Notification, excerpt, one_line};
use crate::config::{Security, Smtp};

/// The whole of one delivery (connect, TLS, AUTH, the message) may take this
/// many times `notify.smtp.timeout`, which lettre applies to each step.
const WHOLE_DELIVERY_FACTOR: u32 = 4;

pub(super) struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// The domain of Message-IDs: the sender's domain.
    id_domain: String,
    relay: String,
    whole_timeout: Duration,
}

impl Email {
    pub(super) fn new(
        channel: &str,
        config: &crate::config::Email,
        smtp: &Smtp,
    ) -> Result<Email, BuildError> {
        let invalid = |message: String| BuildError::Invalid {
            channel: channel.to_owned(),
            message,
        };
        let from: Mailbox = smtp
            .from
            .parse()
            .map_err(|e| invalid(format!("notify.smtp.from `{}`: {e}", smtp.from)))?;
        let to = config
            .to
            .iter()
            .map(|a| {
                a.parse::<Mailbox>()
                    .map_err(|e| invalid(format!("recipient `{a}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(invalid("no recipients".to_owned()));
        }

        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .timeout(Some(smtp.timeout));
        if smtp.security != Security::None {
            let mut tls = TlsParameters::builder(smtp.host.clone());
            if let Some(path) = &smtp.ca_file {
                let pem = super::read_file(channel, "ca_file", path)?;
                let bad = |message: &str| BuildError::BadFile {
                    channel: channel.to_owned(),
                    key: "ca_file",
                    path: path.clone(),
                    message: message.to_owned(),
                };
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(bad("holds no PEM certificate"));
                }
                let cert = Certificate::from_pem(&pem)
                    .map_err(|_| bad("is not a PEM certificate file"))?;
                tls = tls.add_root_certificate(cert);
            }
            let params = tls
                .build_rustls()
                .map_err(|e| invalid(format!("TLS set-up for {}: {e}", smtp.host)))?;
            builder = builder.tls(match smtp.security {
                Security::StartTls => Tls::Required(params),
                _ => Tls::Wrapper(params),
            });
        }
        if let Some(auth) = &smtp.auth {
            let password = super::read_secret(channel, "password_file", &auth.password_file)?;
            let password = password.as_str().ok_or_else(|| BuildError::BadFile {
                channel: channel.to_owned(),
                key: "password_file",
                path: auth.password_file.clone(),
                message: "is not UTF-8 text".to_owned(),
            })?;
            // PLAIN when the relay offers it, else LOGIN (NHSmail and Exchange
            // Online offer only LOGIN); never over plain text to another host,
            // which config validation refuses.
            builder = builder
                .credentials(Credentials::new(auth.username.clone(), password.to_owned()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }

        Ok(Email {
            transport: builder.build(),
            id_domain: from.email.domain().to_owned(),
            from,
            to,
            relay: format!("{}:{}", smtp.host, smtp.port),
            whole_timeout: smtp.timeout.saturating_mul(WHOLE_DELIVERY_FACTOR),
        })
    }

    pub(super) async fn deliver(&self, n: &Notification) -> Result<Delivered, DeliveryError> {
        let message = self
            .message(n, SystemTime::now())
            .map_err(|e| DeliveryError::permanent(format!("cannot build the email: {e}")))?;
        let sent = tokio::time::timeout(self.whole_timeout, self.transport.send(message)).await;
        match sent {
            Err(_) => Err(DeliveryError::retryable(format!(
                "SMTP relay {} did not finish within {:?}",
                self.relay, self.whole_timeout
            ))),
            Ok(Ok(response)) => {
                let text = response.message().collect::<Vec<_>>().join(" ");
                Ok(Delivered {
                    detail: excerpt(&format!("{} {text}", response.code()), 200),
                })
            }
            Ok(Err(e)) => Err(classify(&self.relay, &e)),
        }
    }

    /// The message for `n`, dated `now`.
    fn message(&self, n: &Notification, now: SystemTime) -> Result<Message, lettre::error::Error> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject(n))
            .message_id(Some(message_id(n, &self.id_domain)))
            .date(now)
            .user_agent(super::USER_AGENT.to_owned())
            // RFC 3834: no out-of-office replies to a machine.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_owned(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Studywatch-Delivery"),
                n.id.to_string(),
            ));
        if n.alarm_id.is_some() {
            // Every message about one alarm threads under one (virtual) root.
            let root = thread_root(n, &self.id_domain);
            b = b.in_reply_to(root.clone()).references(root);
        }
        for to in &self.to {
            b = b.to(to.clone());
        }
        b.multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(render_text(n)),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(render_html(n)),
                ),
        )
    }
}

fn classify(relay: &str, e: &lettre::transport::smtp::Error) -> DeliveryError {
    let message = excerpt(&format!("SMTP relay {relay}: {e}"), 300);
    if e.is_permanent() {
        DeliveryError::permanent(message)
    } else if e.is_client() {
        // Our side cannot do it (e.g. no AUTH mechanism in common): retrying
        // changes nothing until the configuration does.
        DeliveryError::permanent(message)
    } else {
        // 4xx, connection refused or reset, timeouts, TLS handshakes (a relay's
        // certificate gets renewed), garbled answers.
        DeliveryError::retryable(message)
    }
}

/// `[studywatch] <title>`.
pub(super) fn subject(n: &Notification) -> String {
    format!("[studywatch] {}", one_line(&n.title))
}

/// Stable for the notification (id and creation time), so a message sent
/// twice by at-least-once delivery is recognisably the same message, and
/// unique across catalogs (ids restart when a catalog is recreated; the time
/// does not), so that a mail system that drops duplicates never drops a new
/// alarm.
pub(super) fn message_id(n: &Notification, domain: &str) -> String {
    format!(
        "<studywatch.{}.{}@{domain}>",
        n.id,
        n.created_at.as_millisecond()
    )
}

fn thread_root(n: &Notification, domain: &str) -> String {
    let key: String = n
        .dedup_key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c))
        .collect();
    format!("<{key}@{domain}>")
}

/// A line naming the event (and the alarm, when there is one).
fn event_line(n: &Notification) -> String {
    let mut line = n.event.label().to_owned();
    if let Some(kind) = &n.alarm_kind {
        line.push_str(&format!(": {}", one_line(kind)));
    }
    if let Some(id) = n.alarm_id {
        line.push_str(&format!(" (alarm {id})"));
    }
    line
}

fn footer(n: &Notification) -> String {
    let what = match n.event {
        Event::Test => "This is a test; no action is needed.",
        Event::Resolve | Event::Digest => "No action is needed on this message.",
        Event::Trigger | Event::Repeat => {
            "Report the study, or acknowledge the alarm on the dashboard, to stop reminders."
        }
    };
    format!(
        "{what}\nSent automatically by studywatch (notification {}).",
        n.id
    )
}

/// The plain-text body: title, event, one `Label: value` line per field
/// (labels padded to one width), the link, a footer. Nothing else.
pub(super) fn render_text(n: &Notification) -> String {
    let mut out = format!("{}\n{}\n\n", one_line(&n.title), event_line(n));
    let width = n
        .fields
        .iter()
        .map(|(l, _)| one_line(l).chars().count())
        .max()
        .unwrap_or(0);
    for (label, value) in &n.fields {
        let label = format!("{}:", one_line(label));
        out.push_str(&format!("{label:<w$} {}\n", one_line(value), w = width + 1));
    }
    if !n.fields.is_empty() {
        out.push('\n');
    }
    if let Some(link) = &n.dashboard_link {
        out.push_str(&format!("Dashboard: {}\n\n", one_line(link)));
    }
    out.push_str("-- \n");
    out.push_str(&footer(n));
    out.push('\n');
    out
}

/// The same content as [`render_text`], as a small HTML document; every value
/// escaped.
pub(super) fn render_html(n: &Notification) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n\
         <body style=\"font-family: sans-serif\">\n",
    );
    out.push_str(&format!(
        "<h2>{}</h2>\n<p>{}</p>\n",
        html(&n.title),
        html(&event_line(n))
    ));
    if !n.fields.is_empty() {
        out.push_str("<table>\n");
        for (label, value) in &n.fields {
            out.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
                html(label),
                html(value)
            ));
        }
        out.push_str("</table>\n");
    }
    if let Some(link) = &n.dashboard_link {
        let link = html(link);
        out.push_str(&format!(
            "<p><a href=\"{link}\">Open the dashboard</a></p>\n"
        ));
    }
    out.push_str(&format!(
        "<hr>\n<p><small>{}</small></p>\n</body></html>\n",
        html(&footer(n)).replace('\n', "<br>\n")
    ));
    out
}

fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in one_line_keep_newlines(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Like [`one_line`] but keeps `\n` (the footer has two lines).
fn one_line_keep_newlines(s: &str) -> String {
    s.split('\n').map(one_line).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Severity;

    pub(crate) fn sample() -> Notification {
        Notification {
            id: 42,
            channel: "reporting-team".into(),
            event: Event::Trigger,
            severity: Severity::Critical,
            alarm_id: Some(7),
            alarm_kind: Some("overdue_report".into()),
            title: "Study overdue for a report".into(),
            fields: vec![
                ("Accession".into(), "RXX123".into()),
                ("Hospital number".into(), "H0042".into()),
                ("Rule".into(), "ED plain film".into()),
                ("Age".into(), "26 h".into()),
                ("Deadline".into(), "2026-11-22T10:00:00Z".into()),
            ],
            dashboard_link: Some("https://studywatch.example.org/alarms/7".into()),
            dedup_key: "studywatch-alarm-7".into(),
            created_at: "2026-11-22T11:00:00Z".parse().expect("timestamp"),
        }
    }

    #[test]
    fn plain_text_holds_exactly_the_notification() {
        let expected = "\
Study overdue for a report
New alarm: overdue_report (alarm 7)

Accession:       RXX123
Hospital number: H0042
Rule:            ED plain film
Age:             26 h
Deadline:        2026-11-22T10:00:00Z

Dashboard: https://studywatch.example.org/alarms/7

-- 
Report the study, or acknowledge the alarm on the dashboard, to stop reminders.
Sent automatically by studywatch (notification 42).
";
        assert_eq!(render_text(&sample()), expected);
    }

    #[test]
    fn a_bare_notification_renders_no_identifier() {
        let n = Notification {
            event: Event::Test,
            alarm_id: None,
            alarm_kind: None,
            fields: vec![],
            dashboard_link: None,
            title: "Test from studywatch".into(),
            ..sample()
        };
        let expected = "\
Test from studywatch
Test notification

-- 
This is a test; no action is needed.
Sent automatically by studywatch (notification 42).
";
        assert_eq!(render_text(&n), expected);
        let html = render_html(&n);
        for absent in ["RXX123", "H0042", "alarm 7", "<table>", "<a href"] {
            assert!(!html.contains(absent), "{absent} in {html}");
        }
    }

    #[test]
    fn line_breaks_cannot_forge_lines_or_headers() {
        let mut n = sample();
        n.title = "Overdue\r\nBcc: someone@example.org".into();
        n.fields = vec![("Rule".into(), "A\nDashboard: http://evil.example/".into())];
        let text = render_text(&n);
        assert!(!text.lines().any(|l| l.starts_with("Bcc:")), "{text}");
        assert_eq!(
            text.lines().filter(|l| l.starts_with("Dashboard:")).count(),
            1,
            "{text}"
        );
        assert_eq!(
            subject(&n),
            "[studywatch] Overdue  Bcc: someone@example.org"
        );
    }

    #[test]
    fn html_escapes_every_value() {
        let mut n = sample();
        n.title = "<script>alert(1)</script>".into();
        n.fields = vec![("A&B".into(), "\"quoted\" <b>".into())];
        n.dashboard_link = Some("https://x.example/?a=1&b=\"2\"".into());
        let html = render_html(&n);
        assert!(
            html.contains("<h2>&lt;script&gt;alert(1)&lt;/script&gt;</h2>"),
            "{html}"
        );
        assert!(
            html.contains("<th align=\"left\">A&amp;B</th><td>&quot;quoted&quot; &lt;b&gt;</td>")
        );
        assert!(html.contains("href=\"https://x.example/?a=1&amp;b=&quot;2&quot;\""));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn message_ids_are_stable_per_notification_and_unique_across_catalogs() {
        let n = sample();
        assert_eq!(
            message_id(&n, "example.org"),
            "<studywatch.42.1795345200000@example.org>"
        );
        let mut recreated = sample();
        recreated.created_at = "2027-01-01T00:00:00Z".parse().expect("timestamp");
        assert_ne!(
            message_id(&n, "example.org"),
            message_id(&recreated, "example.org")
        );
    }
}
