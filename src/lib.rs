//! studio: a declarative build system whose products are anime episodes.
//!
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod build;
pub mod cache;
pub mod cli;
pub mod engines;
pub mod exec;
pub mod export;
pub mod graph;
pub mod kind;
#[cfg(test)]
mod layers;
pub mod progress;
pub mod project;
pub mod review;
pub mod sched;
pub mod session;
pub mod stages;
#[cfg(test)]
mod test_support;
pub mod text;
pub mod timing;
pub mod write;
