//! `in_syslog`: RFC 3164 and RFC 5424 messages over UDP (the default) or TCP
//! (`<transport tcp>`), as fluentd's `in_syslog.rb`. TCP frames are lines
//! (`frame_type traditional`, `delimiter`) or RFC 6587 octet counting (`frame_type
//! octet_count`). Events are tagged `<tag>.<facility>.<severity>`; `severity_key`
//! (alias `priority_key`) and `facility_key` add those names to the record; a message
//! that does not parse is logged (rate-limited) and, with `emit_unmatched_lines`,
//! emitted as `{"unmatched_line": ...}` tagged `<tag>.unmatched`. The `<parse>` section
//! defaults to `@type syslog` with `with_priority true` (its options: `message_format`,
//! `with_priority`, `parser_engine`, `support_colonless_ident`, `time_format`,
//! `keep_time_key`, ...).

use super::tcp::{parse_addr, source_keys, Framing, ServerConf};
use super::text::TagMode;
use crate::config::{Attr, ConfigError, Element};
use crate::parser::ParserConf;
use crate::plugin::{Build, InputPlan, Kind, PlanCtx, Registration};

pub const PLUGIN: Registration = Registration {
    name: "syslog",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan),
    params: "`tag` (required), `bind`, `port` (5140), `<transport udp|tcp|tls>` (or the old `protocol_type`; `tls` with in_forward's TLS parameters), `frame_type traditional|octet_count`, `delimiter`, `message_length_limit` (2048, UDP datagrams; TCP messages are capped at 64 MiB), `severity_key` (`priority_key`), `facility_key`, `source_address_key`, `source_hostname_key` (the peer address), `include_source_host`/`source_host_key`, `emit_unmatched_lines`, `send_keepalive_packet`, `<parse>` (default `@type syslog`, `with_priority true`; `message_format auto|rfc3164|rfc5424`, `parser_engine`, `support_colonless_ident`, `time_format`, `keep_time_key`). Tags `<tag>.<facility>.<severity>`. UDP is best effort",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let tag = e.str("tag").ok_or_else(|| e.error("'tag' parameter is required"))?.to_string();
    let mut protocol = e.enum_of("protocol_type", &["tcp", "udp"])?;
    let mut tls = None;
    if let Some(t) = e.single("transport")? {
        let p = if t.arg.is_empty() { "udp" } else { t.arg.as_str() };
        match p {
            "udp" | "tcp" => {
                protocol = Some(p.to_string());
                t.warn_unused();
            }
            // TCP under rustls, with in_forward's TLS parameters (which report their
            // section's unused parameters themselves).
            "tls" => {
                protocol = Some("tcp".to_string());
                tls = crate::tls::server_tls(t)?;
            }
            other => return Err(t.error(format!("<transport {other}>: valid options are udp,tcp,tls"))),
        }
    }
    let udp = protocol.as_deref() != Some("tcp");
    let frame = e.enum_of("frame_type", &["traditional", "octet_count"])?;
    let limit = e.size("message_length_limit")?.unwrap_or(2048);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let keepalive = e.bool("send_keepalive_packet")?.unwrap_or(false);
    if keepalive && udp {
        return Err(e.error("send_keepalive_packet is available for tcp/tls"));
    }
    let mut keys = source_keys(e);
    if e.bool("include_source_host")?.unwrap_or(false) {
        if keys.address_key.is_some() {
            return Err(e.error("specify either source_address_key or include_source_host"));
        }
        keys.address_key = Some(e.string_or("source_host_key", "source_host").into_bytes().into());
    }
    if e.bool("resolve_hostname")? == Some(false) && keys.hostname_key.is_some() {
        return Err(e.error("resolve_hostname must be true with source_hostname_key"));
    }
    if e.get("priority_key").is_some() {
        crate::warn!("{}: priority_key is deprecated. Use severity_key instead", e.pos);
    }
    let severity_key = e.str("severity_key").or_else(|| e.str("priority_key")).map(|s| s.as_bytes().into());
    let delimiter = e.string_or("delimiter", "\n");
    if delimiter.is_empty() {
        return Err(e.error("delimiter must not be empty"));
    }
    // fluentd applies message_length_limit to UDP datagrams only; over TCP spate bounds a
    // message (or an octet-counted frame) at its own 64 MiB cap.
    let tcp_limit = super::tcp::HARD_LIMIT;
    let framing = match frame.as_deref() {
        Some("octet_count") => Framing::OctetCount { limit: tcp_limit },
        _ => Framing::Delimiter {
            delimiter: delimiter.into_bytes().into(),
            limit: Some(if udp { limit } else { tcp_limit }),
        },
    };
    Ok(Box::new(ServerConf {
        id: ctx.id(e, "syslog"),
        type_name: "syslog",
        addr: parse_addr(e, 5140)?,
        udp,
        framing,
        udp_max: limit.min(65535),
        chomp: true,
        keys,
        send_keepalive_packet: keepalive,
        recv_buffer: None,
        label: ctx.label_ref(e)?.unwrap_or(0),
        tag: TagMode::Syslog {
            prefix: tag,
            severity_key,
            facility_key: e.str("facility_key").map(|s| s.as_bytes().into()),
            emit_unmatched: e.bool("emit_unmatched_lines")?.unwrap_or(false),
        },
        parser: parser(e)?,
        tls,
    }))
}

/// `<parse>` (or the one fluentd's compat layer makes of v0.12's flat `format`, ...)
/// with in_syslog's defaults: `@type syslog`, `with_priority true`.
fn parser(e: &Element) -> Result<ParserConf, ConfigError> {
    let v012 = crate::parser::v012_section(e)?;
    let Some(p) = e.single("parse")?.or(v012.as_ref()) else {
        let attrs = vec![Attr { key: "with_priority".into(), value: "true".into(), pos: e.pos.clone() }];
        return ParserConf::with_type(
            &Element::new("parse".into(), String::new(), attrs, Vec::new(), e.pos.clone()),
            "syslog",
        );
    };
    let ty = p.plugin_type().unwrap_or("syslog").to_string();
    let conf = if ty == "syslog" && p.get("with_priority").is_none() {
        let mut attrs = p.attrs.clone();
        attrs.push(Attr { key: "with_priority".into(), value: "true".into(), pos: p.pos.clone() });
        let d = Element::new(p.name.clone(), p.arg.clone(), attrs, p.elements.clone(), p.pos.clone());
        let c = ParserConf::with_type(&d, &ty)?;
        let _ = d.plugin_type();
        d.warn_unused();
        p.mark_all_used();
        c
    } else {
        let c = ParserConf::with_type(p, &ty)?;
        p.warn_unused();
        c
    };
    Ok(conf)
}
