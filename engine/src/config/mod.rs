//! fluent.conf parsing (lexer, parser, typed values).
