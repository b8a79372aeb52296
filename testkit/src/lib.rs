//! spate-testkit: the helpers spate's tests (and benchmarks) share, in one place.
//!
//! - [`alloc`]: a counting global allocator (allocations and live/peak bytes per thread)
//!   for the tests that prove a hot path does not allocate per event;
//! - [`net`]: free loopback ports and waiting for a process to listen;
//! - [`tempdir`]: temporary directories removed on drop;
//! - [`rng`]: a deterministic random generator for tests that generate many cases;
//! - [`process`]: finding a peer (`$ENV` or `PATH`) with a printed skip reason, and child
//!   processes that are signalled, stopped and never left running;
//! - [`wire`]: records, packed entries and Forward frames in every mode, built by hand
//!   with the protocol crate's encoders (and the benchmark shapes R1/R2 from
//!   `spate_loadgen::records`);
//! - [`forward`]: a blocking Forward client and recording/acking Forward sinks.
//!
//! Dev-only (`publish = false`): test code, so it panics with a message instead of
//! returning errors where a failure means the test environment is broken.

#![warn(missing_docs)]

pub mod alloc;
pub mod forward;
pub mod net;
pub mod process;
pub mod rng;
pub mod tempdir;
pub mod wire;

pub use net::free_port;

/// Nanoseconds since the Unix epoch (unique-enough suffixes for names).
pub fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
