//! Associations this gateway opens for storage commitment: to a peer, to
//! deliver the N-EVENT-REPORT of its request (we take the SCP role, so the
//! association proposes SCP/SCU role selection), and to a destination, to
//! send an N-ACTION (default roles: we are the SCU).

use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use tokio::net::TcpStream;

use super::wire::{self, Syntax};
use crate::scu::{Error, Peer};

/// The largest data set accepted in a message received here.
const MAX_DATA_SET: usize = wire::MAX_DATA_SET_LEN;

pub type Assoc = AsyncClientAssociation<TcpStream>;

/// An association carrying Storage Commitment Push Model, with the
/// presentation context it was accepted on.
pub struct Link {
    pub assoc: Assoc,
    pub pc_id: u8,
    pub syntax: Syntax,
    next_message_id: u16,
}

/// A DIMSE message read from the association.
pub struct Message {
    pub command: wire::Command,
    pub data: Option<Vec<u8>>,
}

impl Link {
    /// Opens an association to `peer` proposing Storage Commitment Push
    /// Model in Explicit and Implicit VR Little Endian; with `as_scp`, we
    /// propose to take the SCP role (to send an N-EVENT-REPORT).
    pub async fn open(calling: &str, peer: &Peer, as_scp: bool) -> Result<Link, Error> {
        let mut opts = crate::scu::options(calling, peer).with_presentation_context(
            wire::SOP_CLASS_UID,
            vec![
                Syntax::ExplicitVrLittleEndian.uid(),
                Syntax::ImplicitVrLittleEndian.uid(),
            ],
        );
        if as_scp {
            opts = opts.with_role_selection(wire::SOP_CLASS_UID, false, true);
        }
        let mut assoc = opts
            .establish_async(peer.address.as_str())
            .await
            .map_err(|e| Error::Association(peer.address.clone(), e.to_string()))?;
        let _ = assoc.inner_stream().set_nodelay(true);
        let accepted = assoc
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .find_map(|pc| {
                (crate::uid::trim(&pc.abstract_syntax) == wire::SOP_CLASS_UID)
                    .then(|| Syntax::from_uid(&pc.transfer_syntax).map(|s| (pc.id, s)))
                    .flatten()
            });
        let Some((pc_id, syntax)) = accepted else {
            let _ = assoc.abort().await;
            return Err(Error::Protocol(format!(
                "{} did not accept Storage Commitment Push Model",
                peer.ae_title
            )));
        };
        Ok(Link {
            assoc,
            pc_id,
            syntax,
            next_message_id: 1,
        })
    }

    /// A fresh Message ID for a request on this association.
    pub fn message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        id
    }

    /// Sends a command set and, when given, its data set.
    pub async fn send(&mut self, command: Vec<u8>, data: Option<Vec<u8>>) -> Result<(), Error> {
        let command = vec![PDataValue {
            presentation_context_id: self.pc_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: command,
        }];
        self.send_pdu(command).await?;
        if let Some(data) = data {
            // One PDV per PDU, cut to the peer's maximum PDU length.
            let max = usize::try_from(self.assoc.acceptor_max_pdu_length())
                .unwrap_or(16384)
                .clamp(1024, 1 << 20)
                - 12;
            let chunks: Vec<&[u8]> = if data.is_empty() {
                vec![&data[..]]
            } else {
                data.chunks(max).collect()
            };
            let n = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                self.send_pdu(vec![PDataValue {
                    presentation_context_id: self.pc_id,
                    value_type: PDataValueType::Data,
                    is_last: i + 1 == n,
                    data: chunk.to_vec(),
                }])
                .await?;
            }
        }
        Ok(())
    }

    async fn send_pdu(&mut self, data: Vec<PDataValue>) -> Result<(), Error> {
        self.assoc
            .send(&Pdu::PData { data })
            .await
            .map_err(|e| Error::Protocol(format!("cannot send: {e}")))
    }

    /// Reads the next message: its command set and, if it says one
    /// follows, its data set. Bounded in size.
    pub async fn receive(&mut self) -> Result<Message, Error> {
        receive(&mut self.assoc).await
    }

    pub async fn release(self) {
        let _ = self.assoc.release().await;
    }

    pub async fn abort(self) {
        let _ = self.assoc.abort().await;
    }
}

async fn receive(assoc: &mut Assoc) -> Result<Message, Error> {
    let mut command_bytes = Vec::new();
    let mut command: Option<wire::Command> = None;
    let mut data = Vec::new();
    loop {
        let pdu = assoc
            .receive()
            .await
            .map_err(|e| Error::Protocol(format!("nothing received: {e}")))?;
        let pdvs = match pdu {
            Pdu::PData { data } => data,
            Pdu::AbortRQ { source } => {
                return Err(Error::Protocol(format!("peer aborted: {source:?}")));
            }
            Pdu::ReleaseRQ => {
                let _ = assoc.send(&Pdu::ReleaseRP).await;
                return Err(Error::Protocol("peer released the association".into()));
            }
            other => {
                return Err(Error::Protocol(format!(
                    "unexpected {}",
                    other.short_description()
                )));
            }
        };
        for pdv in pdvs {
            match (pdv.value_type, command.is_some()) {
                (PDataValueType::Command, false) => {
                    if command_bytes.len() + pdv.data.len() > 64 * 1024 {
                        return Err(Error::Protocol("command set over 64 KiB".into()));
                    }
                    command_bytes.extend_from_slice(&pdv.data);
                    if pdv.is_last {
                        let c = wire::Command::decode(&command_bytes)
                            .map_err(|e| Error::Protocol(e.to_string()))?;
                        if !c.has_data_set {
                            return Ok(Message {
                                command: c,
                                data: None,
                            });
                        }
                        command = Some(c);
                    }
                }
                (PDataValueType::Data, true) => {
                    if data.len() + pdv.data.len() > MAX_DATA_SET {
                        return Err(Error::Protocol("data set too large".into()));
                    }
                    data.extend_from_slice(&pdv.data);
                    if pdv.is_last
                        && let Some(command) = command.take()
                    {
                        return Ok(Message {
                            command,
                            data: Some(data),
                        });
                    }
                }
                (kind, _) => {
                    return Err(Error::Protocol(format!(
                        "{kind:?} fragment out of sequence"
                    )));
                }
            }
        }
    }
}
