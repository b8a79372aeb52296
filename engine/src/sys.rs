//! The libc calls spate makes, each wrapped once with its safety argument and its
//! return value checked: CPU affinity, the local time zone, file locks, random bytes,
//! signal dispositions, the boot id, `sync`, and the non-blocking receive into a buffer's
//! spare capacity. Nothing else in the engine calls libc for these.

use std::os::fd::AsRawFd;

/// CPUs this process may run on (so `taskset` is respected).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; an all-zero set is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into the set we own.
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    let mut v = Vec::new();
    if ok {
        for i in 0..libc::CPU_SETSIZE as usize {
            // SAFETY: i < CPU_SETSIZE, the set is initialised.
            if unsafe { libc::CPU_ISSET(i, &set) } {
                v.push(i);
            }
        }
    }
    if v.is_empty() {
        v = (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    v
}

/// The broken-down local time of `sec` (seconds since the epoch), or `None` when the C
/// library cannot represent it.
pub fn localtime(sec: i64) -> Option<libc::tm> {
    let t = sec as libc::time_t;
    // SAFETY: tm is plain data; all-zero is a valid value to be overwritten.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r only reads `t` and writes into the tm we own.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    (!r.is_null()).then_some(tm)
}

/// The local time zone's offset from UTC in seconds at `sec` (0 when unknown).
pub fn utc_offset_at(sec: i64) -> i64 {
    localtime(sec).map_or(0, |tm| tm.tm_gmtoff)
}

/// The local time zone's offset from UTC in seconds, now.
pub fn local_utc_offset() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    utc_offset_at(now)
}

/// An exclusive `flock` on a file, released on drop: writers of the same output file in
/// other shards (or processes) do not interleave their lines.
pub struct FileLock<'a> {
    file: &'a std::fs::File,
}

impl<'a> FileLock<'a> {
    /// Waits for the lock.
    pub fn exclusive(file: &'a std::fs::File) -> std::io::Result<Self> {
        loop {
            // SAFETY: flock on a descriptor that `file` keeps open for the lock's lifetime.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(FileLock { file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: unlocking the descriptor we locked; it is still open (borrowed).
        let r = unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
        if r != 0 {
            crate::warn!("releasing a file lock failed: {}", std::io::Error::last_os_error());
        }
    }
}

/// 16 random bytes from the kernel (salts, nonces, chunk ids). Falls back to the clock
/// mixed with a counter when getrandom cannot deliver (it practically always can).
pub fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most b.len() bytes into the buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n < 16 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let s = SEQ.fetch_add(1, Ordering::Relaxed) as u128;
        b.copy_from_slice(&(t ^ (s << 64)).to_le_bytes());
    }
    b
}

/// This boot of the kernel (`/proc/sys/kernel/random/boot_id`, 16 bytes), or `None`
/// when it cannot be read. Files written in the same boot are intact up to the last
/// `write` even without fsync after a `kill -9` (the page cache outlives the process);
/// after a reboot only what was synced counts.
pub fn boot_id() -> Option<[u8; 16]> {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let hex: Vec<u8> = s.trim().bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let v = std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok())?;
        id[i] = v;
    }
    Some(id)
}

/// Flushes every file system's dirty pages to disk (`sync(2)`; Linux waits for the
/// writes). Used once at start when state written without fsync by a killed process
/// is about to be relied on.
pub fn sync_all() {
    // SAFETY: sync takes no arguments and touches no memory of ours.
    unsafe { libc::sync() };
}

/// A file-size limit (`ulimit -f`) must fail the write (EFBIG: the file buffer refuses
/// the batch and sends no ack), not kill the process with SIGXFSZ.
pub fn ignore_sigxfsz() {
    // SAFETY: setting a signal's disposition to ignore has no memory-safety effect.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
}

