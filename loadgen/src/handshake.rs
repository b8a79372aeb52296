//! The client side of fluentd's `<security>` handshake (HELO in, PING out, PONG in and
//! verified), sans I/O: [`ClientHandshake::on_data`] takes the bytes the server sent and
//! says what to send or whether the handshake is done. The threaded path drives it with
//! blocking reads, the event loops with readiness.

use spate_protocol::handshake as hs;
use spate_protocol::msgpack::Skipper;

use crate::stats::wall_ns;

/// Credentials for the HELO/PING/PONG handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub self_hostname: String,
    pub shared_key: String,
    pub username: String,
    pub password: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("invalid HELO: {0}")]
    Helo(String),
    #[error("invalid PONG: {0}")]
    Pong(String),
    #[error("malformed handshake message: {0}")]
    Msgpack(String),
    #[error("authentication failed: {0}")]
    Refused(String),
    #[error("the server's shared key digest does not match")]
    Digest,
}

/// What to do after [`ClientHandshake::on_data`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Wait for more bytes.
    More,
    /// Send these bytes (the PING), then wait for more.
    Send(Vec<u8>),
    /// Authenticated: what follows the PONG in the buffer is ordinary traffic.
    Done,
}

/// One connection's handshake in progress.
pub struct ClientHandshake {
    salt: String,
    nonce: Option<Vec<u8>>,
}

impl Default for ClientHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientHandshake {
    pub fn new() -> Self {
        let salt = format!("{:032x}", wall_ns() as u128 ^ ((std::process::id() as u128) << 64));
        ClientHandshake { salt, nonce: None }
    }

    /// Consumes handshake messages from the front of `buf` (a value split over reads
    /// stays in `buf` until it is whole).
    pub fn on_data(&mut self, a: &Auth, buf: &mut Vec<u8>) -> Result<Step, HandshakeError> {
        let mut sk = Skipper::new();
        let n = match sk.advance(buf, 1 << 16, 8) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(Step::More),
            Err(e) => return Err(HandshakeError::Msgpack(e.to_string())),
        };
        let v: Vec<u8> = buf.drain(..n).collect();
        match &self.nonce {
            None => {
                let helo = hs::parse_helo(&v).map_err(|e| HandshakeError::Helo(e.to_string()))?;
                let mut ping = Vec::new();
                hs::encode_ping(
                    &mut ping,
                    &helo,
                    a.self_hostname.as_bytes(),
                    self.salt.as_bytes(),
                    a.shared_key.as_bytes(),
                    Some((a.username.as_bytes(), a.password.as_bytes())),
                );
                self.nonce = Some(helo.nonce.to_vec());
                Ok(Step::Send(ping))
            }
            Some(nonce) => {
                let pong = hs::parse_pong(&v).map_err(|e| HandshakeError::Pong(e.to_string()))?;
                if !pong.ok {
                    return Err(HandshakeError::Refused(String::from_utf8_lossy(pong.reason).into_owned()));
                }
                let want = hs::shared_key_digest(self.salt.as_bytes(), pong.hostname, nonce, a.shared_key.as_bytes());
                if !hs::digest_eq(pong.shared_key_digest, want.as_bytes()) {
                    return Err(HandshakeError::Digest);
                }
                Ok(Step::Done)
            }
        }
    }
}
