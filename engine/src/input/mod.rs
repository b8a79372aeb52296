//! Inputs: sources that turn received bytes (or generated samples) into routed batches.
pub mod forward;
pub mod sample;
