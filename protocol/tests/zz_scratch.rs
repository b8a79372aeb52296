//! scratch
use bytes::BytesMut;
use spate_protocol::compress::{self, Compression};
use spate_protocol::encode::{self, raw, EntriesType, OptionsOut, TimeFormat};
use spate_protocol::*;

fn entries(n: u32) -> Vec<u8> {
    let mut e = Vec::new();
    for i in 0..n {
        let mut r = Vec::new();
        raw::map_header(&mut r, 1);
        raw::str(&mut r, b"k");
        raw::uint(&mut r, i as u64);
        encode::entry(&mut e, EventTime::new(i, 0), TimeFormat::EventTime, &r);
    }
    e
}

#[test]
fn truncated_compressed() {
    let e = entries(100);
    let g = compress::gzip(&e, 6);
    for cut in [g.len() - 1, g.len() - 4, g.len() - 8, g.len() - 9, g.len() / 2] {
        println!(
            "gzip cut {cut}/{}: {:?}",
            g.len(),
            compress::inflate(Compression::Gzip, &g[..cut], 1 << 20).map(|v| v.len())
        );
    }
    let z = compress::zstd_compress(&e, 3);
    for cut in [z.len() - 1, z.len() - 4, z.len() / 2] {
        println!(
            "zstd cut {cut}/{}: {:?}",
            z.len(),
            compress::inflate(Compression::Zstd, &z[..cut], 1 << 20).map(|v| v.len())
        );
    }
    let mut gg = g.clone();
    gg.extend_from_slice(b"junk");
    println!("gzip trailing junk: {:?}", compress::inflate(Compression::Gzip, &gg, 1 << 20).map(|v| v.len()));
    let mut gg = g.clone();
    gg.extend_from_slice(&[0, 0, 0, 0]);
    println!("gzip trailing zeros: {:?}", compress::inflate(Compression::Gzip, &gg, 1 << 20).map(|v| v.len()));
    let mut zz = z.clone();
    zz.extend_from_slice(b"junk");
    println!("zstd trailing junk: {:?}", compress::inflate(Compression::Zstd, &zz, 1 << 20).map(|v| v.len()));
}

#[test]
fn json_limit() {
    let j = br#"["t", 1, {"k": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]"#;
    let mut d = FrameDecoder::new(Limits { max_frame_size: 20, ..Default::default() });
    let mut b = BytesMut::from(&j[..]);
    println!("json over limit: {:?}", d.decode(&mut b).map(|f| f.is_some()));
    let mut d = FrameDecoder::new(Limits::default());
    let mut b = BytesMut::from(&b"[\"t\",\n1,\n{\"k\": x}]"[..]);
    println!("json err: {:?}", d.decode(&mut b));
}

#[test]
fn options_lenient() {
    for (k, v) in [("chunk", 0xc0u8), ("compressed", 0xc0), ("size", 0xa0), ("fluent_signal", 0xc0)] {
        let mut f = vec![0x93];
        raw::str(&mut f, b"t");
        raw::bin(&mut f, &entries(1));
        raw::map_header(&mut f, 1);
        raw::str(&mut f, k.as_bytes());
        f.push(v);
        let mut b = BytesMut::from(&f[..]);
        println!("{k}={v:x}: {:?}", FrameDecoder::new(Limits::default()).decode(&mut b).map(|f| f.is_some()));
    }
}
