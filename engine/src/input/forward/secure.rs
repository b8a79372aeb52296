//! `in_secure_forward` (fluent-plugin-secure-forward 0.4): the handshake fluentd v1's
//! in_forward `<security>` took from it (HELO with nonce and auth salt, PING with the
//! shared-key digest and user credentials, PONG), then Forward messages, always over
//! TLS (`secure false` is TLS with a certificate clients do not verify, self-signed
//! when none is given). spate serves it with in_forward: this
//! file turns the plugin's parameters into in_forward's (`port` 24284, `<security>`
//! with `self_hostname`, `shared_key`, `authentication` as `user_auth`,
//! `allow_anonymous_source`, `<user>` and `<client>`; `<transport tls>` from `cert_path`/`private_key_path`).
//!
//! `secure true` needs a certificate: the plugin's `cert_path` requires a
//! `private_key_passphrase`, and `ca_cert_path` signs one with an encrypted CA key;
//! spate reads neither encrypted keys nor signs with a CA, so such configs (and
//! `secure false` ones that name either) are refused with the TLS layer's error naming
//! the parameter.

use crate::config::{Attr, ConfigError, Element};
use crate::plugin::{Build, InputPlan, Kind, PlanCtx, Registration};

pub const PLUGIN: Registration = Registration {
    name: "secure_forward",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan),
    params: "fluent-plugin-secure-forward: `secure` (required), `self_hostname` and `shared_key` (required; `${hostname}`/`__HOSTNAME__` replaced by `hostname`, else the host's name), `bind` (0.0.0.0), `port` (24284), `allow_anonymous_source`, `authentication`, `<user>` (`username`, `password`), `<client>` (`host` or `network`, `shared_key`, `users`); always TLS: `cert_path`, `private_key_path`, `private_key_passphrase` (encrypted keys and `ca_cert_path` certificate generation are not supported: config error), else a self-signed certificate; `ssl_version`. `allow_keepalive`, `read_length`, `read_interval_msec`, `socket_interval_msec` and the `generate_*` parameters have no effect (`${hostname}`/`__HOSTNAME__` are replaced in every value)",
};

fn attr(e: &Element, key: &str, value: &str) -> Attr {
    Attr {
        key: key.to_string(),
        value: value.to_string(),
        pos: e.get(key).map_or_else(|| e.pos.clone(), |a| a.pos.clone()),
    }
}

/// The plugin's `replace_hostname_placeholder`: `${hostname}` and `__HOSTNAME__` in
/// every value, nested sections too.
fn with_hostname(e: &Element, host: &str) -> Element {
    let attrs = e
        .attrs
        .iter()
        .map(|a| Attr {
            key: a.key.clone(),
            value: a.value.replace("${hostname}", host).replace("__HOSTNAME__", host),
            pos: a.pos.clone(),
        })
        .collect();
    let elements = e.elements.iter().map(|c| with_hostname(c, host)).collect();
    Element::new(e.name.clone(), e.arg.clone(), attrs, elements, e.pos.clone())
}

