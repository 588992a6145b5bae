//! The MLLP listener: one task per connection, messages answered in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::{Catalog, ClockReading, Hl7Content, Hl7Recorded, NewHl7Message};
use crate::config::{self, Config};
use crate::hl7::{self, AckCode, AlertRules, Event, Framer, Header};
use crate::metrics::Metrics;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The HL7 intake: settings and the handles it writes through.
pub struct Intake {
    hl7: config::Hl7,
    alerts: AlertRules,
    tz: jiff::tz::TimeZone,
    catalog: Catalog,
    metrics: Arc<Metrics>,
    connections: Arc<Semaphore>,
    /// `[watchdog] clock_skew_after`: with it, MSH-7 is recorded as a
    /// reading of the sender's clock.
    clock_skew_after: Option<std::time::Duration>,
    /// Source of our own ACK control IDs (MSH-10): microseconds at start,
    /// counting up, so they stay unique across restarts.
    next_control_id: AtomicU64,
}

/// What to do after a frame.
enum Next {
    /// Send this ACK and read on.
    Reply(String),
    /// Nothing to answer; read on.
    Continue,
    /// Close the connection without answering (the commit failed: the sender
    /// must resend).
    Close,
}

impl Intake {
    pub fn new(config: &Config, catalog: Catalog, metrics: Arc<Metrics>) -> Arc<Intake> {
        let start = u64::try_from(Timestamp::now().as_microsecond()).unwrap_or(0);
        Arc::new(Intake {
            hl7: config.reports.hl7.clone(),
            alerts: config.reports.alerts.clone(),
            tz: config.site.timezone.clone(),
            catalog,
            metrics,
            connections: Arc::new(Semaphore::new(config.reports.hl7.max_connections)),
            clock_skew_after: config.watchdog.clock_skew_after,
            next_control_id: AtomicU64::new(start),
        })
    }

