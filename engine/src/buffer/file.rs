//! The file buffer's store: one directory per shard (`<path>/shard-<N>/`) of chunk files
//! (format in [`super::chunk_file`]), recovered on start, and the handle appends use to
//! ask the shard's group commit ([`super::sync`]) for a write.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use spate_protocol::hex;

use super::chunk::{Chunk, ChunkDisk};
use super::chunk_file::{recover, SUFFIX};
use super::sync::Syncer;

/// The file store of one buffer on one shard.
pub struct FileStore {
    /// This shard's chunk directory.
    pub dir: PathBuf,
    pub(crate) syncer: Rc<Syncer>,
}

impl FileStore {
    /// Opens (creating) `<path>/shard-<shard>` and recovers every chunk a previous run
    /// left under `<path>/shard-<M>` with `M % workers == shard` (so a changed worker
    /// count still recovers everything exactly once). Returns the recovered chunks in
    /// creation order.
    pub fn open(
        path: &Path,
        shard: u32,
        workers: u32,
        syncer: Rc<Syncer>,
    ) -> Result<(FileStore, Vec<Chunk>), super::error::BufferError> {
        let io = |p: &Path, e: std::io::Error| super::error::BufferError::Io {
            path: p.display().to_string(),
            reason: e.to_string(),
        };
        let conf_path = path;
        let owned = spate_dir(path);
        let path = owned.as_path();
        let dir = path.join(format!("shard-{shard}"));
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        if shard == 0 {
            super::fluentd_import::import_fluentd(conf_path, &dir);
        }
        let mut files = Vec::new();
        let entries = std::fs::read_dir(path).map_err(|e| io(path, e))?;
        for d in entries.flatten() {
            let name = d.file_name();
            let Some(n) = name.to_str().and_then(|s| s.strip_prefix("shard-")).and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if n % workers.max(1) != shard {
                continue;
            }
            let Ok(rd) = std::fs::read_dir(d.path()) else { continue };
            for f in rd.flatten() {
                let p = f.path();
                if p.to_str().is_some_and(|s| s.ends_with(SUFFIX)) {
                    files.push(p);
                } else if p.extension().is_some_and(|e| e == "acked") && !p.with_extension("chunk").exists() {
                    // The progress of a chunk deleted just before a crash.
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        // Ids start with the creation time: name order is creation order.
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        let mut chunks = Vec::new();
        let (mut events, mut bytes) = (0u64, 0u64);
        for p in files {
            match recover(&p) {
                Ok(Some(c)) => {
                    events += c.count as u64;
                    bytes += c.size as u64;
                    chunks.push(c);
                }
                Ok(None) => {}
                Err(reason) => {
                    let aside = p.with_extension("corrupt");
                    let _ = std::fs::rename(&p, &aside);
                    crate::error!(
                        "file buffer: chunk {} cannot be recovered ({reason}); moved aside to {}",
                        p.display(),
                        aside.display()
                    );
                }
            }
        }
        if !chunks.is_empty() {
            crate::info!(
                "file buffer {}: recovered {} chunks ({events} events, {bytes} bytes) left by a previous run; flushing them first",
                path.display(),
                chunks.len()
            );
        }
        Ok((FileStore { dir, syncer }, chunks))
    }

    /// Disk state for a new chunk (the file is created by its first commit).
    pub(crate) fn new_chunk(&self, id: &[u8; 16]) -> ChunkDisk {
        ChunkDisk {
            path: self.dir.join(format!("{}{SUFFIX}", hex(id))),
            file: None,
            len: 0,
            pending_count: 0,
            syncing: false,
        }
    }
}

/// spate's chunk directory for a configured `path`: the path itself, or for a fluentd
/// file pattern (`/dir/name.*.log`) a directory beside it (`/dir/name.spate.log`).
pub fn spate_dir(path: &Path) -> PathBuf {
    let s = path.to_string_lossy();
    if s.contains('*') {
        PathBuf::from(s.replace('*', "spate"))
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{File, OpenOptions};
    use std::io::Write;

    use bytes::Bytes;

    use super::super::chunk_file::{apply, header_bytes, job_for, load_blocking, run_jobs, segment_header};
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("spate-fb-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    fn write_chunk(dir: &Path, id: [u8; 16], tag: &[u8], segs: &[(&[u8], u32)]) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(format!("{}{SUFFIX}", hex(&id)));
        let mut f = File::create(&p).unwrap();
        f.write_all(&header_bytes(&id, tag, None, &[])).unwrap();
        for (d, n) in segs {
            f.write_all(&segment_header(d, *n)).unwrap();
            f.write_all(d).unwrap();
        }
        p
    }

    #[test]
    fn recovers_good_chunk_and_cuts_torn_tail() {
        let root = tmp("torn");
        let shard0 = root.join("shard-0");
        let good = write_chunk(&shard0, [1; 16], b"app.a", &[(b"abcdef", 2), (b"ghij", 1)]);
        let torn = write_chunk(&shard0, [2; 16], b"app.b", &[(b"0123456789", 3)]);
        // A second segment whose data was cut short by the kill.
        let mut f = OpenOptions::new().append(true).open(&torn).unwrap();
        f.write_all(&segment_header(b"xxxxxxxx", 4)).unwrap();
        f.write_all(b"xxx").unwrap();
        drop(f);
        let torn_len_before = std::fs::metadata(&torn).unwrap().len();

        let (_, chunks) = FileStore::open(&root, 0, 1, Rc::new(Syncer::default())).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[0].count, chunks[0].size, &chunks[0].tag[..]), (3, 10, &b"app.a"[..]));
        assert_eq!((chunks[1].count, chunks[1].size), (3, 10));
        assert!(std::fs::metadata(&torn).unwrap().len() < torn_len_before);
        let d = chunks[0].disk.as_ref().unwrap();
        assert_eq!(load_blocking(&good, d.file.as_ref(), d.len).unwrap(), b"abcdefghij");
        let d = chunks[1].disk.as_ref().unwrap();
        assert_eq!(load_blocking(&torn, d.file.as_ref(), d.len).unwrap(), b"0123456789");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn corrupt_segment_is_cut_and_bad_header_moved_aside() {
        let root = tmp("corrupt");
        let shard0 = root.join("shard-0");
        let p = write_chunk(&shard0, [3; 16], b"t", &[(b"good", 1), (b"evil", 1)]);
        // Flip a byte in the second segment's data.
        let mut raw = std::fs::read(&p).unwrap();
        let n = raw.len();
        raw[n - 1] ^= 0xff;
        std::fs::write(&p, &raw).unwrap();
        let bad = write_chunk(&shard0, [4; 16], b"some.tag", &[(b"data", 1)]);
        let mut raw = std::fs::read(&bad).unwrap();
        raw[36] ^= 0x20; // inside the tag: the header checksum no longer matches
        std::fs::write(&bad, &raw).unwrap();
        let empty = shard0.join(format!("{}{SUFFIX}", hex(&[5; 16])));
        std::fs::write(&empty, b"SPA").unwrap();

        let (_, chunks) = FileStore::open(&root, 0, 1, Rc::new(Syncer::default())).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].count, chunks[0].size), (1, 4));
        assert!(!bad.exists());
        assert!(bad.with_extension("corrupt").exists());
        assert!(!empty.exists());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn takes_over_chunks_fluentd_left() {
        use spate_protocol::{encode, EventTime};
        let root = tmp("fluentd");
        std::fs::create_dir_all(&root).unwrap();
        let mut data = Vec::new();
        for i in 0..3u32 {
            encode::entry(
                &mut data,
                EventTime::new(1_700_000_000 + i, 5),
                encode::TimeFormat::EventTime,
                &[0x81, 0xa1, b'k', i as u8],
            );
        }
        let chunk = root.join("buffer.q5e0a1b2c3d4e5f60718293a4b5c6d7e8.log");
        std::fs::write(&chunk, &data).unwrap();
        // fluentd's .meta: header, size, then {"timekey"=>nil, "tag"=>"app.x", ...}.
        let mut m = Vec::new();
        encode::raw::map_header(&mut m, 3);
        encode::raw::str(&mut m, b"timekey");
        m.push(0xc0);
        encode::raw::str(&mut m, b"tag");
        encode::raw::str(&mut m, b"app.x");
        encode::raw::str(&mut m, b"s");
        encode::raw::uint(&mut m, 3);
        let mut meta = vec![0xc1, 0x00];
        meta.extend_from_slice(&(m.len() as u32).to_be_bytes());
        meta.extend_from_slice(&m);
        std::fs::write(root.join("buffer.q5e0a1b2c3d4e5f60718293a4b5c6d7e8.log.meta"), &meta).unwrap();
        // An out_file buffer chunk (formatted text) is left alone.
        let text = root.join("buffer.b5e0a1b2c3d4e5f60718293a4b5c6d7e9.log");
        std::fs::write(&text, b"2026-01-01T00:00:00+00:00\tapp\t{}\n").unwrap();
        std::fs::write(root.join("buffer.b5e0a1b2c3d4e5f60718293a4b5c6d7e9.log.meta"), &meta).unwrap();

        let (_, chunks) = FileStore::open(&root, 0, 1, Rc::new(Syncer::default())).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!((&chunks[0].tag[..], chunks[0].count, chunks[0].timekey), (&b"app.x"[..], 3, None));
        let d = chunks[0].disk.as_ref().unwrap();
        assert_eq!(load_blocking(&d.path, None, d.len).unwrap(), data);
        assert!(!chunk.exists(), "fluentd's copy is removed once spate's is durable");
        assert!(text.exists(), "a chunk spate cannot read stays for fluentd");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn shards_recover_by_modulo() {
        let root = tmp("modulo");
        write_chunk(&root.join("shard-0"), [6; 16], b"a", &[(b"x", 1)]);
        write_chunk(&root.join("shard-1"), [7; 16], b"b", &[(b"y", 1)]);
        write_chunk(&root.join("shard-2"), [8; 16], b"c", &[(b"z", 1)]);
        // Two workers now: shard 0 takes shard-0 and shard-2, shard 1 takes shard-1.
        let (_, c0) = FileStore::open(&root, 0, 2, Rc::new(Syncer::default())).unwrap();
        let (_, c1) = FileStore::open(&root, 1, 2, Rc::new(Syncer::default())).unwrap();
        assert_eq!(c0.iter().map(|c| &c.tag[..]).collect::<Vec<_>>(), vec![&b"a"[..], &b"c"[..]]);
        assert_eq!(c1.iter().map(|c| &c.tag[..]).collect::<Vec<_>>(), vec![&b"b"[..]]);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn jobs_write_segments_that_recover() {
        let root = tmp("jobs");
        let dir = root.join("shard-0");
        std::fs::create_dir_all(&dir).unwrap();
        let store = FileStore { dir: dir.clone(), syncer: Rc::new(Syncer::default()) };
        let id = [9u8; 16];
        let mut c =
            super::super::chunk::recovered_chunk(id, Bytes::from_static(b"tag"), None, 0, 0, store.new_chunk(&id));
        c.data.extend_from_slice(b"first");
        c.vars = Bytes::from_static(b"\x02\0\0\0ns");
        c.count = 1;
        c.size = 5;
        c.disk.as_mut().unwrap().pending_count = 1;
        let j = job_for(&mut c, None).unwrap();
        let d = run_jobs(vec![j]);
        assert!(d[0].err.is_none() && d[0].created);
        apply(&mut c, &d[0]);
        c.data.extend_from_slice(b"second");
        c.count += 2;
        c.size += 6;
        c.disk.as_mut().unwrap().pending_count = 2;
        let d = run_jobs(vec![job_for(&mut c, None).unwrap()]);
        apply(&mut c, &d[0]);
        let disk = c.disk.as_ref().unwrap();
        assert_eq!(load_blocking(&disk.path, None, disk.len).unwrap(), b"firstsecond");
        drop(c);
        let (_, chunks) = FileStore::open(&root, 0, 1, Rc::new(Syncer::default())).unwrap();
        assert_eq!((chunks[0].count, chunks[0].size), (3, 11));
        assert_eq!(chunks[0].var(0), Some(&b"ns"[..]), "record-field chunk keys survive a restart");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn segments_of_an_interrupted_commit_are_cut_from_the_tail_only() {
        use super::super::chunk_file::{recover_cutting, segment_header_tagged};
        let root = tmp("journal");
        let dir = root.join("shard-0");
        std::fs::create_dir_all(&dir).unwrap();
        let (done, killed) = ((7u64 << 32, 10u64), (7u64 << 32, 11u64));
        let cuts: std::collections::HashSet<_> = [killed].into_iter().collect();
        type Seg<'a> = (&'a [u8], u32, Option<super::super::journal::CommitTag>);
        let chunk = |id: u8, segs: &[Seg]| {
            let p = dir.join(format!("{}{SUFFIX}", hex(&[id; 16])));
            let mut f = File::create(&p).unwrap();
            f.write_all(&header_bytes(&[id; 16], b"t", None, &[])).unwrap();
            for (d, n, tag) in segs {
                match tag {
                    Some(t) => f.write_all(&segment_header_tagged(d, *n, *t)).unwrap(),
                    None => f.write_all(&segment_header(d, *n)).unwrap(),
                }
                f.write_all(d).unwrap();
            }
            p
        };
        // Untagged, a finished commit, then the interrupted one: the last is cut.
        let p = chunk(1, &[(b"old", 1, None), (b"kept", 2, Some(done)), (b"gone", 3, Some(killed))]);
        let c = recover_cutting(&p, &cuts).unwrap().unwrap();
        assert_eq!((c.count, c.size), (3, 7));
        let d = c.disk.as_ref().unwrap();
        assert_eq!(d.len, std::fs::metadata(&p).unwrap().len(), "the file is cut where the commit began");
        assert_eq!(load_blocking(&p, None, d.len).unwrap(), b"oldkept");
        // A file holding only that commit's events is deleted.
        let p = chunk(2, &[(b"gone", 1, Some(killed))]);
        assert!(recover_cutting(&p, &cuts).unwrap().is_none());
        assert!(!p.exists());
        // A tagged segment followed by others is not a crash's tail: nothing is cut.
        let p = chunk(3, &[(b"odd", 1, Some(killed)), (b"later", 1, Some(done))]);
        let c = recover_cutting(&p, &cuts).unwrap().unwrap();
        assert_eq!((c.count, c.size), (2, 8));
        // No cuts known: everything is recovered, and a SEG2 checksum still guards it.
        let p = chunk(4, &[(b"all", 1, Some(killed))]);
        let c = recover_cutting(&p, &Default::default()).unwrap().unwrap();
        assert_eq!(load_blocking(&p, None, c.disk.as_ref().unwrap().len).unwrap(), b"all");
        let mut raw = std::fs::read(&p).unwrap();
        let n = raw.len();
        raw[n - 10] ^= 1; // inside the tag
        std::fs::write(&p, &raw).unwrap();
        assert!(recover_cutting(&p, &Default::default()).unwrap().is_none(), "a bad tag fails the checksum");
        let _ = std::fs::remove_dir_all(&root);
    }
}
