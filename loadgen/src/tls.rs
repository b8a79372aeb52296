//! TLS for the generator (`--tls`, `--tls-ca`, `--tls-cert`/`--tls-key`,
//! `--tls-insecure`, `--tls-server-name`), with rustls.
//!
//! The generator writes frames from one thread and reads acks on another, each with a
//! blocking socket. A rustls connection cannot be split that way, so a TLS connection
//! is bridged: after the handshake, two pump threads move bytes between the TLS socket
//! and a local Unix socket pair, and the generator uses its end of the pair like a TCP
//! socket ([`Conn`]). The pumps cost a copy per direction; it is the same for every
//! server under test.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How to speak TLS to the targets.
#[derive(Clone)]
pub struct TlsConf {
    pub config: Arc<ClientConfig>,
    /// Name to verify (and send as SNI); None: each target's IP address.
    pub server_name: Option<String>,
}

impl std::fmt::Debug for TlsConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConf").field("server_name", &self.server_name).finish()
    }
}

/// Accepts any certificate (`--tls-insecure`), still checking handshake signatures.
#[derive(Debug)]
struct Insecure(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Insecure {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn pem_certs(p: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let v: Vec<_> = CertificateDer::pem_file_iter(p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", p.display()))?;
    if v.is_empty() {
        return Err(format!("{}: no PEM certificate", p.display()));
    }
    Ok(v)
}

impl TlsConf {
    /// Builds the client configuration: `ca` (PEM) or the system bundle, an optional
    /// client certificate and key, or no verification at all with `insecure`.
    pub fn new(
        ca: Option<&Path>,
        cert_key: Option<(&Path, &Path)>,
        insecure: bool,
        server_name: Option<String>,
    ) -> Result<TlsConf, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let b = if insecure {
            b.dangerous().with_custom_certificate_verifier(Arc::new(Insecure(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            let paths: Vec<&Path> = match ca {
                Some(p) => vec![p],
                None => {
                    vec![Path::new("/etc/ssl/certs/ca-certificates.crt"), Path::new("/etc/pki/tls/certs/ca-bundle.crt")]
                }
            };
            for p in paths {
                match pem_certs(p) {
                    Ok(cs) => {
                        for c in cs {
                            roots.add(c).map_err(|e| format!("{}: {e}", p.display()))?;
                        }
                    }
                    Err(e) if ca.is_some() => return Err(e),
                    Err(_) => {}
                }
            }
            if roots.is_empty() {
                return Err("no CA certificates: pass --tls-ca or --tls-insecure".into());
            }
            b.with_root_certificates(roots)
        };
        let cfg = match cert_key {
            Some((c, k)) => {
                let key = PrivateKeyDer::from_pem_file(k).map_err(|e| format!("{}: {e}", k.display()))?;
                b.with_client_auth_cert(pem_certs(c)?, key).map_err(|e| e.to_string())?
            }
            None => b.with_no_client_auth(),
        };
        Ok(TlsConf { config: Arc::new(cfg), server_name })
    }

    /// The TLS handshake over `tcp`, then the bridge; returns the plaintext end.
    pub fn connect(&self, tcp: TcpStream, timeout: Duration) -> io::Result<Conn> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => tcp.peer_addr()?.ip().to_string(),
        };
        let sn = ServerName::try_from(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut conn = ClientConnection::new(self.config.clone(), sn).map_err(io::Error::other)?;
        let mut t = tcp;
        t.set_read_timeout(Some(timeout))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut t)?;
        }
        t.set_read_timeout(None)?;
        let (app, mut pump) = UnixStream::pair()?;
        // The last handshake read may have carried application data too (a server that
        // speaks first, like fluentd's HELO): hand it over before the pumps start, or
        // it would wait for the next TLS record, which never comes.
        let mut early = Vec::new();
        let mut tmp = [0u8; 4096];
        while let Ok(k) = conn.reader().read(&mut tmp) {
            if k == 0 {
                break;
            }
            early.extend_from_slice(&tmp[..k]);
        }
        pump.write_all(&early)?;
        let conn = Arc::new(Mutex::new(conn));
        let tcp_w = Arc::new(Mutex::new(t.try_clone()?));
        // TLS -> plaintext.
        {
            let (conn, tcp_w, mut tcp_r, mut out) = (conn.clone(), tcp_w.clone(), t.try_clone()?, pump.try_clone()?);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                let mut plain = vec![0u8; 64 << 10];
                loop {
                    let n = match tcp_r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut got = Vec::new();
                    {
                        let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
                        let mut rd = &buf[..n];
                        let mut fatal = false;
                        while !rd.is_empty() {
                            if c.read_tls(&mut rd).is_err() || c.process_new_packets().is_err() {
                                fatal = true;
                                break;
                            }
                        }
                        loop {
                            match c.reader().read(&mut plain) {
                                Ok(0) => break,
                                Ok(k) => got.extend_from_slice(&plain[..k]),
                                Err(_) => break,
                            }
                        }
                        if c.wants_write() {
                            let mut w = tcp_w.lock().unwrap_or_else(|e| e.into_inner());
                            while c.wants_write() {
                                if c.write_tls(&mut *w).is_err() {
                                    break;
                                }
                            }
                        }
                        if fatal {
                            break;
                        }
                    }
                    if out.write_all(&got).is_err() {
                        break;
                    }
                }
                let _ = out.shutdown(std::net::Shutdown::Both);
            });
        }
        // Plaintext -> TLS.
        {
            let mut inp = pump;
            // (`pump` was only written to above; from here on it is read.)
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = match inp.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
                    if c.writer().write_all(&buf[..n]).is_err() {
                        break;
                    }
                    let mut w = tcp_w.lock().unwrap_or_else(|e| e.into_inner());
                    while c.wants_write() {
                        if c.write_tls(&mut *w).is_err() {
                            return;
                        }
                    }
                }
                let w = tcp_w.lock().unwrap_or_else(|e| e.into_inner());
                let _ = w.shutdown(std::net::Shutdown::Both);
            });
        }
        Ok(Conn::Unix(app))
    }
}

/// A generator connection: TCP, or the plaintext end of a TLS bridge.
#[derive(Debug)]
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(d),
            Conn::Unix(s) => s.set_read_timeout(d),
        }
    }

    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_write_timeout(d),
            Conn::Unix(s) => s.set_write_timeout(d),
        }
    }

    pub fn shutdown(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(b),
            Conn::Unix(s) => s.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(b),
            Conn::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}
