//! The SCU: C-ECHO, and C-STORE of files exactly as they are on disk (each
//! file's own transfer syntax is proposed; nothing is transcoded). The
//! diagnostic `studywatch echo` and `send` use it, and so does the
//! forwarder, through [`Association`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_ul::ClientAssociationOptions;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::dimse::{self, Reply, field};

/// A peer written `AE@HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub ae_title: String,
    pub address: String,
}

impl std::str::FromStr for Peer {
    type Err = String;
    fn from_str(s: &str) -> Result<Peer, String> {
        let (ae, addr) = s.split_once('@').ok_or("expected AE@HOST:PORT")?;
        if ae.is_empty() || ae.len() > 16 {
            return Err("the AE title must be 1-16 characters".into());
        }
        if addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err("expected AE@HOST:PORT with a numeric port".into());
        }
        Ok(Peer {
            ae_title: ae.to_owned(),
            address: addr.to_owned(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("association with {0} failed: {1}")]
    Association(String, String),
    #[error("{0}")]
    Protocol(String),
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The result of storing one file.
#[derive(Clone, Debug)]
pub struct FileResult {
    pub path: PathBuf,
    /// None when the file could not be sent at all.
    pub status: Option<u16>,
    pub comment: Option<String>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn options(calling: &str, peer: &Peer) -> ClientAssociationOptions<'static> {
    ClientAssociationOptions::new()
        .calling_ae_title(calling.to_owned())
        .called_ae_title(peer.ae_title.clone())
        .max_pdu_length(65536)
        .read_timeout(TIMEOUT)
        .write_timeout(TIMEOUT)
        .connection_timeout(Duration::from_secs(10))
}

/// Sends one C-ECHO and returns its status.
pub async fn echo(calling: &str, peer: &Peer) -> Result<u16, Error> {
    let mut assoc = options(calling, peer)
        .with_abstract_syntax(crate::scp::VERIFICATION)
        .establish_async(peer.address.as_str())
        .await
        .map_err(|e| Error::Association(peer.address.clone(), e.to_string()))?;
    let pc_id = accepted_context(&assoc, crate::scp::VERIFICATION)
        .ok_or_else(|| Error::Protocol("Verification was not accepted".into()))?;
    let cmd = dimse::encode_request(field::C_ECHO_RQ, 1, crate::scp::VERIFICATION, None, false);
    send_command(&mut assoc, pc_id, cmd).await?;
    let reply = receive_reply(&mut assoc).await?;
    let _ = assoc.release().await;
    Ok(reply.status)
}

/// A stored Part 10 file as the SCU sends it: its identity from the file
/// meta group and where its data set starts.
#[derive(Clone, Debug)]
pub struct StoredFile {
    pub path: PathBuf,
    pub sop_class: String,
    pub sop_instance: String,
    pub ts: String,
    /// Byte offset of the data set, right after the file meta group.
    pub data_offset: u64,
}

/// Reads the file meta group of a Part 10 file. Blocks (small reads).
pub fn inspect(path: &Path) -> Result<StoredFile, Error> {
    use std::io::{Read, Seek};
    let err = |source| Error::File {
        path: path.to_path_buf(),
        source,
    };
    // Buffered: the meta group is read a few bytes at a time.
    let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(err)?);
    let mut preamble = [0u8; 128];
    file.read_exact(&mut preamble).map_err(err)?;
    let meta = dicom_object::meta::FileMetaTable::from_reader(&mut file).map_err(|e| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.to_string(),
        ))
    })?;
    let data_offset = file.stream_position().map_err(err)?;
    Ok(StoredFile {
        path: path.to_path_buf(),
        sop_class: crate::uid::trim(meta.media_storage_sop_class_uid()).to_owned(),
        sop_instance: crate::uid::trim(meta.media_storage_sop_instance_uid()).to_owned(),
        ts: crate::uid::trim(meta.transfer_syntax()).to_owned(),
        data_offset,
    })
}

/// Explicit VR Little Endian.
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// Implicit VR Little Endian.
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

/// Whether a data set in `ts` may be sent in the other native little
/// endian syntax instead: re-encoding between Explicit and Implicit VR
/// Little Endian changes only how each element's VR is written, never a
/// value (compressed pixel data is never touched).
pub fn is_native_le(ts: &str) -> bool {
    ts == EXPLICIT_LE || ts == IMPLICIT_LE
}

