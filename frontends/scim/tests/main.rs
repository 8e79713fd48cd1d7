//! End-to-end tests of the SCIM service provider over a real loopback socket: a real
//! redb file, a real server task, a real HTTP client.

mod adoption;
mod corpus;
mod entra;
mod okta;
mod preconditions;
mod protocol;
mod stack;
mod support;
