//! `secondary_file` (fluentd's out_secondary_file): the usual `<secondary>` of a
//! buffered output. It dumps a chunk that ran out of retries as it is (packed msgpack
//! `[time, record]` entries, readable with `fluent-cat --format msgpack` or any msgpack
//! reader) to `<directory>/<basename>.<N>` (first unused N), or appends to
//! `<directory>/<basename>` with `append true`; `compress gzip` adds `.gz` and writes a
//! gzip member per chunk. `${tag}`, `${tag[N]}` and `${chunk_id}` are expanded.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use crate::config::{ConfigError, Element};

#[derive(Debug, Clone, PartialEq)]
pub struct SecondaryFile {
    pub directory: String,
    pub basename: String,
    pub append: bool,
    pub gzip: bool,
}

/// Parses `<secondary @type secondary_file>`.
pub fn conf(e: &Element) -> Result<SecondaryFile, ConfigError> {
    let directory =
        e.str("directory").ok_or_else(|| ConfigError::at(&e.pos, "secondary_file needs directory"))?.to_string();
    let basename = e.str("basename").unwrap_or("dump.bin").to_string();
    if basename.contains('/') {
        return Err(ConfigError::at(&e.pos, "basename should not include `/`"));
    }
    let gzip = match e.str("compress") {
        None | Some("text") => false,
        Some("gzip") => true,
        Some(o) => return Err(ConfigError::at(&e.pos, format!("compress {o:?}: expected text or gzip"))),
    };
    let c = SecondaryFile { directory, basename, append: e.bool("append")?.unwrap_or(false), gzip };
    crate::build::warn_unused(e);
    Ok(c)
}

/// `${tag}`, `${tag[N]}` (negative N counts from the end), `${chunk_id}` and the
/// chunk's record-field keys (`${name}`, `${$.a.b}`).
pub(crate) fn expand(s: &str, tag: &str, chunk_id: &str, vars: &[(String, String)]) -> String {
    let parts: Vec<&str> = tag.split('.').collect();
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let name = &after[..j];
        match name {
            "tag" => out.push_str(tag),
            "chunk_id" => out.push_str(chunk_id),
            v if vars.iter().any(|(k, _)| k == v) => {
                if let Some((_, val)) = vars.iter().find(|(k, _)| k == v) {
                    out.push_str(val);
                }
            }
            _ => {
                match name.strip_prefix("tag[").and_then(|x| x.strip_suffix(']')).and_then(|n| n.parse::<i64>().ok()) {
                    Some(n) => {
                        let len = parts.len() as i64;
                        let k = if n < 0 { len + n } else { n };
                        if (0..len).contains(&k) {
                            out.push_str(parts[k as usize]);
                        }
                    }
                    None => {
                        out.push_str("${");
                        out.push_str(name);
                        out.push('}');
                    }
                }
            }
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

impl SecondaryFile {
    /// Writes one chunk; blocking (runs on the blocking pool). Returns the path.
    pub fn write(&self, tag: &[u8], entries: &[u8]) -> Result<PathBuf, String> {
        self.write_id(tag, None, None, entries, &[])
    }

    /// Writes one chunk with its id, time slice (for `%Y...` in the names) and
    /// record-field chunk key values.
    pub fn write_id(
        &self,
        tag: &[u8],
        chunk_id: Option<&[u8; 16]>,
        timekey: Option<i64>,
        entries: &[u8],
        vars: &[(String, String)],
    ) -> Result<PathBuf, String> {
        let tag = String::from_utf8_lossy(tag);
        let id = chunk_id.map(|c| super::forward::hex(c)).unwrap_or_default();
        let timed = |s: &str| match timekey {
            Some(t) if s.contains('%') => {
                let mut o = Vec::new();
                crate::format::strftime(&mut o, s, t, 0, crate::format::Zone::Local);
                String::from_utf8_lossy(&o).to_string()
            }
            _ => s.to_string(),
        };
        let base = PathBuf::from(expand(&timed(&self.directory), &tag, &id, vars)).join(expand(
            &timed(&self.basename),
            &tag,
            &id,
            vars,
        ));
        if let Some(d) = base.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let suffix = if self.gzip { ".gz" } else { "" };
        let body = if self.gzip { spate_protocol::compress::gzip(entries, 6) } else { entries.to_vec() };
        let (path, mut f) = if self.append {
            let p = PathBuf::from(format!("{}{suffix}", base.display()));
            let f =
                OpenOptions::new().append(true).create(true).open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            (p, f)
        } else {
            let mut i = 0u32;
            loop {
                let p = PathBuf::from(format!("{}.{i}{suffix}", base.display()));
                match OpenOptions::new().write(true).create_new(true).open(&p) {
                    Ok(f) => break (p, f),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && i < 1_000_000 => i += 1,
                    Err(e) => return Err(format!("{}: {e}", p.display())),
                }
            }
        };
        // Other shards may append to the same file: one chunk at a time, as fluentd does.
        // SAFETY: flock on a file descriptor we own.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        let r = f.write_all(&body).and_then(|_| f.sync_data());
        // SAFETY: as above.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        r.map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(expand("/d/${tag}/${tag[1]}-${tag[-1]}.${chunk_id}", "a.b.c", "ff", &[]), "/d/a.b.c/b-c.ff");
        assert_eq!(expand("x${unknown}y", "t", "", &[]), "x${unknown}y");
        let vars = [("message".to_string(), "hi".to_string()), ("$.k.ns".to_string(), "prod".to_string())];
        assert_eq!(expand("${message}/${$.k.ns}", "t", "", &vars), "hi/prod");
    }

    #[test]
    fn numbered_and_appended_files() {
        let dir = std::env::temp_dir().join(format!("spate-secfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = SecondaryFile {
            directory: dir.display().to_string(),
            basename: "dump.${tag}".into(),
            append: false,
            gzip: false,
        };
        let p0 = s.write(b"app", b"\x92\x01\x80").unwrap();
        let p1 = s.write(b"app", b"\x92\x02\x80").unwrap();
        assert!(p0.ends_with("dump.app.0") && p1.ends_with("dump.app.1"));
        assert_eq!(std::fs::read(&p1).unwrap(), b"\x92\x02\x80");
        let a = SecondaryFile { append: true, gzip: true, ..s };
        let p = a.write(b"app", b"\x92\x01\x80").unwrap();
        a.write(b"app", b"\x92\x02\x80").unwrap();
        assert!(p.ends_with("dump.app.gz"));
        let raw = std::fs::read(&p).unwrap();
        let mut out = Vec::new();
        let mut d = flate2::read::MultiGzDecoder::new(&raw[..]);
        std::io::Read::read_to_end(&mut d, &mut out).unwrap();
        assert_eq!(out, b"\x92\x01\x80\x92\x02\x80");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
