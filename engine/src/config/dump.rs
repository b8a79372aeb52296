//! A parsed configuration as text again, the way fluentd's `Element#to_s` prints it
//! (`<name arg>`, `key value` lines, nested sections indented by two spaces), with
//! secret parameters as `xxxxxx`: for RPC `/api/config.getDump`, monitor_agent's
//! `config` objects, and the keys that tell a reload which plugins are unchanged.

use super::Element;

/// fluentd's `to_s` of `e` with secrets masked (`<ROOT>` for the whole config).
pub fn to_text(e: &Element) -> String {
    let mut out = String::new();
    write(e, 0, true, &mut out);
    out
}

/// A plugin section as text without its argument (a `<match>` pattern is routing, not
/// the plugin's configuration) and with secrets in clear: equal texts mean the same
/// plugin configuration.
pub fn section_key(e: &Element) -> String {
    let mut out = String::new();
    write_body(e, 0, false, &mut out, false);
    out
}

/// The section's own parameters (not its subsections), secrets masked, as fluentd's
/// monitor_agent shows `config`.
pub fn masked_attrs(e: &Element) -> Vec<(String, String)> {
    e.attrs
        .iter()
        .map(|a| (a.key.clone(), if is_secret(&a.key) { "xxxxxx".to_string() } else { a.value.clone() }))
        .collect()
}

fn write(e: &Element, depth: usize, mask: bool, out: &mut String) {
    write_body(e, depth, mask, out, true)
}

fn write_body(e: &Element, depth: usize, mask: bool, out: &mut String, with_arg: bool) {
    let indent = "  ".repeat(depth);
    out.push_str(&indent);
    out.push('<');
    out.push_str(&e.name);
    if with_arg && !e.arg.is_empty() {
        out.push(' ');
        out.push_str(&e.arg);
    }
    out.push_str(">\n");
    for a in &e.attrs {
        out.push_str(&indent);
        out.push_str("  ");
        out.push_str(&a.key);
        out.push(' ');
        if mask && is_secret(&a.key) {
            out.push_str("xxxxxx");
        } else {
            out.push_str(&a.value);
        }
        out.push('\n');
    }
    for c in &e.elements {
        write_body(c, depth + 1, mask, out, true);
    }
    out.push_str(&indent);
    out.push_str("</");
    out.push_str(&e.name);
    out.push_str(">\n");
}

/// Whether a parameter holds a secret (masked as `xxxxxx` in monitor_agent's `config`
/// and the config dump, as fluentd masks its `secret: true` parameters).
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "shared_key"
        || k.contains("password")
        || k.contains("passphrase")
        || k.contains("secret")
        || k.contains("token")
        || k == "aws_key_id"
        || k.ends_with("sec_key")
        || k == "api_key"
        || k.ends_with("_api_key")
        || k == "sasl_plain_password"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_like_fluentd() {
        let ctx = crate::config::EvalContext::from_process();
        let root = crate::config::parse_str(
            "<source>\n @type forward\n <security>\n  shared_key s3cret\n </security>\n</source>\n<match a.**>\n @type null\n</match>\n",
            "t.conf",
            std::path::Path::new("."),
            &ctx,
        )
        .unwrap();
        assert_eq!(
            to_text(&root),
            "<ROOT>\n  <source>\n    @type forward\n    <security>\n      shared_key xxxxxx\n    </security>\n  </source>\n  <match a.**>\n    @type null\n  </match>\n</ROOT>\n"
        );
        assert_eq!(section_key(&root.elements[1]), "<match>\n  @type null\n</match>\n");
        assert_eq!(masked_attrs(&root.elements[0].elements[0]), vec![("shared_key".to_string(), "xxxxxx".to_string())]);
    }

    #[test]
    fn secrets() {
        for k in ["shared_key", "password", "private_key_passphrase", "aws_sec_key", "aws_key_id"] {
            assert!(is_secret(k), "{k}");
        }
        assert!(!is_secret("port"));
        assert!(!is_secret("host"));
    }
}
