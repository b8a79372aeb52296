//! Construction errors of the record filters (`filter_grep`, `filter_record_transformer`):
//! each message names the offending parameter or value so a user can fix the config.
//! Filters never fail on events; these errors only come from `new`.

/// Why a filter could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A `pattern` (or `regexpN`/`excludeN` value) that is not a usable regexp.
    #[error("invalid regexp {pattern:?} for key {key:?}: {reason}")]
    Regexp { key: String, pattern: String, reason: String },
    /// A `key` / `remove_keys` entry that is not a valid record accessor
    /// (`name`, `$.a.b`, `$['a']['b']`, `$.a[0]`).
    #[error("invalid record accessor {key:?}: {reason}")]
    Accessor { key: String, reason: String },
    /// A parameter combination fluentd rejects too (its message, verbatim where it has one).
    #[error("{0}")]
    Config(String),
    /// A `<record>` value (or key) with a Ruby expression outside the subset spate
    /// evaluates (`enable_ruby`).
    #[error("<record> {key}: {error}")]
    Ruby { key: String, error: crate::ruby::expr::ExprError },
}

impl From<crate::ruby::accessor::AccessorError> for FilterError {
    fn from(e: crate::ruby::accessor::AccessorError) -> Self {
        FilterError::Accessor { key: e.key, reason: e.reason }
    }
}
