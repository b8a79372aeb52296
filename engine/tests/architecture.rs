//! The engine's source layout keeps its shape: the `use` graph between source files has
//! no cycle, and no file imports from a layer above its own (the layers are listed in
//! engine/src/lib.rs's module doc). References are read from the text: `crate::a::b`
//! paths (also inside `use` groups), `super::` paths, and paths through a file's own
//! child modules. Test modules (inline or in `tests.rs` files) are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, bottom to top. A file may use files of its own layer or below.
const LAYERS: &[(&str, u32)] = &[
    ("sys", 0),
    ("calendar", 0),
    ("log", 1),
    ("config", 2),
    ("system", 3),
    ("metrics", 3),
    ("ruby", 3),
    ("format", 4),
    ("parser", 4),
    ("buffer", 4),
    ("tls", 4),
    ("http", 5),
    ("security", 5),
    ("s3", 5),
    ("aws", 5),
    ("kafka", 5),
    ("plugin", 6),
    ("router", 7),
    ("input", 8),
    ("filter", 8),
    ("output", 8),
    ("registry", 9),
    ("plan", 10),
    ("logevents", 11),
    ("reload", 11),
    ("control", 11),
    ("rpc", 11),
    ("runtime", 12),
];

type Module = Vec<String>;

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn module_of(rel: &Path) -> Module {
    let mut parts: Vec<String> = rel.with_extension("").iter().map(|c| c.to_string_lossy().to_string()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The file holding the longest prefix of `path` that is a module.
fn resolve<'a>(files: &'a BTreeMap<Module, String>, path: &[String]) -> Option<&'a String> {
    (1..=path.len()).rev().find_map(|i| files.get(&path[..i]))
}

fn idents(s: &str) -> Vec<String> {
    s.split("::").map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

/// Every `prefix::a::b` path in `src` after `prefix`, with `{..}` groups expanded one level.
fn paths_after(src: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let mut from = 0;
    while let Some(i) = src[from..].find(prefix) {
        let at = from + i;
        from = at + prefix.len();
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_' || b[at - 1] == b':') {
            continue;
        }
        let rest = &src[at + prefix.len()..];
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
        let base = idents(&rest[..end]);
        if rest[end..].starts_with('{') && rest[..end].ends_with("::") {
            let close = rest[end..].find('}').map_or(rest.len(), |j| end + j);
            for item in rest[end + 1..close].split(',') {
                let item = item.split(" as ").next().unwrap_or("").replace(['{', '}'], "");
                let mut p = base.clone();
                if item.trim() != "self" {
                    p.extend(idents(&item));
                }
                out.push(p);
            }
        } else {
            out.push(base);
        }
    }
    out
}

fn layer(rel: &str) -> Option<u32> {
    let top = rel.split('/').next()?.trim_end_matches(".rs");
    LAYERS.iter().find(|(n, _)| *n == top).map(|(_, l)| *l)
}

#[test]
fn use_graph_has_no_cycle_and_no_upward_import() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rs_files(&src, &mut paths);
    let mut files: BTreeMap<Module, String> = BTreeMap::new();
    for p in &paths {
        let rel = p.strip_prefix(&src).expect("under src");
        files.insert(module_of(rel), rel.to_string_lossy().to_string());
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, rel) in &files {
        // Test modules in their own files (`foo/tests.rs`) are test code too.
        if module.last().is_some_and(|m| m == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(src.join(rel)).expect("read");
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let text: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        let mut deps = BTreeSet::new();
        for p in paths_after(&text, "crate::") {
            deps.extend(resolve(&files, &p).cloned());
        }
        // `super::` (and `super::super::`) relative to this file's module.
        for p in paths_after(&text, "super::") {
            let ups = 1 + p.iter().take_while(|x| *x == "super").count();
            let rest: Vec<String> = p.iter().skip_while(|x| *x == "super").cloned().collect();
            let mut base: Module = module.iter().take(module.len().saturating_sub(ups)).cloned().collect();
            base.extend(rest);
            deps.extend(resolve(&files, &base).cloned());
        }
        // Paths through this module's own children (`use conf::X`, `conf::X`).
        for (child, _) in files.iter().filter(|(m, _)| m.len() == module.len() + 1 && m.starts_with(module)) {
            let name = &child[module.len()];
            for p in paths_after(&text, &format!("{name}::")) {
                let mut full = child.clone();
                full.extend(p);
                deps.extend(resolve(&files, &full).cloned());
            }
        }
        deps.remove(rel);
        edges.insert(rel.clone(), deps);
    }

    // Upward imports.
    let mut upward = Vec::new();
    for (a, ds) in &edges {
        for d in ds {
            if let (Some(la), Some(ld)) = (layer(a), layer(d)) {
                if ld > la {
                    upward.push(format!("{a} -> {d}"));
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports from a higher layer: {upward:#?}");

    // Cycles (Tarjan's strongly connected components).
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        cycles: Vec<Vec<&'a str>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[v].min(self.low[w]);
                    self.low.insert(v, l);
                } else if self.on.contains(w) {
                    let l = self.low[v].min(self.index[w]);
                    self.low.insert(v, l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.cycles.push(comp);
                }
            }
        }
    }
    let mut t = T {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        cycles: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    let cycles: Vec<String> = t
        .cycles
        .iter()
        .map(|c| {
            let set: BTreeSet<&str> = c.iter().copied().collect();
            c.iter()
                .map(|a| {
                    let ds: Vec<&str> = edges[*a].iter().map(String::as_str).filter(|d| set.contains(d)).collect();
                    format!("{a} -> {ds:?}")
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect();
    assert!(cycles.is_empty(), "import circles between engine source files: {cycles:#?}");
    assert!(files.len() > 40, "the walk found the sources ({} files)", files.len());
}
