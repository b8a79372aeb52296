//! `out_gelf` (`@type gelf`): every event as one GELF message to Graylog, over UDP
//! (the default: zlib-deflated, split into GELF chunks above gelf-rb's `'WAN'` 1420
//! bytes, or `'LAN'` 8154 with gelf-best's `udp_transport_type LAN`) or TCP
//! (uncompressed JSON, each message ended by a NUL byte, on a kept connection).
//!
//! Two Ruby plugins register `@type gelf`, and their messages differ
//! ([`message`] has both): fluent-plugin-gelf-hs (a v0.12 plugin: no chunk keys; the
//! fluentd-kubernetes-daemonset graylog images) and fluent-plugin-gelf-best (v1: default
//! `<buffer time>` with `timekey 5`, `timekey_wait 0`; kube-logging's logging-operator,
//! whose generated configs carry `<buffer tag,time>`). A config is read as gelf-best's
//! when it uses what only gelf-best accepts (chunk keys, `max_bytes`,
//! `udp_transport_type`), else as gelf-hs's; the choice is logged at start.
//!
//! Differences, on purpose: an event the Ruby side raises on (see [`message`]; or over
//! 128 UDP chunks) makes the plugins fail the whole chunk on every retry; spate drops
//! that event with a warning and writes the rest. `tls true` is a config error (not
//! implemented).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpStream, UdpSocket};
use spate_protocol::{EntriesFormat, Events};

use self::message::{Builder, Flavor, Opts, Skip};
use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};

pub mod message;

pub const PLUGIN: Registration = Registration {
    name: "gelf",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "fluent-plugin-gelf-hs and fluent-plugin-gelf-best (chosen by the config: chunk keys, `max_bytes` or `udp_transport_type` mean gelf-best): `host` (required), `port` (12201), `protocol` udp (default: deflated, GELF-chunked) or tcp (NUL-delimited JSON), `use_record_host`, `add_msec_time`; gelf-best: `max_bytes` (32000), `udp_transport_type` WAN/LAN. Default buffer: memory; gelf-hs: no chunk keys; gelf-best: `<buffer time>`, `timekey 5`, `timekey_wait 0`. Not supported (config error): `tls true`",
};

/// The GELF spec's limit on chunks per message.
const MAX_CHUNKS: usize = 128;
/// How long a TCP connect or write may take before the chunk is retried.
const TCP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct GelfPlan {
    host: String,
    port: u16,
    /// gelf-rb's chunk size: 1420 (`'WAN'`) or 8154 (`'LAN'`).
    chunk: usize,
    opts: Opts,
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let host = e
        .str("host")
        .ok_or_else(|| e.error("'host' parameter (hostname or address of Graylog2 server) is required"))?
        .to_string();
    let port = match e.int("port")? {
        None => 12201,
        Some(p) => u16::try_from(p).map_err(|_| e.error_at("port", format!("port {p}: out of range")))?,
    };
    let tcp = match e.str("protocol").unwrap_or("udp") {
        "udp" => false,
        "tcp" => true,
        _ => return Err(e.error_at("protocol", "'protocol' parameter should be either 'udp' (default) or 'tcp'")),
    };
    if e.bool("tls")?.unwrap_or(false) {
        return Err(
            e.error_at("tls", "tls true is not supported by spate's out_gelf; use protocol tcp without TLS or udp")
        );
    }
    // Read only with `tls true` (the plugins hand it to gelf-rb's TLS transport alone).
    let _ = e.hash("tls_options")?;
    let buffer = e.single("buffer")?;
    let keys = buffer.map(|b| b.arg.trim()).filter(|a| !a.is_empty());
    let why_best = if let Some(k) = keys {
        Some(format!("<buffer {k}>"))
    } else {
        ["max_bytes", "udp_transport_type"].into_iter().find(|k| e.get(k).is_some()).map(str::to_string)
    };
    let flavor = if why_best.is_some() { Flavor::Best } else { Flavor::Hs };
    let mut chunk = 1420;
    let mut max_bytes = 32000;
    if flavor == Flavor::Best {
        if let Some(m) = e.int("max_bytes")? {
            max_bytes = usize::try_from(m)
                .map_err(|_| e.error_at("max_bytes", format!("max_bytes {m}: must not be negative")))?;
        }
        if !tcp {
            chunk = match e.str("udp_transport_type").unwrap_or("WAN") {
                "WAN" => 1420,
                "LAN" => 8154,
                _ => {
                    return Err(e.error_at(
                        "udp_transport_type",
                        "'udp_transport_type' parameter should be either 'WAN' or 'LAN'",
                    ))
                }
            };
        }
    }
    if setup.primary_buffer().is_none() {
        let defaults = match flavor {
            Flavor::Hs => BufferDefaults::default(),
            Flavor::Best => {
                BufferDefaults { keys: &["time"], timekey: Some(5), timekey_wait: Some(0), ..Default::default() }
            }
        };
        setup.buffer(e, &defaults)?;
    }
    match &why_best {
        Some(why) => crate::info!(
            "{}: @type gelf read as fluent-plugin-gelf-best's (the config uses {why}, which only gelf-best accepts)",
            e.pos
        ),
        None => crate::info!("{}: @type gelf read as fluent-plugin-gelf-hs's (fluentd-kubernetes-daemonset's)", e.pos),
    }
    Ok(Box::new(GelfPlan {
        host,
        port,
        chunk,
        opts: Opts {
            flavor,
            tcp,
            use_record_host: e.bool("use_record_host")?.unwrap_or(false),
            add_msec_time: e.bool("add_msec_time")?.unwrap_or(false),
            max_bytes,
            hostname: ctx.hostname.clone(),
        },
    }))
}

