//! The recording format of `sink --record` and `run --replay`: every received frame with
//! its arrival time and connection, streamed through zstd (level 1), so a capture of
//! production traffic is compact and neither side holds more than a frame in memory.
//!
//! Layout of the decompressed stream: the magic `SPATEREC`, a version byte (1), the
//! wall-clock time of the first byte (u64 ns since the epoch, big endian); then per frame
//! three LEB128 varints (arrival in ns after that time, connection number, frame length)
//! and the frame's msgpack bytes exactly as received (JSON frames as the msgpack they
//! decode to).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"SPATEREC";
const VERSION: u8 = 1;
/// Largest frame a recording may hold (the decoder's default frame limit).
pub const MAX_FRAME: u64 = (256 << 20) + (64 << 10);

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0}: {1}")]
    Io(String, io::Error),
    #[error("{0}: not a spate-loadgen recording (bad magic or version)")]
    Format(String),
    #[error("{0}: frame {1} claims {2} bytes, more than the {MAX_FRAME} a frame may have")]
    TooLarge(String, u64, u64),
}

/// Writes a recording.
pub struct Recorder {
    enc: zstd::Encoder<'static, BufWriter<File>>,
    start_ns: u64,
    frames: u64,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Recorder {
    pub fn create(path: &Path, start_ns: u64) -> Result<Recorder, CaptureError> {
        let name = path.display().to_string();
        let f = File::create(path).map_err(|e| CaptureError::Io(name.clone(), e))?;
        let mut enc = zstd::Encoder::new(BufWriter::with_capacity(1 << 20, f), 1)
            .map_err(|e| CaptureError::Io(name.clone(), e))?;
        let mut hdr = Vec::with_capacity(17);
        hdr.extend_from_slice(MAGIC);
        hdr.push(VERSION);
        hdr.extend_from_slice(&start_ns.to_be_bytes());
        enc.write_all(&hdr).map_err(|e| CaptureError::Io(name, e))?;
        Ok(Recorder { enc, start_ns, frames: 0 })
    }

    /// Appends one frame that arrived at `at_ns` (wall clock) on connection `conn`.
    pub fn write(&mut self, at_ns: u64, conn: u64, frame: &[u8]) -> io::Result<()> {
        let mut h = Vec::with_capacity(24);
        varint(&mut h, at_ns.saturating_sub(self.start_ns));
        varint(&mut h, conn);
        varint(&mut h, frame.len() as u64);
        self.enc.write_all(&h)?;
        self.enc.write_all(frame)?;
        self.frames += 1;
        Ok(())
    }

    /// Pushes what is buffered to the file (a reader sees every frame written so far).
    pub fn flush(&mut self) -> io::Result<()> {
        self.enc.flush()
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Ends the stream.
    pub fn finish(self) -> io::Result<()> {
        self.enc.finish()?.flush()
    }
}

/// One recorded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Arrival, in ns after the recording's start.
    pub at_ns: u64,
    pub conn: u64,
    pub frame: Vec<u8>,
}

/// Reads a recording frame by frame.
pub struct Reader {
    dec: zstd::Decoder<'static, BufReader<File>>,
    name: String,
    pub start_ns: u64,
    n: u64,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, CaptureError> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|e| CaptureError::Io(name.clone(), e))?;
        let mut dec = zstd::Decoder::new(f).map_err(|e| CaptureError::Io(name.clone(), e))?;
        let mut hdr = [0u8; 17];
        dec.read_exact(&mut hdr).map_err(|_| CaptureError::Format(name.clone()))?;
        if &hdr[..8] != MAGIC || hdr[8] != VERSION {
            return Err(CaptureError::Format(name));
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&hdr[9..17]);
        Ok(Reader { dec, name, start_ns: u64::from_be_bytes(s), n: 0 })
    }

    /// Reads a varint; `Ok(None)` at a clean end of the stream.
    fn varint(&mut self, first: bool) -> Result<Option<u64>, CaptureError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let mut b = [0u8; 1];
            match self.dec.read(&mut b) {
                Ok(0) if first && shift == 0 => return Ok(None),
                Ok(0) => return Err(self.truncated()),
                Ok(_) => {}
                // A recording cut off (the sink killed) ends where its data ends.
                Err(_) if first && shift == 0 => return Ok(None),
                Err(e) => return Err(CaptureError::Io(self.name.clone(), e)),
            }
            v |= ((b[0] & 0x7f) as u64) << shift;
            if b[0] & 0x80 == 0 {
                return Ok(Some(v));
            }
        }
        Err(CaptureError::Format(self.name.clone()))
    }

    fn truncated(&self) -> CaptureError {
        CaptureError::Io(
            self.name.clone(),
            io::Error::new(io::ErrorKind::UnexpectedEof, format!("truncated after frame {}", self.n)),
        )
    }

    /// The next frame, or `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<Recorded>, CaptureError> {
        let Some(at_ns) = self.varint(true)? else { return Ok(None) };
        let conn = self.varint(false)?.ok_or_else(|| self.truncated())?;
        let len = self.varint(false)?.ok_or_else(|| self.truncated())?;
        if len > MAX_FRAME {
            return Err(CaptureError::TooLarge(self.name.clone(), self.n, len));
        }
        let mut frame = Vec::new();
        (&mut self.dec).take(len).read_to_end(&mut frame).map_err(|e| CaptureError::Io(self.name.clone(), e))?;
        if frame.len() as u64 != len {
            return Err(self.truncated());
        }
        self.n += 1;
        Ok(Some(Recorded { at_ns, conn, frame }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let dir = std::env::temp_dir().join(format!("lg-cap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.rec");
        let mut r = Recorder::create(&p, 1_000).unwrap();
        r.write(1_500, 3, b"\x92\xa1a\x90").unwrap();
        r.write(900, 300, &vec![7u8; 70_000]).unwrap();
        r.finish().unwrap();
        let mut rd = Reader::open(&p).unwrap();
        assert_eq!(rd.start_ns, 1_000);
        assert_eq!(rd.next_frame().unwrap(), Some(Recorded { at_ns: 500, conn: 3, frame: b"\x92\xa1a\x90".to_vec() }));
        let f = rd.next_frame().unwrap().unwrap();
        assert_eq!((f.at_ns, f.conn, f.frame.len()), (0, 300, 70_000));
        assert_eq!(rd.next_frame().unwrap(), None);
        std::fs::write(&p, b"not a recording").unwrap();
        assert!(Reader::open(&p).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
