//! What in_forward's data path carries: per connection ([`Peer`]: who it is, for log
//! lines, source keys and `deduplicate`), per frame ([`Held`]: its ack id and dedup
//! claim while it is routed; [`Seen`]: what the dedup window said), per processed read
//! ([`Step`]), and the input's counters ([`InputMetrics`]).

use std::cell::Cell;
use std::net::SocketAddr;

use bytes::Bytes;
use spate_protocol::{CompressedFrame, EventBatch};

use super::dedup::{self, Key};

/// Per-input counters (shard-local).
#[derive(Debug, Default)]
pub struct InputMetrics {
    pub connections: Cell<u64>,
    pub active: Cell<u64>,
    pub frames: Cell<u64>,
    pub events: Cell<u64>,
    pub bytes: Cell<u64>,
    pub invalid_events: Cell<u64>,
    pub bad_frames: Cell<u64>,
    pub rejected_batches: Cell<u64>,
    /// Times a full buffer with `overflow_action block` paused reading.
    pub blocked: Cell<u64>,
    pub acks: Cell<u64>,
    pub auth_failures: Cell<u64>,
    /// TLS handshakes that failed (no TLS, wrong CA, no client certificate, timeout).
    pub tls_failures: Cell<u64>,
    pub refused_connections: Cell<u64>,
    pub idle_closed: Cell<u64>,
    /// `deduplicate`: frames (and their events) acked without storing them again.
    pub resent_frames: Cell<u64>,
    pub resent_events: Cell<u64>,
    /// From the read that completed a frame to its ack written.
    pub ack_latency: crate::metrics::Histogram,
}

impl InputMetrics {
    /// Reports the counters under spate's names (see `metrics::prom`).
    pub fn visit(&self, m: &mut dyn crate::metrics::Visitor) {
        use crate::metrics::Merge;
        m.counter("batches_in", "Frames received.", self.frames.get());
        m.counter("events_in", "Events received.", self.events.get());
        m.counter("bytes_in", "Bytes read from connections.", self.bytes.get());
        m.counter("decode_errors", "Frames that could not be decoded (connection closed).", self.bad_frames.get());
        m.counter("invalid_events", "Entries that were not [time, record] (dropped).", self.invalid_events.get());
        m.counter(
            "rejected_batches",
            "Batches the outputs refused (no ack, connection closed).",
            self.rejected_batches.get(),
        );
        m.counter("blocked", "Times a full buffer (overflow_action block) paused reading.", self.blocked.get());
        m.counter("acks_sent", "Acks sent.", self.acks.get());
        m.counter("auth_failures", "Shared-key or user authentication failures.", self.auth_failures.get());
        m.counter("tls_failures", "Failed TLS handshakes.", self.tls_failures.get());
        m.counter("connections_accepted", "Connections accepted.", self.connections.get());
        m.counter("connections_refused", "Connections refused (max_connections).", self.refused_connections.get());
        m.counter("connections_idle_closed", "Connections closed after idle_timeout.", self.idle_closed.get());
        m.counter(
            "resent_frames",
            "Frames acked without storing them again: resends of stored frames (deduplicate).",
            self.resent_frames.get(),
        );
        m.counter("resent_events", "Events in those resent frames (deduplicate).", self.resent_events.get());
        m.gauge("connections_open", "Connections open.", self.active.get() as f64, Merge::Sum);
        m.histogram(
            "ack_latency_seconds",
            "From the read that completed a frame to its ack written (per ack).",
            &self.ack_latency,
        );
    }
}

pub(super) fn inc(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

/// Who is on the other end of a connection, as the data path needs it.
pub struct Peer {
    /// `ip:port`, for log lines.
    pub name: String,
    /// The address for `source_address_key` / `source_hostname_key`.
    pub ip: Option<Bytes>,
    /// The source part of `deduplicate` keys ([`dedup::source`]).
    pub source: Bytes,
    /// Resent frames and their events acked without storing (`deduplicate`).
    pub resent: Cell<(u64, u64)>,
}

impl Peer {
    /// A peer at `addr` (`None`: unknown).
    pub fn at(addr: Option<SocketAddr>) -> Peer {
        Peer {
            name: addr.map_or_else(|| "?".to_string(), |p| p.to_string()),
            ip: addr.map(|p| Bytes::from(p.ip().to_string())),
            source: dedup::source(None, addr.map(crate::security::peer_ip)),
            resent: Cell::new((0, 0)),
        }
    }

    /// A peer without an address, called `name` in log lines (tests, benchmarks).
    pub fn named(name: &str) -> Peer {
        Peer { name: name.to_string(), ..Peer::at(None) }
    }

    /// The peer's IP address (0.0.0.0 when unknown).
    pub(super) fn ip_addr(&self) -> std::net::IpAddr {
        self.name.parse::<SocketAddr>().map_or(std::net::IpAddr::from([0, 0, 0, 0]), crate::security::peer_ip)
    }
}

/// A frame on its way into the buffers, with what its ack and its `deduplicate` claim
/// need once it is accepted.
pub struct Held {
    /// The batch to route again (`overflow_action block`).
    pub(super) batch: Option<EventBatch>,
    /// The ack id.
    pub(super) chunk: Option<Bytes>,
    /// A Message-mode run's ack ids, one per frame (then `chunk` is `None`).
    pub(super) run: Vec<Bytes>,
    pub(super) json: bool,
    /// Its claim in the dedup window: (key, seq).
    pub(super) claim: Option<(Key, u64)>,
    /// The shard's epoch before its first append.
    pub(super) first: u64,
    /// Whether a file buffer took any of its events.
    pub(super) wrote: bool,
}

/// What the dedup window says about a frame.
pub(super) enum Seen {
    /// Store it (with its claim when deduplicating).
    Store(Option<(Key, u64)>),
    /// Already stored: ack without storing.
    Again,
    /// Another copy is being stored right now: wait for the outcome.
    Wait,
}

/// What [`ForwardInput::process`] did with the bytes it had.
pub enum Step {
    /// Everything complete was handled: read more.
    More,
    /// Close the connection.
    Close,
    /// An output is full with `overflow_action block`: wait for room, retry this frame,
    /// then process the rest.
    Blocked(Box<Held>),
    /// A resend whose first copy is still being committed (`deduplicate`): wait for
    /// the outcome, handle it again, then process the rest.
    Repeat(Box<EventBatch>, bool),
    /// A compressed frame (with the connection's JSON flag): inflate and route it a
    /// slice at a time, then process the rest.
    Inflate(Box<CompressedFrame>, bool),
}
