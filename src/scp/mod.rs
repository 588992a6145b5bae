//! The DICOM SCP: accepts associations, answers C-ECHO, and hands C-STORE
//! data sets to [`crate::ingest`] fragment by fragment.
//!
//! This module knows PDUs, presentation contexts and DIMSE messages. It
//! never touches files or SQL: what happens to a data set is ingest's
//! business, and the SCP only turns ingest's [`Outcome`] into a status.
//! An association stops only between DIMSE messages, and nothing a peer
//! sends can panic it: every failure ends in a status, an A-ABORT, or a
//! closed socket.

mod storage_classes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::ServerAssociationOptions;
use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason,
    AssociationRJSource, PDataValue, PDataValueType, Pdu, PresentationContextResultReason,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::commit::Commitments;
use crate::commit::wire;
use crate::dimse::{Command, Response, field, status};
use crate::ingest::{Ingest, Outcome, Request};
use crate::metrics::Metrics;

pub use storage_classes::STORAGE_SOP_CLASSES;

/// Verification SOP Class.
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// Storage Commitment Push Model SOP Class: peers ask us to commit
/// (N-ACTION), and destinations report what they committed
/// (N-EVENT-REPORT, usually on an association they open to us).
pub const STORAGE_COMMITMENT: &str = "1.2.840.10008.1.20.1";

/// Role selection (PS3.7 D.3.3.4) as this SCP answers it: for storage
/// commitment, a requestor may take the SCP role (a PACS that opens an
/// association to send us its N-EVENT-REPORT proposes exactly that) or the
/// SCU role, and we accept what it proposes. For any other SOP class the
/// item is left out of the answer, so the default roles apply: the
/// requestor is the SCU and we are the SCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Roles;

impl dicom_ul::association::server::Negotiation for Roles {
    fn negotiate_roles(
        &self,
        sop_class_uid: &str,
        scu_role: bool,
        scp_role: bool,
    ) -> Option<dicom_ul::pdu::RequestorRoles> {
        (crate::uid::trim(sop_class_uid) == STORAGE_COMMITMENT).then_some(
            dicom_ul::pdu::RequestorRoles {
                scu: scu_role,
                scp: scp_role,
            },
        )
    }
}

/// The transfer syntaxes accepted, in our order of preference among those a
/// requestor proposes. Data sets are stored as received, never transcoded.
pub const TRANSFER_SYNTAXES: &[&str] = &[
    "1.2.840.10008.1.2.1",     // Explicit VR Little Endian
    "1.2.840.10008.1.2",       // Implicit VR Little Endian
    "1.2.840.10008.1.2.2",     // Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.1.99",  // Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  // JPEG Baseline
    "1.2.840.10008.1.2.4.51",  // JPEG Extended
    "1.2.840.10008.1.2.4.57",  // JPEG Lossless
    "1.2.840.10008.1.2.4.70",  // JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  // JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  // JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  // JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  // JPEG 2000
    "1.2.840.10008.1.2.4.201", // HTJ2K Lossless
    "1.2.840.10008.1.2.4.202", // HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203", // HTJ2K
    "1.2.840.10008.1.2.5",     // RLE Lossless
    "1.2.840.10008.1.2.1.98",  // Encapsulated Uncompressed Explicit VR Little Endian
    "1.2.840.10008.1.2.4.100", // MPEG2 Main Profile
    "1.2.840.10008.1.2.4.100.1",
    "1.2.840.10008.1.2.4.101", // MPEG2 High Profile
    "1.2.840.10008.1.2.4.101.1",
    "1.2.840.10008.1.2.4.102", // MPEG-4 AVC/H.264
    "1.2.840.10008.1.2.4.102.1",
    "1.2.840.10008.1.2.4.103",
    "1.2.840.10008.1.2.4.103.1",
    "1.2.840.10008.1.2.4.104",
    "1.2.840.10008.1.2.4.104.1",
    "1.2.840.10008.1.2.4.105",
    "1.2.840.10008.1.2.4.105.1",
    "1.2.840.10008.1.2.4.106",
    "1.2.840.10008.1.2.4.106.1",
    "1.2.840.10008.1.2.4.107", // HEVC/H.265 Main Profile
    "1.2.840.10008.1.2.4.108", // HEVC/H.265 Main 10 Profile
];

