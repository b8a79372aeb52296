//! filter_parser's logic (placeholder, written next).
