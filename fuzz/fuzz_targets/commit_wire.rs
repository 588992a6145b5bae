//! Any bytes as a storage commitment message from a peer: the command set
//! and both data sets, in both syntaxes, decode or fail, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use studywatch::commit::wire::{Command, Report, Request, Syntax};

fuzz_target!(|data: &[u8]| {
    let _ = Command::decode(data);
    for syntax in Syntax::ALL {
        let _ = Request::decode(data, syntax);
        let _ = Report::decode(data, syntax);
    }
});
