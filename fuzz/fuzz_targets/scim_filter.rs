//! The SCIM filter parser, and the evaluation of whatever it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        portcullis_scim::fuzzing::filter(text);
    }
});
