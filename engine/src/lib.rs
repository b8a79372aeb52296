//! spate-engine: reads a fluentd configuration, routes and processes events on a
//! glommio shard-per-core runtime. It never parses msgpack by hand: all wire-format
//! work goes through `spate-protocol`.
//!
//! Layout, bottom to top (a module only uses the ones above it in this list):
//! - [`sys`] (the libc calls), [`calendar`] (day numbers), [`log`], [`config`] (fluent.conf into an element tree),
//!   [`system`] (`<system>`'s logging and RPC settings), [`metrics`] (per-shard values,
//!   their reading across shards, Prometheus and monitor_agent renderings),
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
//!   [`plan::Plan`] -> per-shard plugins;
//! - [`control`] (the flags shards poll), [`logevents`] (spate's logs as `fluent.*`
//!   events), [`reload`] (a shard's side of a configuration reload), [`rpc`] (fluentd's
//!   RPC endpoint); [`runtime`]: one glommio executor per shard.

pub mod log;

pub mod aws;
pub mod buffer;
pub mod calendar;
pub mod config;
pub mod control;
pub mod filter;
pub mod format;
#[doc(hidden)]
pub mod fuzz_harness;
pub mod http;
pub mod input;
pub mod kafka;
pub mod logevents;
pub mod metrics;
pub mod output;
pub mod parser;
pub mod plan;
pub mod plugin;
pub mod registry;
pub mod reload;
pub mod router;
pub mod rpc;
pub mod ruby;
pub mod runtime;
pub mod s3;
pub mod security;
pub mod sys;
pub mod system;
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
