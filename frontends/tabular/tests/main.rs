//! Integration tests of `portcullis-tabular`: real files in a temporary directory,
//! real redb stores. One test binary; each module is one concern.

mod support;

mod bad_files;
mod engine_checks;
mod fuzz_corpus;
mod jumpserver;
mod roles;
mod round_trip;
mod upsert;
