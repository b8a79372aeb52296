//! The Forward protocol's authentication, as fluentd does it: `<security>` in in_forward
//! (shared key, user/password, `<client>` allow-lists by host or CIDR network with
//! per-client keys and users) and in out_forward (shared key, per-server username and
//! password). The wire messages and digests are `spate_protocol::handshake`; this module
//! holds the configuration and the server's and client's decisions.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use spate_protocol::handshake::{self, Helo, Ping};

use crate::config::{ConfigError, Element};

/// One `<client>`: who may connect, with which key and users.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRule {
    pub net: IpAddr,
    pub prefix: u8,
    pub shared_key: Option<String>,
    pub users: Vec<String>,
}

impl ClientRule {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let bits = self.prefix.min(32) as u32;
                let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
                (u32::from(n) & mask) == (u32::from(a) & mask)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let bits = self.prefix.min(128) as u32;
                let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
                (u128::from(n) & mask) == (u128::from(a) & mask)
            }
            (IpAddr::V4(n), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|a| ClientRule { net: IpAddr::V4(n), ..self.clone() }.contains(IpAddr::V4(a))),
            _ => false,
        }
    }
}

/// in_forward's `<security>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSecurity {
    pub self_hostname: String,
    pub shared_key: String,
    pub user_auth: bool,
    pub allow_anonymous_source: bool,
    pub users: Vec<(String, String)>,
    pub clients: Vec<ClientRule>,
}

fn parse_network(e: &Element, s: &str) -> Result<(IpAddr, u8), ConfigError> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr =
        addr.trim().parse().map_err(|_| ConfigError::at(&e.pos, format!("network '{s}' address format is invalid")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| ConfigError::at(&e.pos, format!("network '{s}' has an invalid prefix length")))?,
    };
    Ok((ip, prefix))
}

/// Reads in_forward's `<security>` section.
pub fn server_from_element(s: &Element) -> Result<ServerSecurity, ConfigError> {
    let need =
        |k: &str| s.str(k).map(str::to_string).ok_or_else(|| ConfigError::at(&s.pos, format!("<security> needs {k}")));
    let mut sec = ServerSecurity {
        self_hostname: need("self_hostname")?,
        shared_key: need("shared_key")?,
        user_auth: s.bool("user_auth")?.unwrap_or(false),
        allow_anonymous_source: s.bool("allow_anonymous_source")?.unwrap_or(true),
        users: Vec::new(),
        clients: Vec::new(),
    };
    for u in s.elements_named("user") {
        let name = u.str("username").ok_or_else(|| ConfigError::at(&u.pos, "<user> needs username"))?;
        let pw = u.str("password").ok_or_else(|| ConfigError::at(&u.pos, "<user> needs password"))?;
        sec.users.push((name.to_string(), pw.to_string()));
        u.warn_unused();
    }
    if sec.user_auth && sec.users.is_empty() {
        return Err(ConfigError::at(&s.pos, "<user> sections required if user_auth enabled"));
    }
    for c in s.elements_named("client") {
        let (net, prefix) = match (c.str("host"), c.str("network")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::at(&c.pos, "both of 'host' and 'network' are specified for client"))
            }
            (None, None) => {
                return Err(ConfigError::at(&c.pos, "Either of 'host' and 'network' must be specified for client"))
            }
            (Some(h), None) => {
                let ip = match h.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => (h, 0)
                        .to_socket_addrs()
                        .ok()
                        .and_then(|mut a| a.next())
                        .map(|a| a.ip())
                        .ok_or_else(|| ConfigError::at(&c.pos, format!("host '{h}' cannot be resolved")))?,
                };
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
            (None, Some(n)) => parse_network(c, n)?,
        };
        sec.clients.push(ClientRule {
            net,
            prefix,
            shared_key: c.str("shared_key").map(str::to_string),
            users: c.array("users")?.unwrap_or_default(),
        });
        c.warn_unused();
    }
    if !sec.allow_anonymous_source && sec.clients.is_empty() {
        return Err(ConfigError::at(&s.pos, "<client> sections required if allow_anonymous_source disabled"));
    }
    s.warn_unused();
    Ok(sec)
}

/// 16 random bytes as 32 hex characters (nonces and salts).
pub fn random_hex() -> String {
    spate_protocol::hex(&crate::sys::random16())
}

/// The server's side of one handshake.
pub struct ServerHandshake {
    pub nonce: String,
    pub auth_salt: String,
}

impl ServerHandshake {
    pub fn new() -> Self {
        ServerHandshake { nonce: random_hex(), auth_salt: random_hex() }
    }

