//! A streaming walker over an encoded data set: it checks that the data set
//! parses to its end and collects the few top-level attributes ingest needs,
//! while skipping every large value (pixel data above all) without reading
//! it into memory.
//!
//! dicom-parser reads each value into memory as it goes, which would make a
//! 1 GiB multi-frame instance cost 1 GiB of RAM; this walker keeps memory
//! bounded by its buffer whatever the instance size. It reads element
//! headers, recurses into sequences and items (defined or undefined length),
//! walks encapsulated pixel data item by item, and never trusts a length: a
//! value that runs past the end of its container or of the data is an error.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Seek};

use dicom_core::Tag;
use dicom_core::dictionary::DataDictionary;
use dicom_dictionary_std::StandardDataDictionary;

/// The deepest nesting of sequences accepted; real data sets stay far below.
const MAX_DEPTH: usize = 32;
/// Top-level values longer than this are never needed and are skipped.
const MAX_COLLECTED_VALUE: u32 = 1024;
const UNDEFINED: u32 = 0xFFFF_FFFF;

const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_DELIMITER: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: (u16, u16) = (0xFFFE, 0xE0DD);

/// The tags whose values are collected, at the top level only.
pub const COLLECTED: &[Tag] = &[
    Tag(0x0008, 0x0005), // Specific Character Set
    Tag(0x0008, 0x0012), // Instance Creation Date (the sender's clock)
    Tag(0x0008, 0x0013), // Instance Creation Time
    Tag(0x0008, 0x0016), // SOP Class UID
    Tag(0x0008, 0x0018), // SOP Instance UID
    Tag(0x0008, 0x0020), // Study Date
    Tag(0x0008, 0x0022), // Acquisition Date
    Tag(0x0008, 0x002A), // Acquisition DateTime
    Tag(0x0008, 0x0030), // Study Time
    Tag(0x0008, 0x0032), // Acquisition Time
    Tag(0x0008, 0x0050), // Accession Number
    Tag(0x0008, 0x0060), // Modality
    Tag(0x0008, 0x0080), // Institution Name
    Tag(0x0008, 0x0090), // Referring Physician's Name
    Tag(0x0008, 0x1030), // Study Description
    Tag(0x0008, 0x0201), // Timezone Offset From UTC
    Tag(0x0008, 0x103E), // Series Description
    Tag(0x0010, 0x0020), // Patient ID
    Tag(0x0010, 0x0021), // Issuer of Patient ID
    Tag(0x0020, 0x000D), // Study Instance UID
    Tag(0x0020, 0x000E), // Series Instance UID
    Tag(0x0020, 0x0011), // Series Number
    Tag(0x0028, 0x0002), // Samples per Pixel
    Tag(0x0028, 0x0004), // Photometric Interpretation
    Tag(0x0028, 0x0008), // Number of Frames
    Tag(0x0028, 0x0010), // Rows
    Tag(0x0028, 0x0011), // Columns
    Tag(0x0028, 0x0100), // Bits Allocated
];

/// Issuer of Accession Number Sequence (0008,0051): who issued the
/// Accession Number. Accession numbers are unique only per issuer.
pub const ISSUER_OF_ACCESSION_SEQUENCE: Tag = Tag(0x0008, 0x0051);
/// Local Namespace Entity ID (0040,0031): the issuer's local name, the
/// counterpart of an HL7 EI's namespace ID (IHE RAD TF-2 maps IPC-1.2 to it).
pub const LOCAL_NAMESPACE_ENTITY_ID: Tag = Tag(0x0040, 0x0031);

/// The top-level sequences whose first item's values are collected, and which
/// of its (not nested) tags.
const COLLECTED_IN_FIRST_ITEM: &[(Tag, &[Tag])] =
    &[(ISSUER_OF_ACCESSION_SEQUENCE, &[LOCAL_NAMESPACE_ENTITY_ID])];

/// Pixel Data, Float Pixel Data and Double Float Pixel Data.
pub const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
pub const FLOAT_PIXEL_DATA: Tag = Tag(0x7FE0, 0x0008);
pub const DOUBLE_FLOAT_PIXEL_DATA: Tag = Tag(0x7FE0, 0x0009);

/// How a data set is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
}

