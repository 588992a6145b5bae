//! Any bytes as a DIMSE command set from a peer: decoding returns a command
//! or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use studywatch::dimse::{Command, Reply};

fuzz_target!(|data: &[u8]| {
    let _ = Command::decode(data);
    let _ = Reply::decode(data);
});