/// The largest command set accepted; real ones are a few hundred bytes.
const MAX_COMMAND_SET: usize = 64 * 1024;

/// What the SCP needs from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub ae_title: String,
    pub max_associations: usize,
    pub max_pdu: u32,
    pub read_timeout: Duration,
    pub accept_unknown_callers: bool,
    /// Known peers: AE title → source label.
    pub peers: HashMap<String, String>,
    /// Forward destinations' AE titles: they may call us to report storage
    /// commitment even when unknown callers are refused.
    pub destinations: Vec<String>,
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Settings {
        let d = &config.dicom;
        Settings {
            ae_title: d.ae_title.clone(),
            max_associations: d.max_associations,
            max_pdu: d.max_pdu,
            read_timeout: d.read_timeout,
            accept_unknown_callers: d.accept_unknown_callers,
            peers: d
                .peers
                .iter()
                .map(|p| (p.ae_title.clone(), p.source.clone()))
                .collect(),
            destinations: config
                .forward
                .destinations
                .iter()
                .map(|d| d.ae_title.clone())
                .collect(),
        }
    }
}

/// Checks the called and calling AE titles of each association request.
#[derive(Clone, Debug)]
struct Access {
    accept_unknown_callers: bool,
    peers: HashMap<String, String>,
    destinations: Vec<String>,
    metrics: Arc<Metrics>,
}

