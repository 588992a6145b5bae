//! MLLP framing: `0x0B` message bytes `0x1C 0x0D`.
//!
//! [`Framer`] turns the bytes a peer sends, in whatever chunks the socket
//! delivers them, into [`Event`]s. It scans every received byte exactly once
//! (it remembers its state between pushes), and its memory stays bounded
//! whatever the peer sends: a frame longer than the configured maximum keeps
//! only its first [`HEAD_LIMIT`] bytes (enough to read MSH and answer with an
//! AR ACK) and the rest is counted, not stored.
//!
//! Leniency, chosen so that a sloppy sender loses nothing:
//! - CR and LF between frames are skipped silently; any other byte outside a
//!   frame is reported once per run as [`Event::Junk`].
//! - A frame ended by `0x1C` directly followed by the next frame's `0x0B`
//!   (the CR missing) still counts as complete. A `0x1C` followed by anything
//!   else is frame data.
//! - A `0x1C` as the very last byte before [`Framer::finish`] completes the frame.
//!
//! The framer never decides what a frame means; it never answers the peer.

use std::collections::VecDeque;

/// Start-of-block byte (VT).
pub const START: u8 = 0x0B;
/// First end-of-block byte (FS).
pub const END: u8 = 0x1C;
/// Second end-of-block byte (CR).
pub const END_CR: u8 = 0x0D;
/// How many bytes of an oversized frame are kept (see [`Event::Oversized`]).
pub const HEAD_LIMIT: usize = 4096;

/// Something the framer found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete frame: the bytes between `0x0B` and `0x1C 0x0D`.
    Frame(Vec<u8>),
    /// A complete frame longer than the maximum: its first bytes (at most
    /// [`HEAD_LIMIT`]) and its full length. The rest was discarded unread.
    Oversized {
        /// The first bytes of the frame.
        head: Vec<u8>,
        /// The frame's total length in bytes.
        len: usize,
    },
    /// A run of bytes outside any frame (other than CR/LF only) was skipped.
    Junk {
        /// How many bytes the run had (including any CR/LF in it).
        len: usize,
    },
    /// A frame was interrupted by a new `0x0B` and given up.
    Abandoned {
        /// How many bytes the abandoned frame had.
        len: usize,
    },
    /// The stream ended inside a frame.
    Truncated {
        /// How many bytes the unterminated frame had.
        len: usize,
    },
}

/// Where the framer is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames, counting skipped bytes.
    Outside {
        /// Bytes skipped in this run.
        run: usize,
        /// Whether the run holds anything but CR/LF.
        junk: bool,
    },
    /// Inside a frame.
    Inside {
        /// Frame bytes so far (stored or not).
        len: usize,
        /// The frame exceeded the maximum; only the head is stored.
        oversized: bool,
        /// The last byte seen was `0x1C`, not yet stored: it may start the end marker.
        pending_end: bool,
    },
}

/// Incremental MLLP deframer; see the module documentation.
#[derive(Debug)]
pub struct Framer {
    max_frame_bytes: usize,
    state: State,
    /// Bytes of the current frame (all of it, or its head when oversized).
    buf: Vec<u8>,
    /// Events found but not yet taken by [`Framer::next_event`].
    events: VecDeque<Event>,
}

impl Framer {
    /// A framer that accepts frames of at most `max_frame_bytes` bytes.
    pub fn new(max_frame_bytes: usize) -> Self {
        Framer {
            max_frame_bytes,
            state: State::Outside {
                run: 0,
                junk: false,
            },
            buf: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Appends received bytes. Each byte is scanned once, here; the events it
    /// completes are queued for [`Framer::next_event`].
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = self.step(bytes);
        }
    }

    /// The next complete event, in stream order, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Signals the end of the stream. Queues the final event, if any (an
    /// unterminated frame gives [`Event::Truncated`], a trailing run of junk
    /// gives [`Event::Junk`]), resets the framer, and returns the next queued
    /// event; when events were still queued, call [`Framer::next_event`] for the rest.
    pub fn finish(&mut self) -> Option<Event> {
        match self.state {
            State::Outside { run, junk } => {
                if junk {
                    self.events.push_back(Event::Junk { len: run });
                }
            }
            State::Inside {
                pending_end: true, ..
            } => self.complete_frame(),
            State::Inside { len, .. } => self.events.push_back(Event::Truncated { len }),
        }
        self.buf = Vec::new();
        self.state = State::Outside {
            run: 0,
            junk: false,
        };
        self.next_event()
    }

