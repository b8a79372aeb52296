//! `@include` (and root-level `include`): files and globs relative to the including
//! file, sorted, with brace expansion; bounded depth and file count, cycles detected.

use super::*;

impl Parser<'_> {
    pub(super) fn parse_include(&mut self, at: usize, body: &mut Body, depth: usize) -> Result<(), ConfigError> {
        let uri = match self.scan_string(Boundary::LineEnd)? {
            Some(Lit::Str(u)) if !u.is_empty() => u,
            _ => return Err(self.err(at, "expected a file path or glob after @include")),
        };
        if !self.line_end() {
            return Err(self.err(self.next_non_blank(), format!("expected end of line after @include {uri}")));
        }
        let path = match uri.split_once("://") {
            Some(("file", rest)) => rest.to_string(),
            Some((scheme, _)) => {
                return Err(self.err(
                    at,
                    format!("@include {uri}: only local files can be included ({scheme}:// is not supported)"),
                ))
            }
            None => uri.clone(),
        };
        // File.expand_path: relative to the including file, `.` and `..` resolved lexically.
        let joined =
            normalize(&if Path::new(&path).is_absolute() { PathBuf::from(&path) } else { self.base.join(&path) });
        let pattern = joined.to_string_lossy().into_owned();
        let files = expand_glob(&pattern).map_err(|e| self.err(at, format!("@include {uri}: {e}")))?;
        if files.is_empty() {
            // fluentd includes nothing either way; spate only lets a glob match nothing
            // (an empty conf.d), a missing file is a mistake (README: deliberate).
            if !pattern.contains(['*', '?', '[', '{']) {
                return Err(self.err(at, format!("@include {uri}: no such file: {pattern}")));
            }
            self.shared.warn(
                self.pos(at),
                format!("@include {uri}: no file matches {pattern}; nothing is included (fluentd ignores it too)"),
            );
            return Ok(());
        }
        if self.includes.len() >= MAX_INCLUDE_DEPTH {
            return Err(self.err(at, format!("@include {uri}: includes nested deeper than {MAX_INCLUDE_DEPTH} files")));
        }
        for f in files {
            let fname = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            const BACKUP: &[&str] = &["bak", "old", "backup", "orig", "prev", "conf", "tmp", "temp", "debug", "wip"];
            if path.ends_with("*.conf")
                && BACKUP
                    .iter()
                    .any(|x| fname.ends_with(&format!(".{x}.conf")) || fname.ends_with(&format!("_{x}.conf")))
            {
                self.shared.warn(
                    self.pos(at),
                    format!("There is a possibility that '@include {uri}' includes duplicated backed-up config file such as <{fname}>"),
                );
            }
            let canon = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
            if let Some(first) = self.includes.iter().position(|p| *p == canon) {
                let chain: Vec<String> =
                    self.includes[first..].iter().chain([&canon]).map(|p| p.display().to_string()).collect();
                return Err(self.err(at, format!("@include {uri}: include cycle: {}", chain.join(" -> "))));
            }
            let n = self.shared.files_read.get() + 1;
            if n > MAX_INCLUDED_FILES {
                return Err(self.err(at, format!("@include {uri}: more than {MAX_INCLUDED_FILES} files included")));
            }
            self.shared.files_read.set(n);
            let text = std::fs::read_to_string(&f)
                .map_err(|e| self.err(at, format!("@include {uri}: cannot read {}: {e}", f.display())))?;
            let base = f.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut chain = self.includes.to_vec();
            chain.push(canon);
            let mut p = Parser::new(&text, &f.to_string_lossy(), &base, self.shared, &chain);
            // fluentd parses an included file as a root element, into the includer's
            // element (so `@include` inside a section adds to that section).
            p.parse_element(None, body, depth)?;
        }
        Ok(())
    }
}

/// Lexical `.` / `..` resolution, as Ruby's File.expand_path.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}

/// Ruby's Dir.glob (as fluentd's @include uses it): `*`, `?`, `[...]`, `**/`, `{a,b}`;
/// `*` matches neither '/' nor a leading '.'; results sorted bytewise, without duplicates.
fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let mut alternatives = Vec::new();
    expand_braces(pattern, &mut alternatives)?;
    let opts =
        glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: true };
    let mut files: Vec<PathBuf> = Vec::new();
    for p in alternatives {
        let paths = glob::glob_with(&p, opts).map_err(|e| format!("invalid pattern {p}: {e}"))?;
        files.extend(paths.filter_map(Result::ok));
    }
    files.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
    files.dedup();
    Ok(files)
}

/// Expands the first `{a,b,...}` group (nesting respected) and recurses on the results.
pub(super) fn expand_braces(p: &str, out: &mut Vec<String>) -> Result<(), String> {
    if out.len() > MAX_BRACE_EXPANSION {
        return Err(format!("pattern expands to more than {MAX_BRACE_EXPANSION} alternatives"));
    }
    let b = p.as_bytes();
    let Some(open) = b.iter().position(|&c| c == b'{') else {
        out.push(p.to_string());
        return Ok(());
    };
    let mut depth = 0usize;
    let mut commas = Vec::new();
    let mut close = None;
    for (j, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(j);
                    break;
                }
            }
            b',' if depth == 1 => commas.push(j),
            _ => {}
        }
    }
    let Some(close) = close else {
        out.push(p.to_string());
        return Ok(());
    };
    let (pre, post) = (&p[..open], &p[close + 1..]);
    let mut start = open + 1;
    for end in commas.into_iter().chain([close]) {
        expand_braces(&format!("{pre}{}{post}", &p[start..end]), out)?;
        start = end + 1;
    }
    Ok(())
}
