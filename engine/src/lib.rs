//! spate-engine: reads a fluentd configuration, routes and processes events on a
//! glommio shard-per-core runtime. It never parses msgpack by hand: all wire-format
//! work goes through `spate-protocol`.

pub mod config;
pub mod router;
