//! The Forward protocol's authentication handshake (HELO / PING / PONG) with shared-key
//! and user/password digests computed exactly as fluentd does (SHA-512, lowercase hex):
//!
//! - server -> client `["HELO", {"nonce": n, "auth": salt_or_empty, "keepalive": bool}]`
//! - client -> server `["PING", hostname, shared_key_salt,
//!   sha512_hex(shared_key_salt + hostname + nonce + shared_key), username,
//!   sha512_hex(auth_salt + username + password)]`
//! - server -> client `["PONG", ok, reason, server_hostname,
//!   sha512_hex(shared_key_salt + server_hostname + nonce + shared_key)]`

use sha2::{Digest, Sha512};

use crate::encode::raw;
use crate::error::{DecodeError, ErrorKind, Result};
use crate::msgpack::Cursor;

/// Lowercase hex SHA-512 of the concatenation of `parts` (128 ASCII bytes).
pub fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    crate::hex::hex(&h.finalize())
}

/// The shared-key digest: `sha512_hex(salt + hostname + nonce + shared_key)`.
pub fn shared_key_digest(salt: &[u8], hostname: &[u8], nonce: &[u8], shared_key: &[u8]) -> String {
    sha512_hex(&[salt, hostname, nonce, shared_key])
}

/// The user digest: `sha512_hex(auth_salt + username + password)`.
pub fn password_digest(auth_salt: &[u8], username: &[u8], password: &[u8]) -> String {
    sha512_hex(&[auth_salt, username, password])
}

/// Constant-time comparison for digests.
pub fn digest_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helo<'a> {
    /// The server's nonce, mixed into both shared-key digests.
    pub nonce: &'a [u8],
    /// Salt for the user/password digest; empty when user auth is off.
    pub auth: &'a [u8],
    /// Whether the server takes more than one request on the connection.
    pub keepalive: bool,
}

/// The client's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping<'a> {
    /// The client's `self_hostname`.
    pub hostname: &'a [u8],
    /// The client's random salt for the shared-key digest.
    pub shared_key_salt: &'a [u8],
    /// `sha512_hex(shared_key_salt + hostname + nonce + shared_key)`.
    pub shared_key_digest: &'a [u8],
    /// Empty when user auth is off.
    pub username: &'a [u8],
    /// `sha512_hex(auth_salt + username + password)`; empty when user auth is off.
    pub password_digest: &'a [u8],
}

/// The server's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong<'a> {
    /// Whether the client is authenticated.
    pub ok: bool,
    /// Why not (empty when `ok`).
    pub reason: &'a [u8],
    /// The server's `self_hostname`.
    pub hostname: &'a [u8],
    /// `sha512_hex(shared_key_salt + hostname + nonce + shared_key)` with the server's
    /// hostname, so the client can check the server knows the key too.
    pub shared_key_digest: &'a [u8],
}

/// Appends `["HELO", {"nonce", "auth", "keepalive"}]`.
pub fn encode_helo(out: &mut Vec<u8>, h: &Helo<'_>) {
    raw::array_header(out, 2);
    raw::str(out, b"HELO");
    raw::map_header(out, 3);
    raw::str(out, b"nonce");
    raw::str(out, h.nonce);
    raw::str(out, b"auth");
    raw::str(out, h.auth);
    raw::str(out, b"keepalive");
    raw::bool(out, h.keepalive);
}

/// Builds a PING answering `helo`. `user` is `(username, password)` when the server
/// asked for user auth (its HELO carried a non-empty `auth` salt).
pub fn encode_ping(
    out: &mut Vec<u8>,
    helo: &Helo<'_>,
    hostname: &[u8],
    shared_key_salt: &[u8],
    shared_key: &[u8],
    user: Option<(&[u8], &[u8])>,
) {
    raw::array_header(out, 6);
    raw::str(out, b"PING");
    raw::str(out, hostname);
    raw::str(out, shared_key_salt);
    raw::str(out, shared_key_digest(shared_key_salt, hostname, helo.nonce, shared_key).as_bytes());
    match user {
        Some((u, p)) if !helo.auth.is_empty() => {
            raw::str(out, u);
            raw::str(out, password_digest(helo.auth, u, p).as_bytes());
        }
        _ => {
            raw::str(out, b"");
            raw::str(out, b"");
        }
    }
}

/// A successful PONG: the server proves it knows the shared key too.
pub fn encode_pong_ok(
    out: &mut Vec<u8>,
    shared_key_salt: &[u8],
    server_hostname: &[u8],
    nonce: &[u8],
    shared_key: &[u8],
) {
    raw::array_header(out, 5);
    raw::str(out, b"PONG");
    raw::bool(out, true);
    raw::str(out, b"");
    raw::str(out, server_hostname);
    raw::str(out, shared_key_digest(shared_key_salt, server_hostname, nonce, shared_key).as_bytes());
}

