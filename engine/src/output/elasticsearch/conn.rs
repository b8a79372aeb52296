//! Connection options of out_elasticsearch / out_opensearch (fluent-plugin-elasticsearch's
//! `get_connection_options`): `host`/`port`/`scheme`/`path`, `hosts` (the legacy
//! `host:port,...` form or URLs with user and password), `user`/`password`,
//! `cloud_id`/`cloud_auth`, `api_key`, `custom_headers`, TLS (`ssl_verify`, `ca_file`,
//! `client_cert`, `client_key`, `ssl_version`, `ssl_min_version`, `ssl_max_version`),
//! `request_timeout`, `compression_level`, and the transport options spate accepts but
//! does not need (documented in the README).

use std::time::Duration;

use base64::Engine;

use crate::config::{ConfigError, Element};
use crate::http::{Scheme, Url};
use crate::tls::ClientTls;

use super::conf::Flavor;

/// Everything about reaching the cluster.
#[derive(Debug, Clone)]
pub struct ConnConf {
    /// The nodes, each with its user and password (user info in the URL).
    pub hosts: Vec<Url>,
    pub tls: Option<ClientTls>,
    pub request_timeout: Duration,
    /// gzip level for request bodies (`compression_level`); `None`: no compression.
    pub gzip: Option<u32>,
    /// `custom_headers`, `api_key`; sent with every request.
    pub headers: Vec<(String, String)>,
    pub content_type: String,
    /// Detect the version with `GET /` before the first bulk request.
    pub verify_version: bool,
    pub default_version: u32,
    /// `reconnect_on_error`: drop kept connections after any error.
    pub reconnect_on_error: bool,
    /// How long a node that failed is skipped (`resurrect_after`).
    pub resurrect_after: Duration,
}

/// `%{...}` around a user or password means "URL-escape this" in fluent-plugin-elasticsearch;
/// spate sends credentials in a header, so the value is used as written inside.
fn unwrap_escape(s: &str) -> String {
    s.strip_prefix("%{").and_then(|x| x.strip_suffix('}')).unwrap_or(s).to_string()
}

/// Elastic Cloud's `cloud_id`: `name:base64(host$es_uuid$kibana_uuid)`.
fn cloud_url(id: &str) -> Option<Url> {
    let b64 = id.split_once(':').map_or(id, |(_, b)| b);
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let mut parts = text.split('$');
    let host = parts.next()?.trim_end_matches('/');
    let es = parts.next()?;
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()?),
        None => (host, 443),
    };
    Url::parse(&format!("https://{es}.{host}:{port}")).ok()
}