impl AccessControl for Access {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&dicom_ul::pdu::UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let (calling, called) = (calling_ae_title.trim(), called_ae_title.trim());
        if called != this_ae_title.trim() {
            tracing::warn!(
                calling_ae = calling,
                called_ae = called,
                "association rejected: called AE title is not ours"
            );
            self.metrics.rejected_association("called_ae");
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.accept_unknown_callers
            && !self.peers.contains_key(calling)
            && !self.destinations.iter().any(|d| d == calling)
        {
            tracing::warn!(
                calling_ae = calling,
                "association rejected: calling AE title is not a configured peer"
            );
            self.metrics.rejected_association("calling_ae");
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

/// The SCP: shared by every association task.
pub struct Scp {
    settings: Settings,
    options: ServerAssociationOptions<'static, Access, Roles>,
    ingest: Arc<Ingest>,
    commitments: Arc<Commitments>,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
}

/// How long an association stays quiet after a storage commitment request
/// before we send its report on it: a requester that releases at once
/// gets the report on a new association instead (the reporter's).
const REPORT_AFTER: Duration = Duration::from_millis(300);

impl Scp {
    pub fn new(
        settings: Settings,
        ingest: Arc<Ingest>,
        commitments: Arc<Commitments>,
        metrics: Arc<Metrics>,
    ) -> Arc<Scp> {
        let access = Access {
            accept_unknown_callers: settings.accept_unknown_callers,
            peers: settings.peers.clone(),
            destinations: settings.destinations.clone(),
            metrics: Arc::clone(&metrics),
        };
        let mut options = ServerAssociationOptions::new()
            .ae_access_control(access)
            .ae_title(settings.ae_title.clone())
            .max_pdu_length(settings.max_pdu)
            .read_timeout(settings.read_timeout)
            .write_timeout(settings.read_timeout)
            .with_negotiation(Roles)
            .with_abstract_syntax(VERIFICATION)
            .with_abstract_syntax(STORAGE_COMMITMENT);
        for (uid, _) in STORAGE_SOP_CLASSES {
            options = options.with_abstract_syntax(*uid);
        }
        for ts in TRANSFER_SYNTAXES {
            if dicom_ul::association::server::is_supported(ts) {
                options = options.with_transfer_syntax(*ts);
            } else {
                tracing::warn!(
                    transfer_syntax = ts,
                    "transfer syntax unknown to the registry; not offered"
                );
            }
        }
        let slots = Arc::new(Semaphore::new(settings.max_associations));
        Arc::new(Scp {
            settings,
            options,
            ingest,
            commitments,
            metrics,
            slots,
        })
    }

    /// Accepts associations until `shutdown` is cancelled. Each association
    /// runs on `tracker`, so the caller can wait for in-flight messages.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        loop {
            let (socket, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if let Err(e) = socket.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
            let this = Arc::clone(&self);
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(permit) => {
                    let token = shutdown.clone();
                    tracker
                        .spawn(async move { this.association(socket, peer, permit, token).await });
                }
                Err(_) => {
                    tracker.spawn(async move { this.reject_busy(socket, peer).await });
                }
            }
        }
        tracing::info!("DICOM listener stopped accepting");
    }

    /// Answers an association over the cap with a transient rejection, so a
    /// well-behaved sender retries later instead of hanging.
    async fn reject_busy(&self, mut socket: TcpStream, peer: std::net::SocketAddr) {
        use tokio::io::AsyncWriteExt;
        self.metrics.rejected_association("busy");
        tracing::warn!(%peer, max = self.settings.max_associations, "association rejected: too many associations");
        let mut buf = bytes::BytesMut::with_capacity(16 * 1024);
        let read = dicom_ul::association::read_pdu_from_wire_async(
            &mut socket,
            &mut buf,
            self.settings.max_pdu,
            false,
        );
        if tokio::time::timeout(self.settings.read_timeout, read)
            .await
            .is_err()
        {
            return;
        }
        let rj = Pdu::AssociationRJ(AssociationRJ {
            result: AssociationRJResult::Transient,
            source: AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        });
        let mut out = Vec::new();
        if dicom_ul::pdu::write_pdu(&mut out, &rj).is_ok() {
            let _ = socket.write_all(&out).await;
            let _ = socket.shutdown().await;
        }
    }

    async fn association(
        self: Arc<Self>,
        socket: TcpStream,
        peer: std::net::SocketAddr,
        _permit: OwnedSemaphorePermit,
        shutdown: CancellationToken,
    ) {
        let mut assoc = match self.options.establish_async(socket).await {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(%peer, error = %e, "association not established");
                return;
            }
        };
        self.metrics.associations_active.inc();
        let established = std::time::Instant::now();
        let calling_ae = dicom_ul::association::Association::peer_ae_title(&assoc)
            .trim()
            .to_owned();
        let source = self.settings.peers.get(&calling_ae).cloned().unwrap_or_else(|| {
            if !self.settings.peers.is_empty() {
                tracing::debug!(calling_ae = %calling_ae, "association from an unconfigured peer");
            }
            calling_ae.clone()
        });
        let contexts: HashMap<u8, (String, String)> = assoc
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| {
                (
                    pc.id,
                    (pc.abstract_syntax.clone(), pc.transfer_syntax.clone()),
                )
            })
            .collect();
        tracing::info!(%peer, calling_ae = %calling_ae, contexts = contexts.len(), "association accepted");
        let mut session = Session {
            scp: &self,
            calling_ae,
            source,
            contexts,
            state: State::Idle,
            owed: Vec::new(),
            in_flight: None,
            next_message_id: 1,
        };
        self.metrics
            .associations
            .get_or_create(&crate::metrics::SourceLabels {
                source: session.source.clone(),
            })
            .inc();
        let end = session.run(&mut assoc, &shutdown).await;
        session.hand_over_reports().await;
        self.metrics.associations_active.dec();
        self.metrics
            .association_duration
            .observe(established.elapsed().as_secs_f64());
        match end {
            End::Released => {
                let _ = assoc.send(&Pdu::ReleaseRP).await;
                tracing::info!(%peer, "association released");
            }
            End::PeerAborted => tracing::info!(%peer, "association aborted by peer"),
            End::Closed(why) => tracing::info!(%peer, reason = %why, "association closed"),
            End::Abort(why) => {
                tracing::warn!(%peer, reason = %why, "aborting association");
                let _ = assoc
                    .send(&Pdu::AbortRQ {
                        source: AbortRQSource::ServiceProvider(
                            AbortRQServiceProviderReason::ReasonNotSpecified,
                        ),
                    })
                    .await;
            }
            End::Shutdown => {
                tracing::info!(%peer, "aborting idle association for shutdown");
                let _ = assoc
                    .send(&Pdu::AbortRQ {
                        source: AbortRQSource::ServiceUser,
                    })
                    .await;
            }
        }
    }
}

/// How an association's message loop ended.
enum End {
    Released,
    PeerAborted,
    Closed(String),
    Abort(String),
    Shutdown,
}

/// Where an association is within a DIMSE message.
enum State {
    Idle,
    Command {
        pc_id: u8,
        buf: Vec<u8>,
    },
    Data {
        pc_id: u8,
        command: Command,
        sink: Sink,
        /// When the command arrived (for the C-STORE latency histogram).
        started: std::time::Instant,
    },
}

