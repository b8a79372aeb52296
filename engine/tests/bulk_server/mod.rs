//! A Bulk API test server (no Elasticsearch can be installed here): it answers `GET /`
//! with a version, the data-stream setup calls (`_ilm/policy`, `_index_template`,
//! `_data_stream`), and `POST [/<index>]/_bulk`, checking every request against the
//! documented format (docs-bulk: NDJSON, one action line `{"index"|"create"|"update"|
//! "delete": {metadata}}` followed by a source line except for delete, a final newline,
//! `Content-Type` application/json, application/x-ndjson or the compatible-with type,
//! `Content-Encoding: gzip` bodies, an index in the action or the URL). Violations are
//! recorded; a test asserts there were none.
//!
//! Per-document answers come from a rule the test gives (`Rule`): store (201), a
//! mapping error (400), a rejection (429) for the first N tries, 503. Whole requests can
//! be answered 503 or left unanswered (a timeout) for the first N bulk requests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// What to answer for one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Store,
    /// 400 mapper_parsing_exception.
    Reject,
    /// 429 es_rejected_execution_exception.
    TooMany,
    /// 503 unavailable_shards_exception.
    Unavailable,
}

/// Decides per document: (op, index, source, how many times this source was seen).
pub type Rule = Box<dyn Fn(&str, &str, &Value, usize) -> Answer + Send>;

/// One bulk request as received.
#[derive(Debug, Clone)]
pub struct BulkReq {
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The NDJSON body (gunzipped).
    pub body: String,
    pub gzipped: bool,
}

#[derive(Default)]
pub struct State {
    pub version: String,
    pub distribution: Option<String>,
    pub violations: Vec<String>,
    pub bulks: Vec<BulkReq>,
    /// Stored documents: (index, action metadata, source).
    pub stored: Vec<(String, Value, Value)>,
    /// Other requests: "METHOD path".
    pub calls: Vec<String>,
    /// PUT resources (ILM policies, templates, data streams) with their bodies.
    pub resources: HashMap<String, String>,
    /// Times each source text was seen.
    pub seen: HashMap<String, usize>,
    /// The next N bulk requests get a 503 / no answer.
    pub fail_next: usize,
    pub hang_next: usize,
    /// Required `Authorization` header, if any.
    pub auth: Option<String>,
}

pub struct BulkServer {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
}