/// Re-encodes the data set of a stored native little endian file in the
/// other native little endian syntax `ts`. Blocks; reads the whole file.
pub fn reencode(path: &Path, ts: &str) -> Result<Vec<u8>, Error> {
    let bad = |e: String| Error::File {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    };
    if !is_native_le(ts) {
        return Err(bad(format!("{ts} is not a native little endian syntax")));
    }
    use dicom_encoding::TransferSyntaxIndex;
    let target = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(ts)
        .ok_or_else(|| bad(format!("unknown transfer syntax {ts}")))?;
    let obj = dicom_object::OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, target)
        .map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

/// Data sets up to this size are read into memory in one go before they
/// are sent; larger ones are streamed from the file.
const READ_WHOLE: u64 = 16 * 1024 * 1024;

/// At most this many presentation contexts on one association (PS3.8
/// allows 128 odd context IDs).
pub const MAX_CONTEXTS: usize = 128;

/// An open association for C-STORE, reusable by `send` and by the
/// forwarder. Each SOP class is proposed with exactly one transfer syntax,
/// the one its data sets are stored in, and a data set is only ever sent
/// on a context that accepted that very syntax: nothing is transcoded.
pub struct Association {
    assoc: AsyncClientAssociation<TcpStream>,
    /// Accepted contexts: (id, abstract syntax, transfer syntax).
    accepted: Vec<(u8, String, String)>,
    sent: u32,
}

impl Association {
    /// Opens an association proposing one context per (SOP class,
    /// transfer syntax) pair. [`Error::Association`] means the peer could
    /// not be reached or refused the association.
    pub async fn open(
        calling: &str,
        peer: &Peer,
        contexts: &[(String, String)],
    ) -> Result<Association, Error> {
        let contexts: Vec<(String, Vec<String>)> = contexts
            .iter()
            .map(|(sop, ts)| (sop.clone(), vec![ts.clone()]))
            .collect();
        Association::open_with(calling, peer, &contexts).await
    }

