//! Ruby semantics spate reproduces. fluentd is a Ruby program and its configs lean on
//! Ruby's behaviour in many places; spate never runs Ruby, so what users rely on is
//! reimplemented here, once, for every plugin:
//!
//! - [`accessor`]: record accessors (`$.a.b`, `$['a'][0]`) and `record.dig`;
//! - [`value`]: `to_s` / `inspect` of record values, `Float#to_s`, `String#to_f`,
//!   `Integer()`, `String#scrub`;
//! - [`regex`]: Ruby (Onigmo) regexps translated to the `regex` / `fancy-regex` crates;
//! - [`expr`]: the Ruby expressions of `${...}` (record_transformer's `enable_ruby`);
//! - [`strptime`]: `Time.strptime` and `Time.parse`;
//! - [`time`]: `Time.at(float)` nanoseconds.

pub mod accessor;
pub mod expr;
pub mod regex;
pub mod strptime;
pub mod time;
pub mod value;
