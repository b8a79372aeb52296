//! fluentd's parser test vectors (placeholder).