impl WriterPlan for GelfPlan {
    fn type_name(&self) -> &'static str {
        "gelf"
    }

    fn describe(&self) -> String {
        let flavor = match self.opts.flavor {
            Flavor::Hs => "gelf-hs",
            Flavor::Best => "gelf-best",
        };
        format!("GELF ({flavor}) {} {}:{}", if self.opts.tcp { "tcp" } else { "udp" }, self.host, self.port)
    }

    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(GelfWriter { id: id.to_string(), plan: self.clone(), tcp: RefCell::new(None) }))
    }
}

pub struct GelfWriter {
    id: String,
    plan: GelfPlan,
    /// The TCP connection, kept between chunks (gelf-rb keeps its socket).
    tcp: RefCell<Option<TcpStream>>,
}

impl GelfWriter {
    async fn write_chunk(&self, chunk: &Chunk) -> Result<usize, WriteError> {
        let tag = String::from_utf8_lossy(&chunk.tag);
        let mut b = Builder::default();
        let (mut out, mut json) = (Vec::new(), Vec::new());
        let mut skipped = 0usize;
        let tcp = self.plan.opts.tcp;
        let addr = self.resolve().await?;
        let mut udp = match tcp {
            true => None,
            false => {
                Some((bind_for(addr).map_err(|e| WriteError::Retry(format!("UDP socket: {e}")))?, Deflater::new()))
            }
        };
        let mut sent = 0;
        let mut dgram = Vec::with_capacity(self.plan.chunk + 12);
        for ev in Events::new(&chunk.data, EntriesFormat::Packed) {
            json.clear();
            let r = b.message(&self.plan.opts, &tag, &ev, &mut json);
            let r = match (&mut udp, r) {
                (_, Err(why)) => Err(why),
                (None, Ok(())) => {
                    out.extend_from_slice(&json);
                    out.push(0);
                    Ok(())
                }
                // Sent as built: one deflate state for the chunk, one datagram buffer.
                (Some((sock, z)), Ok(())) => match z.deflate(&json).and_then(|d| chunks(d.len(), self.plan.chunk)) {
                    Err(why) => Err(why),
                    Ok(1) => {
                        sent += send(sock, z.data(), addr).await?;
                        Ok(())
                    }
                    Ok(count) => {
                        let id = crate::sys::random16();
                        for (i, slice) in z.data().chunks(self.plan.chunk).enumerate() {
                            chunk_datagram(&id, i, count, slice, &mut dgram);
                            sent += send(sock, &dgram, addr).await?;
                        }
                        Ok(())
                    }
                },
            };
            if let Err(why) = r {
                skipped += 1;
                if skipped <= 3 {
                    crate::warn!("{}: an event of tag {tag:?} is not sent to Graylog: {why}", self.id);
                }
            }
        }
        if skipped > 3 {
            crate::warn!("{}: {skipped} events of this chunk were not sent (first reasons above)", self.id);
        }
        if tcp {
            self.send_tcp(addr, &out).await?;
            return Ok(out.len());
        }
        Ok(sent)
    }

    async fn resolve(&self) -> Result<SocketAddr, WriteError> {
        let addrs = crate::http::resolve(&self.plan.host, self.plan.port)
            .await
            .map_err(|e| WriteError::Retry(e.to_string()))?;
        addrs
            .into_iter()
            .next()
            .ok_or_else(|| WriteError::Retry(format!("cannot resolve {}: no address", self.plan.host)))
    }

