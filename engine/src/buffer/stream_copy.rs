//! Appending a large batch to a memory chunk with non-temporal (streaming) stores.
//!
//! A memory chunk's entries are written once and read again only when the chunk is
//! sent, by then long out of the cache (a relay at full speed holds hundreds of MB).
//! Ordinary stores first read every destination line into the cache (and evict the
//! receive buffer and the layouts the next frames are checked against); streaming
//! stores write the lines straight to memory. glibc's memcpy streams only copies of
//! several MB, and a forwarded frame is tens or hundreds of KB.

/// Batches smaller than this are copied with `extend_from_slice`: a small chunk may
/// still be read from the cache, and each streaming copy ends with a fence. Only S4's
/// frames (about 160 KB) were measured; the threshold itself was not tuned.
pub const STREAM_MIN: usize = 16 << 10;

/// Appends `src` to `dst`; with streaming stores on x86_64 when `src` is at least
/// [`STREAM_MIN`] bytes.
#[inline]
pub fn extend_streaming(dst: &mut Vec<u8>, src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if src.len() >= STREAM_MIN {
        dst.reserve(src.len());
        let start = dst.len();
        // SAFETY: `reserve` made room for `src.len()` bytes after `start`; `src` does
        // not overlap `dst`'s spare capacity (it is borrowed while `dst` is borrowed
        // mutably); every byte in `start..start + src.len()` is written before `set_len`.
        unsafe {
            x86::copy_streaming(dst.as_mut_ptr().add(start), src);
            dst.set_len(start + src.len());
        }
        return;
    }
    dst.extend_from_slice(src);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};

    /// Copies `src` to `d` (`src.len()` writable bytes, not overlapping `src`): the
    /// unaligned head and the tail with plain copies, 64-byte lines in between with
    /// SSE2 streaming stores (SSE2 is part of x86_64), then a store fence so the lines
    /// are ordered before anything that follows (a send reads them).
    ///
    /// # Safety
    /// `d` must be valid for `src.len()` bytes of writes and not overlap `src`.
    pub(super) unsafe fn copy_streaming(d: *mut u8, src: &[u8]) {
        let n = src.len();
        let s = src.as_ptr();
        let head = ((d as usize).wrapping_neg() & 63).min(n);
        std::ptr::copy_nonoverlapping(s, d, head);
        let mut i = head;
        while i + 64 <= n {
            let a = _mm_loadu_si128(s.add(i) as *const __m128i);
            let b = _mm_loadu_si128(s.add(i + 16) as *const __m128i);
            let c = _mm_loadu_si128(s.add(i + 32) as *const __m128i);
            let e = _mm_loadu_si128(s.add(i + 48) as *const __m128i);
            // `d + i` is 64-byte aligned: `head` aligned it and `i` grows by 64.
            _mm_stream_si128(d.add(i) as *mut __m128i, a);
            _mm_stream_si128(d.add(i + 16) as *mut __m128i, b);
            _mm_stream_si128(d.add(i + 32) as *mut __m128i, c);
            _mm_stream_si128(d.add(i + 48) as *mut __m128i, e);
            i += 64;
        }
        std::ptr::copy_nonoverlapping(s.add(i), d.add(i), n - i);
        _mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_exactly_what_extend_from_slice_does() {
        // Sizes around the threshold and the 64-byte lines, after several prefix lengths
        // (so the destination starts at several offsets within a line).
        let src: Vec<u8> = (0..STREAM_MIN * 3).map(|i| (i * 7 + i / 251) as u8).collect();
        for len in [0, 1, 63, 64, 65, STREAM_MIN - 1, STREAM_MIN, STREAM_MIN + 1, STREAM_MIN + 63, STREAM_MIN * 3] {
            for pre in [0, 1, 7, 16, 33, 63, 64, 100] {
                for off in [0, 1, 13] {
                    let Some(part) = src.get(off..off + len) else { continue };
                    let mut want: Vec<u8> = (0..pre).map(|i| i as u8 ^ 0x5a).collect();
                    let mut got = want.clone();
                    want.extend_from_slice(part);
                    extend_streaming(&mut got, part);
                    assert_eq!(got, want, "len {len} after {pre} bytes, source offset {off}");
                }
            }
        }
    }

    #[test]
    fn grows_the_vector_when_it_has_no_room() {
        let src = vec![0xabu8; STREAM_MIN * 2 + 5];
        let mut v = Vec::new();
        extend_streaming(&mut v, &src);
        extend_streaming(&mut v, &src);
        assert_eq!(v.len(), src.len() * 2);
        assert!(v.iter().all(|&b| b == 0xab));
    }
}
