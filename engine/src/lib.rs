//! spate-engine: reads a fluentd configuration, routes and processes events on a
//! glommio shard-per-core runtime. It never parses msgpack by hand: all wire-format
//! work goes through `spate-protocol`.
//!
//! Layout: [`config`] parses fluent.conf into an element tree; [`build`] validates it
//! into a [`build::Plan`] and instantiates per-shard plugins; [`runtime`] runs one glommio
//! executor per shard; [`input`], [`filter`], [`output`] and [`buffer`] hold the plugins;
//! [`router`] implements fluentd's tag routing.

pub mod log;

pub mod buffer;
pub mod build;
pub mod config;
pub mod filter;
pub mod format;
#[doc(hidden)]
pub mod fuzz_harness;
pub mod input;
pub mod output;
pub mod router;
pub mod runtime;
pub mod s3;
pub mod security;
pub mod tls;

/// The configuration used when spate runs without `-c`: in_forward on
/// 127.0.0.1:24224, every event printed to stdout.
pub const DEFAULT_CONFIG: &str = "<source>
  @type forward
  bind 127.0.0.1
  port 24224
</source>
<match **>
  @type stdout
</match>
";
