//! `in_udp`: one message per datagram, parsed with the `<parse>` section, as fluentd's
//! `in_udp.rb` (`remove_newline` strips one trailing newline). Runs on
//! [`super::tcp::TextServer`]: every shard binds the port with SO_REUSEPORT. UDP is
//! best effort: a datagram the kernel or a full buffer drops is gone (counted where
//! spate sees it: over-long datagrams, refused batches).

use bytes::Bytes;

use super::tcp::{parse_addr, parse_section, source_keys, Framing, ServerConf};
use super::text::TagMode;
use crate::config::{ConfigError, Element};
use crate::plugin::{Build, InputPlan, Kind, PlanCtx, Registration};

pub const PLUGIN: Registration = Registration {
    name: "udp",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan),
    params: "`tag` (required), `bind`, `port` (5160), `message_length_limit` (4096; longer datagrams are dropped and counted), `remove_newline` (true), `receive_buffer_size` (also in `<transport udp>`: the socket's SO_RCVBUF), `source_address_key`, `source_hostname_key` (the peer address), `<parse>` (required). Best effort: no acks",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let tag = e.str("tag").ok_or_else(|| e.error("'tag' parameter is required"))?;
    let limit = e.size("message_length_limit")?.or(e.size("body_size_limit")?).unwrap_or(4096);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX).min(65535);
    // fluentd: `receive_buffer_size` (deprecated) or `<transport udp> receive_buffer_size`.
    let mut recv_buffer = e.size("receive_buffer_size")?;
    if let Some(t) = e.single("transport")? {
        if !t.arg.is_empty() && t.arg != "udp" {
            return Err(t.error(format!("<transport {}> is not valid for in_udp", t.arg)));
        }
        recv_buffer = t.size("receive_buffer_size")?.or(recv_buffer);
        t.warn_unused();
    }
    Ok(Box::new(ServerConf {
        id: ctx.id(e, "udp"),
        type_name: "udp",
        addr: parse_addr(e, 5160)?,
        udp: true,
        framing: Framing::Delimiter { delimiter: (*b"\n").into(), limit: Some(limit) },
        udp_max: limit,
        chomp: e.bool("remove_newline")?.unwrap_or(true),
        keys: source_keys(e),
        send_keepalive_packet: false,
        recv_buffer: recv_buffer.map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
        label: ctx.label_ref(e)?.unwrap_or(0),
        tag: TagMode::Fixed(Bytes::copy_from_slice(tag.as_bytes())),
        parser: parse_section(e, None)?,
        tls: None,
    }))
}
