//! An in-process Forward sink for relay scenarios: counts events, acks when asked, and
//! builds the end-to-end latency histogram from the generator's send stamp
//! (`_spate_ts`, nanoseconds since the epoch) carried in every record.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use spate_protocol::{encode, Frame, FrameDecoder, Limits};

pub struct Sink {
    pub addr: SocketAddr,
    pub events: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    hist: Arc<Mutex<Histogram<u64>>>,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Sink {
    pub fn start(stamp_field: &'static str) -> std::io::Result<Sink> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let events = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let hist = Arc::new(Mutex::new(
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).map_err(std::io::Error::other)?,
        ));
        let (ev, st, hi) = (events.clone(), stop.clone(), hist.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let (ev, st, hi) = (ev.clone(), st.clone(), hi.clone());
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                        std::thread::spawn(move || {
                            let mut dec = FrameDecoder::new(Limits::default());
                            let mut buf = BytesMut::with_capacity(1 << 20);
                            let mut tmp = vec![0u8; 1 << 20];
                            let mut local =
                                Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
                            let mut acks = Vec::new();
                            while !st.load(Ordering::Relaxed) {
                                let n = match s.read(&mut tmp) {
                                    Ok(0) => break,
                                    Ok(n) => n,
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                        ) =>
                                    {
                                        continue
                                    }
                                    Err(_) => break,
                                };
                                buf.extend_from_slice(&tmp[..n]);
                                loop {
                                    match dec.decode(&mut buf) {
                                        Ok(Some(Frame::Events(b))) => {
                                            let now = now_ns();
                                            for e in b.events() {
                                                if let Some(ts) =
                                                    e.record.get(stamp_field.as_bytes()).and_then(|v| v.as_i64())
                                                {
                                                    let us = now.saturating_sub(ts as u64) / 1000;
                                                    let _ = local.record(us.max(1));
                                                }
                                            }
                                            ev.fetch_add(b.count as u64, Ordering::Relaxed);
                                            if let Some(c) = &b.option.chunk {
                                                encode::ack(&mut acks, c);
                                            }
                                        }
                                        Ok(Some(Frame::Heartbeat)) => {}
                                        Ok(None) => break,
                                        Err(_) => {
                                            let _ = hi.lock().map(|mut h| h.add(&local));
                                            return;
                                        }
                                    }
                                }
                                if !acks.is_empty() {
                                    if s.write_all(&acks).is_err() {
                                        break;
                                    }
                                    acks.clear();
                                }
                            }
                            let _ = hi.lock().map(|mut h| h.add(&local));
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Sink { addr, events, stop, hist })
    }

    pub fn count(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Stops and returns the end-to-end latency histogram.
    pub fn stop(self) -> Histogram<u64> {
        self.stop.store(true, Ordering::Relaxed);
        // Connection threads notice within their 200 ms read timeout.
        std::thread::sleep(Duration::from_millis(400));
        let h = self.hist.lock().map(|h| h.clone());
        h.unwrap_or_else(|_| Histogram::new(3).expect("histogram"))
    }
}
