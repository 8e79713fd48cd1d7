//! One test binary: sync runs against a real OpenLDAP `slapd` started by the harness
//! (`portcullis_ldap::testing`), into a real redb store.

mod adoption;
mod bind;
mod support;
mod sync;
