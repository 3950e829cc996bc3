//! dynatree: speculative-decoding experiments (AR, linear, DynaTree, HF assisted) on GPT-NeoX.
//!
//! Stages: `manifest` (TOML experiments) → `grid` (runs) → `data` (prompts) → `model` + `decode`
//! (generation) → `bench` (measured runs) → `store` (content-addressed results) → `report`
//! (CSV, LaTeX tables, figures).

pub mod bench;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod data;
pub mod decode;
pub mod engine;
pub mod grid;
pub mod manifest;
pub mod model;
pub mod report;
pub mod store;
