//! TLS for in_forward (`<transport tls>`) and out_forward (`transport tls`) with rustls,
//! configured with fluentd's parameters, and the [`Stream`] both use: plain TCP or TLS
//! over glommio's `TcpStream`, as one `AsyncRead + AsyncWrite` type.
//!
//! Certificates, keys and CAs are read (and checked) when the configuration is loaded,
//! so a bad file is a config error with file:line. What rustls cannot do is refused the
//! same way, naming what is supported: TLS 1.0/1.1, OpenSSL cipher strings (warned and
//! ignored: rustls's suites are used), encrypted private keys, certificates fluentd
//! would generate itself.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::{ConfigError, Element};

/// in_forward's TLS settings.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub client_cert_auth: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("client_cert_auth", &self.client_cert_auth).finish()
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.config, &o.config)
    }
}

/// How long the text inputs and in_http wait for a client's TLS handshake (in_forward
/// has `handshake_timeout`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// out_forward's TLS settings.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.config, &o.config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn err(e: &Element, m: impl Into<String>) -> ConfigError {
    ConfigError::at(&e.pos, m)
}

const VERSIONS: &str = "TLSv1_2, TLSv1_3 (also written TLS1_2, TLS1_3)";

fn version(e: &Element, v: &str) -> Result<&'static rustls::SupportedProtocolVersion, ConfigError> {
    match v {
        "TLSv1_2" | "TLS1_2" => Ok(&rustls::version::TLS12),
        "TLSv1_3" | "TLS1_3" => Ok(&rustls::version::TLS13),
        "TLSv1" | "TLS1" | "TLSv1_1" | "TLS1_1" | "TLS1_0" | "TLSv1_0" => Err(err(
            e,
            format!("TLS version {v} is not supported (rustls implements TLS 1.2 and 1.3); supported: {VERSIONS}"),
        )),
        _ => Err(err(e, format!("unknown TLS version {v:?}; supported: {VERSIONS}"))),
    }
}

/// fluentd's `set_version_to_context`: `version` alone means exactly that version;
/// `min_version` and `max_version` go together.
fn versions(
    e: &Element,
    v: &str,
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, ConfigError> {
    match (min, max) {
        (None, None) => Ok(vec![version(e, v)?]),
        (None, Some(_)) => Err(err(e, "When you set max_version, must set min_version together")),
        (Some(_), None) => Err(err(e, "When you set min_version, must set max_version together")),
        (Some(a), Some(b)) => {
            let (a, b) = (version(e, a)?, version(e, b)?);
            let rank = |x: &rustls::SupportedProtocolVersion| {
                if x.version == rustls::ProtocolVersion::TLSv1_3 {
                    3
                } else {
                    2
                }
            };
            if rank(a) > rank(b) {
                return Err(err(e, "min_version must not be above max_version"));
            }
            Ok(if rank(a) == rank(b) { vec![a] } else { vec![&rustls::version::TLS13, &rustls::version::TLS12] })
        }
    }
}

fn certs(e: &Element, key: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let v: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|x| err(e, format!("{key} {path}: {x}")))?
        .collect::<Result<_, _>>()
        .map_err(|x| err(e, format!("{key} {path}: {x}")))?;
    if v.is_empty() {
        return Err(err(e, format!("{key} {path}: no PEM certificate in it")));
    }
    Ok(v)
}

fn private_key(
    e: &Element,
    key: &str,
    path: &str,
    passphrase: Option<&str>,
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    // OpenSSL ignores a passphrase for a key that is not encrypted (configs often carry
    // one anyway); only an encrypted key is refused.
    let text = std::fs::read(path).map_err(|x| err(e, format!("{key} {path}: {x}")))?;
    let encrypted = memchr::memmem::find(&text, b"ENCRYPTED PRIVATE KEY").is_some()
        || memchr::memmem::find(&text, b"Proc-Type: 4,ENCRYPTED").is_some();
    if encrypted {
        return Err(err(
            e,
            format!("{key} {path}: encrypted private keys are not supported; decrypt the key first, e.g. `openssl pkey -in key.pem -out plain.pem`"),
        ));
    }
    if passphrase.is_some_and(|p| !p.is_empty()) {
        crate::debug!("{}: {key} {path} is not encrypted: its passphrase is not needed", e.pos);
    }
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|x| err(e, format!("{key} {path}: {x} (expected an unencrypted PEM private key)")))
}