/// The parent process id (monitor_agent's `ppid`).
pub fn parent_pid() -> u32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// The canonical name of a host (getaddrinfo's `AI_CANONNAME`, as Ruby's hostent
/// `h_name` and `hostname -f`). Uses the resolver: call it at config time.
pub fn canonical_name(name: &str) -> Result<String, String> {
    let c = std::ffi::CString::new(name).map_err(|_| "invalid name (NUL byte)".to_string())?;
    // SAFETY: zeroed addrinfo is a valid "no hints" value; we set flags only.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_CANONNAME;
    hints.ai_family = libc::AF_UNSPEC;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: `c` is NUL-terminated, `hints` and `res` are valid; `res` is freed below.
    let r = unsafe { libc::getaddrinfo(c.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if r != 0 || res.is_null() {
        return Err("the name does not resolve here".into());
    }
    // SAFETY: `res` is a list getaddrinfo returned; ai_canonname is NUL-terminated or null.
    let canon = unsafe {
        let p = (*res).ai_canonname;
        let s = if p.is_null() { name.to_string() } else { std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned() };
        libc::freeaddrinfo(res);
        s
    };
    Ok(canon)
}

/// Drops the file-backed pages of the binary and the shared libraries (code and
/// read-only data) from this process's resident set once start-up is over: start-up
/// code (config parsing, TLS and regex set-up, the dynamic linker's relocation pass)
/// leaves megabytes mapped that an idle process never runs again. They stay in the page
/// cache; what is used again faults back in (a minor fault, no I/O).
///
/// `MADV_DONTNEED` rather than `MADV_PAGEOUT`: on Linux 6.x the page cache holds large
/// folios, which `MADV_PAGEOUT` skips when it cannot split them, so what it released
/// depended on how the binary happened to be read in (S6 measured 5.0 to 7.7 MB idle for
/// the same binary and config). `MADV_DONTNEED` unmaps every page of the range. It is
/// only safe on a private file mapping that holds no private copy (a page the dynamic
/// linker relocated is anonymous, and dropping it would bring back the unrelocated
/// bytes), so it is used on mappings of ELF objects whose `Anonymous:` is 0; the others
/// get `MADV_PAGEOUT`, which never loses data. Returns the bytes advised.
pub fn release_startup_pages() -> usize {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return 0 };
    // (start, end, perms, path, anonymous kB) per mapping.
    let mut maps: Vec<(usize, usize, &str, &str, u64)> = Vec::new();
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Anonymous:") {
            if let Some(m) = maps.last_mut() {
                m.4 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(u64::MAX);
            }
            continue;
        }
        // A mapping's header: "start-end perms offset dev inode [path]".
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else { continue };
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else { continue };
        if perms.len() != 4 {
            continue;
        }
        maps.push((a, b, perms, f.nth(3).unwrap_or(""), u64::MAX));
    }
    // ELF objects: the files that have an executable mapping.
    let objects: Vec<&str> = maps.iter().filter(|m| m.2.as_bytes()[2] == b'x').map(|m| m.3).collect();
    let mut advised = 0;
    for &(a, b, perms, path, anon) in &maps {
        let p = perms.as_bytes();
        // Private, not writable, backed by an ELF object: code and read-only data.
        if !path.starts_with('/') || p[1] == b'w' || p[3] != b'p' || b <= a || !objects.contains(&path) {
            continue;
        }
        let advice = if anon == 0 { libc::MADV_DONTNEED } else { libc::MADV_PAGEOUT };
        // SAFETY: a read-only private file mapping with no anonymous (privately
        // modified) page: MADV_DONTNEED only unmaps pages whose refault reads the same
        // bytes from the file. Otherwise MADV_PAGEOUT, which keeps contents. The
        // mapping itself stays valid either way.
        if unsafe { libc::madvise(a as *mut libc::c_void, b - a, advice) } == 0 {
            advised += b - a;
        }
        // An access-pattern hint (no read-ahead when these pages are read again).
        // SAFETY: a hint on the same mapping; contents are unaffected.
        unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_RANDOM) };
    }
    advised
}

/// Bytes waiting on socket `fd` (non-blocking `recv`), up to `max`, appended to `buf`
/// straight into its spare capacity (`BufMut`: a `Vec<u8>` or `BytesMut`; the caller
/// reserves the room): no zero-filled read window. `Some(Ok(0))` is the end of the
/// stream; `None`: nothing is waiting (or a signal interrupted), so the caller waits
/// through its async reader.
pub fn recv_waiting(
    fd: std::os::fd::RawFd,
    buf: &mut impl bytes::BufMut,
    max: usize,
) -> Option<std::io::Result<usize>> {
    if max == 0 {
        return None;
    }
    let room = buf.chunk_mut();
    let want = room.len().min(max);
    // SAFETY: `room` is the buffer's own writable spare capacity, `want` bytes of it at
    // most; recv writes at most `want` bytes there and says how many.
    let n = unsafe { libc::recv(fd, room.as_mut_ptr().cast(), want, libc::MSG_DONTWAIT) };
    if n >= 0 {
        // SAFETY: recv initialised the first `n` (<= want) bytes of the spare capacity.
        unsafe { buf.advance_mut(n as usize) };
        return Some(Ok(n as usize));
    }
    let e = std::io::Error::last_os_error();
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => None,
        _ => Some(Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_and_random_and_lock() {
        assert!(!allowed_cpus().is_empty());
        assert_ne!(random16(), random16());
        let f = tempfile_in_tmp();
        {
            let _l = FileLock::exclusive(&f).unwrap();
        }
        let _again = FileLock::exclusive(&f).unwrap();
        assert!(localtime(0).is_some());
    }

    #[test]
    fn startup_pages_are_advised() {
        // The test binary's own code is a private file mapping.
        assert!(release_startup_pages() > 0);
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let p = std::env::temp_dir().join(format!("spate-sys-test-{}", std::process::id()));
        let f = std::fs::File::create(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        f
    }

    #[test]
    fn recv_waiting_appends_what_is_there_and_says_when_nothing_is() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut buf = bytes::BytesMut::from(&b"ab"[..]);
        buf.reserve(64);
        assert!(super::recv_waiting(b.as_raw_fd(), &mut buf, 64).is_none(), "nothing waiting");
        a.write_all(b"cdefg").unwrap();
        assert_eq!(super::recv_waiting(b.as_raw_fd(), &mut buf, 3).unwrap().unwrap(), 3);
        assert_eq!(&buf[..], b"abcde");
        let mut v = b"x".to_vec();
        v.reserve(64);
        assert_eq!(super::recv_waiting(b.as_raw_fd(), &mut v, 64).unwrap().unwrap(), 2);
        assert_eq!(v, b"xfg");
        drop(a);
        assert_eq!(super::recv_waiting(b.as_raw_fd(), &mut v, 64).unwrap().unwrap(), 0, "end of stream");
        assert!(super::recv_waiting(b.as_raw_fd(), &mut v, 0).is_none());
    }
}