    /// The HELO to send first. fluentd always sends an auth salt under `<security>`.
    pub fn helo(&self, keepalive: bool, out: &mut Vec<u8>) {
        handshake::encode_helo(out, &Helo { nonce: self.nonce.as_bytes(), auth: self.auth_salt.as_bytes(), keepalive });
    }

    /// Checks a PING and writes the PONG. `Err(reason)` means the client is refused
    /// (the PONG carrying the reason is still written).
    pub fn check(&self, sec: &ServerSecurity, ping_raw: &[u8], peer: IpAddr, out: &mut Vec<u8>) -> Result<(), String> {
        self.check_user(sec, ping_raw, peer, out).map(|_| ())
    }

    /// [`ServerHandshake::check`], returning the user name `user_auth` authenticated
    /// (`None` without user_auth).
    pub fn check_user(
        &self,
        sec: &ServerSecurity,
        ping_raw: &[u8],
        peer: IpAddr,
        out: &mut Vec<u8>,
    ) -> Result<Option<String>, String> {
        let r = self.decide(sec, ping_raw, peer);
        match &r {
            Ok((salt, key, _)) => handshake::encode_pong_ok(
                out,
                salt,
                sec.self_hostname.as_bytes(),
                self.nonce.as_bytes(),
                key.as_bytes(),
            ),
            Err(reason) => handshake::encode_pong_fail(out, reason.as_bytes()),
        }
        r.map(|(_, _, user)| user)
    }

    fn decide(
        &self,
        sec: &ServerSecurity,
        ping_raw: &[u8],
        peer: IpAddr,
    ) -> Result<(Vec<u8>, String, Option<String>), String> {
        let ping: Ping<'_> = handshake::parse_ping(ping_raw).map_err(|_| "invalid ping message".to_string())?;
        let node = sec.clients.iter().find(|c| c.contains(peer));
        if node.is_none() && !sec.allow_anonymous_source {
            return Err(format!("anonymous source host '{peer}' denied"));
        }
        let key = node.and_then(|n| n.shared_key.clone()).unwrap_or_else(|| sec.shared_key.clone());
        let want =
            handshake::shared_key_digest(ping.shared_key_salt, ping.hostname, self.nonce.as_bytes(), key.as_bytes());
        if !handshake::digest_eq(ping.shared_key_digest, want.as_bytes()) {
            return Err("shared_key mismatch".into());
        }
        if sec.user_auth {
            let allowed = |u: &str| node.is_none_or(|n| n.users.is_empty() || n.users.iter().any(|x| x == u));
            let ok = sec.users.iter().filter(|(u, _)| u.as_bytes() == ping.username && allowed(u)).any(|(u, p)| {
                let d = handshake::password_digest(self.auth_salt.as_bytes(), u.as_bytes(), p.as_bytes());
                handshake::digest_eq(ping.password_digest, d.as_bytes())
            });
            if !ok {
                return Err("username/password mismatch".into());
            }
            let user = String::from_utf8_lossy(ping.username).into_owned();
            return Ok((ping.shared_key_salt.to_vec(), key, Some(user)));
        }
        Ok((ping.shared_key_salt.to_vec(), key, None))
    }
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

/// out_forward's credentials for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub self_hostname: String,
    pub shared_key: String,
    pub username: String,
    pub password: String,
}

/// The client's side: answers a HELO with a PING, then verifies the PONG.
pub struct ClientHandshake {
    salt: String,
    nonce: Vec<u8>,
}

impl ClientHandshake {
    /// Parses the HELO and writes the PING.
    pub fn ping(cred: &ClientCredentials, helo_raw: &[u8], out: &mut Vec<u8>) -> Result<ClientHandshake, String> {
        let helo = handshake::parse_helo(helo_raw).map_err(|e| format!("received invalid helo message: {e}"))?;
        let salt = random_hex();
        handshake::encode_ping(
            out,
            &helo,
            cred.self_hostname.as_bytes(),
            salt.as_bytes(),
            cred.shared_key.as_bytes(),
            Some((cred.username.as_bytes(), cred.password.as_bytes())),
        );
        Ok(ClientHandshake { salt, nonce: helo.nonce.to_vec() })
    }

    /// Verifies the server's PONG (fluentd's checks, in its order).
    pub fn verify(&self, cred: &ClientCredentials, pong_raw: &[u8]) -> Result<(), String> {
        let p = handshake::parse_pong(pong_raw).map_err(|_| "invalid format for PONG message".to_string())?;
        if !p.ok {
            return Err(format!("authentication failed: {}", String::from_utf8_lossy(p.reason)));
        }
        if p.hostname == cred.self_hostname.as_bytes() {
            return Err("same hostname between input and output: invalid configuration".into());
        }
        let want =
            handshake::shared_key_digest(self.salt.as_bytes(), p.hostname, &self.nonce, cred.shared_key.as_bytes());
        if !handshake::digest_eq(p.shared_key_digest, want.as_bytes()) {
            return Err("shared key mismatch".into());
        }
        Ok(())
    }
}

