//! Engine tests over the public API, on real redb stores. One binary: each module is
//! one concern.

mod differential;
mod expect;
mod image;
mod incremental;
mod look_alike;
mod store_format;
mod support;
mod write_model;
mod writes;
