//! in_forward's configuration: fluentd's parameters and defaults, plus spate's own
//! connection limits (`max_connections`, `idle_timeout`, `handshake_timeout`),
//! inflation budget (`inflate_memory_limit`) and `deduplicate` (with its path and
//! window), and its registry row.

use std::net::SocketAddr;
use std::time::Duration;

use spate_protocol::Limits;

use crate::config::{ConfigError, Element};
use crate::plugin::{Build, InputPlan, Kind, PlanCtx, Registration};

/// Default `inflate_memory_limit`: room for three zstd streams with the largest window
/// (8 MiB) or a few hundred gzip streams at once per shard, while an aggregator with
/// many shards stays far from gigabytes under compression bombs.
pub const DEFAULT_INFLATE_MEMORY_LIMIT: usize = 32 << 20;

/// The smallest `inflate_memory_limit`: one zstd stream with the largest window.
pub const MIN_INFLATE_MEMORY_LIMIT: usize = 9 << 20;

/// in_forward parameters, fluentd's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardInConf {
    pub id: String,
    pub bind: String,
    pub port: u16,
    pub backlog: Option<i32>,
    pub linger_timeout: Duration,
    pub resolve_hostname: bool,
    pub deny_keepalive: bool,
    pub send_keepalive_packet: bool,
    pub chunk_size_limit: Option<usize>,
    pub chunk_size_warn_limit: Option<usize>,
    pub decompression_size_limit: usize,
    /// spate: memory for inflating compressed frames, per shard; connections beyond it
    /// wait (see `input/forward/inflate.rs`).
    pub inflate_memory_limit: usize,
    pub skip_invalid_event: bool,
    pub source_address_key: Option<String>,
    pub source_hostname_key: Option<String>,
    pub tag: Option<String>,
    pub add_tag_prefix: Option<String>,
    /// Index of the label events go to (0: the top level).
    pub label: usize,
    /// `<security>`: the shared-key handshake before any event is accepted.
    pub security: Option<crate::security::ServerSecurity>,
    /// spate: connections per shard beyond this are closed at once (counted, logged).
    pub max_connections: usize,
    /// spate: a connection that sends nothing for this long is closed (None: never).
    pub idle_timeout: Option<Duration>,
    /// `<transport tls>`.
    pub tls: Option<crate::tls::ServerTls>,
    /// spate: time a new connection has for its TLS handshake and, under `<security>`,
    /// to send its PING (fluentd has no limit).
    pub handshake_timeout: Duration,
    /// spate: `deduplicate true`: resent frames (same source and ack id) are acked
    /// without being stored again (see `dedup`). Shared by the input's shards.
    pub dedup: Option<std::sync::Arc<super::dedup::Dedup>>,
}

impl Default for ForwardInConf {
    fn default() -> Self {
        ForwardInConf {
            id: "forward".into(),
            bind: "0.0.0.0".into(),
            port: 24224,
            backlog: None,
            linger_timeout: Duration::ZERO,
            resolve_hostname: false,
            deny_keepalive: false,
            send_keepalive_packet: false,
            chunk_size_limit: None,
            chunk_size_warn_limit: None,
            decompression_size_limit: 256 << 20,
            inflate_memory_limit: DEFAULT_INFLATE_MEMORY_LIMIT,
            skip_invalid_event: true,
            source_address_key: None,
            source_hostname_key: None,
            tag: None,
            add_tag_prefix: None,
            label: 0,
            security: None,
            max_connections: 10_000,
            idle_timeout: None,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            dedup: None,
        }
    }
}

impl ForwardInConf {
    pub fn limits(&self) -> Limits {
        let mut l = Limits { max_inflated_size: self.decompression_size_limit, ..Limits::default() };
        if let Some(c) = self.chunk_size_limit {
            // The limit is on the chunk; leave room for the frame's header and options.
            l.max_frame_size = c.saturating_add(64 << 10);
        }
        l
    }

    pub fn addr(&self) -> Result<SocketAddr, String> {
        let ip: std::net::IpAddr = match self.bind.as_str() {
            "" | "*" => std::net::Ipv4Addr::UNSPECIFIED.into(),
            s => s.parse().map_err(|_| format!("bind {s:?} is not an IP address"))?,
        };
        Ok(SocketAddr::new(ip, self.port))
    }
}

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "forward",
    aliases: &[],
    kind: Kind::Input,
    build: Build::Input(plan),
    params: "`bind`, `port`, `backlog`, `linger_timeout`, `<transport tcp>` / `<transport tls>` (below), `resolve_hostname`, `deny_keepalive`, `send_keepalive_packet`, `chunk_size_limit`, `chunk_size_warn_limit`, `decompression_size_limit`, `skip_invalid_event`, `source_address_key`, `source_hostname_key`, `tag`, `add_tag_prefix`, `@label`, `<security>` (below); spate's own `max_connections` (per shard, default 10000) and `idle_timeout` (default none) and `handshake_timeout` (default 10 s) and `inflate_memory_limit` (per shard, default 32 MiB, see Security), `deduplicate` (default false; with `deduplicate_path`, `deduplicate_window_size` default 100000 ids, `deduplicate_window_time` default 1h: exactly once between spate hops, see Durability). Every Forward mode (Message, Forward, PackedForward, CompressedPackedForward gzip/zstd), JSON on the same port, acks, the UDP heartbeat (replies `\\0`).",
};