/// Peer IP of a socket address (v4-mapped v6 addresses as v4).
pub fn peer_ip(a: SocketAddr) -> IpAddr {
    match a.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        ip => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec() -> ServerSecurity {
        ServerSecurity {
            self_hostname: "server".into(),
            shared_key: "k".into(),
            user_auth: true,
            allow_anonymous_source: true,
            users: vec![("alice".into(), "pw".into())],
            clients: vec![ClientRule {
                net: "10.0.0.0".parse().unwrap(),
                prefix: 8,
                shared_key: Some("k10".into()),
                users: vec![],
            }],
        }
    }

    fn round(cred: &ClientCredentials, peer: &str) -> (Result<(), String>, Result<(), String>) {
        let server = ServerHandshake::new();
        let mut helo = Vec::new();
        server.helo(true, &mut helo);
        let mut ping = Vec::new();
        let client = ClientHandshake::ping(cred, &helo, &mut ping).unwrap();
        let mut pong = Vec::new();
        let s = server.check(&sec(), &ping, peer.parse().unwrap(), &mut pong);
        (s, client.verify(cred, &pong))
    }

    fn cred(key: &str, user: &str, pw: &str) -> ClientCredentials {
        ClientCredentials {
            self_hostname: "client".into(),
            shared_key: key.into(),
            username: user.into(),
            password: pw.into(),
        }
    }

    #[test]
    fn handshake_outcomes() {
        assert_eq!(round(&cred("k", "alice", "pw"), "127.0.0.1"), (Ok(()), Ok(())));
        let (s, c) = round(&cred("wrong", "alice", "pw"), "127.0.0.1");
        assert_eq!(s, Err("shared_key mismatch".into()));
        assert_eq!(c, Err("authentication failed: shared_key mismatch".into()));
        let (s, _) = round(&cred("k", "alice", "nope"), "127.0.0.1");
        assert_eq!(s, Err("username/password mismatch".into()));
        // A <client> network with its own key.
        assert_eq!(round(&cred("k10", "alice", "pw"), "10.1.2.3").0, Ok(()));
        assert_eq!(round(&cred("k", "alice", "pw"), "10.1.2.3").0, Err("shared_key mismatch".into()));
        let mut same = cred("k", "alice", "pw");
        same.self_hostname = "server".into();
        assert!(round(&same, "127.0.0.1").1.unwrap_err().contains("same hostname"));
    }

    #[test]
    fn the_authenticated_user_is_returned() {
        // in_forward's `deduplicate` keys a connection's frames by it.
        let ping_for = |s: &ServerSecurity, server: &ServerHandshake| {
            let mut helo = Vec::new();
            server.helo(true, &mut helo);
            let mut ping = Vec::new();
            ClientHandshake::ping(&cred("k", "alice", "pw"), &helo, &mut ping).unwrap();
            server.check_user(s, &ping, "127.0.0.1".parse().unwrap(), &mut Vec::new())
        };
        assert_eq!(ping_for(&sec(), &ServerHandshake::new()), Ok(Some("alice".to_string())));
        let mut no_users = sec();
        no_users.user_auth = false;
        assert_eq!(ping_for(&no_users, &ServerHandshake::new()), Ok(None), "shared_key only: no user");
    }

    #[test]
    fn anonymous_sources_can_be_refused() {
        let mut s = sec();
        s.allow_anonymous_source = false;
        let server = ServerHandshake::new();
        let mut helo = Vec::new();
        server.helo(true, &mut helo);
        let mut ping = Vec::new();
        ClientHandshake::ping(&cred("k", "alice", "pw"), &helo, &mut ping).unwrap();
        let mut pong = Vec::new();
        assert_eq!(
            server.check(&s, &ping, "192.168.1.1".parse().unwrap(), &mut pong),
            Err("anonymous source host '192.168.1.1' denied".into())
        );
        assert!(server.check(&s, &ping, "10.9.9.9".parse().unwrap(), &mut Vec::new()).is_err(), "10/8 uses key k10");
    }

    #[test]
    fn cidr() {
        let r = ClientRule { net: "192.168.0.0".parse().unwrap(), prefix: 16, shared_key: None, users: vec![] };
        assert!(r.contains("192.168.200.1".parse().unwrap()));
        assert!(!r.contains("192.169.0.1".parse().unwrap()));
        let all = ClientRule { net: "0.0.0.0".parse().unwrap(), prefix: 0, shared_key: None, users: vec![] };
        assert!(all.contains("8.8.8.8".parse().unwrap()));
    }
}
