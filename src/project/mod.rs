//! The project model: raw YAML structs → validated, resolved [`model::Project`].

pub mod approvals;
pub mod assets;
pub mod bounds;
pub mod diag;
pub mod executor;
pub mod groups;
pub mod languages;
pub mod load;
pub mod model;
pub mod music_library;
pub mod raw;
pub mod rules;
mod screenplay;
pub mod vocab;
pub mod workflows;

pub use diag::{Diagnostics, ProjectError};
pub use load::{Spans, load};
pub use model::Project;
