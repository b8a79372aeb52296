//! `run --replay FILE [--speed X] [--loop] [--retime]`: sends a `sink --record` capture
//! to the targets with the same frames (tags, modes, options, bytes), on as many
//! connections as were recorded, at the recorded times (divided by `--speed`).
//! `--retime` re-encodes each frame with the time of sending in place of the recorded
//! event times (same mode, same records). Frames that asked for an ack still do; the
//! acks are matched by chunk id and their latency measured from the intended send time,
//! as in a generated run, so the report, `--slo` and `--report-svg` work the same.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::encode::{self, EntriesType, OptionsOut, TimeFormat};
use spate_protocol::msgpack::Skipper;
use spate_protocol::{parse_frame, EntriesFormat, EventBatch, EventTime, Frame, Limits, Mode};

use crate::capture::Reader;
use crate::generator::{Ctx, Error};
use crate::stats::{wall_ns, LocalHist};
use crate::tls::Conn;

/// Most connections a replay opens (recorded connections beyond it share slots).
pub const MAX_REPLAY_CONNECTIONS: usize = 4096;

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub file: PathBuf,
    /// Time runs this many times faster than recorded (2.0: twice as fast).
    pub speed: f64,
    /// Start again from the beginning at the end (until `--duration`).
    pub looped: bool,
    /// Re-stamp event times with the time of sending.
    pub retime: bool,
}

struct Pending {
    chunk: Bytes,
    intended_ns: u64,
    sent_at: Instant,
    events: u32,
    measured: bool,
}

#[derive(Default)]
struct RState {
    pending: Mutex<VecDeque<Pending>>,
    broken: AtomicBool,
}

struct RConn {
    conn: Conn,
    st: Arc<RState>,
    reader: Option<std::thread::JoinHandle<()>>,
    slot: u32,
}

