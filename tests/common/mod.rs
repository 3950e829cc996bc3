//! Helpers shared by the integration tests: where the embedded fixtures and datasets are, the
//! fixture models and transformers' references, and running the binary.
#![allow(dead_code, unused_imports)]

pub mod cli;
pub mod models;
pub mod paths;

pub use cli::*;
pub use models::*;
pub use paths::*;
