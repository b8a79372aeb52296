//! Outputs: where a `<match>` sends events, one module (or folder) per plugin, each
//! with its registry row (`PLUGIN`). Each shard owns its own instances (`Rc`, no
//! locks). `emit` is synchronous: it either accepts the batch (stored in the output's
//! buffer, or written, for unbuffered outputs) or rejects it, and inputs ack only what
//! every matched output accepted (for a file buffer: once the shard's group commit made
//! it durable).
//!
//! Unbuffered outputs (`null`, `stdout`, `copy`, `relabel`, and the re-routing ones:
//! `rewrite_tag_filter`, `parser`...) implement
//! [`crate::plugin::Output`] themselves; buffered ones implement only a
//! [`crate::plugin::Writer`] (`forward`, `file`, `elasticsearch`, `http`, `loki`, `gelf`, `tdlog`, `loggly`, `exec`, `cloudwatch_logs`, `kafka2`, `s3`,
//! `secondary_file`) and are wrapped by
//! the generic [`buffered::BufferedOutput`] (buffer, flush task, retries, `<secondary>`).

pub mod buffered;
pub mod cloudwatch_logs;
pub mod copy;
pub mod elasticsearch;
pub mod exec;
pub mod exec_filter;
pub mod file;
pub mod flowcounter;
pub mod forward;
pub mod gelf;
pub mod http;
pub mod irc;
pub mod kafka2;
pub mod label_router;
pub mod loggly;
pub mod loki;
pub mod null;
pub mod parser;
pub mod prometheus;
pub mod record_reformer;
pub mod relabel;
pub mod rewrite_tag_filter;
pub mod route;
pub mod s3;
pub mod secondary_file;
pub mod stdout;
pub mod syslog_rfc5424;
pub mod tdlog;
