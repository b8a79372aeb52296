//! Decodes a file of Forward frames and prints what it finds (debugging aid).
fn main() {
    let path = std::env::args().nth(1).expect("usage: decode_file FILE");
    let data = std::fs::read(path).expect("read");
    let mut buf = bytes::BytesMut::from(&data[..]);
    let mut dec = spate_protocol::FrameDecoder::new(Default::default());
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(spate_protocol::Frame::Events(b))) => println!(
                "{:?} tag={:?} count={} invalid={}",
                b.mode,
                String::from_utf8_lossy(&b.tag),
                b.count,
                b.invalid
            ),
            Ok(Some(f)) => println!("{f:?}"),
            Ok(None) => break,
            Err(e) => {
                println!("error: {e}");
                break;
            }
        }
    }
    println!("{} bytes left", buf.len());
}
