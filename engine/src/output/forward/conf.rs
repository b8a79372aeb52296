//! out_forward's configuration: `<server>`s (weights, standby, credentials), ack and
//! heartbeat settings, keepalive, DNS and TLS, with fluentd's defaults; and its
//! registration as a buffered output (chunk key `tag` required, as in fluentd).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::buffer::BufferDefaults;
use crate::config::{ConfigError, Element};
use crate::plugin::{Build, Kind, PlanCtx, Registration, WriterPlan, WriterSetup};

/// One `<server>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConf {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub standby: bool,
    /// Resolved when the configuration was loaded.
    /// The address when `host` is one; empty for a name (resolved on connect).
    pub addrs: Vec<SocketAddr>,
    /// Shared-key/user credentials when out_forward has `<security>`.
    pub cred: Option<crate::security::ClientCredentials>,
}

/// `heartbeat_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatType {
    /// TCP connect (and handshake) as the heartbeat (`transport`, or the deprecated `tcp`).
    Transport,
    /// A `\0` datagram to the server's port; in_forward answers it.
    Udp,
    None,
}

/// out_forward parameters (fluentd defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardConf {
    pub servers: Vec<ServerConf>,
    pub require_ack_response: bool,
    pub ack_response_timeout: Duration,
    pub compress_gzip: bool,
    pub send_timeout: Duration,
    pub connect_timeout: Duration,
    pub time_as_integer: bool,
    pub heartbeat_type: HeartbeatType,
    pub heartbeat_interval: Duration,
    pub phi_failure_detector: bool,
    pub phi_threshold: f64,
    pub hard_timeout: Duration,
    pub recover_wait: Duration,
    pub keepalive: bool,
    pub keepalive_timeout: Option<Duration>,
    /// None: resolve once (at load); zero: on every connect; else at most this old.
    pub expire_dns_cache: Option<Duration>,
    pub dns_round_robin: bool,
    /// `transport tls`.
    pub tls: Option<crate::tls::ClientTls>,
}

impl Default for ForwardConf {
    fn default() -> Self {
        ForwardConf {
            servers: Vec::new(),
            require_ack_response: false,
            ack_response_timeout: Duration::from_secs(190),
            compress_gzip: false,
            send_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(60),
            time_as_integer: false,
            heartbeat_type: HeartbeatType::Transport,
            heartbeat_interval: Duration::from_secs(1),
            phi_failure_detector: true,
            phi_threshold: 16.0,
            hard_timeout: Duration::from_secs(60),
            recover_wait: Duration::from_secs(10),
            keepalive: false,
            keepalive_timeout: None,
            expire_dns_cache: None,
            dns_round_robin: false,
            tls: None,
        }
    }
}

