//! spate-engine: reads a fluentd configuration, routes and processes events on a
//! glommio shard-per-core runtime. It never parses msgpack by hand: all wire-format
//! work goes through `spate-protocol`.
//!
//! Layout, bottom to top (a module only uses the ones above it in this list):
//! - [`sys`] (the libc calls), [`log`], [`config`] (fluent.conf into an element tree),
//!   [`ruby`] (the Ruby semantics configs rely on: record accessors, `to_s`, regexps,
//!   times, `${...}` expressions), [`format`] (fluentd's formatters), [`parser`] (the
//!   `<parse>` plugins), [`buffer`] (chunks, file store, group commit), [`tls`],
//!   [`security`] and [`http`] (transports; `http` is the HTTP/1.1 client of the HTTP
//!   outputs and out_s3), [`s3`] (S3 requests, signing, object keys) and [`kafka`]
//!   (librdkafka client settings shared by the Kafka plugins);
//! - [`plugin`]: the plugin traits, [`plugin::PlanCtx`] and [`plugin::ShardCtx`];
//! - [`router`]: fluentd's tag routing over plugin instances;
//! - the plugins, one module (or folder) each: [`input`], [`filter`], [`output`];
//! - [`registry`]: the table of every plugin; [`plan`]: config -> validated
//!   [`plan::Plan`] -> per-shard plugins; [`runtime`]: one glommio executor per shard.

pub mod log;

pub mod buffer;
pub mod config;
pub mod filter;
pub mod format;
#[doc(hidden)]
pub mod fuzz_harness;
pub mod http;
pub mod input;
pub mod kafka;
pub mod output;
pub mod parser;
pub mod plan;
pub mod plugin;
pub mod registry;
pub mod router;
pub mod ruby;
pub mod runtime;
pub mod s3;
pub mod security;
pub mod sys;
#[cfg(test)]
pub mod test_support;
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