fn plan(orig: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let host = orig.str("hostname").map(str::to_string).unwrap_or_else(|| ctx.hostname.to_string());
    orig.mark_all_used();
    let e = &with_hostname(orig, &host);
    let _ = e.str("hostname");
    let secure = e.bool("secure")?.ok_or_else(|| e.error("'secure' parameter is required"))?;
    let host = e.str("hostname").map(str::to_string).unwrap_or_else(|| ctx.hostname.to_string());
    let placeholder = |v: &str| v.replace("${hostname}", &host).replace("__HOSTNAME__", &host);
    let self_hostname =
        placeholder(e.str("self_hostname").ok_or_else(|| e.error("'self_hostname' parameter is required"))?);
    let shared_key = e.str("shared_key").ok_or_else(|| e.error("'shared_key' parameter is required"))?.to_string();
    for k in ["read_length", "read_interval_msec", "socket_interval_msec"] {
        if let Some(a) = e.get(k) {
            crate::info!("{}: {k} has no effect: spate reads as data arrives", a.pos);
        }
    }
    let mut src = Vec::new();
    src.push(attr(e, "bind", e.str("bind").unwrap_or("0.0.0.0")));
    src.push(attr(e, "port", e.str("port").unwrap_or("24284")));
    // The plugin only announces allow_keepalive in HELO (`#TODO: implement`), and its
    // output keeps the session open anyway: closing after one frame would lose the rest.
    if let Some(a) = e.get("allow_keepalive") {
        let _ = e.bool("allow_keepalive")?;
        crate::info!("{}: allow_keepalive has no effect (as in the plugin, which only announces it)", a.pos);
    }
    for k in ["@id", "@label", "@log_level"] {
        if let Some(v) = e.str(k) {
            src.push(attr(e, k, v));
        }
    }
    let mut sec = vec![attr(e, "self_hostname", &self_hostname), attr(e, "shared_key", &shared_key)];
    sec.push(attr(e, "user_auth", if e.bool("authentication")?.unwrap_or(false) { "true" } else { "false" }));
    let anon = e.bool("allow_anonymous_source")?.unwrap_or(true);
    sec.push(attr(e, "allow_anonymous_source", if anon { "true" } else { "false" }));
    let children: Vec<Element> =
        e.elements.iter().filter(|c| c.name == "user" || c.name == "client").cloned().collect();
    if let Some(c) = e.elements.iter().find(|c| c.name != "user" && c.name != "client") {
        return Err(c.error(format!("<{}> is not a section of in_secure_forward", c.name)));
    }
    let mut elements = vec![Element::new("security".into(), String::new(), sec, children, e.pos.clone())];
    let tls_keys = [
        "cert_path",
        "private_key_path",
        "private_key_passphrase",
        "ca_cert_path",
        "ca_private_key_path",
        "ca_private_key_passphrase",
    ];
    if secure {
        if e.get("cert_path").is_none() && e.get("ca_cert_path").is_none() {
            return Err(e.error("cert_path or ca_cert_path required for secure communication"));
        }
        if e.get("cert_path").is_some() {
            for k in ["private_key_path", "private_key_passphrase"] {
                if e.get(k).is_none() {
                    return Err(e.error(format!("{k} required")));
                }
            }
        } else {
            for k in ["ca_private_key_path", "ca_private_key_passphrase"] {
                if e.get(k).is_none() {
                    return Err(e.error(format!("{k} required")));
                }
            }
        }
    } else {
        crate::warn!(
            "{}: 'insecure' mode has vulnerability for man-in-the-middle attacks for clients (output plugins).",
            e.pos
        );
    }
    // Always TLS (`secure false` only means clients do not verify the server): the
    // certificate from cert_path, else one signed with ca_cert_path's key, else a
    // self-signed one, as the plugin picks it whatever `secure` says.
    let mut t: Vec<Attr> = tls_keys.iter().filter_map(|k| e.str(k).map(|v| attr(e, k, v))).collect();
    t.push(attr(e, "version", e.str("ssl_version").unwrap_or("TLSv1_2")));
    if let Some(c) = e.str("ssl_ciphers") {
        t.push(attr(e, "ciphers", c));
    }
    // Errors about the certificate point at its parameter.
    let at =
        ["cert_path", "ca_cert_path"].iter().find_map(|k| e.get(k)).map_or_else(|| e.pos.clone(), |a| a.pos.clone());
    elements.push(Element::new("transport".into(), "tls".into(), t, Vec::new(), at));
    for a in e.attrs.iter().filter(|a| a.key.starts_with("generate_")) {
        let _ = e.str(&a.key);
    }
    let fwd = Element::new(e.name.clone(), e.arg.clone(), src, elements, e.pos.clone());
    super::conf::plan(&fwd, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_placeholders_in_every_value_and_section() {
        let pos = crate::config::Pos { file: "t".into(), line: 1, col: 1 };
        let a = |k: &str, v: &str| Attr { key: k.into(), value: v.into(), pos: pos.clone() };
        let user =
            Element::new("user".into(), String::new(), vec![a("username", "u-__HOSTNAME__")], Vec::new(), pos.clone());
        let e = Element::new(
            "source".into(),
            String::new(),
            vec![a("self_hostname", "${hostname}.x"), a("shared_key", "k-__HOSTNAME__")],
            vec![user],
            pos.clone(),
        );
        let r = with_hostname(&e, "h1");
        assert_eq!(r.str("self_hostname"), Some("h1.x"));
        assert_eq!(r.str("shared_key"), Some("k-h1"));
        assert_eq!(r.elements[0].str("username"), Some("u-h1"));
    }
}
