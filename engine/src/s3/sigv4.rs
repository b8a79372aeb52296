//! AWS Signature Version 4 for S3 requests (header-based, `AWS4-HMAC-SHA256`), with
//! ring's HMAC and SHA-256 (ring is already linked for rustls). Sans-IO: it turns a
//! request's method, path, query, headers and payload hash into an `Authorization`
//! header value.
//!
//! S3's canonical URI is the path encoded once (S3 is the one AWS service that does not
//! double-encode), each query name and value is URI-encoded and sorted, header names are
//! lower-cased, values trimmed, and the payload hash is the hex SHA-256 of the body
//! (sent as `x-amz-content-sha256`).

use ring::{digest, hmac};
use spate_protocol::hex;

/// Access key, secret key and (for temporary credentials) the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets (they reach --dry-run and error messages otherwise).
        f.debug_struct("Credentials").field("access_key", &self.access_key).finish_non_exhaustive()
    }
}

/// The hex SHA-256 of `data` (the payload hash, and the canonical request's hash).
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters (`A-Z a-z 0-9 - _ . ~`)
/// are kept, everything else is `%XX` (upper-case hex); `/` is kept when `keep_slash`
/// (object keys in paths).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for &b in s.as_bytes() {
        let keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[(b >> 4) as usize]));
            out.push(char::from(b"0123456789ABCDEF"[(b & 15) as usize]));
        }
    }
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// What is signed. `path` is already URI-encoded; `query` holds raw (unencoded) pairs;
/// `headers` must include `host`, `x-amz-date` and `x-amz-content-sha256` (any case).
pub struct SignInput<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub payload_sha256: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, the same as the `x-amz-date` header.
    pub amz_date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// The canonical query string: each name and value encoded, sorted by name then value.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut q: Vec<(String, String)> =
        query.iter().map(|(k, v)| (uri_encode(k, false), uri_encode(v, false))).collect();
    q.sort();
    q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Returns `(canonical request, signed headers)`.
pub fn canonical_request(i: &SignInput<'_>) -> (String, String) {
    let mut hs: Vec<(String, String)> = i
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    hs.sort();
    let signed = hs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let mut canon = String::new();
    canon.push_str(i.method);
    canon.push('\n');
    canon.push_str(if i.path.is_empty() { "/" } else { i.path });
    canon.push('\n');
    canon.push_str(&canonical_query(i.query));
    canon.push('\n');
    for (k, v) in &hs {
        canon.push_str(k);
        canon.push(':');
        canon.push_str(v);
        canon.push('\n');
    }
    canon.push('\n');
    canon.push_str(&signed);
    canon.push('\n');
    canon.push_str(i.payload_sha256);
    (canon, signed)
}

/// The `Authorization` header value for a request.
pub fn authorization(creds: &Credentials, i: &SignInput<'_>) -> String {
    let (canon, signed) = canonical_request(i);
    let date = i.amz_date.get(..8).unwrap_or(i.amz_date);
    let scope = format!("{date}/{}/{}/aws4_request", i.region, i.service);
    let to_sign = format!("AWS4-HMAC-SHA256\n{}\n{scope}\n{}", i.amz_date, sha256_hex(canon.as_bytes()));
    let k_date = hmac_sha256(format!("AWS4{}", creds.secret_key).as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(k_date.as_ref(), i.region.as_bytes());
    let k_service = hmac_sha256(k_region.as_ref(), i.service.as_bytes());
    let k_signing = hmac_sha256(k_service.as_ref(), b"aws4_request");
    let sig = hex(hmac_sha256(k_signing.as_ref(), to_sign.as_bytes()).as_ref());
    format!("AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}", creds.access_key)
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC).
pub fn amz_date(unix: i64) -> String {
    let mut out = Vec::with_capacity(16);
    crate::format::strftime(&mut out, "%Y%m%dT%H%M%SZ", unix, 0, crate::format::Zone::Utc);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn h(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    /// The "GET Object" example of AWS's "Signature Calculations for the Authorization
    /// Header" page for S3.
    #[test]
    fn aws_documented_get_object_example() {
        let empty = sha256_hex(b"");
        assert_eq!(empty, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let headers = vec![
            h("Host", "examplebucket.s3.amazonaws.com"),
            h("Range", "bytes=0-9"),
            h("x-amz-content-sha256", &empty),
            h("x-amz-date", "20130524T000000Z"),
        ];
        let i = SignInput {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &headers,
            payload_sha256: &empty,
            amz_date: "20130524T000000Z",
            region: "us-east-1",
            service: "s3",
        };
        assert_eq!(
            authorization(&creds(), &i),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// The "GET Bucket (List Objects)" example of the same page: query parameters.
    #[test]
    fn aws_documented_list_objects_example() {
        let empty = sha256_hex(b"");
        let headers = vec![
            h("host", "examplebucket.s3.amazonaws.com"),
            h("x-amz-content-sha256", &empty),
            h("x-amz-date", "20130524T000000Z"),
        ];
        let q = vec![h("max-keys", "2"), h("prefix", "J")];
        let i = SignInput {
            method: "GET",
            path: "/",
            query: &q,
            headers: &headers,
            payload_sha256: &empty,
            amz_date: "20130524T000000Z",
            region: "us-east-1",
            service: "s3",
        };
        assert!(authorization(&creds(), &i)
            .ends_with("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"));
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a b/c~d*e", true), "a%20b/c~d%2Ae");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(uri_encode("é", false), "%C3%A9");
        assert_eq!(canonical_query(&[h("b", "2"), h("a", "x y")]), "a=x%20y&b=2");
        assert_eq!(amz_date(1369353600), "20130524T000000Z");
    }

    #[test]
    fn secrets_are_not_printed() {
        assert!(!format!("{:?}", creds()).contains("EXAMPLEKEY"));
    }
}