    /// Opens an association proposing one context per entry: a SOP class
    /// with the transfer syntaxes it may be sent in, preferred first.
    pub async fn open_with(
        calling: &str,
        peer: &Peer,
        contexts: &[(String, Vec<String>)],
    ) -> Result<Association, Error> {
        if contexts.len() > MAX_CONTEXTS {
            return Err(Error::Protocol(format!(
                "more than {MAX_CONTEXTS} distinct SOP class / transfer syntax pairs"
            )));
        }
        let mut opts = options(calling, peer);
        for (sop, syntaxes) in contexts {
            opts = opts.with_presentation_context(sop.clone(), syntaxes.clone());
        }
        let mut assoc = opts
            .establish_async(peer.address.as_str())
            .await
            .map_err(|e| Error::Association(peer.address.clone(), e.to_string()))?;
        // DCMTK and others leave delayed ACKs on; without this each small
        // command waits for them (DESIGN.md, facts measured).
        let _ = assoc.inner_stream().set_nodelay(true);
        let accepted = assoc
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| {
                (
                    pc.id,
                    crate::uid::trim(&pc.abstract_syntax).to_owned(),
                    crate::uid::trim(&pc.transfer_syntax).to_owned(),
                )
            })
            .collect();
        Ok(Association {
            assoc,
            accepted,
            sent: 0,
        })
    }

    /// The accepted context for this SOP class in exactly this transfer
    /// syntax.
    pub fn context(&self, sop_class: &str, ts: &str) -> Option<u8> {
        self.accepted
            .iter()
            .find(|(_, a, t)| a == sop_class && t == ts)
            .map(|(id, _, _)| *id)
    }

    /// The accepted context to send a data set stored in `ts` on, and the
    /// syntax it was accepted in: exactly `ts` if possible, else, for a
    /// native little endian `ts`, the other native little endian syntax
    /// (the data set is then re-encoded, see [`reencode`]).
    pub fn context_for(&self, sop_class: &str, ts: &str) -> Option<(u8, String)> {
        if let Some(id) = self.context(sop_class, ts) {
            return Some((id, ts.to_owned()));
        }
        if !is_native_le(ts) {
            return None;
        }
        self.accepted
            .iter()
            .find(|(_, a, t)| a == sop_class && is_native_le(t))
            .map(|(id, _, t)| (*id, t.clone()))
    }

    /// Sends one C-STORE of a data set held in memory (re-encoded) on
    /// context `pc_id`, and returns the reply.
    pub async fn store_bytes(
        &mut self,
        pc_id: u8,
        sop_class: &str,
        sop_instance: &str,
        data: Vec<u8>,
    ) -> Result<Reply, Error> {
        self.store_from(pc_id, sop_class, sop_instance, std::io::Cursor::new(data))
            .await
    }

    /// Sends one C-STORE of `file`'s data set, as stored, on context
    /// `pc_id`, and returns the reply. [`Error::File`] means the file could
    /// not be opened and nothing was sent (the association can go on); any
    /// other error leaves the association unusable.
    pub async fn store(&mut self, pc_id: u8, file: &StoredFile) -> Result<Reply, Error> {
        let err = |source| Error::File {
            path: file.path.clone(),
            source,
        };
        // A data set of ordinary size is read whole in one trip to the
        // blocking pool: streaming it through tokio::fs costs a thread
        // hand-off per read, which on a drain of small instances is most of
        // the forwarder's time. A large one (multi-frame) is streamed, so
        // memory stays bounded.
        let (path, offset) = (file.path.clone(), file.data_offset);
        let whole = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Vec<u8>>> {
            use std::io::{Read, Seek};
            let mut f = std::fs::File::open(&path)?;
            let len = f.metadata()?.len().saturating_sub(offset);
            if len > READ_WHOLE {
                return Ok(None);
            }
            f.seek(std::io::SeekFrom::Start(offset))?;
            let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            f.read_to_end(&mut data)?;
            Ok(Some(data))
        })
        .await
        .map_err(|e| err(std::io::Error::other(e.to_string())))?
        .map_err(err)?;
        if let Some(data) = whole {
            return self
                .store_from(
                    pc_id,
                    &file.sop_class,
                    &file.sop_instance,
                    std::io::Cursor::new(data),
                )
                .await;
        }
        let mut data = tokio::fs::File::open(&file.path).await.map_err(err)?;
        tokio::io::AsyncSeekExt::seek(&mut data, std::io::SeekFrom::Start(file.data_offset))
            .await
            .map_err(err)?;
        self.store_from(pc_id, &file.sop_class, &file.sop_instance, data)
            .await
    }

    /// One C-STORE whose data set is read from `data`.
    async fn store_from(
        &mut self,
        pc_id: u8,
        sop_class: &str,
        sop_instance: &str,
        data: impl tokio::io::AsyncRead + Unpin,
    ) -> Result<Reply, Error> {
        self.sent = self.sent.wrapping_add(1);
        let message_id = u16::try_from(self.sent % 65535).unwrap_or(0) + 1;
        let cmd = dimse::encode_request(
            field::C_STORE_RQ,
            message_id,
            sop_class,
            Some(sop_instance),
            true,
        );
        send_command(&mut self.assoc, pc_id, cmd).await?;
        send_data_set(&mut self.assoc, pc_id, data).await?;
        let reply = receive_reply(&mut self.assoc).await?;
        if reply.message_id_responded != message_id {
            return Err(Error::Protocol(format!(
                "response to message {} while waiting for {message_id}",
                reply.message_id_responded
            )));
        }
        Ok(reply)
    }

    /// Releases the association (A-RELEASE); a peer that does not answer
    /// is left behind.
    pub async fn release(self) {
        let _ = self.assoc.release().await;
    }

    /// Aborts the association (after a protocol error).
    pub async fn abort(self) {
        let _ = self.assoc.abort().await;
    }
}

/// Whether a C-STORE status means the destination has the instance:
/// success, or a warning (0xB000, 0xB006, 0xB007, and the general
/// warnings 0x0107 and 0x0116).
pub fn is_stored(status: u16) -> bool {
    status == 0 || status & 0xF000 == 0xB000 || status == 0x0107 || status == 0x0116
}

