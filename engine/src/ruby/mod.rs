//! Ruby semantics spate reproduces: value printing (`to_s`, `inspect`, `scrub`) and
//! Ruby regexps. Below the plugins, so filters and parsers share one implementation.

pub mod regex;
pub mod value;