/// Where a data set's fragments go.
enum Sink {
    Store(crate::ingest::Receiving),
    /// A storage commitment message: its command set, and its data set
    /// gathered in memory (bounded by `wire::MAX_DATA_SET_LEN`).
    Commitment {
        command: Vec<u8>,
        data: Vec<u8>,
    },
    /// A data set we do not act on: read and dropped, then answered.
    Drain,
}

/// A storage commitment report sent on this association, awaiting its
/// N-EVENT-REPORT-RSP.
struct InFlight {
    message_id: u16,
    transaction_uid: String,
    answer: crate::catalog::CommitAnswer,
}

struct Session<'a> {
    scp: &'a Scp,
    calling_ae: String,
    source: String,
    contexts: HashMap<u8, (String, String)>,
    state: State,
    /// Storage commitment reports owed to the requester, with the
    /// presentation context of its request: sent here once the association
    /// has been quiet for [`REPORT_AFTER`].
    owed: Vec<(String, u8)>,
    in_flight: Option<InFlight>,
    next_message_id: u16,
}

type Assoc = dicom_ul::association::AsyncServerAssociation<TcpStream>;

impl Session<'_> {
    async fn run(&mut self, assoc: &mut Assoc, shutdown: &CancellationToken) -> End {
        loop {
            rearm_quickack(assoc.inner_stream());
            let idle = matches!(self.state, State::Idle);
            let received = if idle {
                if shutdown.is_cancelled() {
                    return End::Shutdown;
                }
                let report_due = !self.owed.is_empty() && self.in_flight.is_none();
                tokio::select! {
                    _ = shutdown.cancelled() => return End::Shutdown,
                    r = assoc.receive() => r,
                    _ = tokio::time::sleep(REPORT_AFTER), if report_due => {
                        if let Err(why) = self.send_report(assoc).await {
                            return End::Abort(why);
                        }
                        continue;
                    }
                }
            } else {
                assoc.receive().await
            };
            let pdu = match received {
                Ok(pdu) => pdu,
                Err(e) => {
                    self.abandon();
                    return End::Closed(e.to_string());
                }
            };
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        if let Err(why) = self.on_pdv(assoc, pdv).await {
                            self.abandon();
                            return End::Abort(why);
                        }
                    }
                }
                Pdu::ReleaseRQ => {
                    if !matches!(self.state, State::Idle) {
                        self.abandon();
                        return End::Abort("release requested in the middle of a message".into());
                    }
                    return End::Released;
                }
                Pdu::AbortRQ { .. } => {
                    self.abandon();
                    return End::PeerAborted;
                }
                other => {
                    self.abandon();
                    return End::Abort(format!("unexpected PDU: {}", other.short_description()));
                }
            }
        }
    }

    /// Drops a data set in progress; its writer discards the temp file.
    fn abandon(&mut self) {
        if let State::Data {
            sink: Sink::Store(r),
            ..
        } = std::mem::replace(&mut self.state, State::Idle)
        {
            r.abandon();
        }
    }

    async fn on_pdv(&mut self, assoc: &mut Assoc, pdv: PDataValue) -> Result<(), String> {
        if !self.contexts.contains_key(&pdv.presentation_context_id) {
            return Err(format!(
                "P-DATA on presentation context {} that was not accepted",
                pdv.presentation_context_id
            ));
        }
        match (
            pdv.value_type,
            std::mem::replace(&mut self.state, State::Idle),
        ) {
            (PDataValueType::Command, State::Idle) => {
                self.command_fragment(
                    assoc,
                    pdv.presentation_context_id,
                    Vec::new(),
                    pdv.data,
                    pdv.is_last,
                )
                .await
            }
            (PDataValueType::Command, State::Command { pc_id, buf })
                if pc_id == pdv.presentation_context_id =>
            {
                self.command_fragment(assoc, pc_id, buf, pdv.data, pdv.is_last)
                    .await
            }
            (
                PDataValueType::Data,
                State::Data {
                    pc_id,
                    command,
                    mut sink,
                    started,
                },
            ) if pc_id == pdv.presentation_context_id => {
                match &mut sink {
                    Sink::Store(r) => r.push(pdv.data).await,
                    Sink::Commitment { data, .. } => {
                        if data.len() + pdv.data.len() > wire::MAX_DATA_SET_LEN {
                            return Err("storage commitment data set too large".into());
                        }
                        data.extend_from_slice(&pdv.data);
                    }
                    Sink::Drain => {}
                }
                if pdv.is_last {
                    self.complete(assoc, pc_id, command, sink, started).await
                } else {
                    self.state = State::Data {
                        pc_id,
                        command,
                        sink,
                        started,
                    };
                    Ok(())
                }
            }
            (
                PDataValueType::Data,
                State::Data {
                    sink: Sink::Store(r),
                    ..
                },
            ) => {
                r.abandon();
                Err("data fragment on another presentation context".into())
            }
            (kind, _) => Err(format!("{kind:?} fragment out of sequence")),
        }
    }

    async fn command_fragment(
        &mut self,
        assoc: &mut Assoc,
        pc_id: u8,
        mut buf: Vec<u8>,
        data: Vec<u8>,
        is_last: bool,
    ) -> Result<(), String> {
        if buf.len() + data.len() > MAX_COMMAND_SET {
            return Err("command set larger than 64 KiB".into());
        }
        if buf.is_empty() {
            buf = data;
        } else {
            buf.extend_from_slice(&data);
        }
        if !is_last {
            self.state = State::Command { pc_id, buf };
            return Ok(());
        }
        let command = Command::decode(&buf).map_err(|e| e.to_string())?;
        let commitment_context = self
            .contexts
            .get(&pc_id)
            .is_some_and(|(a, _)| crate::uid::trim(a) == STORAGE_COMMITMENT);
        if command.has_data_set {
            let sink = match command.field {
                field::N_ACTION_RQ | field::N_EVENT_REPORT_RQ if commitment_context => {
                    Sink::Commitment {
                        command: buf,
                        data: Vec::new(),
                    }
                }
                field::C_STORE_RQ => {
                    let (abstract_syntax, ts) =
                        self.contexts.get(&pc_id).cloned().unwrap_or_default();
                    Sink::Store(self.scp.ingest.begin(Request {
                        calling_ae: self.calling_ae.clone(),
                        source: self.source.clone(),
                        sop_class_uid: command.sop_class_uid.clone().unwrap_or_default(),
                        sop_instance_uid: command.sop_instance_uid.clone().unwrap_or_default(),
                        transfer_syntax: ts,
                        context_abstract_syntax: abstract_syntax,
                    }))
                }
                _ => Sink::Drain,
            };
            self.state = State::Data {
                pc_id,
                command,
                sink,
                started: std::time::Instant::now(),
            };
            return Ok(());
        }
        match command.field {
            field::C_CANCEL_RQ => Ok(()),
            // A response: to our storage commitment report, never answered.
            f if f & field::RESPONSE_BIT != 0 => self.on_response(&buf).await,
            field::C_ECHO_RQ => {
                self.scp.metrics.echoes.inc();
                tracing::debug!(calling_ae = %self.calling_ae, message_id = command.message_id, "C-ECHO");
                respond(assoc, pc_id, &command, status::SUCCESS, None).await
            }
            field::C_STORE_RQ => {
                respond(
                    assoc,
                    pc_id,
                    &command,
                    status::CANNOT_UNDERSTAND,
                    Some("C-STORE without a data set"),
                )
                .await
            }
            _ => self.unrecognized(assoc, pc_id, &command).await,
        }
    }

    async fn complete(
        &mut self,
        assoc: &mut Assoc,
        pc_id: u8,
        command: Command,
        sink: Sink,
        started: std::time::Instant,
    ) -> Result<(), String> {
        match sink {
            Sink::Store(receiving) => {
                let outcome = receiving.finish().await;
                if outcome == Outcome::Aborted {
                    return Err("data set abandoned".into());
                }
                let sent =
                    respond(assoc, pc_id, &command, outcome.status(), outcome.comment()).await;
                self.scp.metrics.instance_received(
                    outcome.status(),
                    &self.source,
                    started.elapsed(),
                );
                sent
            }
            Sink::Commitment { command: raw, data } => {
                self.commitment(assoc, pc_id, &command, &raw, &data).await
            }
            Sink::Drain => self.unrecognized(assoc, pc_id, &command).await,
        }
    }

    /// An N-ACTION-RQ (a peer asks us to commit) or an N-EVENT-REPORT-RQ
    /// (a destination reports what it committed), with its data set.
    async fn commitment(
        &mut self,
        assoc: &mut Assoc,
        pc_id: u8,
        command: &Command,
        raw: &[u8],
        data: &[u8],
    ) -> Result<(), String> {
        let decoded = match wire::Command::decode(raw) {
            Ok(c) => c,
            Err(e) => return Err(format!("storage commitment command unreadable: {e}")),
        };
        let ts = self
            .contexts
            .get(&pc_id)
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        let Some(syntax) = wire::Syntax::from_uid(&ts) else {
            return respond(
                assoc,
                pc_id,
                command,
                crate::commit::service::PROCESSING_FAILURE,
                Some("storage commitment needs Implicit or Explicit VR Little Endian"),
            )
            .await;
        };
        let commitments = Arc::clone(&self.scp.commitments);
        if command.field == field::N_ACTION_RQ {
            let (status, owed) = commitments
                .on_request(&self.calling_ae, &decoded, data, syntax)
                .await;
            send_raw(assoc, pc_id, wire::n_action_rsp(decoded.message_id, status)).await?;
            if let Some(tx) = owed {
                self.owed.push((tx, pc_id));
            }
            Ok(())
        } else {
            let status = commitments
                .on_report(&self.calling_ae, &decoded, data, syntax)
                .await;
            send_raw(
                assoc,
                pc_id,
                wire::n_event_report_rsp(
                    decoded.message_id,
                    decoded.event_type_id.unwrap_or(0),
                    status,
                ),
            )
            .await
        }
    }

    /// Sends the oldest report owed on this association.
    async fn send_report(&mut self, assoc: &mut Assoc) -> Result<(), String> {
        if self.owed.is_empty() {
            return Ok(());
        }
        let (transaction_uid, pc_id) = self.owed.remove(0);
        let commitments = Arc::clone(&self.scp.commitments);
        let (report, answer) = match commitments.report(&transaction_uid).await {
            Ok(r) => r,
            Err(e) => {
                commitments.hand_over(&transaction_uid, &e).await;
                return Ok(());
            }
        };
        let ts = self
            .contexts
            .get(&pc_id)
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        let syntax = wire::Syntax::from_uid(&ts).unwrap_or(wire::Syntax::ImplicitVrLittleEndian);
        let message_id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        send_raw(
            assoc,
            pc_id,
            wire::n_event_report_rq(message_id, report.event_type()),
        )
        .await?;
        let data = report.encode(syntax);
        let max = usize::try_from(assoc.requestor_max_pdu_length())
            .unwrap_or(16384)
            .clamp(1024, 1 << 20)
            - 12;
        let chunks: Vec<&[u8]> = data.chunks(max.max(1)).collect();
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            assoc
                .send(&Pdu::PData {
                    data: vec![PDataValue {
                        presentation_context_id: pc_id,
                        value_type: PDataValueType::Data,
                        is_last: i + 1 == n,
                        data: chunk.to_vec(),
                    }],
                })
                .await
                .map_err(|e| format!("cannot send a commitment report: {e}"))?;
        }
        tracing::info!(calling_ae = %self.calling_ae, transaction_uid = %transaction_uid,
            event_type = report.event_type(), "storage commitment report sent on the request's association");
        self.in_flight = Some(InFlight {
            message_id,
            transaction_uid,
            answer,
        });
        Ok(())
    }

    /// A response from the peer: the answer to our report, if it is one.
    async fn on_response(&mut self, raw: &[u8]) -> Result<(), String> {
        let reply = wire::Command::decode(raw).map_err(|e| format!("response unreadable: {e}"))?;
        match self.in_flight.take() {
            Some(sent)
                if reply.field == (field::N_EVENT_REPORT_RQ | field::RESPONSE_BIT)
                    && reply.message_id == sent.message_id =>
            {
                let commitments = Arc::clone(&self.scp.commitments);
                if reply.status == Some(status::SUCCESS) {
                    commitments
                        .delivered(&sent.transaction_uid, sent.answer)
                        .await;
                } else {
                    commitments
                        .hand_over(
                            &sent.transaction_uid,
                            &format!("the requester answered with status {:?}", reply.status),
                        )
                        .await;
                }
                Ok(())
            }
            other => {
                self.in_flight = other;
                tracing::warn!(calling_ae = %self.calling_ae, command_field = format_args!("{:#06X}", reply.field),
                    "unexpected DIMSE response ignored");
                Ok(())
            }
        }
    }

    /// At the end of the association: reports owed, or sent and not
    /// answered, go to the reporter, which opens an association of its own.
    async fn hand_over_reports(&mut self) {
        let commitments = Arc::clone(&self.scp.commitments);
        if let Some(sent) = self.in_flight.take() {
            commitments
                .hand_over(&sent.transaction_uid, "association ended before the answer")
                .await;
        }
        for (tx, _) in std::mem::take(&mut self.owed) {
            commitments
                .hand_over(&tx, "the requester did not keep the association open")
                .await;
        }
    }

    async fn unrecognized(
        &mut self,
        assoc: &mut Assoc,
        pc_id: u8,
        command: &Command,
    ) -> Result<(), String> {
        tracing::warn!(calling_ae = %self.calling_ae, command_field = format_args!("{:#06X}", command.field), "unrecognized DIMSE operation");
        respond(
            assoc,
            pc_id,
            command,
            status::UNRECOGNIZED_OPERATION,
            Some("operation not supported"),
        )
        .await
    }
}

