//! End-to-end reliability and security tests over real sockets and real servers: the
//! `portcullis` binary run as a child process on a real redb file, driven over HTTP
//! on 127.0.0.1. One test binary; each module is one concern of issue #9. The load
//! test, which asserts a latency, has a binary of its own (`timing.rs`).

mod authz;
mod bad_input;
mod cluster;
mod concurrency;
mod console;
mod crash;
mod grants;
mod ldap;
mod readme;
mod secrets;
mod support;
