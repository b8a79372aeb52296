//! `parser_apache_error`: a regexp parser with Apache's error-log expression as its
//! default (fluentd's `parser_apache_error.rb`); times are read by Ruby's `Time.parse`
//! rules (`Wed Oct 11 14:32:52 2000`) unless `time_format` is set.

/// fluentd's default expression, verbatim.
pub const EXPRESSION: &str = r"/^\[[^ ]* (?<time>[^\]]*)\] \[(?<level>[^\]]*)\](?: \[pid (?<pid>[^\]]*)\])?( \[client (?<client>[^\]]*)\])? (?<message>.*)$/";
