//! What the Kafka plugins (out_kafka2, in_kafka_group) share: fluent-plugin-kafka's
//! connection settings (brokers, client_id, SSL, SASL, timeouts) read from the config
//! and turned into librdkafka properties, and a client context that sends librdkafka's
//! log lines and errors to spate's log with the plugin id.
//!
//! librdkafka (vendored by the `rdkafka` crate) runs its own threads; the plugins only
//! call it from their dedicated client threads, never from a shard, and talk to the
//! shards through bounded channels.
//!
//! SSL maps to `security.protocol=ssl` with `ssl.ca.pem` (the `ssl_ca_cert` files,
//! concatenated), `ssl.certificate.location`, `ssl.key.location`/`ssl.key.password` and
//! `ssl.endpoint.identification.algorithm` (`ssl_verify_hostname`). SASL PLAIN
//! (`username`/`password`) and SCRAM (`scram_mechanism sha256|sha512`) map to
//! `sasl_ssl` when SSL is configured, else to `sasl_plaintext`, which, as in
//! fluent-plugin-kafka (ruby-kafka), needs `sasl_over_ssl false`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;

use crate::config::{ConfigError, Element};

/// Connection settings common to both plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConf {
    pub brokers: Vec<String>,
    pub client_id: String,
    pub ssl: Option<Ssl>,
    pub sasl: Option<Sasl>,
    pub connect_timeout: Option<Duration>,
    pub socket_timeout: Option<Duration>,
    /// `get_kafka_client_log`: librdkafka's info and debug lines too (warnings and
    /// errors are always logged).
    pub client_log: bool,
}

#[derive(Clone, PartialEq)]
pub struct Ssl {
    /// PEM text of the CA certificates (`ssl_ca_cert` files), or `None` for the system
    /// store (`ssl_ca_certs_from_system`).
    pub ca_pem: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub client_key_password: Option<String>,
    pub verify_hostname: bool,
}

#[derive(Clone, PartialEq)]
pub struct Sasl {
    pub username: String,
    pub password: String,
    /// `SCRAM-SHA-256` / `SCRAM-SHA-512`, or `PLAIN` without `scram_mechanism`.
    pub mechanism: &'static str,
}

// Secrets stay out of --dry-run and logs.
impl std::fmt::Debug for Ssl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ssl")
            .field("ca", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("client_cert", &self.client_cert)
            .field("verify_hostname", &self.verify_hostname)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl").field("username", &self.username).field("mechanism", &self.mechanism).finish()
    }
}

/// fluent-plugin-kafka's parameters that spate does not implement (a configuration
/// error naming the line, never a silent accept).
const UNSUPPORTED: &[(&str, &str)] = &[
    ("principal", "SASL GSSAPI (Kerberos) is not supported; use SASL PLAIN or SCRAM"),
    ("keytab", "SASL GSSAPI (Kerberos) is not supported; use SASL PLAIN or SCRAM"),
    ("sasl_aws_msk_iam_access_key_id", "SASL AWS MSK IAM is not supported; use SASL SCRAM"),
    ("sasl_aws_msk_iam_secret_key_id", "SASL AWS MSK IAM is not supported; use SASL SCRAM"),
    ("sasl_aws_msk_iam_aws_region", "SASL AWS MSK IAM is not supported; use SASL SCRAM"),
    ("ssl_client_cert_chain", "ssl_client_cert_chain is not supported; put the chain in ssl_client_cert"),
];

impl ClientConf {
    /// Reads the connection settings. `brokers` is an array for out_kafka2 and a
    /// comma-separated string for in_kafka_group (both accept either form here).
    pub fn parse(e: &Element, default_client_id: &str, default_brokers: &str) -> Result<ClientConf, ConfigError> {
        Self::parse_with(e, default_client_id, default_brokers, false)
    }

