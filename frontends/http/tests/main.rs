//! End-to-end tests of the HTTP API over a real loopback socket: a real redb file, a
//! real server task, a real HTTP client.

mod authz;
mod bad_input;
mod contracts;
mod fuzz_corpus;
mod passkeys;
mod signin;
mod sms;
mod support;
mod watch;