fn roots(e: &Element, key: &str, paths: &[String]) -> Result<RootCertStore, ConfigError> {
    let mut r = RootCertStore::empty();
    for p in paths {
        for c in certs(e, key, p)? {
            r.add(c).map_err(|x| err(e, format!("{key} {p}: {x}")))?;
        }
    }
    Ok(r)
}

/// The system's CA bundle (what OpenSSL, and so fluentd, trusts by default).
fn system_roots() -> RootCertStore {
    let mut r = RootCertStore::empty();
    for p in ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"] {
        if let Ok(it) = CertificateDer::pem_file_iter(p) {
            for c in it.flatten() {
                let _ = r.add(c);
            }
            if !r.is_empty() {
                break;
            }
        }
    }
    r
}

/// Parses in_forward's `<transport tls>` (`None` for `<transport tcp>` or no section).
pub fn server_tls(t: &Element) -> Result<Option<ServerTls>, ConfigError> {
    match t.arg.trim() {
        "" | "tcp" => return Ok(None),
        "tls" => {}
        "udp" => return Err(err(t, "<transport udp> is not supported by in_forward; supported: tcp, tls")),
        o => return Err(err(t, format!("unknown transport {o:?}; supported: tcp, tls"))),
    }
    let v = t.str("version").unwrap_or("TLSv1_2");
    let vs = versions(t, v, t.str("min_version"), t.str("max_version"))?;
    if t.str("ciphers").is_some() {
        crate::warn!("{}: ciphers is ignored: spate uses rustls's cipher suites (AES-GCM, ChaCha20-Poly1305)", t.pos);
    }
    if t.bool("insecure")?.unwrap_or(false) {
        crate::warn!("{}: insecure true has no effect: rustls offers no insecure cipher suites", t.pos);
    }
    let _ = t.bool("ensure_fips")?;
    for k in ["cert_verifier", "ca_cert_path", "ca_private_key_path", "ca_private_key_passphrase"] {
        if t.str(k).is_some() {
            return Err(err(
                t,
                format!("{k} is not supported: spate does not sign certificates with a CA or run Ruby verifiers; give cert_path and private_key_path"),
            ));
        }
    }
    for k in t
        .attrs
        .iter()
        .map(|a| a.key.as_str())
        .filter(|k| k.starts_with("generate_") || k.starts_with("cert_") && *k != "cert_path")
    {
        let _ = t.str(k);
    }
    let (chain, key) = match (t.str("cert_path"), t.str("private_key_path")) {
        (Some(cert_path), Some(key_path)) => (
            certs(t, "cert_path", cert_path)?,
            private_key(t, "private_key_path", key_path, t.str("private_key_passphrase"))?,
        ),
        (None, None) => self_signed(t)?,
        _ => return Err(err(t, "<transport tls>: cert_path and private_key_path go together")),
    };
    let client_cert_auth = t.bool("client_cert_auth")?.unwrap_or(false);
    let p = provider();
    let b = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&vs)
        .map_err(|x| err(t, format!("TLS versions: {x}")))?;
    let b = if client_cert_auth {
        let ca = t
            .str("ca_path")
            .ok_or_else(|| err(t, "client_cert_auth true needs ca_path (the CA that signs client certificates)"))?;
        let r = roots(t, "ca_path", &[ca.to_string()])?;
        let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(r), p)
            .build()
            .map_err(|x| err(t, format!("ca_path {ca}: {x}")))?;
        b.with_client_cert_verifier(v)
    } else {
        let _ = t.str("ca_path");
        b.with_no_client_auth()
    };
    let cfg = b.with_single_cert(chain, key).map_err(|x| err(t, format!("cert_path/private_key_path: {x}")))?;
    t.warn_unused();
    Ok(Some(ServerTls { config: Arc::new(cfg), client_cert_auth }))
}