    /// [`ClientConf::parse`]; `rdkafka2`: out_rdkafka2's SASL rules (`username` and
    /// `password` mean PLAIN over whatever `security.protocol` the SSL settings give:
    /// `scram_mechanism` and `sasl_over_ssl` are not read by that plugin).
    pub fn parse_with(
        e: &Element,
        default_client_id: &str,
        default_brokers: &str,
        rdkafka2: bool,
    ) -> Result<ClientConf, ConfigError> {
        for (p, why) in UNSUPPORTED {
            if let Some(a) = e.get(p) {
                return Err(ConfigError::at(&a.pos, format!("{p}: {why}")));
            }
        }
        let brokers: Vec<String> = match e.array("brokers")? {
            Some(v) => v,
            None => vec![default_brokers.to_string()],
        }
        .iter()
        .flat_map(|b| b.split(','))
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
        if brokers.is_empty() {
            return Err(e.error("No brokers specified. Need one broker at least."));
        }
        for b in &brokers {
            let port = b.rsplit_once(':').map(|(_, p)| p);
            if port.is_none_or(|p| p.parse::<u16>().is_err()) {
                return Err(e.error(format!("brokers: {b:?} is not host:port")));
            }
        }
        let read = |param: &str| -> Result<Option<String>, ConfigError> {
            match e.str(param) {
                None => Ok(None),
                Some(p) if p.trim().is_empty() => Ok(None),
                Some(p) => std::fs::read_to_string(p)
                    .map(Some)
                    .map_err(|err| e.error(format!("{param} {p}: cannot read: {err}"))),
            }
        };
        let ca_files = e.array("ssl_ca_cert")?.unwrap_or_default();
        let from_system = e.bool("ssl_ca_certs_from_system")?.unwrap_or(false);
        let client_cert = e.str("ssl_client_cert").filter(|s| !s.trim().is_empty()).map(str::to_string);
        let client_key = e.str("ssl_client_cert_key").filter(|s| !s.trim().is_empty()).map(str::to_string);
        if client_cert.is_some() != client_key.is_some() {
            return Err(e.error("ssl_client_cert and ssl_client_cert_key go together"));
        }
        // Unreadable files fail at config time, not at the first connection.
        for (p, v) in [("ssl_client_cert", &client_cert), ("ssl_client_cert_key", &client_key)] {
            if v.is_some() {
                read(p)?;
            }
        }
        let verify_hostname = e.bool("ssl_verify_hostname")?.unwrap_or(true);
        let ssl = if !ca_files.is_empty() || from_system || client_cert.is_some() {
            let mut pem = String::new();
            for f in &ca_files {
                pem.push_str(
                    &std::fs::read_to_string(f)
                        .map_err(|err| e.error(format!("ssl_ca_cert {f}: cannot read: {err}")))?,
                );
                pem.push('\n');
            }
            Some(Ssl {
                ca_pem: if ca_files.is_empty() { None } else { Some(pem) },
                client_cert,
                client_key,
                client_key_password: e.str("ssl_client_cert_key_password").map(str::to_string),
                verify_hostname,
            })
        } else {
            None
        };
        if rdkafka2 {
            for p in ["scram_mechanism", "sasl_over_ssl"] {
                if let Some(a) = e.get(p) {
                    crate::warn!(
                        "{}: {p} has no effect with rdkafka2 (the plugin sends SASL PLAIN; set sasl.mechanism and security.protocol in rdkafka_options)",
                        a.pos
                    );
                }
            }
        }
        let sasl = match (e.str("username"), e.str("password")) {
            (Some(u), Some(p)) if rdkafka2 => {
                Some(Sasl { username: u.to_string(), password: p.to_string(), mechanism: "PLAIN" })
            }
            (Some(u), Some(p)) => {
                let mechanism = match e.str("scram_mechanism") {
                    None => "PLAIN",
                    Some("sha256") => "SCRAM-SHA-256",
                    Some("sha512") => "SCRAM-SHA-512",
                    Some(o) => return Err(e.error(format!("scram_mechanism {o:?}: expected sha256 or sha512"))),
                };
                Some(Sasl { username: u.to_string(), password: p.to_string(), mechanism })
            }
            (None, None) => None,
            _ => return Err(e.error("username and password go together (SASL PLAIN or SCRAM)")),
        };
        let sasl_over_ssl = !rdkafka2 && e.bool("sasl_over_ssl")?.unwrap_or(true);
        if sasl.is_some() && ssl.is_none() && sasl_over_ssl {
            // ruby-kafka: "SASL authentication requires that SSL is configured".
            return Err(e.error(
                "SASL authentication requires that SSL is configured (ssl_ca_cert), or set sasl_over_ssl false",
            ));
        }
        let secs = |p: &str| -> Result<Option<Duration>, ConfigError> {
            Ok(match e.int(p)? {
                Some(s) if s > 0 => Some(Duration::from_secs(s as u64)),
                Some(_) => return Err(e.error(format!("{p} must be positive"))),
                None => None,
            })
        };
        Ok(ClientConf {
            brokers,
            client_id: e.str("client_id").unwrap_or(default_client_id).to_string(),
            ssl,
            sasl,
            connect_timeout: secs("connect_timeout")?,
            socket_timeout: secs("socket_timeout")?,
            client_log: e.bool("get_kafka_client_log")?.unwrap_or(false),
        })
    }

