//! What the fuzz targets (`fuzz/`) and the corpus tests run on arbitrary bytes for the
//! config parser and the shared-key handshake, in one place.

use std::net::IpAddr;
use std::path::Path;

use crate::config::{parse_str, EvalContext};
use crate::security::{ClientCredentials, ClientHandshake, ServerHandshake, ServerSecurity};

/// Parses arbitrary text as fluent.conf and validates it. Inputs that would touch the
/// filesystem or the network (`@include`, server host names) are only parsed.
pub fn config(data: &[u8]) {
    // Warnings about odd parameters would flood the output (and slow fuzzing down).
    crate::log::set_level(crate::log::Level::Error);
    let Ok(s) = std::str::from_utf8(data) else { return };
    if s.contains("include") {
        return;
    }
    let ctx = EvalContext { hostname: "fuzz".into(), worker_id: None, env: Box::new(|_| None) };
    let Ok(root) = parse_str(s, "fuzz.conf", Path::new("/nonexistent-fuzz-dir"), &ctx) else { return };
    if s.contains("host") || s.contains("path") {
        return;
    }
    let _ = crate::plan::plan(&root, Some(1), "fuzz");
}

fn security() -> ServerSecurity {
    ServerSecurity {
        self_hostname: "server".into(),
        shared_key: "k".into(),
        user_auth: true,
        allow_anonymous_source: true,
        users: vec![("u".into(), "p".into())],
        clients: Vec::new(),
    }
}

fn credentials() -> ClientCredentials {
    ClientCredentials {
        self_hostname: "client".into(),
        shared_key: "k".into(),
        username: "u".into(),
        password: "p".into(),
    }
}

/// The handshake on arbitrary bytes: the first byte picks the side. 0: the server
/// checks `rest` as a PING; 1: the client answers `rest` as a HELO; 2: the client
/// answers a real HELO, then verifies `rest` as the PONG.
pub fn handshake(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let mut out = Vec::new();
    match which % 3 {
        0 => {
            let hs = ServerHandshake::new();
            hs.helo(true, &mut out);
            out.clear();
            let _ = hs.check(&security(), rest, IpAddr::from([127, 0, 0, 1]), &mut out);
        }
        1 => {
            let _ = ClientHandshake::ping(&credentials(), rest, &mut out);
        }
        _ => {
            let server = ServerHandshake::new();
            let mut helo = Vec::new();
            server.helo(true, &mut helo);
            if let Ok(c) = ClientHandshake::ping(&credentials(), &helo, &mut out) {
                let _ = c.verify(&credentials(), rest);
            }
        }
    }
}