/// fluentd's `<transport tls>` without a certificate: a self-signed one, made at start
/// (`generate_cert_common_name`, default the host name).
fn self_signed(t: &Element) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let host = crate::config::hostname();
    let cn = t.str("generate_cert_common_name").map_or_else(|| host.clone(), str::to_string);
    let mut names = vec![cn.clone(), "localhost".to_string(), "127.0.0.1".to_string()];
    if host != cn {
        names.push(host);
    }
    let mut p = rcgen::CertificateParams::new(names).map_err(|x| err(t, format!("generating a certificate: {x}")))?;
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let k = rcgen::KeyPair::generate().map_err(|x| err(t, format!("generating a key: {x}")))?;
    let c = p.self_signed(&k).map_err(|x| err(t, format!("generating a certificate: {x}")))?;
    crate::warn!(
        "{}: <transport tls> has no cert_path: using a self-signed certificate generated at start (clients must run with tls_insecure_mode or trust it explicitly)",
        t.pos
    );
    let key = PrivateKeyDer::try_from(k.serialize_der()).map_err(|x| err(t, format!("generated key: {x}")))?;
    Ok((vec![c.der().clone()], key))
}

/// A verifier for `tls_insecure_mode`, `tls_verify_hostname false` and
/// `tls_allow_self_signed_cert`: it relaxes exactly those checks and still verifies
/// handshake signatures.
#[derive(Debug)]
struct Relaxed {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    verify_hostname: bool,
    allow_self_signed: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else { return Ok(ServerCertVerified::assertion()) };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Ok(v) => Ok(v),
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. }))
                if !self.verify_hostname =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
                if self.allow_self_signed && intermediates.is_empty() =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Parses out_forward's TLS parameters (`None` unless `transport tls`).
pub fn client_tls(e: &Element) -> Result<Option<ClientTls>, ConfigError> {
    match e.str("transport") {
        None | Some("tcp") => {
            for k in ["tls_ca_cert_path", "tls_cert_path", "tls_client_cert_path", "tls_client_private_key_path"] {
                if e.str(k).is_some() {
                    crate::warn!("{}: {k} has no effect without `transport tls`", e.pos);
                }
            }
            return Ok(None);
        }
        Some("tls") => {}
        Some(o) => return Err(err(e, format!("out_forward transport {o:?}: supported: tcp, tls"))),
    }
    let vs = versions(e, e.str("tls_version").unwrap_or("TLSv1_2"), None, None)?;
    if e.str("tls_ciphers").is_some() {
        crate::warn!(
            "{}: tls_ciphers is ignored: spate uses rustls's cipher suites (AES-GCM, ChaCha20-Poly1305)",
            e.pos
        );
    }
    for k in ["tls_cert_thumbprint", "tls_cert_logical_store_name", "tls_cert_use_enterprise_store"] {
        if e.str(k).is_some() {
            crate::warn!("{}: {k} applies to the Windows certificate store only; ignored", e.pos);
        }
    }
    let insecure = e.bool("tls_insecure_mode")?.unwrap_or(false);
    let verify_hostname = e.bool("tls_verify_hostname")?.unwrap_or(true);
    let allow_self_signed = e.bool("tls_allow_self_signed_cert")?.unwrap_or(false);
    // fluentd: tls_cert_path (older name) replaces tls_ca_cert_path.
    let cas = e.array("tls_cert_path")?.or(e.array("tls_ca_cert_path")?).unwrap_or_default();
    let p = provider();
    let root_store = if cas.is_empty() { system_roots() } else { roots(e, "tls_ca_cert_path", &cas)? };
    let b = ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&vs)
        .map_err(|x| err(e, format!("TLS versions: {x}")))?;
    let b = if insecure || !verify_hostname || allow_self_signed {
        if insecure {
            crate::warn!("{}: tls_insecure_mode true: server certificates are not verified", e.pos);
        }
        let inner = if insecure {
            None
        } else {
            Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(root_store), p.clone())
                    .build()
                    .map_err(|x| err(e, format!("tls_ca_cert_path: {x}")))?,
            )
        };
        b.dangerous().with_custom_certificate_verifier(Arc::new(Relaxed {
            inner,
            verify_hostname,
            allow_self_signed,
            provider: p,
        }))
    } else {
        if root_store.is_empty() {
            return Err(err(
                e,
                "transport tls: no CA to verify servers with: set tls_ca_cert_path (no system CA bundle found)",
            ));
        }
        b.with_root_certificates(root_store)
    };
    let cfg = match (e.str("tls_client_cert_path"), e.str("tls_client_private_key_path")) {
        (Some(c), Some(k)) => {
            let chain = certs(e, "tls_client_cert_path", c)?;
            let key = private_key(e, "tls_client_private_key_path", k, e.str("tls_client_private_key_passphrase"))?;
            b.with_client_auth_cert(chain, key).map_err(|x| err(e, format!("tls_client_cert_path: {x}")))?
        }
        (None, None) => b.with_no_client_auth(),
        _ => return Err(err(e, "tls_client_cert_path and tls_client_private_key_path go together")),
    };
    Ok(Some(ClientTls { config: Arc::new(cfg) }))
}