    /// The librdkafka properties for these settings.
    pub fn rdkafka(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.join(","));
        c.set("client.id", &self.client_id);
        let protocol = match (&self.ssl, &self.sasl) {
            (None, None) => "plaintext",
            (Some(_), None) => "ssl",
            (None, Some(_)) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(s) = &self.ssl {
            match &s.ca_pem {
                Some(pem) => c.set("ssl.ca.pem", pem),
                None => c.set("ssl.ca.location", "probe"),
            };
            if let (Some(cert), Some(key)) = (&s.client_cert, &s.client_key) {
                c.set("ssl.certificate.location", cert);
                c.set("ssl.key.location", key);
            }
            if let Some(p) = &s.client_key_password {
                c.set("ssl.key.password", p);
            }
            c.set("ssl.endpoint.identification.algorithm", if s.verify_hostname { "https" } else { "none" });
        }
        if let Some(s) = &self.sasl {
            c.set("sasl.mechanism", s.mechanism);
            c.set("sasl.username", &s.username);
            c.set("sasl.password", &s.password);
        }
        if let Some(t) = self.connect_timeout {
            c.set("socket.connection.setup.timeout.ms", t.as_millis().to_string());
        }
        if let Some(t) = self.socket_timeout {
            c.set("socket.timeout.ms", t.as_millis().to_string());
        }
        c.set_log_level(if self.client_log { RDKafkaLogLevel::Debug } else { RDKafkaLogLevel::Warning });
        c
    }
}

/// A client context that logs through spate's log (with the plugin id). librdkafka
/// repeats a failing broker connection every few hundred milliseconds (each line with
/// its own timing), so warnings and errors are logged at most once per facility every
/// 10 s, with the count of the lines left out.
pub struct Logger {
    pub id: String,
    pub client_log: bool,
    last: Mutex<std::collections::HashMap<String, (Instant, u64)>>,
}

impl Logger {
    pub fn new(id: &str, client_log: bool) -> Logger {
        Logger { id: id.to_string(), client_log, last: Mutex::new(std::collections::HashMap::new()) }
    }

    /// `Some(lines left out since the last one)` when a line of `key` may be logged now.
    fn allow(&self, key: &str) -> Option<u64> {
        let Ok(mut last) = self.last.lock() else { return Some(0) };
        let now = Instant::now();
        match last.get_mut(key) {
            Some((at, n)) if now.duration_since(*at) < Duration::from_secs(10) => {
                *n += 1;
                None
            }
            Some((at, n)) => {
                let skipped = *n;
                (*at, *n) = (now, 0);
                Some(skipped)
            }
            None => {
                // Bounded: librdkafka's facilities are a small fixed set.
                if last.len() < 256 {
                    last.insert(key.to_string(), (now, 0));
                }
                Some(0)
            }
        }
    }
}

fn more(skipped: u64) -> String {
    if skipped > 0 {
        format!(" ({skipped} similar lines in the last 10 s not shown)")
    } else {
        String::new()
    }
}