impl BulkServer {
    pub fn start(version: &str, rule: Rule) -> BulkServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State { version: version.to_string(), ..Default::default() }));
        let st = state.clone();
        let rule = Arc::new(Mutex::new(rule));
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (st, rule) = (st.clone(), rule.clone());
                std::thread::spawn(move || serve(s, st, rule));
            }
        });
        BulkServer { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stored(&self) -> Vec<(String, Value, Value)> {
        self.state.lock().unwrap().stored.clone()
    }

    pub fn bulks(&self) -> Vec<BulkReq> {
        self.state.lock().unwrap().bulks.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    /// Waits until `n` documents are stored.
    pub fn wait_stored(&self, n: usize, within: Duration) -> Vec<(String, Value, Value)> {
        let end = std::time::Instant::now() + within;
        loop {
            let v = self.stored();
            if v.len() >= n || std::time::Instant::now() > end {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// (method, path, headers, body).
type Req = (String, String, Vec<(String, String)>, Vec<u8>);

fn read_request(s: &mut TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut b = [0u8; 65536];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_string();
            let mut lines = head.split("\r\n");
            let first = lines.next()?.to_string();
            let mut parts = first.split(' ');
            let method = parts.next()?.to_string();
            let path = parts.next()?.to_string();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
                .collect();
            let len = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse::<usize>().unwrap_or(0))
                .unwrap_or(0);
            let mut body = buf[i + 4..].to_vec();
            while body.len() < len {
                let n = s.read(&mut b).ok()?;
                if n == 0 {
                    return None;
                }
                body.extend_from_slice(&b[..n]);
            }
            return Some((method, path, headers, body));
        }
        let n = s.read(&mut b).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
}

fn respond(s: &mut TcpStream, status: u16, body: &Value) {
    let text = body.to_string();
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Request Entity Too Large",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let _ = write!(
        s,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nX-Elastic-Product: Elasticsearch\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    );
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn serve(mut s: TcpStream, st: Arc<Mutex<State>>, rule: Arc<Mutex<Rule>>) {
    while let Some((method, path, headers, body)) = read_request(&mut s) {
        if let Some(want) = st.lock().unwrap().auth.clone() {
            if header(&headers, "authorization") != Some(want.as_str()) {
                respond(
                    &mut s,
                    401,
                    &json!({"error": {"type": "security_exception", "reason": "missing authentication credentials"}, "status": 401}),
                );
                continue;
            }
        }
        let p = path.split('?').next().unwrap_or("").to_string();
        if method == "GET" && p == "/" {
            let (v, d) = {
                let g = st.lock().unwrap();
                (g.version.clone(), g.distribution.clone())
            };
            let mut version = json!({"number": v, "build_flavor": "default"});
            if let Some(d) = d {
                version["distribution"] = json!(d);
            }
            respond(&mut s, 200, &json!({"name": "test", "version": version, "tagline": "You Know, for Search"}));
            continue;
        }
        if !p.ends_with("/_bulk") {
            let mut g = st.lock().unwrap();
            g.calls.push(format!("{method} {p}"));
            match method.as_str() {
                "GET" if g.resources.contains_key(&p) => {
                    drop(g);
                    respond(&mut s, 200, &json!({}));
                }
                "GET" => {
                    drop(g);
                    respond(&mut s, 404, &json!({"error": {"type": "resource_not_found_exception"}, "status": 404}));
                }
                "PUT" => {
                    if (p.starts_with("/_ilm/policy/") || p.starts_with("/_index_template/"))
                        && serde_json::from_slice::<Value>(&body).is_err()
                    {
                        g.violations.push(format!("PUT {p}: body is not JSON"));
                    }
                    g.resources.insert(p.clone(), String::from_utf8_lossy(&body).to_string());
                    drop(g);
                    respond(&mut s, 200, &json!({"acknowledged": true}));
                }
                _ => {
                    g.violations.push(format!("unexpected {method} {p}"));
                    drop(g);
                    respond(&mut s, 404, &json!({}));
                }
            }
            continue;
        }
        // A bulk request.
        let mut v = Vec::new();
        if method != "POST" && method != "PUT" {
            v.push(format!("bulk with method {method}"));
        }
        let ct = header(&headers, "content-type").unwrap_or("");
        if !(ct.starts_with("application/json")
            || ct.starts_with("application/x-ndjson")
            || ct.starts_with("application/vnd.elasticsearch+x-ndjson"))
        {
            v.push(format!("bulk Content-Type {ct:?}"));
        }
        let gz = header(&headers, "content-encoding").is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
        let body = if gz {
            let mut d = flate2::read::GzDecoder::new(&body[..]);
            let mut out = Vec::new();
            if d.read_to_end(&mut out).is_err() {
                v.push("Content-Encoding gzip but the body is not gzip".into());
            }
            out
        } else {
            body
        };
        let text = String::from_utf8_lossy(&body).to_string();
        {
            let mut g = st.lock().unwrap();
            g.bulks.push(BulkReq { path: p.clone(), headers: headers.clone(), body: text.clone(), gzipped: gz });
            if g.hang_next > 0 {
                g.hang_next -= 1;
                drop(g);
                std::thread::sleep(Duration::from_secs(3));
                return;
            }
            if g.fail_next > 0 {
                g.fail_next -= 1;
                drop(g);
                respond(
                    &mut s,
                    503,
                    &json!({"error": {"type": "cluster_block_exception", "reason": "blocked"}, "status": 503}),
                );
                continue;
            }
        }
        if !text.ends_with('\n') {
            v.push("bulk body does not end with a newline".into());
        }
        let url_index = p.trim_end_matches("/_bulk").trim_start_matches('/').to_string();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        let mut items = Vec::new();
        let mut errors = false;
        let mut i = 0;
        while i < lines.len() {
            let action: Value = match serde_json::from_str(lines[i]) {
                Ok(a) => a,
                Err(e) => {
                    v.push(format!("action line {i} is not JSON: {e}: {}", lines[i]));
                    break;
                }
            };
            let Some(obj) = action.as_object().filter(|o| o.len() == 1) else {
                v.push(format!("action line {i} is not an object with one key: {}", lines[i]));
                break;
            };
            let (op, meta) = obj.iter().next().map(|(k, m)| (k.clone(), m.clone())).unwrap_or_default();
            if !["index", "create", "update", "delete"].contains(&op.as_str()) {
                v.push(format!("unknown bulk action {op:?}"));
            }
            for k in meta.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
                if !["_index", "_type", "_id", "routing", "_routing", "_parent", "pipeline", "require_alias"]
                    .contains(&k.as_str())
                {
                    v.push(format!("unknown action metadata {k:?}"));
                }
            }
            let index = meta.get("_index").and_then(|x| x.as_str()).map(str::to_string).unwrap_or(url_index.clone());
            if index.is_empty() {
                v.push("a document without an index (neither _index nor the URL)".into());
            }
            if op == "update" && meta.get("_id").is_none() {
                v.push("update without _id".into());
            }
            let source: Value = if op == "delete" {
                Value::Null
            } else {
                i += 1;
                match lines.get(i).map(|l| serde_json::from_str::<Value>(l)) {
                    Some(Ok(src)) if src.is_object() => src,
                    other => {
                        v.push(format!("source line {i} missing or not a JSON object: {other:?}"));
                        break;
                    }
                }
            };
            if op == "update"
                && !source.as_object().is_some_and(|o| {
                    o.keys().all(|k| {
                        ["doc", "upsert", "doc_as_upsert", "script", "scripted_upsert", "detect_noop"]
                            .contains(&k.as_str())
                    })
                })
            {
                v.push(format!("update body with unexpected keys: {source}"));
            }
            i += 1;
            let key = source.to_string();
            let n = {
                let mut g = st.lock().unwrap();
                let c = g.seen.entry(key).or_insert(0);
                *c += 1;
                *c
            };
            let answer = (rule.lock().unwrap())(&op, &index, &source, n);
            let (status, error) = match answer {
                Answer::Store => {
                    st.lock().unwrap().stored.push((index.clone(), meta.clone(), source.clone()));
                    (201, None)
                }
                Answer::Reject => (
                    400,
                    Some(
                        json!({"type": "mapper_parsing_exception", "reason": "failed to parse field [n] of type [long]"}),
                    ),
                ),
                Answer::TooMany => (
                    429,
                    Some(
                        json!({"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}),
                    ),
                ),
                Answer::Unavailable => (
                    503,
                    Some(json!({"type": "unavailable_shards_exception", "reason": "primary shard is not active"})),
                ),
            };
            let mut item = json!({"_index": index, "status": status});
            if let Some(e) = error {
                errors = true;
                item["error"] = e;
            }
            items.push(json!({ op: item }));
        }
        let mut g = st.lock().unwrap();
        g.violations.extend(v);
        drop(g);
        respond(&mut s, 200, &json!({"took": 1, "errors": errors, "items": items}));
    }
}
