//! End-to-end tests of the `portcullis` binary: the commands on a data directory, and
//! `serve` as a child process on a loopback port.

mod adoption;
mod client;
mod commands;
mod ldap;
mod serve;
mod signin;
mod spreadsheets;
mod support;