    /// Whether a frame has started (its `0x0B` was seen) and not yet ended:
    /// the caller's cue to apply a frame timeout. Unlike `buffered_len() > 0`
    /// this is also true right after the start byte.
    pub fn in_frame(&self) -> bool {
        matches!(self.state, State::Inside { .. })
    }

    /// Bytes currently held for the frame in progress: never more than
    /// `max(max_frame_bytes, HEAD_LIMIT)`, since frame bytes beyond the
    /// maximum are counted, not stored. (Queued events are not included.)
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes allocated for the frame in progress; bounded like
    /// [`Framer::buffered_len`] (growth never reserves past the bound).
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Consumes a prefix of `bytes` and returns the rest.
    fn step<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        match self.state {
            State::Outside { run, junk } => {
                match bytes.iter().position(|&b| b == START) {
                    Some(at) => {
                        let (skipped, rest) = bytes.split_at(at);
                        let run = run.saturating_add(skipped.len());
                        let junk = junk || has_junk(skipped);
                        if junk {
                            self.events.push_back(Event::Junk { len: run });
                        }
                        self.start_frame();
                        // `rest` starts with the START byte just handled.
                        rest.get(1..).unwrap_or_default()
                    }
                    None => {
                        self.state = State::Outside {
                            run: run.saturating_add(bytes.len()),
                            junk: junk || has_junk(bytes),
                        };
                        &[]
                    }
                }
            }
            State::Inside {
                pending_end: true, ..
            } => {
                let Some((&first, rest)) = bytes.split_first() else {
                    return bytes;
                };
                match first {
                    END_CR => {
                        self.complete_frame();
                        rest
                    }
                    START => {
                        // `0x1C 0x0B`: the sender left out the CR. Complete the
                        // frame and let the Outside state start the next one.
                        self.complete_frame();
                        bytes
                    }
                    _ => {
                        // The 0x1C was data after all.
                        self.set_pending_end(false);
                        self.append(&[END]);
                        bytes
                    }
                }
            }
            State::Inside { .. } => match bytes.iter().position(|&b| b == START || b == END) {
                Some(at) => {
                    let (data, rest) = bytes.split_at(at);
                    self.append(data);
                    let Some((&marker, rest)) = rest.split_first() else {
                        return &[];
                    };
                    if marker == START {
                        if let State::Inside { len, .. } = self.state {
                            self.events.push_back(Event::Abandoned { len });
                        }
                        self.start_frame();
                    } else {
                        self.set_pending_end(true);
                    }
                    rest
                }
                None => {
                    self.append(bytes);
                    &[]
                }
            },
        }
    }

    fn start_frame(&mut self) {
        self.buf = Vec::new();
        self.state = State::Inside {
            len: 0,
            oversized: false,
            pending_end: false,
        };
    }

    fn set_pending_end(&mut self, pending: bool) {
        if let State::Inside { pending_end, .. } = &mut self.state {
            *pending_end = pending;
        }
    }

    /// Adds frame data: stored while within the maximum; past it, only up to
    /// the head limit is kept and the rest is counted.
    fn append(&mut self, data: &[u8]) {
        let State::Inside { len, oversized, .. } = &mut self.state else {
            return;
        };
        *len = len.saturating_add(data.len());
        if !*oversized && *len > self.max_frame_bytes {
            *oversized = true;
            self.buf.truncate(HEAD_LIMIT);
            self.buf.shrink_to(HEAD_LIMIT);
        }
        let keep = if *oversized {
            let room = HEAD_LIMIT.saturating_sub(self.buf.len());
            data.get(..room).unwrap_or(data)
        } else {
            data
        };
        // Grow geometrically, but never reserve past the bound, so that the
        // allocation (not only the length) stays within it.
        let needed = self.buf.len().saturating_add(keep.len());
        if needed > self.buf.capacity() {
            let bound = self.max_frame_bytes.max(HEAD_LIMIT);
            let target = needed.max(self.buf.capacity().saturating_mul(2)).min(bound);
            self.buf
                .reserve_exact(target.max(needed).saturating_sub(self.buf.len()));
        }
        self.buf.extend_from_slice(keep);
    }

    fn complete_frame(&mut self) {
        if let State::Inside { len, oversized, .. } = self.state {
            let data = std::mem::take(&mut self.buf);
            self.events.push_back(if oversized {
                Event::Oversized { head: data, len }
            } else {
                Event::Frame(data)
            });
        }
        self.state = State::Outside {
            run: 0,
            junk: false,
        };
    }
}

/// Whether skipped bytes hold anything other than the CR/LF allowed between frames.
fn has_junk(skipped: &[u8]) -> bool {
    skipped.iter().any(|&b| b != b'\r' && b != b'\n')
}