    /// Writes `bytes` on the kept connection (opening one if needed); on failure the
    /// connection is dropped and the chunk retried (gelf-rb reconnects on its next send).
    async fn send_tcp(&self, addr: SocketAddr, bytes: &[u8]) -> Result<(), WriteError> {
        let stream = self.tcp.borrow_mut().take();
        let mut stream = match stream {
            Some(s) => s,
            None => TcpStream::connect_timeout(addr, TCP_TIMEOUT)
                .await
                .map_err(|e| WriteError::Retry(format!("connect to {addr}: {e}")))?,
        };
        let w = glommio::timer::timeout(TCP_TIMEOUT, async {
            stream.write_all(bytes).await?;
            stream.flush().await?;
            Ok(())
        })
        .await;
        match w {
            Ok(()) => {
                *self.tcp.borrow_mut() = Some(stream);
                Ok(())
            }
            Err(e) => Err(WriteError::Retry(format!("write to {addr}: {e}"))),
        }
    }
}

/// An unbound UDP socket of `addr`'s family.
fn bind_for(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().map_err(std::io::Error::other)?;
    UdpSocket::bind(any).map_err(|e| std::io::Error::other(e.to_string()))
}

async fn send(sock: &UdpSocket, d: &[u8], addr: SocketAddr) -> Result<usize, WriteError> {
    sock.send_to(d, addr).await.map_err(|e| WriteError::Retry(format!("send to {addr}: {e}")))
}

/// zlib (RFC 1950) deflate as gelf-rb's `Zlib::Deflate.deflate`, with one compressor
/// state reused for the messages of a chunk.
struct Deflater {
    z: flate2::Compress,
    out: Vec<u8>,
}

impl Deflater {
    fn new() -> Self {
        Deflater { z: flate2::Compress::new(flate2::Compression::default(), true), out: Vec::new() }
    }

    fn deflate(&mut self, input: &[u8]) -> Result<&[u8], Skip> {
        self.z.reset();
        self.out.clear();
        self.out.reserve(input.len() / 2 + 64);
        loop {
            let read = usize::try_from(self.z.total_in()).map_err(|_| Skip::Deflate)?;
            let rest = input.get(read..).ok_or(Skip::Deflate)?;
            match self.z.compress_vec(rest, &mut self.out, flate2::FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => return Ok(&self.out),
                Ok(_) => self.out.reserve(self.out.capacity().max(64)),
                Err(_) => return Err(Skip::Deflate),
            }
        }
    }

    fn data(&self) -> &[u8] {
        &self.out
    }
}

/// How many GELF chunks a deflated message of `len` bytes takes (1: sent whole).
fn chunks(len: usize, chunk: usize) -> Result<usize, Skip> {
    let count = len.div_ceil(chunk.max(1)).max(1);
    if count > MAX_CHUNKS {
        return Err(Skip::TooBig(count));
    }
    Ok(count)
}

/// GELF chunk `i` of `count`: `0x1e 0x0f`, the 8-byte message id, sequence number and
/// count, then the slice.
fn chunk_datagram(id: &[u8; 16], i: usize, count: usize, slice: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0x1e, 0x0f]);
    out.extend_from_slice(&id[..8]);
    out.push(i as u8);
    out.push(count as u8);
    out.extend_from_slice(slice);
}

impl Writer for GelfWriter {
    fn type_name(&self) -> &'static str {
        "gelf"
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, _vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(self.write_chunk(chunk))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_chunks() {
        // Letters deflate cannot squeeze: over 128 chunks of 1420 bytes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let big: Vec<u8> = (0..400_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'!' + (x % 90) as u8
            })
            .collect();
        let mut z = Deflater::new();
        let n = z.deflate(&big).unwrap().len();
        assert!(matches!(chunks(n, 1420), Err(Skip::TooBig(_))));
        // The state is reused: a second message deflates on its own.
        let small = z.deflate(&big[..5000]).unwrap().to_vec();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&small[..]), &mut back).unwrap();
        assert_eq!(back, &big[..5000]);
        let count = chunks(small.len(), 1420).unwrap();
        assert!(count > 1);
        assert_eq!(chunks(small.len(), 8154).unwrap(), 1, "LAN: one datagram");
        let mut d = Vec::new();
        chunk_datagram(&[7; 16], 1, count, &small[1420..2840], &mut d);
        assert_eq!(
            (&d[..2], &d[2..10], d[10], d[11] as usize, d.len()),
            (&[0x1e, 0x0f][..], &[7; 8][..], 1, count, 1432)
        );
    }
}