pub(super) fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn InputPlan>, ConfigError> {
    let d = ForwardInConf::default();
    let mut c = ForwardInConf { id: ctx.id(e, "forward"), ..d.clone() };
    c.bind = e.str("bind").unwrap_or(&d.bind).to_string();
    if let Some(p) = e.int("port")? {
        c.port = u16::try_from(p).map_err(|_| e.error(format!("port {p} is out of range (0-65535)")))?;
    }
    c.backlog = e.int("backlog")?.map(|b| b as i32);
    c.linger_timeout = e.time("linger_timeout")?.unwrap_or(d.linger_timeout);
    c.resolve_hostname = e.bool("resolve_hostname")?.unwrap_or(false);
    c.deny_keepalive = e.bool("deny_keepalive")?.unwrap_or(false);
    c.send_keepalive_packet = e.bool("send_keepalive_packet")?.unwrap_or(false);
    c.chunk_size_limit = e.size("chunk_size_limit")?.map(|v| v as usize);
    c.chunk_size_warn_limit = e.size("chunk_size_warn_limit")?.map(|v| v as usize);
    c.decompression_size_limit = e.size("decompression_size_limit")?.map_or(d.decompression_size_limit, |v| v as usize);
    if let Some(m) = e.size("inflate_memory_limit")? {
        let m = usize::try_from(m).unwrap_or(usize::MAX);
        if m < MIN_INFLATE_MEMORY_LIMIT {
            return Err(e.error(format!(
                "inflate_memory_limit must be at least 9m (one zstd stream with an 8 MiB window), got {m} bytes"
            )));
        }
        c.inflate_memory_limit = m;
    }
    c.skip_invalid_event = e.bool("skip_invalid_event")?.unwrap_or(true);
    c.source_address_key = e.str("source_address_key").map(str::to_string);
    c.source_hostname_key = e.str("source_hostname_key").map(str::to_string);
    c.tag = e.str("tag").map(str::to_string);
    c.add_tag_prefix = e.str("add_tag_prefix").map(str::to_string);
    if let Some(m) = e.int("max_connections")? {
        c.max_connections = usize::try_from(m)
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| e.error(format!("max_connections must be at least 1, got {m}")))?;
    }
    c.idle_timeout = e.time("idle_timeout")?.filter(|d| !d.is_zero());
    c.label = ctx.label_ref(e)?.unwrap_or(0);
    if c.addr().is_err() {
        return Err(e.error(format!("bind {:?} is not an IP address (spate does not resolve bind names)", c.bind)));
    }
    if let Some(h) = e.time("handshake_timeout")? {
        if h.is_zero() {
            return Err(e.error("handshake_timeout must be greater than 0"));
        }
        c.handshake_timeout = h;
    }
    for t in e.elements_named("transport") {
        if let Some(l) = t.time("linger_timeout")? {
            c.linger_timeout = l;
        }
        // server_tls reports unused parameters of a tls section itself.
        c.tls = crate::tls::server_tls(t)?;
        if c.tls.is_none() {
            t.warn_unused();
        }
    }
    if let Some(s) = e.elements_named("security").next() {
        c.security = Some(crate::security::server_from_element(s)?);
    }
    c.dedup = dedup(e, ctx)?;
    Ok(Box::new(c))
}

/// `deduplicate` and its parameters (spate's own).
fn dedup(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Option<std::sync::Arc<super::dedup::Dedup>>, ConfigError> {
    use super::dedup::{Dedup, DEFAULT_WINDOW_SIZE, DEFAULT_WINDOW_TIME};
    let on = e.bool("deduplicate")?.unwrap_or(false);
    let path = e.str("deduplicate_path").map(std::path::PathBuf::from);
    let size = e.int("deduplicate_window_size")?;
    let time = e.time("deduplicate_window_time")?;
    if !on {
        if path.is_some() || size.is_some() || time.is_some() {
            return Err(
                e.error("deduplicate_path, deduplicate_window_size and deduplicate_window_time need deduplicate true")
            );
        }
        return Ok(None);
    }
    let size = match size {
        None => DEFAULT_WINDOW_SIZE,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=100_000_000).contains(n))
            .ok_or_else(|| e.error(format!("deduplicate_window_size must be between 1 and 100000000 ids, got {n}")))?,
    };
    let time = time.unwrap_or(DEFAULT_WINDOW_TIME);
    if time.as_secs() == 0 {
        return Err(e.error("deduplicate_window_time must be at least 1s"));
    }
    match &path {
        Some(p) => {
            ctx.claim_dir(e, p, "deduplicate_path")?;
            crate::buffer::journal::register_dir(p.clone(), super::dedup::log::unfinished_commits);
        }
        None => crate::warn!(
            "{}: deduplicate without deduplicate_path keeps the window of acked ids in memory only: after a restart of spate, resends are stored again",
            e.pos
        ),
    }
    Ok(Some(std::sync::Arc::new(Dedup::new(path, size, time))))
}