/// out_forward's parameters from its section (`<match>`, `<store>` or `<secondary>`).
pub fn from_element(e: &Element) -> Result<ForwardConf, ConfigError> {
    let d = ForwardConf::default();
    let mut c = ForwardConf {
        require_ack_response: e.bool("require_ack_response")?.unwrap_or(false),
        ack_response_timeout: e.time("ack_response_timeout")?.unwrap_or(d.ack_response_timeout),
        send_timeout: e.time("send_timeout")?.unwrap_or(d.send_timeout),
        connect_timeout: e.time("connect_timeout")?.unwrap_or(d.connect_timeout),
        time_as_integer: e.bool("time_as_integer")?.unwrap_or(false),
        ..d
    };
    match e.str("compress") {
        None | Some("text") => {}
        Some("gzip") => c.compress_gzip = true,
        Some(other) => return Err(e.error(format!("compress {other:?} is not supported; expected text or gzip"))),
    }
    // Settings that change what goes on the wire must not be silently ignored.
    c.tls = crate::tls::client_tls(e)?;
    let security = match e.elements_named("security").next() {
        Some(s) => {
            let host = s.str("self_hostname").ok_or_else(|| s.error("<security> needs self_hostname"))?.to_string();
            let key = s.str("shared_key").unwrap_or("").to_string();
            s.warn_unused();
            Some((host, key))
        }
        None => None,
    };
    c.heartbeat_type = match e.str("heartbeat_type") {
        None | Some("transport") => HeartbeatType::Transport,
        Some("tcp") => {
            crate::warn!("{}: 'heartbeat_type tcp' is deprecated. use 'transport' instead.", e.pos);
            HeartbeatType::Transport
        }
        Some("none") => HeartbeatType::None,
        Some("udp") => HeartbeatType::Udp,
        Some(o) => {
            return Err(e.error(format!("heartbeat_type {o:?} is not supported; supported: transport, tcp, udp, none")))
        }
    };
    c.heartbeat_interval = e.time("heartbeat_interval")?.unwrap_or(c.heartbeat_interval);
    if c.heartbeat_interval.is_zero() {
        return Err(e.error("heartbeat_interval must be greater than 0"));
    }
    c.phi_failure_detector = e.bool("phi_failure_detector")?.unwrap_or(true);
    c.phi_threshold = e.int("phi_threshold")?.map_or(c.phi_threshold, |v| v as f64);
    c.hard_timeout = e.time("hard_timeout")?.unwrap_or(c.hard_timeout);
    c.recover_wait = e.time("recover_wait")?.unwrap_or(c.recover_wait);
    c.keepalive = e.bool("keepalive")?.unwrap_or(false);
    c.keepalive_timeout = e.time("keepalive_timeout")?;
    if !c.keepalive && c.keepalive_timeout.is_some() {
        crate::warn!("{}: The value of keepalive_timeout is ignored. if you want to use keepalive, please add `keepalive true` to your conf.", e.pos);
    }
    c.expire_dns_cache = e.time("expire_dns_cache")?;
    c.dns_round_robin = e.bool("dns_round_robin")?.unwrap_or(false);
    if c.dns_round_robin && c.heartbeat_type == HeartbeatType::Udp {
        return Err(
            e.error("forward output heartbeat type must be 'transport' or 'none' to use dns_round_robin option")
        );
    }
    for k in ["ignore_network_errors_at_startup", "verify_connection_at_startup", "read_interval_msec", "read_length"] {
        let _ = e.str(k);
    }
    for s in e.elements_named("server") {
        let host = s.str("host").ok_or_else(|| s.error("<server> needs host"))?.to_string();
        let port = match s.int("port")? {
            Some(p) => u16::try_from(p).map_err(|_| s.error(format!("port {p} is out of range")))?,
            None => 24224,
        };
        let weight = s.int("weight")?.unwrap_or(60).clamp(0, 1_000_000) as u32;
        let standby = s.bool("standby")?.unwrap_or(false);
        let name = s.str("name").map_or_else(|| format!("{host}:{port}"), str::to_string);
        let cred = match &security {
            Some((host, key)) => Some(crate::security::ClientCredentials {
                self_hostname: host.clone(),
                shared_key: s.str("shared_key").map_or_else(|| key.clone(), str::to_string),
                username: s.str("username").unwrap_or("").to_string(),
                password: s.str("password").unwrap_or("").to_string(),
            }),
            None => {
                if s.str("shared_key").is_some() || s.str("username").is_some() {
                    return Err(s.error(
                        "<server> shared_key / username need a <security> section (self_hostname) in out_forward",
                    ));
                }
                None
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(s.error(format!("<server> host {host:?} is not a host name or address")));
        }
        // An address is used as is; a name is resolved when connecting (off the shard
        // thread, retried until it resolves), as fluentd does: Kubernetes service names
        // may not exist yet when the aggregator starts.
        let addrs: Vec<SocketAddr> = match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => Vec::new(),
        };
        s.warn_unused();
        c.servers.push(ServerConf { name, host, port, weight, standby, addrs, cred });
    }
    if c.servers.is_empty() {
        return Err(e.error("out_forward needs at least one <server>"));
    }
    Ok(c)
}

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "forward",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "`<server>` (`host`: a name is resolved when connecting and retried, as in fluentd; `port`, `weight`, `standby`, `name`), `transport tls` (below), `require_ack_response`, `ack_response_timeout` (no ack: the server is detached and the chunk resent at once, to another server when there is one), `heartbeat_type` (`transport`/`tcp`: a TCP connect plus the handshake under `<security>`; `udp`: a `\\0` datagram in_forward answers; `none`), `heartbeat_interval`, `phi_failure_detector`, `phi_threshold`, `hard_timeout`, `recover_wait`, `keepalive`, `keepalive_timeout`, `expire_dns_cache`, `dns_round_robin`, `compress gzip`, `send_timeout`, `connect_timeout`, `time_as_integer`, `<secondary>`",
};

fn plan(e: &Element, _ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let conf = from_element(e)?;
    setup.buffer(e, &BufferDefaults { keys: &["tag"], tag_required: true, ..Default::default() })?;
    Ok(Box::new(conf))
}
