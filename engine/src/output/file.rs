//! `out_file` (fluentd's out_file.rb): each buffered chunk is formatted (`<format>`,
//! default `out_file`: `time<TAB>tag<TAB>json`) and written to a file whose name comes
//! from `path` as fluentd builds it:
//!
//! - `/dir/file` -> `/dir/file.%Y%m%d_N.log` (time slice from `timekey`, `_N` the first
//!   unused index; `append true` drops `_N` and appends to one file per slice);
//! - `/dir/file.*.data` -> `/dir/file.%Y%m%d_N.data` (`*` is the slice and index);
//! - time placeholders already in `path` (`%Y/%m/%d`) are used as they are; `${tag}`
//!   and `${tag[N]}` are expanded;
//! - `compress gzip` adds `.gz` and writes one gzip member per chunk.
//!
//! Time slices are formatted from the chunk's timekey in the buffer's zone
//! (`timekey_use_utc`, `timekey_zone`). A file is fdatasynced before the chunk leaves
//! the buffer. Writes run on the blocking pool (formatting a large chunk is CPU work
//! and file I/O may block).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use spate_protocol::{EntriesFormat, Events};

use std::rc::Rc;

use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::format::{strftime, FormatConf, Zone};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};

#[derive(Debug, Clone, PartialEq)]
pub struct FileOutConf {
    /// The configured `path`.
    pub path: String,
    /// The path with fluentd's slice / index / suffix parts added.
    pub template: String,
    pub append: bool,
    pub gzip: bool,
    pub symlink_path: Option<String>,
    pub format: FormatConf,
    /// Zone time placeholders are formatted in.
    pub zone: Zone,
}

/// out_file's buffer defaults: a file buffer at `path`, chunk key `time`, one day.
pub const DEFAULT_TIMEKEY: u64 = 86400;

fn timekey_to_timeformat(timekey: Option<i64>) -> &'static str {
    match timekey {
        None => "",
        Some(t) if t < 60 => "%Y%m%d%H%M%S",
        Some(t) if t < 3600 => "%Y%m%d%H%M",
        Some(t) if t < 86400 => "%Y%m%d%H",
        Some(_) => "%Y%m%d",
    }
}

/// fluentd's `generate_path_template`.
pub fn path_template(
    original: &str,
    timekey: Option<i64>,
    append: bool,
    gzip: bool,
    path_suffix: &str,
) -> Result<String, String> {
    path_template_sliced(original, timekey, append, gzip, path_suffix, None)
}

/// [`path_template`] with v0.12's `time_slice_format`, which names the files instead of
/// the format derived from `timekey` (fluentd keeps this for compatibility).
pub fn path_template_sliced(
    original: &str,
    timekey: Option<i64>,
    append: bool,
    gzip: bool,
    path_suffix: &str,
    time_slice_format: Option<&str>,
) -> Result<String, String> {
    let comp = if gzip { ".gz" } else { "" };
    let index = if append { "" } else { "_**" };
    if original.contains('*') {
        if timekey.is_none() {
            return Err("path including '*' must be used with buffer chunk key 'time'".into());
        }
        let ph = time_slice_format.unwrap_or_else(|| timekey_to_timeformat(timekey));
        return Ok(format!("{}{comp}", original.replace('*', &format!("{ph}{index}"))));
    }
    if timekey.is_none() {
        return Ok(format!("{original}{index}{path_suffix}{comp}"));
    }
    if let Some(f) = time_slice_format {
        return Ok(format!("{original}.{f}{index}{path_suffix}{comp}"));
    }
    let ph = timekey_to_timeformat(timekey);
    let parts: Vec<&str> = (0..ph.len()).step_by(2).map(|i| &ph[i..i + 2]).collect();
    if parts.iter().any(|p| original.contains(p)) {
        if parts.iter().any(|p| !original.contains(p)) {
            return Err("insufficient timestamp placeholders in path".into());
        }
        Ok(format!("{original}{index}{path_suffix}{comp}"))
    } else {
        Ok(format!("{original}.{ph}{index}{path_suffix}{comp}"))
    }
}