/// A connection: plain TCP or TLS over TCP.
#[allow(clippy::large_enum_variant)]
pub enum Stream {
    Plain(TcpStream),
    Server(futures_rustls::server::TlsStream<TcpStream>),
    Client(futures_rustls::client::TlsStream<TcpStream>),
}

impl Stream {
    /// The socket of a plain (not TLS) stream, for reads that bypass the async reader.
    pub fn plain_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            Stream::Plain(s) => Some(s.as_raw_fd()),
            _ => None,
        }
    }

    /// The server side of an accepted connection: the TLS handshake when the input has
    /// `tls` (bounded by `timeout`), else the plain stream.
    pub async fn accept_if(tcp: TcpStream, tls: Option<&ServerTls>, timeout: Duration) -> io::Result<Stream> {
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(t) => Stream::accept(tcp, t, timeout).await,
        }
    }

    /// The TLS handshake as the server, bounded by `timeout`.
    pub async fn accept(tcp: TcpStream, tls: &ServerTls, timeout: Duration) -> io::Result<Stream> {
        let acc = futures_rustls::TlsAcceptor::from(tls.config.clone());
        let r = glommio::timer::timeout(timeout, async { acc.accept(tcp).await.map_err(glommio::GlommioError::from) })
            .await;
        match r {
            Ok(s) => Ok(Stream::Server(s)),
            Err(glommio::GlommioError::TimedOut(_)) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("no TLS handshake within {timeout:?}")))
            }
            Err(glommio::GlommioError::IoError(e)) => Err(e),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    /// The TLS handshake as the client for `host` (a name or an IP address).
    pub async fn connect(tcp: TcpStream, tls: &ClientTls, host: &str, timeout: Duration) -> io::Result<Stream> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("server name {host:?}: {e}")))?;
        let conn = futures_rustls::TlsConnector::from(tls.config.clone());
        let r = glommio::timer::timeout(timeout, async {
            conn.connect(name, tcp).await.map_err(glommio::GlommioError::from)
        })
        .await;
        match r {
            Ok(s) => Ok(Stream::Client(s)),
            Err(glommio::GlommioError::TimedOut(_)) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("no TLS handshake within {timeout:?}")))
            }
            Err(glommio::GlommioError::IoError(e)) => Err(e),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Server(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Client(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Server(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Server(s) => Pin::new(s).poll_flush(cx),
            Stream::Client(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Server(s) => Pin::new(s).poll_close(cx),
            Stream::Client(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// TLS settings of an HTTP output (out_elasticsearch's `ssl_*`/`ca_file`/`client_*`,
/// out_http's `tls_*`), in those plugins' own names.
#[derive(Debug, Clone, Default)]
pub struct HttpTlsParams<'a> {
    /// CA files (PEM); empty: the system's bundle.
    pub ca_files: Vec<String>,
    pub client_cert: Option<&'a str>,
    pub client_key: Option<&'a str>,
    pub client_key_pass: Option<&'a str>,
    /// Verify the server's certificate chain.
    pub verify: bool,
    /// Verify the host name against the certificate.
    pub verify_hostname: bool,
    /// `ssl_version` / `tls_version`, and the optional min/max pair.
    pub version: &'a str,
    pub min_version: Option<&'a str>,
    pub max_version: Option<&'a str>,
    /// The names of the parameters, for error messages: (ca, cert, key).
    pub names: (&'a str, &'a str, &'a str),
    /// Accept a server certificate no CA signed (out_forward's
    /// `tls_allow_self_signed_cert` reading).
    pub allow_self_signed: bool,
    /// When the system's CA bundle is trusted.
    pub system_roots: SystemRoots,
}

/// When a client trusts the system's CA bundle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SystemRoots {
    /// Only when no CA file is given (the HTTP outputs).
    #[default]
    UnlessCaFiles,
    /// Besides the CA files (fluentd's socket helper with `enable_system_cert_store`).
    Also,
    /// Never (`enable_system_cert_store false`).
    Never,
}

/// A client config that checks servers against the system roots (TLS 1.2 and up), for
/// HTTPS endpoints a plugin has no TLS parameters for (AWS STS, Loggly, Treasure
/// Data...). `verify false` is a plugin's `ssl_verify_peer false`.
pub fn system_client_tls(e: &Element, verify: bool) -> Result<ClientTls, ConfigError> {
    let p = HttpTlsParams {
        ca_files: Vec::new(),
        client_cert: None,
        client_key: None,
        client_key_pass: None,
        verify,
        verify_hostname: verify,
        version: "TLSv1_2",
        min_version: None,
        max_version: None,
        names: ("", "", ""),
        allow_self_signed: false,
        system_roots: SystemRoots::UnlessCaFiles,
    };
    http_client_tls(e, &p)
}

/// A rustls client configuration for an HTTP output.
pub fn http_client_tls(e: &Element, p: &HttpTlsParams<'_>) -> Result<ClientTls, ConfigError> {
    let vs = versions(e, p.version, p.min_version, p.max_version)?;
    let prov = provider();
    let mut root_store = if p.ca_files.is_empty() { RootCertStore::empty() } else { roots(e, p.names.0, &p.ca_files)? };
    match p.system_roots {
        SystemRoots::UnlessCaFiles if p.ca_files.is_empty() => root_store = system_roots(),
        SystemRoots::Also => root_store.roots.extend(system_roots().roots),
        _ => {}
    }
    let b = ClientConfig::builder_with_provider(prov.clone())
        .with_protocol_versions(&vs)
        .map_err(|x| err(e, format!("TLS versions: {x}")))?;
    let b = if !p.verify || !p.verify_hostname || p.allow_self_signed {
        let inner = if p.verify {
            Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(root_store), prov.clone())
                    .build()
                    .map_err(|x| err(e, format!("{}: {x}", p.names.0)))?,
            )
        } else {
            None
        };
        b.dangerous().with_custom_certificate_verifier(Arc::new(Relaxed {
            inner,
            verify_hostname: p.verify_hostname,
            allow_self_signed: p.allow_self_signed,
            provider: prov,
        }))
    } else {
        if root_store.is_empty() {
            let why = match p.system_roots {
                SystemRoots::Never => "the system's CAs are off",
                _ => "no system CA bundle found",
            };
            return Err(err(e, format!("no CA to verify servers with: set {} ({why})", p.names.0)));
        }
        b.with_root_certificates(root_store)
    };
    let cfg = match (p.client_cert, p.client_key) {
        (Some(c), Some(k)) => {
            let chain = certs(e, p.names.1, c)?;
            let key = private_key(e, p.names.2, k, p.client_key_pass)?;
            b.with_client_auth_cert(chain, key).map_err(|x| err(e, format!("{}: {x}", p.names.1)))?
        }
        (None, None) => b.with_no_client_auth(),
        _ => return Err(err(e, format!("{} and {} go together", p.names.1, p.names.2))),
    };
    Ok(ClientTls { config: Arc::new(cfg) })
}