/// Stores every file on one association, proposing each file's own SOP
/// class and transfer syntax, and returns a result per file.
pub async fn send(calling: &str, peer: &Peer, files: &[PathBuf]) -> Result<Vec<FileResult>, Error> {
    let mut results = Vec::new();
    let mut infos = Vec::new();
    for path in files {
        match inspect(path) {
            Ok(info) => infos.push(info),
            Err(e) => results.push(FileResult {
                path: path.clone(),
                status: None,
                comment: Some(e.to_string()),
            }),
        }
    }
    if infos.is_empty() {
        return Ok(results);
    }
    let mut contexts: BTreeMap<(String, String), ()> = BTreeMap::new();
    for info in &infos {
        contexts.insert((info.sop_class.clone(), info.ts.clone()), ());
    }
    let contexts: Vec<(String, String)> = contexts.into_keys().collect();
    let mut assoc = Association::open(calling, peer, &contexts).await?;
    for info in infos {
        let Some(pc_id) = assoc.context(&info.sop_class, &info.ts) else {
            results.push(FileResult {
                comment: Some(format!(
                    "SOP class {} in {} was not accepted",
                    info.sop_class, info.ts
                )),
                path: info.path,
                status: None,
            });
            continue;
        };
        let reply = assoc.store(pc_id, &info).await?;
        results.push(FileResult {
            path: info.path,
            status: Some(reply.status),
            comment: reply.error_comment,
        });
    }
    assoc.release().await;
    Ok(results)
}

fn accepted_context(
    assoc: &AsyncClientAssociation<TcpStream>,
    abstract_syntax: &str,
) -> Option<u8> {
    assoc
        .presentation_contexts()
        .iter()
        .find(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance
                && crate::uid::trim(&pc.abstract_syntax) == abstract_syntax
        })
        .map(|pc| pc.id)
}

pub(crate) async fn send_command(
    assoc: &mut AsyncClientAssociation<TcpStream>,
    pc_id: u8,
    data: Vec<u8>,
) -> Result<(), Error> {
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data,
        }],
    };
    assoc
        .send(&pdu)
        .await
        .map_err(|e| Error::Protocol(format!("cannot send a command: {e}")))
}

async fn send_data_set(
    assoc: &mut AsyncClientAssociation<TcpStream>,
    pc_id: u8,
    mut file: impl tokio::io::AsyncRead + Unpin,
) -> Result<(), Error> {
    let mut writer = assoc.send_pdata(pc_id);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // A read failure here comes after the command went out: the
        // association cannot carry on, so it is a protocol error.
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| Error::Protocol(format!("cannot read the stored file: {e}")))?;
        if n == 0 {
            break;
        }
        tokio::io::AsyncWriteExt::write_all(&mut writer, &buf[..n])
            .await
            .map_err(|e| Error::Protocol(format!("cannot send data: {e}")))?;
    }
    writer
        .finish()
        .await
        .map_err(|e| Error::Protocol(format!("cannot send data: {e}")))
}

async fn receive_reply(assoc: &mut AsyncClientAssociation<TcpStream>) -> Result<Reply, Error> {
    let mut buf = Vec::new();
    loop {
        match assoc
            .receive()
            .await
            .map_err(|e| Error::Protocol(format!("no response: {e}")))?
        {
            Pdu::PData { data } => {
                for pdv in data {
                    if pdv.value_type != PDataValueType::Command {
                        continue;
                    }
                    // A peer that never ends its command set must not
                    // grow this without bound.
                    if buf.len() + pdv.data.len() > 64 * 1024 {
                        return Err(Error::Protocol("response command set over 64 KiB".into()));
                    }
                    buf.extend_from_slice(&pdv.data);
                    if pdv.is_last {
                        return Reply::decode(&buf).map_err(|e| Error::Protocol(e.to_string()));
                    }
                }
            }
            Pdu::AbortRQ { source } => {
                return Err(Error::Protocol(format!("peer aborted: {source:?}")));
            }
            other => {
                return Err(Error::Protocol(format!(
                    "unexpected {}",
                    other.short_description()
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peer_addresses() {
        let p: Peer = "PACS@127.0.0.1:104".parse().unwrap();
        assert_eq!(p.ae_title, "PACS");
        assert_eq!(p.address, "127.0.0.1:104");
        assert!("PACS".parse::<Peer>().is_err());
        assert!("@127.0.0.1:104".parse::<Peer>().is_err());
        assert!("PACS@host".parse::<Peer>().is_err());
    }
}