impl ConnConf {
    pub fn from_element(e: &Element, flavor: Flavor) -> Result<ConnConf, ConfigError> {
        let scheme = match e.enum_of("scheme", &["https", "http"])?.as_deref() {
            Some("https") => Scheme::Https,
            _ => Scheme::Http,
        };
        let port = match e.int("port")? {
            None => 9200,
            Some(p) => u16::try_from(p).map_err(|_| e.error_at("port", format!("port {p}: out of range")))?,
        };
        let mut user = e.str("user").map(unwrap_escape);
        let mut password = e.str("password").map(unwrap_escape);
        if user.is_some() && password.is_none() {
            return Err(e.error("`password` must be present if `user` is present"));
        }
        let path = e.str("path").map(|p| format!("/{}", p.trim_matches('/'))).filter(|p| p != "/");
        let mut hosts = Vec::new();
        if let Some(id) = e.str("cloud_id") {
            let auth =
                e.str("cloud_auth").ok_or_else(|| e.error("`cloud_auth` must be present if `cloud_id` is present"))?;
            let (u, p) = auth.split_once(':').unwrap_or((auth, ""));
            user = Some(u.to_string());
            password = Some(p.to_string());
            hosts.push(cloud_url(id).ok_or_else(|| {
                e.error_at("cloud_id", format!("cloud_id {id:?}: expected name:base64(host$es_uuid$kibana_uuid)"))
            })?);
        } else if let Some(list) = e.str("hosts") {
            for h in list.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                let legacy =
                    !h.contains("://") && !h.contains('/') && h.matches(':').count() <= 1 && !h.starts_with('[');
                let url = if legacy {
                    let (hn, p) = match h.split_once(':') {
                        Some((a, b)) => (
                            a,
                            b.parse::<u16>().map_err(|_| e.error_at("hosts", format!("hosts: bad port in {h:?}")))?,
                        ),
                        None => (h, port),
                    };
                    Url::parse(&format!("{}://{hn}:{p}", scheme.as_str()))
                } else if !h.contains("://") {
                    // An IPv6 address.
                    Url::parse(&format!("{}://[{}]:{port}", scheme.as_str(), h.trim_matches(['[', ']'])))
                } else {
                    // %{user}:%{password} escapes in URLs.
                    Url::parse(&h.replace("%{", "").replace('}', ""))
                };
                hosts.push(url.map_err(|x| e.error_at("hosts", format!("hosts: {x}")))?);
            }
            if hosts.is_empty() {
                return Err(e.error_at("hosts", "hosts: no host in the list"));
            }
        } else {
            let host = e.str("host").unwrap_or("localhost");
            let h = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
            if host.contains("${") {
                return Err(e.error_at("host", "placeholders in host are not supported"));
            }
            hosts.push(
                Url::parse(&format!("{}://{h}:{port}", scheme.as_str()))
                    .map_err(|x| e.error_at("host", format!("host: {x}")))?,
            );
        }
        for h in &mut hosts {
            if h.user.is_none() {
                h.user = user.clone();
                h.password = password.clone();
            }
            if h.path.is_empty() {
                if let Some(p) = &path {
                    h.path = p.clone();
                }
            }
        }
        let mut headers: Vec<(String, String)> = e.hash("custom_headers")?.unwrap_or_default();
        if let Some(k) = e.str("api_key") {
            headers.push((
                "Authorization".into(),
                format!("ApiKey {}", base64::engine::general_purpose::STANDARD.encode(k)),
            ));
        }
        let gzip = match e
            .enum_of("compression_level", &["no_compression", "best_speed", "best_compression", "default_compression"])?
            .as_deref()
        {
            None | Some("no_compression") => None,
            Some("best_speed") => Some(1),
            Some("best_compression") => Some(9),
            _ => Some(6),
        };
        let tls = if hosts.iter().any(|h| h.scheme == Scheme::Https) {
            let verify = e.bool("ssl_verify")?.unwrap_or(true);
            let p = crate::tls::HttpTlsParams {
                ca_files: e.str("ca_file").map(|c| vec![c.to_string()]).unwrap_or_default(),
                client_cert: e.str("client_cert"),
                client_key: e.str("client_key"),
                client_key_pass: e.str("client_key_pass"),
                verify,
                verify_hostname: verify,
                version: e.str("ssl_version").unwrap_or("TLSv1_2"),
                min_version: e.str("ssl_min_version"),
                max_version: e.str("ssl_max_version"),
                names: ("ca_file", "client_cert", "client_key"),
                allow_self_signed: false,
                system_roots: Default::default(),
            };
            // fluent-plugin-elasticsearch's default is TLS 1.2 up to 1.3.
            let p = if p.min_version.is_none() && p.max_version.is_none() && e.str("ssl_version").is_none() {
                crate::tls::HttpTlsParams { min_version: Some("TLSv1_2"), max_version: Some("TLSv1_3"), ..p }
            } else {
                p
            };
            Some(crate::tls::http_client_tls(e, &p)?)
        } else {
            for k in [
                "ssl_verify",
                "ca_file",
                "client_cert",
                "client_key",
                "client_key_pass",
                "ssl_version",
                "ssl_min_version",
                "ssl_max_version",
            ] {
                let _ = e.get(k);
            }
            None
        };
        let (w, s) = (flavor.word(), flavor.short());
        let verify_version = e.bool(&format!("verify_{s}_version_at_startup"))?.unwrap_or(true);
        let default_version = match e.int(&format!("default_{w}_version"))? {
            Some(v) if v >= 0 => v as u32,
            Some(v) => return Err(e.error(format!("default_{w}_version {v}: must not be negative"))),
            None => match flavor {
                Flavor::Elasticsearch => 5,
                Flavor::OpenSearch => 1,
            },
        };
        for k in [format!("max_retry_get_{s}_version"), format!("fail_on_detecting_{s}_version_retry_exceed")] {
            // Version detection happens before the first bulk request and is retried
            // with the chunk (see the README).
            let _ = e.get(&k);
        }
        if let Some(a) = e.get("sniffer_class_name") {
            crate::warn!("{}: sniffer_class_name {} is ignored: spate sends to the configured hosts", a.pos, a.value);
        }
        for k in [
            "http_backend",
            "http_backend_excon_nonblock",
            "prefer_oj_serializer",
            "validate_client_version",
            "with_transporter_log",
            "reload_after",
            "reload_connections",
            "reload_on_failure",
            "log_es_400_reason",
            "log_os_400_reason",
        ] {
            // Transport and logging details of the Ruby client; spate's behaviour is in
            // the README (it rotates through `hosts` and skips failed ones).
            let _ = e.get(k);
        }
        let content_type = match e.enum_of("content_type", &["application/json", "application/x-ndjson"])? {
            Some(c) => c,
            None => "application/json".to_string(),
        };
        Ok(ConnConf {
            hosts,
            tls,
            request_timeout: e.time("request_timeout")?.unwrap_or(Duration::from_secs(5)),
            gzip,
            headers,
            content_type,
            verify_version,
            default_version,
            reconnect_on_error: e.bool("reconnect_on_error")?.unwrap_or(false),
            resurrect_after: e.time("resurrect_after")?.unwrap_or(Duration::from_secs(60)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, EvalContext};

    fn conn(body: &str) -> Result<ConnConf, ConfigError> {
        let text = format!("<match x>\n{body}\n</match>\n");
        let root = parse_str(
            &text,
            "t.conf",
            std::path::Path::new("."),
            &EvalContext::with_env("h", None, Default::default()),
        )
        .unwrap();
        ConnConf::from_element(&root.elements[0], Flavor::Elasticsearch)
    }

    // fluent-plugin-elasticsearch's test_out_elasticsearch.rb: test_host_and_port,
    // test_hosts_list, test_hosts_list_with_escape_placeholders, test_single_host_params_and_defaults,
    // test_password_is_required_if_specify_user, test_cloud_id/auth parsing.
    #[test]
    fn hosts_forms() {
        let c = conn("").unwrap();
        assert_eq!(c.hosts[0].to_string(), "http://localhost:9200");
        let c =
            conn("host logs.google.com\nport 777\nscheme https\npath /es/\nuser john\npassword doe\nssl_verify false")
                .unwrap();
        let h = &c.hosts[0];
        assert_eq!(
            (h.to_string(), h.user.as_deref(), h.password.as_deref()),
            ("https://logs.google.com:777/es".into(), Some("john"), Some("doe"))
        );
        assert!(c.tls.is_some());
        let c = conn("hosts host1:50,host2:100,host3\nscheme https\nssl_verify false\npath /es/\nport 123").unwrap();
        let v: Vec<String> = c.hosts.iter().map(|h| h.to_string()).collect();
        assert_eq!(v, ["https://host1:50/es", "https://host2:100/es", "https://host3:123/es"]);
        let c = conn("hosts https://john:password@host1:443/elastic/,http://host2\nuser default\npassword pw").unwrap();
        assert_eq!((c.hosts[0].user.as_deref(), c.hosts[0].path.as_str()), (Some("john"), "/elastic"));
        assert_eq!((c.hosts[1].user.as_deref(), c.hosts[1].port), (Some("default"), 80));
        let c = conn("hosts https://%{j+hn}:%{passw@rd}@host1:443/elastic/\nssl_verify false").unwrap();
        assert_eq!((c.hosts[0].user.as_deref(), c.hosts[0].password.as_deref()), (Some("j+hn"), Some("passw@rd")));
        let c = conn("hosts 2404:7a80:d440:3000:192a:a292:bd7f:ca19").unwrap();
        assert_eq!(c.hosts[0].host, "[2404:7a80:d440:3000:192a:a292:bd7f:ca19]");
        assert!(conn("user john").unwrap_err().to_string().contains("`password` must be present"));
        // cloud_id: "name:" + base64("host$es_uuid$kibana_uuid").
        let id = format!(
            "test:{}",
            base64::engine::general_purpose::STANDARD.encode("europe-west1.gcp.cloud.es.io$abc123$def456")
        );
        let c = conn(&format!("cloud_id {id}\ncloud_auth elastic:secret")).unwrap();
        assert_eq!(c.hosts[0].to_string(), "https://abc123.europe-west1.gcp.cloud.es.io:443");
        assert_eq!(c.hosts[0].user.as_deref(), Some("elastic"));
        assert!(conn(&format!("cloud_id {id}")).unwrap_err().to_string().contains("cloud_auth"));
        let c = conn("api_key abc\ncustom_headers {\"X-A\":\"1\"}\ncompression_level best_compression").unwrap();
        assert_eq!(
            c.headers,
            vec![("X-A".to_string(), "1".to_string()), ("Authorization".into(), "ApiKey YWJj".into())]
        );
        assert_eq!(c.gzip, Some(9));
        assert!(conn("ssl_version TLSv1_1\nscheme https").is_err());
    }
}
