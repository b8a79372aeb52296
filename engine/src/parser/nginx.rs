//! `parser_nginx`: a regexp parser with nginx's `combined` access-log expression (and
//! an optional `http_x_forwarded_for`) and time format as its defaults (fluentd's
//! `parser_nginx.rb`).

/// fluentd's default expression, verbatim.
pub const EXPRESSION: &str = r#"/^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)"(?:\s+\"?(?<http_x_forwarded_for>[^\"]*)\"?)?)?$/"#;

pub const TIME_FORMAT: &str = "%d/%b/%Y:%H:%M:%S %z";