impl Encoding {
    pub const IMPLICIT_LE: Encoding = Encoding {
        explicit_vr: false,
        big_endian: false,
    };
    pub const EXPLICIT_LE: Encoding = Encoding {
        explicit_vr: true,
        big_endian: false,
    };
    pub const EXPLICIT_BE: Encoding = Encoding {
        explicit_vr: true,
        big_endian: true,
    };
}

/// The top-level pixel data element, as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pixels {
    pub tag: Tag,
    /// Encapsulated (undefined length, items) rather than native.
    pub encapsulated: bool,
    /// For native pixel data, the value length.
    pub length: u64,
    /// For encapsulated pixel data, the fragments after the offset table.
    pub fragments: u64,
}

/// What the walk found.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Raw values of the [`COLLECTED`] tags, as bytes in the data set's
    /// byte order.
    pub values: HashMap<Tag, Vec<u8>>,
    /// Raw values of tags in the first item of a top-level sequence listed
    /// in [`COLLECTED_IN_FIRST_ITEM`], keyed by (sequence, tag).
    pub item_values: HashMap<(Tag, Tag), Vec<u8>>,
    pub pixels: Option<Pixels>,
    /// Bytes walked.
    pub length: u64,
    /// An explicit VR data set held a UN element of undefined length. Its
    /// items are Implicit VR Little Endian (PS3.5 §6.2.2), and they were
    /// walked so; dicom-parser reads them in the outer explicit VR instead,
    /// so such bytes must not be handed to dicom-object, whose reading of
    /// them no walk has checked.
    pub implicit_un_sequence: bool,
}

/// Why a data set does not parse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("data set truncated at byte {0}")]
    Truncated(u64),
    #[error("unparseable at byte {offset}: {what}")]
    Malformed { offset: u64, what: String },
    #[error("cannot read the received data: {0}")]
    Io(#[from] io::Error),
}

/// A byte source that can skip.
pub trait Source {
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()>;
    fn skip(&mut self, n: u64) -> io::Result<()>;
    fn position(&self) -> u64;
    fn at_end(&mut self) -> io::Result<bool>;
}

/// A file (or any seekable reader) of known length: skips seek.
pub struct SeekSource<R> {
    inner: BufReader<R>,
    pos: u64,
    end: u64,
}

impl<R: Read + Seek> SeekSource<R> {
    /// `start` is where the data set begins in `reader`, `end` where it ends.
    pub fn new(mut reader: R, start: u64, end: u64) -> io::Result<Self> {
        reader.seek(io::SeekFrom::Start(start))?;
        Ok(SeekSource {
            inner: BufReader::with_capacity(64 * 1024, reader),
            pos: 0,
            end: end.saturating_sub(start),
        })
    }
}

impl<R: Read + Seek> Source for SeekSource<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if self.pos + buf.len() as u64 > self.end {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.inner.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }
    fn skip(&mut self, n: u64) -> io::Result<()> {
        if self.pos.saturating_add(n) > self.end {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = i64::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        self.inner.seek_relative(n)?;
        self.pos += n as u64;
        Ok(())
    }
    fn position(&self) -> u64 {
        self.pos
    }
    fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.pos >= self.end)
    }
}

/// A forward-only stream (a deflated data set): skips by reading.
pub struct StreamSource<R> {
    inner: BufReader<R>,
    pos: u64,
}

impl<R: Read> StreamSource<R> {
    pub fn new(reader: R) -> Self {
        StreamSource {
            inner: BufReader::with_capacity(64 * 1024, reader),
            pos: 0,
        }
    }
}

impl<R: Read> Source for StreamSource<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.pos += copied;
        if copied < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
    fn position(&self) -> u64 {
        self.pos
    }
    fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.inner.fill_buf()?.is_empty())
    }
}

/// Where a run of elements ends.
#[derive(Clone, Copy, Debug)]
enum End {
    /// At the end of the data (top level).
    Data,
    /// At an absolute position (a defined-length item).
    At(u64),
    /// At an item delimitation item (an undefined-length item).
    ItemDelimiter,
}

/// Walks a whole data set.
pub fn walk(source: &mut dyn Source, encoding: Encoding) -> Result<Summary, Error> {
    walk_collecting(source, encoding, &[])
}

