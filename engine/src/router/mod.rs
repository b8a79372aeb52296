//! Tag routing: match patterns and the per-tag pipeline cache.
