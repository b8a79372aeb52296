//! `secondary_file` (fluentd's out_secondary_file): the usual `<secondary>` of a
//! buffered output. It dumps a chunk that ran out of retries as it is (packed msgpack
//! `[time, record]` entries, readable with `fluent-cat --format msgpack` or any msgpack
//! reader) to `<directory>/<basename>.<N>` (first unused N), or appends to
//! `<directory>/<basename>` with `append true`; `compress gzip` adds `.gz` and writes a
//! gzip member per chunk. `${tag}`, `${tag[N]}` and `${chunk_id}` are expanded.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use std::rc::Rc;

use crate::buffer::Chunk;
use crate::config::{ConfigError, Element};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};

#[derive(Debug, Clone, PartialEq)]
pub struct SecondaryFile {
    pub directory: String,
    pub basename: String,
    pub append: bool,
    pub gzip: bool,
}

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "secondary_file",
    aliases: &[],
    kind: Kind::Secondary,
    build: Build::SecondaryOnly(plan),
    params: "`directory`, `basename`, `append`, `compress gzip`; `${tag}`, `${tag[N]}`, `${chunk_id}`, record-field keys, time formats with a `time` chunk key",
};

fn plan(e: &Element, _ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let c = conf(e)?;
    let time_key = setup.primary_buffer().is_some_and(|b| b.timekey.is_some());
    if !time_key && (c.directory.contains('%') || c.basename.contains('%')) {
        return Err(e.error(
            "out_secondary_file: basename or directory has an incompatible placeholder, remove time formats, like `%Y%m%d`, from basename or directory",
        ));
    }
    Ok(Box::new(c))
}

impl WriterPlan for SecondaryFile {
    fn type_name(&self) -> &'static str {
        "secondary_file"
    }

    fn describe(&self) -> String {
        format!("{}/{}", self.directory, self.basename)
    }

    fn build(&self, _id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(self.clone()))
    }
}

impl Writer for SecondaryFile {
    fn type_name(&self) -> &'static str {
        "secondary_file"
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(async move {
            let w = self.clone();
            let (tag, data, id, tk) = (chunk.tag.clone(), chunk.data.clone(), chunk.id, chunk.timekey);
            let vars = vars.to_vec();
            let n = data.len();
            glommio::executor()
                .spawn_blocking(move || w.write_id(&tag, Some(&id), tk, &data, &vars))
                .await
                .map(|_| n)
                .map_err(WriteError::Retry)
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
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
    Ok(c)
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
        let id = chunk_id.map(|c| spate_protocol::hex(c)).unwrap_or_default();
        let timed = |s: &str| match timekey {
            Some(t) if s.contains('%') => {
                let mut o = Vec::new();
                crate::format::strftime(&mut o, s, t, 0, crate::format::Zone::Local);
                String::from_utf8_lossy(&o).to_string()
            }
            _ => s.to_string(),
        };
        use crate::buffer::placeholders::expand;
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
        let (path, f) = if self.append {
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
        let r = crate::sys::FileLock::exclusive(&f).and_then(|_lock| (&f).write_all(&body).and_then(|_| f.sync_data()));
        r.map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
