mod error;
mod eval;
mod model;
mod write;

pub use error::*;
pub use eval::*;
pub use model::*;
pub use write::*;