/// Parses out_file's parameters. `timekey`/`zone` come from its `<buffer>`.
pub fn file_conf(e: &Element, timekey: Option<i64>, zone: Zone, hostname: &str) -> Result<FileOutConf, ConfigError> {
    let err = |m: String| ConfigError::at(&e.pos, m);
    let path = e.str("path").ok_or_else(|| err("out_file needs path".into()))?.to_string();
    let append = e.bool("append")?.unwrap_or(false);
    let gzip = match e.str("compress") {
        None | Some("text") => false,
        Some("gzip") | Some("gz") => true,
        Some(o) => return Err(err(format!("compress {o:?}: expected text, gz or gzip"))),
    };
    let add_suffix = e.bool("add_path_suffix")?.unwrap_or(true);
    let suffix = if add_suffix { e.str("path_suffix").unwrap_or(".log").to_string() } else { String::new() };
    let tsf = e.str("time_slice_format");
    let template = path_template_sliced(&path, timekey, append, gzip, &suffix, tsf).map_err(err)?;
    for k in ["recompress", "file_permission", "dir_permission"] {
        let _ = e.str(k);
    }
    let format = crate::format::format_conf(e, "out_file", hostname)?;
    Ok(FileOutConf {
        path,
        template,
        append,
        gzip,
        symlink_path: e.str("symlink_path").map(str::to_string),
        format,
        zone,
    })
}

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "file",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "`path` (fluentd's file naming: `path.%Y%m%d_N.log` per time slice, `*` patterns, time placeholders in the path, `${tag}`/`${tag[N]}`), `append`, `compress gzip`, `add_path_suffix`, `path_suffix`, `symlink_path` (points at the newest file written), `<format>` (any formatter: `out_file`, `json`, `msgpack`, `single_value`, `csv`, `ltsv`, `tsv`, `hash`, `stdout`; below), `<inject>` (`time_key`, `time_type`, `time_format`, `tag_key`, `hostname_key`) and v0.12's `include_time_key`/`include_tag_key`/`format`; default `<buffer time>`: a file buffer at `path`, `timekey 1d`",
};

fn plan(e: &Element, ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    // As a <secondary>, out_file writes the primary's chunks; its own path has no time
    // slice unless the placeholders are in it.
    let (timekey, zone) = if setup.primary_buffer().is_some() {
        (None, Zone::Local)
    } else {
        let path = e.str("path").ok_or_else(|| e.error("out_file needs path"))?;
        let defaults = BufferDefaults {
            keys: &["time"],
            tag_required: false,
            file_path: Some(path),
            timekey: Some(DEFAULT_TIMEKEY),
            ..Default::default()
        };
        match setup.buffer(e, &defaults)?.and_then(|b| b.timekey) {
            Some(k) => (Some(k.secs), Zone::Fixed(k.utc_offset)),
            None => (None, Zone::Local),
        }
    };
    Ok(Box::new(file_conf(e, timekey, zone, &ctx.hostname)?))
}

impl WriterPlan for FileOutConf {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn describe(&self) -> String {
        self.template.clone()
    }

    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        Ok(Rc::new(FileWriter::new(id.to_string(), self.clone())))
    }
}