    /// Handles one frame's bytes (`len` is the full length when only the head
    /// of an oversized frame was kept).
    async fn frame(&self, raw: Vec<u8>, oversized: Option<usize>, peer: SocketAddr) -> Next {
        let received_at = Timestamp::now();
        let parsed = hl7::parse(&raw, &self.hl7.fields, &self.tz);
        let header: Option<Header> = match &parsed {
            Ok(p) => Some(p.header.clone()),
            Err(r) => r.header.clone(),
        };
        let sender_allowed = header.as_ref().is_none_or(|h| {
            self.hl7
                .sender_allowed(&h.sending_application, &h.sending_facility)
        });
        let (code, reason, content) = if let Some(len) = oversized {
            (
                AckCode::AR,
                format!(
                    "message of {len} bytes is over the limit of {} bytes",
                    self.hl7.max_message_bytes
                ),
                Hl7Content::Nothing,
            )
        } else if let Some(h) = header.as_ref().filter(|_| !sender_allowed) {
            (
                AckCode::AR,
                format!(
                    "sender {}^{} is not allowed here",
                    first(&h.sending_application),
                    first(&h.sending_facility)
                ),
                Hl7Content::Nothing,
            )
        } else {
            match &parsed {
                Err(r) => (r.code, r.reason.clone(), Hl7Content::Nothing),
                Ok(p) => {
                    let (content, warnings) = super::content(p, received_at, &self.alerts);
                    for w in &warnings {
                        tracing::warn!(control_id = %p.header.control_id, "HL7: {w}");
                    }
                    match unlinkable(&content) {
                        Some(why) => (AckCode::AE, why, Hl7Content::Nothing),
                        None => (AckCode::AA, "stored".to_owned(), content),
                    }
                }
            }
        };

        let h = header.as_ref();
        // MSH-7 against our clock, for the watchdog's clock-skew check: only
        // from senders we take messages from (one refused for its sender or
        // its size says nothing we act on).
        let clock = match (self.clock_skew_after, h) {
            (Some(threshold), Some(h)) if oversized.is_none() && sender_allowed => {
                h.sent_at.map(|sender_time| ClockReading {
                    via: "hl7",
                    sender: format!(
                        "{}^{}",
                        first(&h.sending_application),
                        first(&h.sending_facility)
                    ),
                    sender_time,
                    received_at,
                    threshold,
                })
            }
            _ => None,
        };
        let field = |f: fn(&Header) -> &str| h.map(f).unwrap_or("").to_owned();
        let msg = NewHl7Message {
            received_at,
            peer: peer.to_string(),
            sending_application: field(|h| &h.sending_application),
            sending_facility: field(|h| &h.sending_facility),
            control_id: field(|h| &h.control_id),
            message_type: h
                .map(|h| {
                    if h.trigger_event.is_empty() {
                        h.message_type.clone()
                    } else {
                        format!("{}^{}", h.message_type, h.trigger_event)
                    }
                })
                .unwrap_or_default(),
            version: field(|h| &h.version),
            raw,
            raw_truncated: oversized.is_some(),
            ack_code: code.as_str().to_owned(),
            ack_reason: reason,
            clock,
        };
        let control_id = msg.control_id.clone();
        let message_type = msg.message_type.clone();
        let recorded: Hl7Recorded = match self
            .catalog
            .call_grouped(move |store| store.record_hl7(&msg, &content))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(%peer, %control_id, error = %e,
                    "HL7 message could not be committed; closing without an ACK so that it is resent");
                self.metrics.hl7_typed(&message_type, "uncommitted");
                return Next::Close;
            }
        };

        let code = match recorded.ack_code.as_str() {
            "AA" => AckCode::AA,
            "AE" => AckCode::AE,
            _ => AckCode::AR,
        };
        let reason = if recorded.duplicate {
            self.metrics.hl7_duplicates.inc();
            recorded.ack_reason.clone()
        } else if code == AckCode::AA && matches!(recorded.report_ids.len(), 1..) {
            let studies = {
                let mut s: Vec<&str> = recorded
                    .links
                    .iter()
                    .map(|l| l.study_uid.as_str())
                    .collect();
                s.sort_unstable();
                s.dedup();
                s.len()
            };
            if studies == 0 {
                "stored; no study matches yet".to_owned()
            } else {
                format!(
                    "stored; linked to {studies} stud{}",
                    if studies == 1 { "y" } else { "ies" }
                )
            }
        } else {
            recorded.ack_reason.clone()
        };
        self.metrics.hl7_typed(&message_type, code.as_str());
        let level_info = code == AckCode::AA;
        if level_info {
            tracing::info!(%peer, %control_id, %message_type, message_id = recorded.message_id,
                duplicate = recorded.duplicate, reports = recorded.report_ids.len(),
                links = recorded.links.len(), "HL7 message stored");
        } else {
            tracing::warn!(%peer, %control_id, %message_type, message_id = recorded.message_id,
                ack = code.as_str(), %reason, "HL7 message refused");
        }

        let ours = self.next_control_id.fetch_add(1, Ordering::Relaxed);
        let ack = hl7::ack(
            header.as_ref(),
            code,
            &reason,
            &self.hl7.application,
            &self.hl7.facility,
            &format!("SW{ours}"),
            Timestamp::now(),
            &self.tz,
        );
        Next::Reply(ack)
    }

    async fn connection(
        self: Arc<Self>,
        mut stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        self.metrics.hl7_connections_active.inc();
        let _active = scopeguard(&self.metrics);
        tracing::debug!(%peer, "HL7 connection opened");
        let mut framer = Framer::new(self.hl7.max_message_bytes);
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            while let Some(event) = framer.next_event() {
                let next = match event {
                    Event::Frame(raw) => self.frame(raw, None, peer).await,
                    Event::Oversized { head, len } => self.frame(head, Some(len), peer).await,
                    Event::Junk { len } => {
                        tracing::warn!(%peer, bytes = len, "HL7: bytes outside any MLLP frame skipped");
                        self.metrics.hl7_message("junk");
                        Next::Continue
                    }
                    Event::Abandoned { len } => {
                        tracing::warn!(%peer, bytes = len, "HL7: frame interrupted by a new start byte; dropped");
                        self.metrics.hl7_message("abandoned");
                        Next::Continue
                    }
                    Event::Truncated { len } => {
                        tracing::warn!(%peer, bytes = len, "HL7: connection ended inside a frame");
                        self.metrics.hl7_message("truncated");
                        Next::Continue
                    }
                };
                match next {
                    Next::Continue => {}
                    Next::Close => return,
                    Next::Reply(ack) => {
                        let framed = hl7::mllp::encode(ack.as_bytes());
                        if let Err(e) = stream.write_all(&framed).await {
                            tracing::warn!(%peer, error = %e, "HL7: cannot send the ACK");
                            return;
                        }
                    }
                }
            }
            let mid_frame = framer.in_frame();
            let read = tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !mid_frame => {
                    tracing::debug!(%peer, "HL7 connection closed for shutdown");
                    return;
                }
                _ = tokio::time::sleep(self.hl7.frame_timeout), if mid_frame => {
                    tracing::warn!(%peer, timeout = ?self.hl7.frame_timeout,
                        "HL7: a frame started but did not end in time; closing");
                    self.metrics.hl7_message("timeout");
                    return;
                }
                r = stream.read(&mut buf) => r,
            };
            match read {
                Ok(0) => {
                    if let Some(Event::Truncated { len }) = framer.finish() {
                        tracing::warn!(%peer, bytes = len, "HL7: connection ended inside a frame");
                        self.metrics.hl7_message("truncated");
                    }
                    tracing::debug!(%peer, "HL7 connection closed by the peer");
                    return;
                }
                Ok(n) => framer.push(buf.get(..n).unwrap_or(&[])),
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "HL7: read failed; closing");
                    return;
                }
            }
        }
    }
}

/// Accepts connections until `shutdown`; each runs in `tracker`.
pub async fn run(
    intake: Arc<Intake>,
    listener: TcpListener,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "HL7: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&intake.connections).try_acquire_owned() else {
            tracing::warn!(%peer, limit = intake.hl7.max_connections,
                "HL7: too many connections; closing this one");
            intake.metrics.hl7_message("connection_refused");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_keepalive(true);
        let intake = Arc::clone(&intake);
        let token = shutdown.clone();
        tracker.spawn(async move {
            intake.connection(stream, peer, token).await;
            drop(permit);
        });
    }
}

/// A report message whose only link key was an invalid study UID cannot be
/// linked: say so (AE) rather than keep it unmatched forever.
fn unlinkable(content: &Hl7Content) -> Option<String> {
    let Hl7Content::Reports(reports) = content else {
        return None;
    };
    reports
        .iter()
        .any(|r| {
            r.study_uids.is_empty()
                && r.accession_number.is_none()
                && r.placer_number.is_none()
                && r.filler_number.is_none()
        })
        .then(|| "the study UID is not a valid DICOM UID and no other link key is given".to_owned())
}

/// The namespace ID (first component) of an HD field, for messages.
fn first(hd: &str) -> &str {
    hd.split('^').next().unwrap_or("")
}

/// Decrements the active-connection gauge when the connection task ends,
/// however it ends.
fn scopeguard(metrics: &Arc<Metrics>) -> impl Drop + use<> {
    struct Guard(Arc<Metrics>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.hl7_connections_active.dec();
        }
    }
    Guard(Arc::clone(metrics))
}