/// A failed PONG carrying the reason (as fluentd: hostname and digest empty).
pub fn encode_pong_fail(out: &mut Vec<u8>, reason: &[u8]) {
    raw::array_header(out, 5);
    raw::str(out, b"PONG");
    raw::bool(out, false);
    raw::str(out, reason);
    raw::str(out, b"");
    raw::str(out, b"");
}

fn expect_word(c: &mut Cursor<'_>, word: &'static [u8], what: &'static str) -> Result<()> {
    let at = c.pos;
    if c.bytes(what)? != word {
        return Err(DecodeError::new(at, ErrorKind::Invalid { what, why: "unexpected message type" }));
    }
    Ok(())
}

/// Reads a HELO (unknown option keys are skipped).
pub fn parse_helo(v: &[u8]) -> Result<Helo<'_>> {
    let mut c = Cursor::new(v);
    if c.array_len()? != 2 {
        return Err(DecodeError::new(0, ErrorKind::Invalid { what: "HELO", why: "expected [\"HELO\", options]" }));
    }
    expect_word(&mut c, b"HELO", "HELO")?;
    let mut h = Helo { nonce: b"", auth: b"", keepalive: true };
    let n = c.map_len()?;
    for _ in 0..n {
        let k = c.value()?;
        match crate::msgpack::read_bytes(k) {
            Some(b"nonce") => h.nonce = c.bytes("HELO nonce")?,
            Some(b"auth") => h.auth = c.bytes("HELO auth salt")?,
            Some(b"keepalive") => h.keepalive = c.bool()?,
            _ => {
                c.value()?;
            }
        }
    }
    Ok(h)
}

/// Reads a PING.
pub fn parse_ping(v: &[u8]) -> Result<Ping<'_>> {
    let mut c = Cursor::new(v);
    if c.array_len()? != 6 {
        return Err(DecodeError::new(0, ErrorKind::Invalid { what: "PING", why: "expected an array of 6 elements" }));
    }
    expect_word(&mut c, b"PING", "PING")?;
    Ok(Ping {
        hostname: c.bytes("PING hostname")?,
        shared_key_salt: c.bytes("PING shared key salt")?,
        shared_key_digest: c.bytes("PING shared key digest")?,
        username: c.bytes("PING username")?,
        password_digest: c.bytes("PING password digest")?,
    })
}

/// Reads a PONG.
pub fn parse_pong(v: &[u8]) -> Result<Pong<'_>> {
    let mut c = Cursor::new(v);
    if c.array_len()? != 5 {
        return Err(DecodeError::new(0, ErrorKind::Invalid { what: "PONG", why: "expected an array of 5 elements" }));
    }
    expect_word(&mut c, b"PONG", "PONG")?;
    Ok(Pong {
        ok: c.bool()?,
        reason: c.bytes("PONG reason")?,
        hostname: c.bytes("PONG hostname")?,
        shared_key_digest: c.bytes("PONG digest")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_known_sha512() {
        // sha512("abc")
        assert_eq!(
            sha512_hex(&[b"a", b"bc"]),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn full_handshake_round_trip() {
        let mut helo = Vec::new();
        encode_helo(&mut helo, &Helo { nonce: b"n0nce", auth: b"authsalt", keepalive: true });
        let h = parse_helo(&helo).unwrap();
        assert_eq!(h, Helo { nonce: b"n0nce", auth: b"authsalt", keepalive: true });

        let mut ping = Vec::new();
        encode_ping(&mut ping, &h, b"client", b"salt", b"secret", Some((b"alice", b"pw")));
        let p = parse_ping(&ping).unwrap();
        assert_eq!(p.hostname, b"client");
        assert_eq!(p.shared_key_digest, shared_key_digest(b"salt", b"client", b"n0nce", b"secret").as_bytes());
        assert_eq!(p.password_digest, password_digest(b"authsalt", b"alice", b"pw").as_bytes());

        let mut pong = Vec::new();
        encode_pong_ok(&mut pong, p.shared_key_salt, b"server", b"n0nce", b"secret");
        let q = parse_pong(&pong).unwrap();
        assert!(q.ok);
        assert!(digest_eq(q.shared_key_digest, shared_key_digest(b"salt", b"server", b"n0nce", b"secret").as_bytes()));

        let mut bad = Vec::new();
        encode_pong_fail(&mut bad, b"shared_key mismatch");
        let q = parse_pong(&bad).unwrap();
        assert!(!q.ok);
        assert_eq!(q.reason, b"shared_key mismatch");
    }

    #[test]
    fn wrong_messages_are_errors() {
        let mut helo = Vec::new();
        encode_helo(&mut helo, &Helo { nonce: b"n", auth: b"", keepalive: false });
        assert!(parse_ping(&helo).is_err());
        assert!(parse_pong(&helo).is_err());
        assert!(parse_helo(&[0xc0]).is_err());
    }
}
