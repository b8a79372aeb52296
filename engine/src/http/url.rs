//! URLs of HTTP endpoints: `scheme://[user[:password]@]host[:port][/path][?query]`,
//! with IPv6 literals in brackets and percent-encoded user info.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A parsed URL. `path` has no trailing `/` (empty for the root); `query` excludes `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub query: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("URL {url:?}: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, UrlError> {
        let e = |r: &str| UrlError { url: s.to_string(), reason: r.to_string() };
        let (scheme, rest) = match s.split_once("://") {
            Some(("http", r)) => (Scheme::Http, r),
            Some(("https", r)) => (Scheme::Https, r),
            Some((o, _)) => return Err(e(&format!("scheme {o:?}: expected http or https"))),
            None => return Err(e("expected scheme://host")),
        };
        let (auth, path_q) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match auth.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, auth),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((a, b)) => (Some(pct_decode(a)), Some(pct_decode(b))),
                None => (Some(pct_decode(u)), None),
            },
        };
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(|| e("unclosed [ in host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(e("garbage after ]")),
            };
            (format!("[{h}]"), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(e("no host"));
        }
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(p) => p.parse::<u16>().map_err(|_| e(&format!("port {p:?}")))?,
        };
        let (path, query) = match path_q.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (path_q, None),
        };
        Ok(Url { scheme, host, port, path: path.trim_end_matches('/').to_string(), query, user, password })
    }

    /// `path` + `suffix` (+ `?query`), for a request target.
    pub fn target(&self, suffix: &str) -> String {
        let mut t = String::with_capacity(self.path.len() + suffix.len() + 1);
        t.push_str(&self.path);
        t.push_str(suffix);
        if t.is_empty() {
            t.push('/');
        }
        if let Some(q) = &self.query {
            t.push('?');
            t.push_str(q);
        }
        t
    }
}

impl fmt::Display for Url {
    /// Without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}{}", self.scheme.as_str(), self.host, self.port, self.path)
    }
}