/// Wraps a message in an MLLP frame: `0x0B` message `0x1C 0x0D`.
pub fn encode(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len().saturating_add(3));
    out.push(START);
    out.extend_from_slice(message);
    out.push(END);
    out.push(END_CR);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(f: &mut Framer) -> Vec<Event> {
        std::iter::from_fn(|| f.next_event()).collect()
    }

    fn frame(s: &str) -> Event {
        Event::Frame(s.as_bytes().to_vec())
    }

    #[test]
    fn one_frame_in_one_push() {
        let mut f = Framer::new(1024);
        f.push(&encode(b"MSH|^~\\&|A"));
        assert_eq!(drain(&mut f), vec![frame("MSH|^~\\&|A")]);
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn frame_split_byte_by_byte_including_the_end_marker() {
        let mut f = Framer::new(1024);
        let bytes = encode(b"MSH|x\rPID|1");
        for b in &bytes[..bytes.len() - 1] {
            f.push(std::slice::from_ref(b));
            assert_eq!(f.next_event(), None);
        }
        f.push(&bytes[bytes.len() - 1..]);
        assert_eq!(drain(&mut f), vec![frame("MSH|x\rPID|1")]);
    }

    #[test]
    fn crlf_between_frames_is_silent() {
        let mut f = Framer::new(1024);
        let mut bytes = b"\r\n".to_vec();
        bytes.extend(encode(b"A"));
        bytes.extend(b"\n\r\n");
        bytes.extend(encode(b"B"));
        bytes.extend(b"\r\n");
        f.push(&bytes);
        assert_eq!(drain(&mut f), vec![frame("A"), frame("B")]);
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn junk_is_reported_once_per_run() {
        let mut f = Framer::new(1024);
        f.push(b"GET / HTTP/1.0\r\n");
        f.push(b"more");
        assert_eq!(f.next_event(), None, "junk is reported when the run ends");
        let mut rest = encode(b"A");
        rest.extend(b"xyz");
        f.push(&rest);
        assert_eq!(drain(&mut f), vec![Event::Junk { len: 20 }, frame("A")]);
        assert_eq!(f.finish(), Some(Event::Junk { len: 3 }));
        assert_eq!(f.next_event(), None);
    }

    #[test]
    fn a_start_byte_inside_a_frame_abandons_it() {
        let mut f = Framer::new(1024);
        f.push(b"\x0Bpartial\x0Bwhole\x1C\x0D");
        assert_eq!(
            drain(&mut f),
            vec![Event::Abandoned { len: 7 }, frame("whole")]
        );
    }

    #[test]
    fn fs_not_followed_by_cr_is_data() {
        let mut f = Framer::new(1024);
        f.push(b"\x0Ba\x1Cb\x1C\x1C\x0D");
        assert_eq!(drain(&mut f), vec![Event::Frame(b"a\x1Cb\x1C".to_vec())]);
    }

    #[test]
    fn fs_directly_followed_by_start_ends_the_frame() {
        let mut f = Framer::new(1024);
        f.push(b"\x0Bone\x1C");
        f.push(b"\x0Btwo\x1C\x0D");
        assert_eq!(drain(&mut f), vec![frame("one"), frame("two")]);
    }

    #[test]
    fn in_frame_is_true_from_the_start_byte_to_the_end_marker() {
        let mut f = Framer::new(1024);
        assert!(!f.in_frame());
        f.push(b"\r\n\x0B");
        assert!(f.in_frame());
        assert_eq!(f.buffered_len(), 0);
        f.push(b"MSH\x1C");
        assert!(f.in_frame());
        f.push(b"\x0D");
        assert!(!f.in_frame());
    }

    #[test]
    fn eof_inside_a_frame_is_truncated() {
        let mut f = Framer::new(1024);
        f.push(b"\x0BMSH|half");
        assert_eq!(f.next_event(), None);
        assert_eq!(f.finish(), Some(Event::Truncated { len: 8 }));
        assert_eq!(f.buffered_len(), 0);
    }

    #[test]
    fn eof_right_after_fs_completes_the_frame() {
        let mut f = Framer::new(1024);
        f.push(b"\x0Bdone\x1C");
        assert_eq!(f.finish(), Some(frame("done")));
    }

    #[test]
    fn finish_returns_queued_events_first() {
        let mut f = Framer::new(1024);
        f.push(&encode(b"A"));
        f.push(b"\x0Bhalf");
        assert_eq!(f.finish(), Some(frame("A")));
        assert_eq!(f.next_event(), Some(Event::Truncated { len: 4 }));
        assert_eq!(f.next_event(), None);
    }

    #[test]
    fn oversized_frame_keeps_its_head_and_the_next_frame_still_arrives() {
        let max = 10_000;
        let mut f = Framer::new(max);
        f.push(&[START]);
        let chunk = vec![b'x'; 3000];
        for _ in 0..20 {
            f.push(&chunk);
            assert!(f.buffered_len() <= max);
        }
        f.push(&[END, END_CR]);
        f.push(&encode(b"next"));
        let events = drain(&mut f);
        assert_eq!(events.len(), 2);
        match &events[0] {
            Event::Oversized { head, len } => {
                assert_eq!(*len, 60_000);
                assert_eq!(head.len(), HEAD_LIMIT);
                assert!(head.iter().all(|&b| b == b'x'));
            }
            other => panic!("expected Oversized, got {other:?}"),
        }
        assert_eq!(events[1], frame("next"));
    }

    #[test]
    fn frame_of_exactly_the_maximum_is_not_oversized() {
        let mut f = Framer::new(5);
        f.push(&encode(b"12345"));
        f.push(&encode(b"123456"));
        assert_eq!(
            drain(&mut f),
            vec![
                frame("12345"),
                Event::Oversized {
                    head: b"123456".to_vec(),
                    len: 6
                }
            ]
        );
    }

    #[test]
    fn many_messages_scan_in_linear_time() {
        // 20,000 messages of ~2 KB pushed in 1,500-byte chunks: a quadratic
        // scanner would take minutes here; this must finish quickly.
        let message = vec![b'a'; 2048];
        let one = encode(&message);
        let mut stream = Vec::with_capacity(one.len() * 20_000);
        for _ in 0..20_000 {
            stream.extend_from_slice(&one);
        }
        let mut f = Framer::new(1 << 20);
        let mut frames = 0;
        for chunk in stream.chunks(1500) {
            f.push(chunk);
            while let Some(e) = f.next_event() {
                assert!(matches!(e, Event::Frame(ref m) if m.len() == 2048));
                frames += 1;
            }
        }
        assert_eq!(frames, 20_000);
    }

    /// Splits `bytes` at the given (unsorted, possibly out-of-range) cut points.
    fn split_at_points(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut out = Vec::new();
        let mut from = 0;
        for c in cuts {
            out.push(bytes[from..c].to_vec());
            from = c;
        }
        out.push(bytes[from..].to_vec());
        out
    }

    proptest! {
        #[test]
        fn arbitrary_chunks_never_panic_and_stay_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40),
            max in 0usize..600,
        ) {
            let mut f = Framer::new(max);
            for chunk in &chunks {
                f.push(chunk);
                prop_assert!(f.buffered_len() <= max.max(HEAD_LIMIT));
                prop_assert!(f.buffered_capacity() <= max.max(HEAD_LIMIT));
                while let Some(e) = f.next_event() {
                    if let Event::Frame(m) = &e { prop_assert!(m.len() <= max); }
                    if let Event::Oversized { head, len } = &e {
                        prop_assert!(head.len() <= HEAD_LIMIT);
                        prop_assert!(*len > max);
                    }
                }
            }
            let _ = f.finish();
            while f.next_event().is_some() {}
            prop_assert_eq!(f.buffered_len(), 0);
        }

        #[test]
        fn encoded_messages_come_back_identical_and_in_order(
            messages in proptest::collection::vec(
                proptest::collection::vec(any::<u8>().prop_filter("no MLLP markers", |b| *b != START && *b != END), 0..200),
                0..12),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
            crlf_between in any::<bool>(),
        ) {
            let mut stream = Vec::new();
            for m in &messages {
                stream.extend(encode(m));
                if crlf_between { stream.extend_from_slice(b"\r\n"); }
            }
            let mut f = Framer::new(1024);
            let mut got = Vec::new();
            for chunk in split_at_points(&stream, &cuts) {
                f.push(&chunk);
                got.extend(std::iter::from_fn(|| f.next_event()));
            }
            prop_assert_eq!(f.finish(), None);
            let want: Vec<Event> = messages.into_iter().map(Event::Frame).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn huge_unterminated_input_stays_bounded(
            max in 0usize..20_000,
            chunk_len in 1usize..9000,
        ) {
            let mut f = Framer::new(max);
            f.push(&[START]);
            let chunk = vec![b'M'; chunk_len];
            let mut total = 0usize;
            while total < 200_000 {
                f.push(&chunk);
                total += chunk_len;
                prop_assert!(f.buffered_len() <= max.max(HEAD_LIMIT));
                prop_assert!(f.buffered_capacity() <= max.max(HEAD_LIMIT));
            }
            prop_assert_eq!(f.next_event(), None);
            prop_assert_eq!(f.finish(), Some(Event::Truncated { len: total }));
        }
    }
}
