//! Writes: specs in, validated entities and snapshot updates out.

mod spec;

pub use spec::*;
