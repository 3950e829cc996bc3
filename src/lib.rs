//! dynatree: speculative-decoding experiments (AR, linear, DynaTree, HF assisted) on GPT-NeoX.

pub mod decode;
pub mod engine;
pub mod model;
