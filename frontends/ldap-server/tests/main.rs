//! The LDAP server against OpenLDAP's own clients (`ldapsearch`, `ldapwhoami`,
//! `ldapmodify` from Debian's ldap-utils) over 127.0.0.1, and raw bytes for the
//! input no client would send. One test binary; no test here asserts a duration.

mod bad_input;
mod binds;
mod search;
mod support;
mod tls;
