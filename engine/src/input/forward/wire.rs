//! Byte-level helpers of in_forward: reading into a connection's buffer, adding the
//! source fields to records (`source_address_key`...), and the UDP heartbeat.

use std::time::Duration;

use bytes::BytesMut;
use futures_lite::AsyncReadExt;
use spate_protocol::EventBatch;

use crate::tls::Stream;

/// Reads up to `max` bytes into the spare capacity of `buf` (zero-filled once per read,
/// which is cheap next to the syscall and keeps this free of `unsafe`).
pub(super) async fn read_into(stream: &mut Stream, buf: &mut BytesMut, max: usize) -> std::io::Result<usize> {
    let len = buf.len();
    let spare = (buf.capacity() - len).min(max);
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
