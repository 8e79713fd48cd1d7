//! The row parser on arbitrary bytes: the first byte picks the kind and the format
//! (CSV or XLSX), the rest is the file. Parsing may refuse anything; it must never
//! panic, hang or allocate without bound. The committed corpus in
//! `corpus/tabular_rows/` is replayed by `portcullis-tabular`'s tests.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis_tabular::fuzz_rows(data);
});