/// Sends a command set (no data set follows).
async fn send_raw(assoc: &mut Assoc, pc_id: u8, bytes: Vec<u8>) -> Result<(), String> {
    assoc
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: bytes,
            }],
        })
        .await
        .map_err(|e| format!("cannot send a response: {e}"))
}

async fn respond(
    assoc: &mut Assoc,
    pc_id: u8,
    command: &Command,
    status: u16,
    comment: Option<&str>,
) -> Result<(), String> {
    let bytes = Response {
        request_field: command.field,
        message_id: command.message_id,
        sop_class_uid: command.sop_class_uid.as_deref(),
        sop_instance_uid: command.sop_instance_uid.as_deref(),
        status,
        error_comment: comment.filter(|_| status != status::SUCCESS),
    }
    .encode();
    send_raw(assoc, pc_id, bytes).await
}

/// Re-arms TCP_QUICKACK before each PDU read. Linux drops out of quick-ack
/// mode on its own, and a sender that leaves Nagle's algorithm on (as most
/// modality stacks do) then stalls on our delayed ACKs for every PDU.
fn rearm_quickack(stream: &TcpStream) {
    let sock = socket2::SockRef::from(stream);
    let _ = sock.set_tcp_quickack(true);
}

/// Maps a DIMSE status to its name, for logs and CLI output.
pub fn status_name(code: u16) -> &'static str {
    match code {
        status::SUCCESS => "Success",
        status::SOP_CLASS_NOT_SUPPORTED => "Refused: SOP class not supported",
        status::UNRECOGNIZED_OPERATION => "Unrecognized operation",
        status::OUT_OF_RESOURCES => "Refused: out of resources",
        status::DATA_SET_MISMATCH => "Error: data set does not match SOP class",
        0xB000 | 0xB006 | 0xB007 => "Warning",
        0xC000..=0xCFFF => "Error: cannot understand",
        _ => "Failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_classes_are_known_to_the_dictionary() {
        use dicom_core::dictionary::UidDictionary;
        let dict = dicom_dictionary_std::StandardSopClassDictionary;
        assert!(STORAGE_SOP_CLASSES.len() > 150);
        for (uid, keyword) in STORAGE_SOP_CLASSES {
            let entry = dict.by_uid(uid).unwrap_or_else(|| panic!("{uid} unknown"));
            assert_eq!(entry.alias, *keyword);
            assert!(crate::uid::is_valid(uid));
        }
        let uids: Vec<_> = STORAGE_SOP_CLASSES.iter().map(|(u, _)| *u).collect();
        assert!(
            uids.contains(&"1.2.840.10008.5.1.4.1.1.2"),
            "CT Image Storage"
        );
        assert!(
            uids.contains(&"1.2.840.10008.5.1.4.1.1.88.11"),
            "Basic Text SR"
        );
        assert!(
            !uids.contains(&"1.2.840.10008.1.20.1"),
            "Storage Commitment is not storage"
        );
    }

    #[test]
    fn every_listed_transfer_syntax_is_known_to_the_registry() {
        for ts in TRANSFER_SYNTAXES {
            assert!(
                dicom_ul::association::server::is_supported(ts),
                "{ts} not supported by the registry"
            );
        }
    }
}