impl ClientContext for Logger {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                if let Some(n) = self.allow(fac) {
                    crate::error!("{}: librdkafka {fac}: {msg}{}", self.id, more(n))
                }
            }
            RDKafkaLogLevel::Warning => {
                if let Some(n) = self.allow(fac) {
                    crate::warn!("{}: librdkafka {fac}: {msg}{}", self.id, more(n))
                }
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info if self.client_log => {
                crate::info!("{}: librdkafka {fac}: {msg}", self.id)
            }
            RDKafkaLogLevel::Debug if self.client_log => crate::debug!("{}: librdkafka {fac}: {msg}", self.id),
            _ => {}
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(n) = self.allow(&format!("error:{:?}", error.rdkafka_error_code())) {
            crate::warn!("{}: kafka: {error}: {reason}{}", self.id, more(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, EvalContext};

    fn elem(body: &str) -> Element {
        let text = format!("<match **>\n  @type kafka2\n{body}\n</match>\n");
        let ctx = EvalContext { hostname: "h".into(), worker_id: None, env: Box::new(|_| None) };
        let root = parse_str(&text, "k.conf", std::path::Path::new("/tmp"), &ctx).unwrap();
        let m = root.elements_named("match").next().unwrap().clone();
        m
    }

    fn props(c: &ClientConf) -> std::collections::HashMap<String, String> {
        let r = c.rdkafka();
        r.config_map().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn brokers_and_defaults() {
        let c = ClientConf::parse(&elem("brokers a:9092,b:9093"), "fluentd", "localhost:9092").unwrap();
        assert_eq!(c.brokers, ["a:9092", "b:9093"]);
        let p = props(&c);
        assert_eq!(p["bootstrap.servers"], "a:9092,b:9093");
        assert_eq!(p["client.id"], "fluentd");
        assert_eq!(p["security.protocol"], "plaintext");
        let c = ClientConf::parse(&elem("brokers [\"x:1\"]\n client_id me"), "fluentd", "localhost:9092").unwrap();
        assert_eq!((c.brokers[0].as_str(), c.client_id.as_str()), ("x:1", "me"));
        assert_eq!(ClientConf::parse(&elem(""), "kafka", "localhost:9092").unwrap().brokers, ["localhost:9092"]);
        assert!(ClientConf::parse(&elem("brokers nope"), "k", "l:1").unwrap_err().to_string().contains("host:port"));
    }

    #[test]
    fn ssl_and_sasl() {
        let dir = std::env::temp_dir().join(format!("spate-kafka-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n").unwrap();
        let c = ClientConf::parse(
            &elem(&format!(
                "brokers k:9093\n ssl_ca_cert {}\n username u\n password secret\n scram_mechanism sha512\n ssl_verify_hostname false",
                ca.display()
            )),
            "fluentd",
            "l:1",
        )
        .unwrap();
        let p = props(&c);
        assert_eq!(p["security.protocol"], "sasl_ssl");
        assert_eq!(p["sasl.mechanism"], "SCRAM-SHA-512");
        assert!(p["ssl.ca.pem"].contains("BEGIN CERTIFICATE"));
        assert_eq!(p["ssl.endpoint.identification.algorithm"], "none");
        assert!(!format!("{c:?}").contains("secret"));
        // SASL without SSL needs sasl_over_ssl false (ruby-kafka's rule).
        let e = ClientConf::parse(&elem("username u\n password p"), "f", "l:1").unwrap_err();
        assert!(e.to_string().contains("requires that SSL is configured"), "{e}");
        let c = ClientConf::parse(&elem("username u\n password p\n sasl_over_ssl false"), "f", "l:1").unwrap();
        assert_eq!(props(&c)["security.protocol"], "sasl_plaintext");
        assert_eq!(props(&c)["sasl.mechanism"], "PLAIN");
        for (body, msg) in [
            ("principal p", "GSSAPI"),
            ("ssl_client_cert /nonexistent.pem\n ssl_client_cert_key /nonexistent.key", "cannot read"),
            ("ssl_client_cert /x.pem", "go together"),
            ("username u\n password p\n scram_mechanism md5\n sasl_over_ssl false", "sha256 or sha512"),
        ] {
            let e = ClientConf::parse(&elem(body), "f", "l:1").unwrap_err().to_string();
            assert!(e.contains(msg) && e.contains("k.conf:"), "{body}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