/// Counts a recording's connections (slots to allocate) without keeping its frames.
pub fn count_connections(file: &Path) -> Result<usize, Error> {
    let mut r = Reader::open(file).map_err(|e| Error::Records(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    while let Some(f) = r.next_frame().map_err(|e| Error::Records(e.to_string()))? {
        if seen.len() < MAX_REPLAY_CONNECTIONS {
            seen.insert(f.conn);
        }
    }
    Ok(seen.len().max(1))
}

fn ack_reader(mut s: Conn, st: Arc<RState>, slot: u32, ctx: Arc<Ctx>) {
    let sh = &ctx.sh;
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let mut local = LocalHist::default();
    while !st.broken.load(Ordering::Relaxed) {
        match s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if buf.len() > 1 << 20 {
            break;
        }
        let mut used = 0;
        loop {
            let mut sk = Skipper::new();
            let Ok(Some(n)) = sk.advance(&buf[used..], 1 << 16, 8) else { break };
            let v = &buf[used..used + n];
            used += n;
            let Ok(id) = encode::parse_ack(v) else { continue };
            let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(k) = p.iter().position(|x| x.chunk[..] == *id) {
                if let Some(x) = p.remove(k) {
                    sh.c.add(&sh.c.acked_total, x.events as u64);
                    if x.measured {
                        sh.c.add(&sh.c.acked_events, x.events as u64);
                        sh.per_conn_add(slot, x.events as u64);
                        local.record(sh, wall_ns().saturating_sub(x.intended_ns) / 1000);
                    }
                }
            }
        }
        buf.drain(..used);
        let mut p = st.pending.lock().unwrap_or_else(|e| e.into_inner());
        while p.front().is_some_and(|x| x.sent_at.elapsed() > ctx.cfg.ack_timeout) {
            if let Some(x) = p.pop_front() {
                if x.measured {
                    sh.c.add(&sh.c.errors, 1);
                    sh.c.add(&sh.c.ack_timeouts, 1);
                }
            }
        }
        drop(p);
        local.maybe_flush(sh, false);
    }
    st.broken.store(true, Ordering::Relaxed);
    local.maybe_flush(sh, true);
}

/// The time format a batch's events were sent with.
fn time_format(b: &EventBatch) -> TimeFormat {
    let first = match b.format {
        EntriesFormat::Message => b.entries.first(),
        EntriesFormat::Packed => b.entries.get(1),
    };
    match first {
        Some(0xd7 | 0xc7) => TimeFormat::EventTime,
        _ => TimeFormat::Integer,
    }
}

/// The frame again, in the same mode with the same records and options, its event
/// times replaced by `now`.
pub fn retime(b: &EventBatch, now: EventTime) -> Vec<u8> {
    let tf = time_format(b);
    let opt = OptionsOut { chunk: b.option.chunk.as_deref(), size: b.option.size, compressed: None };
    let mut out = Vec::with_capacity(b.entries.len() + 64);
    if b.mode == Mode::Message {
        if let Some(e) = b.events().next() {
            encode::message(&mut out, &b.tag, now, tf, e.record.as_bytes(), &opt);
        }
        return out;
    }
    let mut ents = Vec::with_capacity(b.entries.len());
    let mut n = 0;
    for e in b.events() {
        encode::entry(&mut ents, now, tf, e.record.as_bytes());
        n += 1;
    }
    match b.mode {
        Mode::Forward => encode::forward(&mut out, &b.tag, &ents, n, &opt),
        Mode::CompressedPackedForward => encode::compressed_packed_forward(&mut out, &b.tag, &ents, &opt),
        _ => encode::packed_forward(&mut out, &b.tag, &ents, EntriesType::Bin, &opt),
    }
    out
}

/// Sends the recording; runs on its own thread while `generator::run_replay` ticks.
pub(crate) fn send(ctx: Arc<Ctx>, rc: ReplayConfig) {
    let (cfg, sh) = (&ctx.cfg, &ctx.sh);
    let c = &sh.c;
    let limits = Limits::default();
    let mut conns: HashMap<u64, RConn> = HashMap::new();
    let mut offset_ns: u64 = 0;
    let speed = rc.speed.max(1e-6);
    let t0 = Instant::now();
    'outer: loop {
        let mut r = match Reader::open(&rc.file) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("spate-loadgen: --replay: {e}");
                c.add(&c.errors, 1);
                break;
            }
        };
        let (mut first_at, mut last_at, mut frames) = (None, 0u64, 0u64);
        loop {
            if c.stopping() {
                break 'outer;
            }
            let f = match r.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("spate-loadgen: --replay: {e}");
                    break;
                }
            };
            let base = *first_at.get_or_insert(f.at_ns);
            last_at = f.at_ns;
            frames += 1;
            let due = t0 + Duration::from_nanos(((offset_ns + f.at_ns.saturating_sub(base)) as f64 / speed) as u64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if c.stopping() {
                break 'outer;
            }
            let raw = Bytes::from(f.frame);
            let Ok(Frame::Events(b)) = parse_frame(raw.clone(), &limits) else { continue };
            if !conns.contains_key(&f.conn) {
                let slot = (conns.len() % MAX_REPLAY_CONNECTIONS) as u32;
                let addr = cfg.targets[slot as usize % cfg.targets.len()];
                let Some(conn) = crate::threaded::connect(addr, cfg, sh) else { break 'outer };
                let st = Arc::new(RState::default());
                let reader = conn.try_clone().ok().map(|r| {
                    let (st2, ctx2) = (st.clone(), ctx.clone());
                    std::thread::spawn(move || ack_reader(r, st2, slot, ctx2))
                });
                conns.insert(f.conn, RConn { conn, st, reader, slot });
            }
            let Some(rc_conn) = conns.get_mut(&f.conn) else { continue };
            let bytes: Vec<u8>;
            let wire: &[u8] = if rc.retime {
                bytes = retime(&b, EventTime::now());
                &bytes
            } else {
                &raw
            };
            let measured = c.measuring();
            let intended_ns = ctx.start_wall + due.saturating_duration_since(ctx.start).as_nanos() as u64;
            if let Some(ch) = &b.option.chunk {
                let mut p = rc_conn.st.pending.lock().unwrap_or_else(|e| e.into_inner());
                p.push_back(Pending {
                    chunk: ch.clone(),
                    intended_ns,
                    sent_at: Instant::now(),
                    events: b.count,
                    measured,
                });
            }
            if rc_conn.st.broken.load(Ordering::Relaxed) || rc_conn.conn.write_all(wire).is_err() {
                // A replay does not reconnect: the recorded order on a connection matters.
                c.add(&c.errors, 1);
                break 'outer;
            }
            c.add(&c.sent_total, b.count as u64);
            if measured {
                c.add(&c.sent_events, b.count as u64);
                c.add(&c.sent_bytes, wire.len() as u64);
                c.add(&c.sent_frames, 1);
                if b.option.chunk.is_none() {
                    sh.per_conn_add(rc_conn.slot, b.count as u64);
                }
            }
        }
        if !rc.looped || frames == 0 {
            break;
        }
        // The next pass starts one average gap after the last frame.
        let span = last_at.saturating_sub(first_at.unwrap_or(0));
        offset_ns += span + span / frames.max(1);
    }
    // Let the last acks arrive (bounded by the ack timeout), then close.
    let end = Instant::now() + cfg.ack_timeout;
    for rcn in conns.values() {
        while Instant::now() < end
            && !rcn.st.broken.load(Ordering::Relaxed)
            && !rcn.st.pending.lock().map(|p| p.is_empty()).unwrap_or(true)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for (_, mut rcn) in conns.drain() {
        rcn.st.broken.store(true, Ordering::Relaxed);
        rcn.conn.shutdown();
        if let Some(t) = rcn.reader.take() {
            let _ = t.join();
        }
        for p in rcn.st.pending.lock().map(|mut p| p.drain(..).collect::<Vec<_>>()).unwrap_or_default() {
            if p.measured {
                c.add(&c.errors, 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use spate_protocol::FrameDecoder;

    #[test]
    fn retime_keeps_mode_tag_records_and_chunk() {
        let rec = {
            let mut r = Vec::new();
            encode::raw::map_header(&mut r, 1);
            encode::raw::str(&mut r, b"k");
            encode::raw::str(&mut r, b"v");
            r
        };
        let old = EventTime::new(1000, 5);
        let opt = OptionsOut { chunk: Some(b"abc"), size: None, compressed: None };
        let mut ents = Vec::new();
        encode::entry(&mut ents, old, TimeFormat::EventTime, &rec);
        encode::entry(&mut ents, old, TimeFormat::EventTime, &rec);
        let mut frames = Vec::new();
        let mut f = Vec::new();
        encode::message(&mut f, b"m", old, TimeFormat::Integer, &rec, &opt);
        frames.push((f.clone(), Mode::Message));
        f.clear();
        encode::forward(&mut f, b"f", &ents, 2, &opt);
        frames.push((f.clone(), Mode::Forward));
        f.clear();
        encode::packed_forward(&mut f, b"p", &ents, EntriesType::Bin, &opt);
        frames.push((f.clone(), Mode::PackedForward));
        f.clear();
        encode::compressed_packed_forward(&mut f, b"c", &ents, &opt);
        frames.push((f.clone(), Mode::CompressedPackedForward));
        let now = EventTime::new(2000, 7);
        for (raw, mode) in frames {
            let Frame::Events(b) = parse_frame(Bytes::from(raw), &Limits::default()).unwrap() else { panic!() };
            let out = retime(&b, now);
            let mut buf = BytesMut::from(&out[..]);
            let Some(Frame::Events(n)) = FrameDecoder::new(Limits::default()).decode(&mut buf).unwrap() else {
                panic!()
            };
            assert_eq!(
                (n.mode, &n.tag, n.count, n.option.chunk.as_deref()),
                (mode, &b.tag, b.count, Some(&b"abc"[..]))
            );
            for (e, o) in n.events().zip(b.events()) {
                assert_eq!(e.record.as_bytes(), o.record.as_bytes());
                let want = if mode == Mode::Message { EventTime::new(2000, 0) } else { now };
                assert_eq!(e.time, want, "{mode:?}");
            }
        }
    }
}