impl Writer for FileWriter {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(async move {
            // Formatting a chunk is CPU work and the write may block: off the shard.
            let (w, id_s) = (self.clone(), self.id.clone());
            let (tag, tk, id, data) = (chunk.tag.clone(), chunk.timekey, chunk.id, chunk.data.clone());
            let vars = vars.to_vec();
            let n = data.len();
            glommio::executor()
                .spawn_blocking(move || w.write_chunk(&tag, tk, &id, &data, &vars))
                .await
                .map(|p| {
                    crate::debug!("{id_s}: wrote {n} bytes of entries to {}", p.display());
                    n
                })
                .map_err(|e| WriteError::Retry(e.to_string()))
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Writes chunks to files. Cheap to clone (for the blocking pool).
#[derive(Debug, Clone)]
pub struct FileWriter {
    pub id: String,
    pub conf: std::sync::Arc<FileOutConf>,
}

impl FileWriter {
    pub fn new(id: String, conf: FileOutConf) -> Self {
        FileWriter { id, conf: std::sync::Arc::new(conf) }
    }

    /// The path for a chunk, with time and tag placeholders expanded (`_**` still in it
    /// unless `append`).
    pub fn chunk_path(
        &self,
        tag: &[u8],
        timekey: Option<i64>,
        chunk_id: &[u8; 16],
        vars: &[(String, String)],
    ) -> String {
        let mut p = Vec::new();
        match timekey {
            Some(t) => strftime(&mut p, &self.conf.template, t, 0, self.conf.zone),
            None => p.extend_from_slice(self.conf.template.as_bytes()),
        }
        let p = String::from_utf8_lossy(&p).to_string();
        crate::buffer::placeholders::expand(&p, &String::from_utf8_lossy(tag), &spate_protocol::hex(chunk_id), vars)
    }

    /// Formats and writes one chunk of packed entries; blocking. Returns the file.
    pub fn write_chunk(
        &self,
        tag: &[u8],
        timekey: Option<i64>,
        chunk_id: &[u8; 16],
        entries: &[u8],
        vars: &[(String, String)],
    ) -> std::io::Result<PathBuf> {
        let mut body = Vec::with_capacity(entries.len() + entries.len() / 4);
        for ev in Events::new(entries, EntriesFormat::Packed) {
            self.conf.format.format(&mut body, tag, ev.time, ev.record.as_bytes());
        }
        if self.conf.gzip {
            body = spate_protocol::compress::gzip(&body, 6);
        }
        let templ = self.chunk_path(tag, timekey, chunk_id, vars);
        if let Some(d) = PathBuf::from(&templ).parent() {
            std::fs::create_dir_all(d)?;
        }
        let (path, f) = if self.conf.append {
            let p = PathBuf::from(&templ);
            let f = OpenOptions::new().append(true).create(true).open(&p)?;
            (p, f)
        } else {
            let mut i = 0u32;
            loop {
                let p = PathBuf::from(templ.replacen("_**", &format!("_{i}"), 1));
                match OpenOptions::new().write(true).create_new(true).open(&p) {
                    Ok(f) => break (p, f),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && i < 10_000_000 => i += 1,
                    Err(e) => return Err(e),
                }
            }
        };
        // Other shards may append to the same file: one chunk at a time.
        {
            let _lock = crate::sys::FileLock::exclusive(&f)?;
            (&f).write_all(&body).and_then(|_| f.sync_data())?;
        }
        if let Some(link) = &self.conf.symlink_path {
            let link =
                PathBuf::from(crate::buffer::placeholders::expand(link, &String::from_utf8_lossy(tag), "", vars));
            let tmp = PathBuf::from(format!("{}.spate-tmp", link.display()));
            let _ = std::fs::remove_file(&tmp);
            if std::os::unix::fs::symlink(&path, &tmp).is_ok() {
                let _ = std::fs::rename(&tmp, &link);
            }
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Formatter, Inject, TimeFormat};
    use spate_protocol::{encode, EventTime};

    #[test]
    fn templates_as_fluentd_builds_them() {
        // Cases from fluentd's test_out_file.rb (generate_path_template).
        let t = Some(86400);
        assert_eq!(path_template("/path/to/file", t, false, false, ".log").unwrap(), "/path/to/file.%Y%m%d_**.log");
        assert_eq!(path_template("/path/to/file", t, true, false, ".log").unwrap(), "/path/to/file.%Y%m%d.log");
        assert_eq!(path_template("/path/to/file", t, false, true, ".log").unwrap(), "/path/to/file.%Y%m%d_**.log.gz");
        assert_eq!(
            path_template("/path/to/file.*.data", t, false, false, ".log").unwrap(),
            "/path/to/file.%Y%m%d_**.data"
        );
        assert_eq!(
            path_template("/path/to/file.*", Some(3600), true, false, ".log").unwrap(),
            "/path/to/file.%Y%m%d%H"
        );
        assert_eq!(
            path_template("/path/to/%Y/%m/%d/file", t, false, false, ".log").unwrap(),
            "/path/to/%Y/%m/%d/file_**.log"
        );
        assert_eq!(path_template("/path/to/file", Some(60), false, false, "").unwrap(), "/path/to/file.%Y%m%d%H%M_**");
        assert_eq!(path_template("/path/to/file", None, false, false, ".log").unwrap(), "/path/to/file_**.log");
        assert!(path_template("/path/%Y/file", Some(3600), false, false, ".log").is_err(), "insufficient placeholders");
        assert!(path_template("/path/to/file.*", None, false, false, ".log").is_err());
        // v0.12's time_slice_format names the files (fluentd's compat).
        let sliced = |p: &str, f: &str| path_template_sliced(p, Some(3600), false, false, ".log", Some(f)).unwrap();
        assert_eq!(sliced("/path/to/file", "%Y%m%d%H"), "/path/to/file.%Y%m%d%H_**.log");
        assert_eq!(sliced("/path/to/file.*.log", "%Y-%m-%d-%H"), "/path/to/file.%Y-%m-%d-%H_**.log");
    }

    fn writer(dir: &std::path::Path, path: &str, append: bool, gzip: bool) -> FileWriter {
        let full = format!("{}/{path}", dir.display());
        let template = path_template(&full, Some(86400), append, gzip, ".log").unwrap();
        let format = FormatConf {
            formatter: Formatter::OutFile {
                delimiter: "\t".into(),
                output_time: true,
                output_tag: true,
                time: TimeFormat { format: None, zone: Zone::Utc },
            },
            newline: "\n",
            inject: Inject::default(),
        };
        FileWriter::new(
            "file".into(),
            FileOutConf {
                path: full,
                template,
                append,
                gzip,
                symlink_path: Some(format!("{}/current.log", dir.display())),
                format,
                zone: Zone::Utc,
            },
        )
    }

    fn entries(n: u32) -> Vec<u8> {
        let mut e = Vec::new();
        for i in 0..n {
            let mut r = Vec::new();
            encode::raw::map_header(&mut r, 1);
            encode::raw::str(&mut r, b"i");
            encode::raw::uint(&mut r, i as u64);
            encode::entry(&mut e, EventTime::new(1_461_587_696 + i, 0), encode::TimeFormat::EventTime, &r);
        }
        e
    }

    #[test]
    fn writes_numbered_appended_and_gzipped_files() {
        let dir = std::env::temp_dir().join(format!("spate-outfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let w = writer(&dir, "${tag}/out", false, false);
        let tk = Some(1_461_542_400); // 2016-04-25 00:00 UTC
        let p0 = w.write_chunk(b"app", tk, &[1; 16], &entries(2), &[]).unwrap();
        let p1 = w.write_chunk(b"app", tk, &[2; 16], &entries(1), &[]).unwrap();
        assert_eq!(p0, dir.join("app/out.20160425_0.log"));
        assert_eq!(p1, dir.join("app/out.20160425_1.log"));
        assert_eq!(
            std::fs::read_to_string(&p0).unwrap(),
            "2016-04-25T12:34:56Z\tapp\t{\"i\":0}\n2016-04-25T12:34:57Z\tapp\t{\"i\":1}\n"
        );
        assert_eq!(std::fs::read_link(dir.join("current.log")).unwrap(), p1, "symlink_path follows the newest file");

        let a = writer(&dir, "all", true, true);
        let p = a.write_chunk(b"x", tk, &[3; 16], &entries(1), &[]).unwrap();
        assert_eq!(a.write_chunk(b"x", tk, &[4; 16], &entries(2), &[]).unwrap(), p);
        assert_eq!(p, dir.join("all.20160425.log.gz"));
        let raw = std::fs::read(&p).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&raw[..]), &mut out).unwrap();
        assert_eq!(out.lines().count(), 3, "one gzip member per chunk, all readable: {out}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
