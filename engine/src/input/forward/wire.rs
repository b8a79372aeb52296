//! Byte-level helpers of in_forward: reading into a connection's buffer, adding the
//! source fields to records (`source_address_key`...), the `<security>` handshake, and
//! the UDP heartbeat.

use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use spate_protocol::{EventBatch, FrameDecoder, Limits};

use crate::tls::Stream;

/// Reads up to `max` bytes into the spare capacity of `buf`.
///
/// On a plain TCP stream it first takes what is waiting with a non-blocking `recv`
/// straight into the spare capacity: under load data is nearly always there, and the
/// read window (up to 256 KiB) need not be zero-filled first (perf put that memset at
/// 6% of S1's cycles). Otherwise, and for TLS, the window is zero-filled and read
/// through the async reader, which waits for data. (glommio's plain TcpStream keeps no
/// receive buffer of its own, so reading its socket directly skips nothing.)
pub(super) async fn read_into(stream: &mut Stream, buf: &mut BytesMut, max: usize) -> std::io::Result<usize> {
    let len = buf.len();
    let spare = (buf.capacity() - len).min(max);
    if let Some(r) = stream.plain_fd().and_then(|fd| crate::sys::recv_waiting(fd, buf, spare)) {
        return r;
    }
    buf.resize(len + spare, 0);
    let r = stream.read(&mut buf[len..]).await;
    let n = *r.as_ref().unwrap_or(&0);
    buf.truncate(len + n);
    r
}

/// Adds string fields to every record (source_address_key and friends): re-encodes the
/// records, so it is only done when configured.
pub(super) fn add_fields(batch: &EventBatch, fields: &[(&[u8], &[u8])]) -> EventBatch {
    use spate_protocol::encode::raw;
    let mut out = Vec::with_capacity(batch.entries.len() + batch.count as usize * 32);
    for ev in batch.events() {
        out.push(0x92);
        out.extend_from_slice(ev.time_raw);
        raw::map_header(&mut out, (ev.record.len() + fields.len()) as u32);
        for (k, v) in ev.record.fields() {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        for (k, v) in fields {
            raw::str(&mut out, k);
            raw::str(&mut out, v);
        }
    }
    // An empty batch (nothing valid to extend) stays as it is.
    batch.with_packed_entries(bytes::Bytes::from(out), batch.count).unwrap_or_else(|| batch.clone())
}

/// fluentd's UDP heartbeat: answer every datagram with one `\0` byte.
pub(super) async fn heartbeat_loop(sock: glommio::net::UdpSocket) {
    let mut buf = [0u8; 128];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((_, from)) => {
                let _ = sock.send_to(b"\0", from).await;
            }
            Err(_) => glommio::timer::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The server side of the handshake: HELO, read the PING, answer PONG. Bytes after
/// the PING stay in `buf` for the frame decoder. `keepalive`: the HELO offers it
/// (not with `deny_keepalive`).
pub(super) async fn handshake(
    stream: &mut Stream,
    buf: &mut BytesMut,
    sec: &crate::security::ServerSecurity,
    ip: std::net::IpAddr,
    keepalive: bool,
) -> Result<Option<String>, String> {
    let hs = crate::security::ServerHandshake::new();
    let mut out = Vec::new();
    hs.helo(keepalive, &mut out);
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut dec = FrameDecoder::new(Limits { max_frame_size: 64 << 10, ..Limits::default() });
    let ping = loop {
        match dec.next_value(buf) {
            Ok(Some(v)) => break v,
            Ok(None) => {}
            Err(e) => return Err(format!("invalid ping message: {e}")),
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        match read_into(stream, buf, 4096).await {
            Ok(0) => return Err("connection closed before PING".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    };
    out.clear();
    let r = hs.check_user(sec, &ping, ip, &mut out);
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    r
}
