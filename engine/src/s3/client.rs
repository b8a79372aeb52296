//! The S3 operations out_s3 needs (HeadBucket, CreateBucket, HeadObject, PutObject, and
//! a one-key ListObjects to check credentials), as signed HTTP/1.1 requests handed to a
//! [`Transport`]. This file builds requests and reads responses; it never touches a
//! socket, so the transport (the project's HTTP/1.1 client on the shard, or a blocking
//! one in tests) is swapped without touching the S3 logic.
//!
//! Addressing: virtual-hosted (`bucket.host/key`) unless `force_path_style` or an
//! `s3_endpoint` is given with it (`host/bucket/key`). Without `s3_endpoint` the host is
//! AWS's regional endpoint, `https://s3.<region>.amazonaws.com`.

use std::future::Future;

use bytes::Bytes;

use super::sigv4::{self, Credentials, SignInput};

/// Where requests go: `http://127.0.0.1:9000`, `https://s3.eu-west-1.amazonaws.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// A path prefix of the endpoint URL (`/minio`), without a trailing slash.
    pub base_path: String,
}

impl Endpoint {
    /// Parses an `s3_endpoint` URL (scheme required, as the AWS SDK requires it).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("s3_endpoint {url:?}: expected an http:// or https:// URL"));
        };
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if hostport.is_empty() {
            return Err(format!("s3_endpoint {url:?}: no host"));
        }
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // [::1]:9000
            let (h, p) = h.split_once(']').ok_or_else(|| format!("s3_endpoint {url:?}: bad IPv6 host"))?;
            (format!("[{h}]"), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| format!("s3_endpoint {url:?}: bad port {p:?}"))?,
            None if tls => 443,
            None => 80,
        };
        Ok(Endpoint { tls, host, port, base_path: path.to_string() })
    }

    /// AWS's endpoint for a region.
    pub fn aws(region: &str) -> Endpoint {
        Endpoint { tls: true, host: format!("s3.{region}.amazonaws.com"), port: 443, base_path: String::new() }
    }

    fn host_header(&self, host: &str) -> String {
        if (self.tls && self.port == 443) || (!self.tls && self.port == 80) {
            host.to_string()
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// One HTTP request, signed, ready for a transport.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub tls: bool,
    /// Where to connect (the virtual host when the bucket is in the host name).
    pub host: String,
    pub port: u16,
    /// Encoded path plus `?query`, as it goes on the request line.
    pub target: String,
    /// Every header to send, `Host` and `Content-Length` included.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// A response; `body` is bounded by the transport.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The transport failed before a response arrived (connect refused, reset, timeout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Sends requests. Implemented by the HTTP/1.1 client (and a blocking one in tests).
pub trait Transport {
    fn send(&self, req: Request) -> impl Future<Output = Result<Response, TransportError>>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3Error {
    #[error("{op} s3://{bucket}/{key}: {source}")]
    Transport { op: &'static str, bucket: String, key: String, source: TransportError },
    #[error("{op} s3://{bucket}/{key}: HTTP {status} {code}: {message}")]
    Status { op: &'static str, bucket: String, key: String, status: u16, code: String, message: String },
    #[error("the specified bucket does not exist: bucket = {0} (set auto_create_bucket true to create it)")]
    NoBucket(String),
    #[error("duplicated path is generated. use %{{index}} in s3_object_key_format: path = {0}")]
    DuplicatePath(String),
}

/// A client for one bucket.
#[derive(Debug, Clone)]
pub struct S3Client {
    pub endpoint: Endpoint,
    pub bucket: String,
    pub region: String,
    pub path_style: bool,
    pub creds: Credentials,
}

/// Text between `<tag>` and `</tag>` in an S3 error document (no entity decoding needed
/// for codes; messages are shown as sent).
pub(crate) fn xml_text<'a>(body: &'a [u8], tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let s = memchr::memmem::find(body, open.as_bytes())? + open.len();
    let e = memchr::memmem::find(body.get(s..)?, close.as_bytes())? + s;
    std::str::from_utf8(body.get(s..e)?).ok()
}

impl S3Client {
    /// Builds and signs a request. `key` is the object key (`None`: the bucket itself).
    pub fn request(
        &self,
        method: &'static str,
        key: Option<&str>,
        query: &[(String, String)],
        extra: &[(String, String)],
        body: Bytes,
        now: i64,
    ) -> Request {
        let ep = &self.endpoint;
        let (host, mut path) = if self.path_style {
            (ep.host.clone(), format!("{}/{}", ep.base_path, sigv4::uri_encode(&self.bucket, false)))
        } else {
            (format!("{}.{}", self.bucket, ep.host), ep.base_path.clone())
        };
        match key {
            Some(k) => {
                path.push('/');
                path.push_str(&sigv4::uri_encode(k, true));
            }
            None if !self.path_style => path.push('/'),
            None => {}
        }
        if path.is_empty() {
            path.push('/');
        }
        let payload = sigv4::sha256_hex(&body);
        let date = sigv4::amz_date(now);
        let mut headers = vec![
            ("Host".to_string(), ep.host_header(&host)),
            ("x-amz-content-sha256".to_string(), payload.clone()),
            ("x-amz-date".to_string(), date.clone()),
        ];
        if let Some(t) = &self.creds.session_token {
            headers.push(("x-amz-security-token".to_string(), t.clone()));
        }
        headers.extend(extra.iter().cloned());
        let auth = sigv4::authorization(
            &self.creds,
            &SignInput {
                method,
                path: &path,
                query,
                headers: &headers,
                payload_sha256: &payload,
                amz_date: &date,
                region: &self.region,
                service: "s3",
            },
        );
        headers.push(("Authorization".to_string(), auth));
        if method == "PUT" || !body.is_empty() {
            headers.push(("Content-Length".to_string(), body.len().to_string()));
        }
        let q = sigv4::canonical_query(query);
        let target = if q.is_empty() { path } else { format!("{path}?{q}") };
        Request { method, tls: ep.tls, host, port: ep.port, target, headers, body }
    }

    fn status_err(&self, op: &'static str, key: Option<&str>, r: &Response) -> S3Error {
        S3Error::Status {
            op,
            bucket: self.bucket.clone(),
            key: key.unwrap_or("").to_string(),
            status: r.status,
            code: xml_text(&r.body, "Code").unwrap_or("").to_string(),
            message: xml_text(&r.body, "Message").unwrap_or("").to_string(),
        }
    }

    async fn send<T: Transport>(
        &self,
        t: &T,
        op: &'static str,
        key: Option<&str>,
        req: Request,
    ) -> Result<Response, S3Error> {
        t.send(req).await.map_err(|source| S3Error::Transport {
            op,
            bucket: self.bucket.clone(),
            key: key.unwrap_or("").to_string(),
            source,
        })
    }

    /// HeadBucket: whether the bucket exists (403 counts as existing: it is someone
    /// else's or ours without ListBucket, and creating it would fail anyway).
    pub async fn bucket_exists<T: Transport>(&self, t: &T) -> Result<bool, S3Error> {
        let req = self.request("HEAD", None, &[], &[], Bytes::new(), now());
        let r = self.send(t, "HeadBucket", None, req).await?;
        match r.status {
            200..=299 | 403 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_err("HeadBucket", None, &r)),
        }
    }

    /// CreateBucket (with a LocationConstraint outside us-east-1, as the SDK sends it).
    pub async fn create_bucket<T: Transport>(&self, t: &T) -> Result<(), S3Error> {
        let body = if self.region == "us-east-1" || self.region.is_empty() {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            ))
        };
        let req = self.request("PUT", None, &[], &[], body, now());
        let r = self.send(t, "CreateBucket", None, req).await?;
        match r.status {
            200..=299 => Ok(()),
            // Created meanwhile by another worker or process.
            409 if xml_text(&r.body, "Code") == Some("BucketAlreadyOwnedByYou") => Ok(()),
            _ => Err(self.status_err("CreateBucket", None, &r)),
        }
    }

    /// HeadObject: whether `key` exists.
    pub async fn object_exists<T: Transport>(&self, t: &T, key: &str) -> Result<bool, S3Error> {
        let req = self.request("HEAD", Some(key), &[], &[], Bytes::new(), now());
        let r = self.send(t, "HeadObject", Some(key), req).await?;
        match r.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_err("HeadObject", Some(key), &r)),
        }
    }

    /// PutObject. `headers`: Content-Type and the x-amz-* options of the output.
    pub async fn put_object<T: Transport>(
        &self,
        t: &T,
        key: &str,
        body: Bytes,
        headers: &[(String, String)],
    ) -> Result<(), S3Error> {
        let req = self.request("PUT", Some(key), &[], headers, body, now());
        let r = self.send(t, "PutObject", Some(key), req).await?;
        match r.status {
            200..=299 => Ok(()),
            _ => Err(self.status_err("PutObject", Some(key), &r)),
        }
    }

    /// ListObjects with `max-keys=1` under `prefix`: checks the credentials
    /// (fluent-plugin-s3's `check_apikey_on_start`). A missing bucket is not an error
    /// here (the bucket check handles it).
    pub async fn check_access<T: Transport>(&self, t: &T, prefix: &str) -> Result<(), S3Error> {
        let q = vec![("max-keys".to_string(), "1".to_string()), ("prefix".to_string(), prefix.to_string())];
        let req = self.request("GET", None, &q, &[], Bytes::new(), now());
        let r = self.send(t, "ListObjects", None, req).await?;
        match r.status {
            200..=299 => Ok(()),
            404 if xml_text(&r.body, "Code") == Some("NoSuchBucket") => Ok(()),
            _ => Err(self.status_err("ListObjects", None, &r)),
        }
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(path_style: bool) -> S3Client {
        S3Client {
            endpoint: Endpoint::parse("http://127.0.0.1:9000").unwrap(),
            bucket: "logs".into(),
            region: "us-east-1".into(),
            path_style,
            creds: Credentials { access_key: "AK".into(), secret_key: "SK".into(), session_token: Some("TOK".into()) },
        }
    }

    fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://minio.local/base/").unwrap();
        assert_eq!((e.tls, e.host.as_str(), e.port, e.base_path.as_str()), (true, "minio.local", 443, "/base"));
        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("[::1]", 9000));
        assert!(Endpoint::parse("127.0.0.1:9000").is_err());
        assert!(Endpoint::parse("http://h:x").is_err());
        assert_eq!(Endpoint::aws("eu-west-1").host, "s3.eu-west-1.amazonaws.com");
    }

    #[test]
    fn path_and_virtual_host_style() {
        let r = client(true).request("PUT", Some("a b/c.gz"), &[], &[], Bytes::from_static(b"x"), 1369353600);
        assert_eq!(r.target, "/logs/a%20b/c.gz");
        assert_eq!(r.host, "127.0.0.1");
        assert_eq!(header(&r, "host"), Some("127.0.0.1:9000"));
        assert_eq!(header(&r, "content-length"), Some("1"));
        assert_eq!(header(&r, "x-amz-security-token"), Some("TOK"));
        let auth = header(&r, "authorization").unwrap();
        assert!(auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token"), "{auth}");
        let r = client(false).request("HEAD", None, &[], &[], Bytes::new(), 0);
        assert_eq!((r.target.as_str(), r.host.as_str()), ("/", "logs.127.0.0.1"));
        let q = vec![("prefix".to_string(), "a/b c".to_string())];
        let r = client(true).request("GET", None, &q, &[], Bytes::new(), 0);
        assert_eq!(r.target, "/logs?prefix=a%2Fb%20c");
        assert_eq!(header(&r, "content-length"), None);
    }

    #[test]
    fn error_documents() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>";
        let c = client(true);
        let e = c.status_err("PutObject", Some("k"), &Response { status: 404, body: body.to_vec() });
        assert_eq!(e.to_string(), "PutObject s3://logs/k: HTTP 404 NoSuchBucket: gone");
        assert_eq!(xml_text(b"<Code>x", "Code"), None);
    }
}
