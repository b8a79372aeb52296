//! Tests of `msgpack.rs`.

use super::*;

#[test]
fn flat_fast_paths_agree_with_the_general_walk() {
    // A map of every scalar kind: fixint, negative fixint, nil, bools, u8/u16/u32/u64,
    // i8..i64, f32/f64, fixstr, str8, bin8, fixext1..16, ext8, timestamp fixext8.
    let mut m = vec![0xde, 0x00, 0x0c];
    let kv: &[&[u8]] = &[
        &[0x01],
        &[0xe0],
        &[0xc0],
        &[0xc3],
        &[0xcc, 1],
        &[0xcd, 0, 1],
        &[0xce, 0, 0, 0, 1],
        &[0xcf, 0, 0, 0, 0, 0, 0, 0, 1],
        &[0xd0, 1],
        &[0xd3, 0, 0, 0, 0, 0, 0, 0, 1],
        &[0xca, 0, 0, 0, 0],
        &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0xa1, b'x'],
        &[0xd9, 2, b'a', b'b'],
        &[0xc4, 1, 9],
        &[0xd4, 1, 2],
        &[0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0xc7, 1, 5, 7],
        &[0xd7, 0, 0, 0, 0, 1, 0, 0, 0, 2],
        &[0xc3],
        &[0xa0],
        &[0xc2],
        &[0x7f],
        &[0xc0],
    ];
    for v in kv {
        m.extend_from_slice(v);
    }
    let end = value_end(&m, 0, 0, MAX_DEPTH).unwrap();
    assert_eq!(end, m.len());
    assert_eq!(flat_map_end(&m, 0), Some(end));
    // Every truncation: the fast path never claims more than the buffer holds.
    for cut in 0..m.len() {
        assert_eq!(flat_map_end(&m[..cut], 0), None, "cut at {cut}");
    }
    // A container inside, or not a map at all: the general walk decides.
    assert_eq!(flat_map_end(&[0x81, 0xa1, b'k', 0x91, 0x01], 0), None);
    assert_eq!(flat_map_end(&[0x91, 0x01], 0), None);
    assert_eq!(flat_map_end(&[0x81, 0xc1, 0x01], 0), None);
    assert_eq!(scalar_end_fast(&[0xdb, 0xff, 0xff, 0xff, 0xff], 0), None);
}

#[test]
fn skipper_handles_nested_and_resumes() {
    // [1, {"a": [2, 3]}, "xyz"]
    let v: &[u8] = &[0x93, 0x01, 0x81, 0xa1, b'a', 0x92, 0x02, 0x03, 0xa3, b'x', b'y', b'z'];
    assert_eq!(value_len(v, 10).unwrap(), v.len());
    let mut sk = Skipper::new();
    for i in 0..v.len() {
        assert_eq!(sk.advance(&v[..i], 1000, 10).unwrap(), None, "prefix {i}");
    }
    assert_eq!(sk.advance(v, 1000, 10).unwrap(), Some(v.len()));
}

#[test]
fn depth_limit_is_enforced() {
    let mut v = vec![0x91u8; 200];
    v.push(0xc0);
    let e = value_len(&v, MAX_DEPTH).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::TooDeep { .. }));
}

#[test]
fn huge_declared_lengths_fail_early() {
    let v = [0xc6, 0xff, 0xff, 0xff, 0xff];
    let mut sk = Skipper::new();
    assert!(matches!(sk.advance(&v, 1 << 20, 10).unwrap_err().kind, ErrorKind::FrameTooLarge { .. }));
    let v = [0xdd, 0xff, 0xff, 0xff, 0xff];
    let mut sk = Skipper::new();
    assert!(matches!(sk.advance(&v, 1 << 20, 10).unwrap_err().kind, ErrorKind::CountTooLarge { .. }));
}

#[test]
fn reserved_marker_is_an_error() {
    assert!(matches!(value_len(&[0xc1], 10).unwrap_err().kind, ErrorKind::ReservedMarker(0xc1)));
}

#[test]
fn ints_of_every_width() {
    assert_eq!(read_int(&[0x05]), Some(5));
    assert_eq!(read_int(&[0xff]), Some(-1));
    assert_eq!(read_int(&[0xcd, 0x01, 0x00]), Some(256));
    assert_eq!(read_int(&[0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]), Some(-2));
    assert_eq!(read_int(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Some(u64::MAX as i128));
    assert_eq!(read_int(&[0xcd, 0x01]), None);
}

#[test]
fn patched_placeholder_headers_match_the_appended_ones() {
    use crate::encode::raw;
    for map in [false, true] {
        for n in [0u32, 15, 16, 65535, 65536] {
            let mut patched = vec![0xa1, b'x', 0x80, 0xc0, 0xc3];
            raw::patch_header(&mut patched, 2, n, map);
            let mut want = vec![0xa1, b'x'];
            if map {
                raw::map_header(&mut want, n);
            } else {
                raw::array_header(&mut want, n);
            }
            want.extend_from_slice(&[0xc0, 0xc3]);
            assert_eq!(patched, want, "map {map}, n {n}");
        }
    }
}
