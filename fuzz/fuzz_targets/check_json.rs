//! Arbitrary bytes as the body of `POST /api/v1/check`, parsed as the route parses
//! them and, when they parse, checked and explained against a small fixed estate by
//! the fast and the reference evaluators, which must agree. The committed corpus in
//! `corpus/check_json/` is replayed by `portcullis-http`'s tests (`fuzz_corpus`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        portcullis_http::fuzzing::fixture();
    },
    |data: &[u8]| {
        portcullis_http::fuzzing::check_json(data);
    }
);
