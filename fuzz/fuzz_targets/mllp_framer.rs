//! Any bytes, split into chunks at points the input chooses, through the
//! MLLP framer: every event must come out without a panic, and the bytes held
//! for a frame in progress must stay within the bound whatever is sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use studywatch::hl7::mllp::{Event, Framer, HEAD_LIMIT};

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the maximum frame size and the chunk size.
    let (max, chunk, body) = match data {
        [a, b, rest @ ..] => (usize::from(*a) * 16, usize::from(*b).max(1), rest),
        _ => (64, 1, data),
    };
    let bound = max.max(HEAD_LIMIT);
    let mut framer = Framer::new(max);
    for piece in body.chunks(chunk) {
        framer.push(piece);
        assert!(framer.buffered_len() <= bound);
        assert!(framer.buffered_capacity() <= bound);
        while let Some(event) = framer.next_event() {
            check(&event, max);
        }
    }
    while let Some(event) = framer.finish() {
        check(&event, max);
    }
    assert_eq!(framer.buffered_len(), 0);
});

fn check(event: &Event, max: usize) {
    match event {
        Event::Frame(bytes) => assert!(bytes.len() <= max),
        Event::Oversized { head, len } => assert!(head.len() <= HEAD_LIMIT && *len > max),
        Event::Junk { .. } | Event::Abandoned { .. } | Event::Truncated { .. } => {}
    }
}