/// [`walk`], also collecting the top-level values of `extra` tags (the DICOM
/// attributes watchdog rules match on).
pub fn walk_collecting(
    source: &mut dyn Source,
    encoding: Encoding,
    extra: &[Tag],
) -> Result<Summary, Error> {
    let mut walker = Walker {
        src: source,
        summary: Summary::default(),
        extra,
        item: None,
    };
    walker.elements(encoding, End::Data, 0)?;
    walker.summary.length = walker.src.position();
    Ok(walker.summary)
}

struct Walker<'a> {
    src: &'a mut dyn Source,
    summary: Summary,
    extra: &'a [Tag],
    /// While walking the first item of a sequence listed in
    /// [`COLLECTED_IN_FIRST_ITEM`]: that sequence and the tags to collect.
    item: Option<(Tag, &'static [Tag])>,
}

impl Walker<'_> {
    fn eof(&self, e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::Truncated(self.src.position()),
            // What an inflater says of a corrupt deflated data set: the
            // sender's data, not our disk.
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => Error::Malformed {
                offset: self.src.position(),
                what: e.to_string(),
            },
            _ => Error::Io(e),
        }
    }

    fn malformed(&self, what: impl Into<String>) -> Error {
        Error::Malformed {
            offset: self.src.position(),
            what: what.into(),
        }
    }

    fn u16(&mut self, enc: Encoding) -> Result<u16, Error> {
        let mut b = [0u8; 2];
        self.src.read_exact(&mut b).map_err(|e| self.eof(e))?;
        Ok(if enc.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&mut self, enc: Encoding) -> Result<u32, Error> {
        let mut b = [0u8; 4];
        self.src.read_exact(&mut b).map_err(|e| self.eof(e))?;
        Ok(if enc.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn skip(&mut self, n: u64) -> Result<(), Error> {
        self.src.skip(n).map_err(|e| self.eof(e))
    }

    /// Reads a tag and its length; for explicit VR also the VR.
    fn header(&mut self, enc: Encoding) -> Result<(Tag, Option<[u8; 2]>, u32), Error> {
        let group = self.u16(enc)?;
        let element = self.u16(enc)?;
        let tag = Tag(group, element);
        if group == 0xFFFE || !enc.explicit_vr {
            let len = self.u32(enc)?;
            return Ok((tag, None, len));
        }
        let mut vr = [0u8; 2];
        self.src.read_exact(&mut vr).map_err(|e| self.eof(e))?;
        if !vr.iter().all(u8::is_ascii_uppercase) {
            return Err(self.malformed(format!("invalid VR bytes for {tag}")));
        }
        // PS3.5 §7.1.2: these VRs have a 16-bit length. Every other one,
        // including a VR this walker does not know, has two reserved bytes
        // and a 32-bit length (PS3.5 §6.2: new VRs take that form), which is
        // also how dicom-parser reads an unknown VR.
        let len = match &vr {
            b"AE" | b"AS" | b"AT" | b"CS" | b"DA" | b"DS" | b"DT" | b"FL" | b"FD" | b"IS"
            | b"LO" | b"LT" | b"PN" | b"SH" | b"SL" | b"SS" | b"ST" | b"TM" | b"UI" | b"UL"
            | b"US" => u32::from(self.u16(enc)?),
            _ => {
                self.skip(2)?;
                self.u32(enc)?
            }
        };
        Ok((tag, Some(vr), len))
    }

    fn elements(&mut self, enc: Encoding, end: End, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("sequences nested too deeply"));
        }
        loop {
            match end {
                End::Data => {
                    if self.src.at_end().map_err(|e| self.eof(e))? {
                        return Ok(());
                    }
                }
                End::At(limit) => {
                    let pos = self.src.position();
                    if pos == limit {
                        return Ok(());
                    }
                    if pos > limit {
                        return Err(self.malformed("element runs past the end of its item"));
                    }
                }
                End::ItemDelimiter => {}
            }
            let (tag, vr, len) = self.header(enc)?;
            if (tag.0, tag.1) == ITEM_DELIMITER {
                return match end {
                    End::ItemDelimiter => Ok(()),
                    _ => Err(self.malformed("item delimiter outside an undefined-length item")),
                };
            }
            if tag.0 == 0xFFFE {
                return Err(self.malformed(format!("unexpected {tag} in a data set")));
            }
            let vr = vr.unwrap_or_else(|| implicit_vr(tag));
            let top = depth == 0;
            let is_pixels =
                top && matches!(tag, PIXEL_DATA | FLOAT_PIXEL_DATA | DOUBLE_FLOAT_PIXEL_DATA);
            if len == UNDEFINED {
                if is_pixels && tag == PIXEL_DATA && matches!(&vr, b"OB" | b"OW" | b"UN") {
                    let fragments = self.encapsulated(enc)?;
                    self.summary.pixels = Some(Pixels {
                        tag,
                        encapsulated: true,
                        length: 0,
                        fragments,
                    });
                } else if matches!(&vr, b"SQ" | b"UN") || !enc.explicit_vr {
                    // An undefined-length UN value is a sequence encoded in
                    // Implicit VR Little Endian (PS3.5 §6.2.2).
                    let inner = if &vr == b"UN" {
                        self.summary.implicit_un_sequence |= enc.explicit_vr;
                        Encoding::IMPLICIT_LE
                    } else {
                        enc
                    };
                    self.sequence(inner, None, depth + 1, top.then_some(tag))?;
                } else {
                    return Err(self.malformed(format!("undefined length on {tag}")));
                }
                continue;
            }
            if &vr == b"SQ" {
                let limit = self.src.position().saturating_add(u64::from(len));
                self.sequence(enc, Some(limit), depth + 1, top.then_some(tag))?;
                continue;
            }
            if is_pixels {
                self.summary.pixels = Some(Pixels {
                    tag,
                    encapsulated: false,
                    length: u64::from(len),
                    fragments: 0,
                });
                self.skip(u64::from(len))?;
            } else if top
                && len <= MAX_COLLECTED_VALUE
                && (COLLECTED.contains(&tag) || self.extra.contains(&tag))
            {
                let value = self.value(len)?;
                self.summary.values.insert(tag, value);
            } else if let Some((seq, _)) = self
                .item
                .filter(|(_, tags)| depth == 1 && len <= MAX_COLLECTED_VALUE && tags.contains(&tag))
            {
                let value = self.value(len)?;
                self.summary.item_values.insert((seq, tag), value);
            } else {
                self.skip(u64::from(len))?;
            }
        }
    }

    /// Reads a value of `len` bytes (at most [`MAX_COLLECTED_VALUE`]).
    fn value(&mut self, len: u32) -> Result<Vec<u8>, Error> {
        let mut value = vec![0u8; len as usize];
        self.src.read_exact(&mut value).map_err(|e| self.eof(e))?;
        Ok(value)
    }

    /// Walks the items of a sequence, up to `limit` when it has a defined
    /// length or to its sequence delimiter otherwise. `top_tag` is the
    /// sequence's tag when it is a top-level element.
    fn sequence(
        &mut self,
        enc: Encoding,
        limit: Option<u64>,
        depth: usize,
        top_tag: Option<Tag>,
    ) -> Result<(), Error> {
        // Only the first item of a listed top-level sequence is collected
        // from; any nested sequence walks with nothing to collect.
        let mut collect = top_tag.and_then(|t| {
            COLLECTED_IN_FIRST_ITEM
                .iter()
                .find(|(seq, _)| *seq == t)
                .copied()
        });
        let outer = self.item.take();
        let walked = self.items(enc, limit, depth, &mut collect);
        self.item = outer;
        walked
    }

    fn items(
        &mut self,
        enc: Encoding,
        limit: Option<u64>,
        depth: usize,
        collect: &mut Option<(Tag, &'static [Tag])>,
    ) -> Result<(), Error> {
        loop {
            if let Some(limit) = limit {
                let pos = self.src.position();
                if pos == limit {
                    return Ok(());
                }
                if pos > limit {
                    return Err(self.malformed("item runs past the end of its sequence"));
                }
            }
            let (tag, _, len) = self.header(Encoding {
                explicit_vr: false,
                ..enc
            })?;
            match (tag.0, tag.1) {
                SEQUENCE_DELIMITER if limit.is_none() => return Ok(()),
                ITEM if len == UNDEFINED => {
                    self.item = collect.take();
                    self.elements(enc, End::ItemDelimiter, depth)?;
                }
                ITEM => {
                    self.item = collect.take();
                    let end = self.src.position().saturating_add(u64::from(len));
                    self.elements(enc, End::At(end), depth)?;
                }
                _ => {
                    return Err(
                        self.malformed(format!("expected an item in a sequence, found {tag}"))
                    );
                }
            }
        }
    }

    /// Walks encapsulated pixel data; returns the number of fragments after
    /// the Basic Offset Table.
    fn encapsulated(&mut self, enc: Encoding) -> Result<u64, Error> {
        let mut items = 0u64;
        loop {
            let (tag, _, len) = self.header(Encoding {
                explicit_vr: false,
                ..enc
            })?;
            match (tag.0, tag.1) {
                SEQUENCE_DELIMITER => break,
                ITEM if len != UNDEFINED => {
                    self.skip(u64::from(len))?;
                    items += 1;
                }
                _ => {
                    return Err(
                        self.malformed(format!("bad item {tag} in encapsulated pixel data"))
                    );
                }
            }
        }
        if items == 0 {
            return Err(self.malformed("encapsulated pixel data has no Basic Offset Table item"));
        }
        Ok(items - 1)
    }
}

/// The VR of an Implicit VR element, from the standard dictionary; unknown
/// and private tags are treated as UN, which is skipped as opaque bytes.
fn implicit_vr(tag: Tag) -> [u8; 2] {
    if tag.1 == 0x0000 {
        return *b"UL";
    }
    match StandardDataDictionary.by_tag(tag) {
        Some(entry) => entry.vr.relaxed().to_bytes(),
        None => *b"UN",
    }
}

/// Decodes a collected text value: trailing padding removed, and bytes
/// outside ASCII taken as ISO 8859-1 unless the data set says UTF-8.
pub fn text(summary: &Summary, tag: Tag) -> Option<String> {
    decode(summary, summary.values.get(&tag)?)
}

/// Decodes a value collected from the first item of a top-level sequence
/// (see [`text`]).
pub fn item_text(summary: &Summary, sequence: Tag, tag: Tag) -> Option<String> {
    decode(summary, summary.item_values.get(&(sequence, tag))?)
}

fn decode(summary: &Summary, raw: &[u8]) -> Option<String> {
    let utf8 = summary
        .values
        .get(&Tag(0x0008, 0x0005))
        .map(|cs| String::from_utf8_lossy(cs).contains("ISO_IR 192"))
        .unwrap_or(false);
    let s: String = if utf8 {
        String::from_utf8_lossy(raw).into_owned()
    } else {
        raw.iter().map(|&b| char::from(b)).collect()
    };
    let s = s.trim_end_matches(['\0', ' ']).trim_start().to_owned();
    if s.is_empty() { None } else { Some(s) }
}

/// Decodes a collected US value.
pub fn us(summary: &Summary, tag: Tag, enc: Encoding) -> Option<u16> {
    let raw = summary.values.get(&tag)?;
    let b: [u8; 2] = raw.get(..2)?.try_into().ok()?;
    Some(if enc.big_endian {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    })
}

/// Decodes a collected IS value (first value only).
pub fn int(summary: &Summary, tag: Tag) -> Option<i64> {
    text(summary, tag)?.split('\\').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn le_elem(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], value: &[u8]) {
        out.extend_from_slice(&g.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        out.extend_from_slice(vr);
        match vr {
            b"OB" | b"OW" | b"SQ" | b"UN" | b"UT" => {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            }
            _ => out.extend_from_slice(&(value.len() as u16).to_le_bytes()),
        }
        out.extend_from_slice(value);
    }

    /// An undefined-length explicit VR LE sequence with one undefined-length
    /// item holding `elements`.
    fn undefined_sequence(out: &mut Vec<u8>, g: u16, e: u16, elements: &[u8]) {
        out.extend_from_slice(&g.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        out.extend_from_slice(&[b'S', b'Q', 0, 0, 0xff, 0xff, 0xff, 0xff]);
        out.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
        out.extend_from_slice(elements);
        out.extend_from_slice(&[0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]);
        out.extend_from_slice(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
    }

    fn walk_bytes(bytes: &[u8], enc: Encoding) -> Result<Summary, Error> {
        let mut src = SeekSource::new(Cursor::new(bytes), 0, bytes.len() as u64).unwrap();
        walk(&mut src, enc)
    }

    fn sample() -> Vec<u8> {
        let mut d = Vec::new();
        le_elem(
            &mut d,
            0x0008,
            0x0016,
            b"UI",
            b"1.2.840.10008.5.1.4.1.1.2\0",
        );
        le_elem(&mut d, 0x0008, 0x0018, b"UI", b"1.2.3.4\0");
        let mut referenced = Vec::new();
        le_elem(&mut referenced, 0x0008, 0x1150, b"UI", b"1.2\0");
        undefined_sequence(&mut d, 0x0008, 0x1115, &referenced);
        le_elem(&mut d, 0x0028, 0x0010, b"US", &2u16.to_le_bytes());
        le_elem(&mut d, 0x7fe0, 0x0010, b"OW", &[0u8; 8]);
        d
    }

    #[test]
    fn walks_nested_sequences_and_collects_values() {
        let s = walk_bytes(&sample(), Encoding::EXPLICIT_LE).unwrap();
        assert_eq!(text(&s, Tag(0x0008, 0x0018)).as_deref(), Some("1.2.3.4"));
        assert_eq!(us(&s, Tag(0x0028, 0x0010), Encoding::EXPLICIT_LE), Some(2));
        assert_eq!(s.pixels.unwrap().length, 8);
        // The UID inside the sequence is not taken as a top-level value.
        assert!(!s.values.contains_key(&Tag(0x0008, 0x1150)));
    }

    /// An explicit VR LE item holding `elements`, of defined length.
    fn item(elements: &[u8]) -> Vec<u8> {
        let mut d = vec![0xfe, 0xff, 0x00, 0xe0];
        d.extend_from_slice(&(elements.len() as u32).to_le_bytes());
        d.extend_from_slice(elements);
        d
    }

    #[test]
    fn the_issuer_of_accession_comes_from_the_first_item_only() {
        let mut first = Vec::new();
        le_elem(&mut first, 0x0040, 0x0031, b"UT", b"CRIS");
        // A nested sequence's own namespace is not the issuer's.
        let mut nested = Vec::new();
        le_elem(&mut nested, 0x0040, 0x0031, b"UT", b"NESTED");
        le_elem(&mut first, 0x0040, 0x0039, b"SQ", &item(&nested));
        let mut second = Vec::new();
        le_elem(&mut second, 0x0040, 0x0031, b"UT", b"SECOND");
        let mut d = Vec::new();
        le_elem(&mut d, 0x0008, 0x0050, b"SH", b"ACC1");
        le_elem(
            &mut d,
            0x0008,
            0x0051,
            b"SQ",
            &[item(&first), item(&second)].concat(),
        );
        // The same tag in another top-level sequence is not collected.
        le_elem(&mut d, 0x0008, 0x1115, b"SQ", &item(&second));
        let s = walk_bytes(&d, Encoding::EXPLICIT_LE).unwrap();
        let issuer =
            |s: &Summary| item_text(s, ISSUER_OF_ACCESSION_SEQUENCE, LOCAL_NAMESPACE_ENTITY_ID);
        assert_eq!(issuer(&s).as_deref(), Some("CRIS"));
        assert_eq!(s.item_values.len(), 1);
        assert!(!s.values.contains_key(&LOCAL_NAMESPACE_ENTITY_ID));

        // Undefined lengths, sequence and item, say the same.
        let mut namespace = Vec::new();
        le_elem(&mut namespace, 0x0040, 0x0031, b"UT", b"RIS2");
        let mut d = Vec::new();
        undefined_sequence(&mut d, 0x0008, 0x0051, &namespace);
        let s = walk_bytes(&d, Encoding::EXPLICIT_LE).unwrap();
        assert_eq!(issuer(&s).as_deref(), Some("RIS2"));
    }

    #[test]
    fn every_truncation_inside_an_element_is_an_error() {
        let full = sample();
        // A cut between two top-level elements leaves a shorter data set
        // that is still well formed; every other cut must be refused.
        let boundaries = [34usize, 50, 98, 108];
        assert_eq!(full.len(), 128);
        for cut in 1..full.len() {
            let r = walk_bytes(&full[..cut], Encoding::EXPLICIT_LE);
            assert_eq!(r.is_ok(), boundaries.contains(&cut), "cut at {cut}");
        }
    }

    #[test]
    fn counts_encapsulated_fragments() {
        let mut d = Vec::new();
        d.extend_from_slice(&[
            0xe0, 0x7f, 0x10, 0x00, b'O', b'B', 0, 0, 0xff, 0xff, 0xff, 0xff,
        ]);
        d.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 0, 0, 0, 0]);
        for _ in 0..3 {
            d.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 4, 0, 0, 0, 1, 2, 3, 4]);
        }
        d.extend_from_slice(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
        let s = walk_bytes(&d, Encoding::EXPLICIT_LE).unwrap();
        assert_eq!(s.pixels.unwrap().fragments, 3);
    }

    #[test]
    fn a_length_past_the_end_is_truncation() {
        let mut d = Vec::new();
        le_elem(&mut d, 0x7fe0, 0x0010, b"OW", &[0u8; 8]);
        d[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            walk_bytes(&d, Encoding::EXPLICIT_LE),
            Err(Error::Truncated(_))
        ));
    }

    /// Regression: an unknown VR was read with a 16-bit length, where
    /// dicom-parser reads two reserved bytes and a 32-bit length, so the
    /// walk checked lengths other than those dicom-object then allocated.
    /// Read with a 16-bit length, these bytes are an empty ZZ element and a
    /// UI; read as dicom-parser does, the ZZ value is 0x1150_0008 bytes.
    #[test]
    fn an_unknown_vr_has_a_32_bit_length() {
        let mut d = vec![0x09, 0x00, 0x10, 0x00, b'Z', b'Z', 0, 0];
        le_elem(&mut d, 0x0008, 0x1150, b"UI", b"1.2\0");
        assert!(matches!(
            walk_bytes(&d, Encoding::EXPLICIT_LE),
            Err(Error::Truncated(_))
        ));
        let mut d = vec![0x09, 0x00, 0x10, 0x00, b'Z', b'Z', 0, 0];
        d.extend_from_slice(&4u32.to_le_bytes());
        d.extend_from_slice(b"abcd");
        le_elem(&mut d, 0x0008, 0x0018, b"UI", b"1.2.3.4\0");
        let s = walk_bytes(&d, Encoding::EXPLICIT_LE).unwrap();
        assert_eq!(text(&s, Tag(0x0008, 0x0018)).as_deref(), Some("1.2.3.4"));
    }

    #[test]
    fn an_undefined_length_un_in_explicit_vr_is_flagged() {
        let mut d = vec![0x09, 0x00, 0x10, 0x00, b'U', b'N', 0, 0];
        d.extend_from_slice(&[0xff; 4]);
        d.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
        // Implicit VR inside: tag, 32-bit length, value.
        d.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, 4, 0, 0, 0]);
        d.extend_from_slice(b"1.2\0");
        d.extend_from_slice(&[0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
        assert!(
            walk_bytes(&d, Encoding::EXPLICIT_LE)
                .unwrap()
                .implicit_un_sequence
        );
        assert!(
            !walk_bytes(&sample(), Encoding::EXPLICIT_LE)
                .unwrap()
                .implicit_un_sequence
        );
    }

    /// Regression: an inflater's complaint about a corrupt deflated data set
    /// was reported as our own I/O failure (0xA700) instead of the sender's.
    #[test]
    fn a_corrupt_deflate_stream_is_malformed_not_an_io_error() {
        let garbage = [0xffu8; 64];
        let mut src = StreamSource::new(flate2::read::DeflateDecoder::new(&garbage[..]));
        let r = walk(&mut src, Encoding::EXPLICIT_LE);
        assert!(
            matches!(r, Err(Error::Malformed { .. }) | Err(Error::Truncated(_))),
            "{r:?}"
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..2000 {
            let len = (x % 300) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            for enc in [
                Encoding::IMPLICIT_LE,
                Encoding::EXPLICIT_LE,
                Encoding::EXPLICIT_BE,
            ] {
                let _ = walk_bytes(&buf, enc);
            }
        }
    }
}
