//! AWS credentials for a plugin, resolved when a request needs them and kept until
//! five minutes before they expire.
//!
//! Sources, as the AWS SDK for Ruby's default chain looks for them (fluent-plugin-s3
//! and fluent-plugin-cloudwatch-logs use that SDK), when the config gives no keys:
//! 1. `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (`AWS_SESSION_TOKEN`);
//! 2. the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
//!    `~/.aws/credentials`), profile `AWS_PROFILE` or `default`;
//! 3. web identity: `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE` (EKS's IRSA),
//!    exchanged with STS `AssumeRoleWithWebIdentity` (unsigned);
//! 4. ECS: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (on 169.254.170.2) or
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI` (with `AWS_CONTAINER_AUTHORIZATION_TOKEN`);
//! 5. EC2 instance metadata, IMDSv2 (a session token, then the role's credentials),
//!    unless `AWS_EC2_METADATA_DISABLED=true`; `AWS_EC2_METADATA_SERVICE_ENDPOINT`
//!    moves it.
//!
//! STS's endpoint is `https://sts.<region>.amazonaws.com`, or `AWS_ENDPOINT_URL_STS`
//! (the SDKs' endpoint override). Every network source answers within a few seconds or
//! is skipped; the error names each source and why it gave nothing.

use std::cell::RefCell;
use std::time::Duration;

use crate::buffer::queue::unix_now as now;
use crate::http::{Client, ClientConf, Request, Url};
use crate::s3::client::xml_text;
use crate::s3::sigv4::Credentials;
use crate::tls::ClientTls;

/// Where a plugin's credentials come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Keys in the config (`aws_key_id`/`aws_sec_key`).
    Static(Credentials),
    /// The SDK's default chain (module doc).
    Chain,
    /// A `<web_identity_credentials>` section.
    WebIdentity(WebIdentity),
    /// ECS only (`aws_ecs_authentication`).
    Ecs,
    /// EC2 instance metadata only (out_s3's `<instance_profile_credentials>`), at this
    /// endpoint when given.
    Imds(Option<String>),
    /// A shared credentials file (out_s3's `<shared_credentials>`): path and profile,
    /// else the defaults.
    SharedFile(Option<String>, Option<String>),
}

#[derive(Debug, Clone)]
pub struct WebIdentity {
    pub role_arn: String,
    pub session_name: String,
    pub token_file: String,
    pub policy: Option<String>,
    pub duration_seconds: Option<u64>,
    /// STS's endpoint (out_s3's `sts_endpoint_url`); else `AWS_ENDPOINT_URL_STS`, else
    /// the region's.
    pub sts_endpoint: Option<String>,
    /// STS's region (out_s3's `sts_region`), else the plugin's.
    pub sts_region: Option<String>,
}

impl WebIdentity {
    /// A `<web_identity_credentials>` section's parameters both plugins share (out_s3
    /// adds its STS endpoint and region).
    pub fn from_section(w: &crate::config::Element) -> Result<WebIdentity, crate::config::ConfigError> {
        let req = |k: &str| w.str(k).map(str::to_string).ok_or_else(|| w.error(format!("'{k}' parameter is required")));
        Ok(WebIdentity {
            role_arn: req("role_arn")?,
            session_name: req("role_session_name")?,
            token_file: req("web_identity_token_file")?,
            policy: w.str("policy").map(str::to_string),
            duration_seconds: w.time("duration_seconds")?.map(|d| d.as_secs()),
            sts_endpoint: None,
            sts_region: None,
        })
    }
}

impl Source {
    /// The TLS a source's HTTPS endpoints need (STS; an ECS full URI): checked against
    /// the system roots, whatever the plugin's own endpoint says. None for sources
    /// that make no HTTPS request.
    pub fn tls(&self, e: &crate::config::Element) -> Result<Option<ClientTls>, crate::config::ConfigError> {
        Ok(match self {
            Source::Chain | Source::WebIdentity(_) | Source::Ecs => Some(crate::tls::system_client_tls(e, true)?),
            Source::Static(_) | Source::Imds(_) | Source::SharedFile(..) => None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no AWS credentials: {0}")]
pub struct CredError(pub String);

/// Temporary credentials are renewed this long before they expire.
const RENEW_BEFORE: i64 = 300;
/// Temporary credentials without an expiry are kept this long (plus RENEW_BEFORE).
const UNKNOWN_EXPIRY: i64 = 900 + RENEW_BEFORE;

/// A source and the credentials it last gave. Shard-local.
pub struct Provider {
    source: Source,
    region: String,
    client: Client,
    cached: RefCell<Option<(Credentials, Option<i64>)>>,
    /// A resolve is under way (one at a time per provider).
    resolving: std::cell::Cell<bool>,
}

/// An environment variable, unless unset or empty.
pub(crate) fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|+00:00)` as Unix seconds (the sources' `Expiration`).
pub fn parse_expiration(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { std::str::from_utf8(b.get(r)?).ok()?.parse().ok() };
    if b.get(4) != Some(&b'-') || b.get(10) != Some(&b'T') {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days = crate::calendar::days_from_civil(y, u32::try_from(m).ok()?, u32::try_from(d).ok()?);
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

/// The shared credentials file and profile: given, else `AWS_SHARED_CREDENTIALS_FILE`
/// (`~/.aws/credentials`) and `AWS_PROFILE` (`default`).
fn shared_file_of(path: Option<&str>, profile: Option<&str>) -> (String, String) {
    let file = path
        .map(str::to_string)
        .or_else(|| env("AWS_SHARED_CREDENTIALS_FILE"))
        .or_else(|| env("HOME").map(|h| format!("{h}/.aws/credentials")))
        .unwrap_or_default();
    (file, profile.map(str::to_string).or_else(|| env("AWS_PROFILE")).unwrap_or_else(|| "default".into()))
}

/// Reads a small file (credentials, token) off the shard.
async fn read_file(path: &str) -> std::io::Result<String> {
    let p = path.to_string();
    glommio::executor().spawn_blocking(move || std::fs::read_to_string(p)).await
}

/// `[profile]` `key = value` lines of an AWS credentials file.
pub fn shared_file_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let (mut inside, mut key, mut secret, mut token) = (false, None, None, None);
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.starts_with(';') || l.is_empty() {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            inside = name.trim() == profile;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials { access_key: key?, secret_key: secret?, session_token: token })
}

/// The JSON ECS and instance metadata answer with.
fn from_json(body: &[u8], what: &str) -> Result<(Credentials, Option<i64>), String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("{what}: not JSON: {e}"))?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    if let Some(code) = s("Code").filter(|c| c != "Success") {
        return Err(format!("{what}: Code {code}: {}", s("Message").unwrap_or_default()));
    }
    let (Some(access_key), Some(secret_key)) = (s("AccessKeyId"), s("SecretAccessKey")) else {
        return Err(format!("{what}: no AccessKeyId/SecretAccessKey in the answer"));
    };
    let expires = s("Expiration").as_deref().and_then(parse_expiration);
    Ok((Credentials { access_key, secret_key, session_token: s("Token") }, expires))
}

impl Provider {
    /// `tls` is for STS over https (web identity); the other sources are plain http.
    pub fn new(source: Source, region: &str, tls: Option<ClientTls>) -> Provider {
        let conf = ClientConf {
            tls,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            keepalive: false,
            max_body: 1 << 20,
            ..Default::default()
        };
        Provider {
            source,
            region: region.to_string(),
            client: Client::new(conf),
            cached: RefCell::new(None),
            resolving: std::cell::Cell::new(false),
        }
    }

    /// The credentials to sign the next request with.
    pub async fn get(&self) -> Result<Credentials, CredError> {
        loop {
            let still_valid = if let Some((c, exp)) = &*self.cached.borrow() {
                if exp.is_none_or(|e| now() < e - RENEW_BEFORE) {
                    return Ok(c.clone());
                }
                // In the renewal window: still good until they expire.
                exp.is_some_and(|e| now() < e).then(|| c.clone())
            } else {
                None
            };
            if !self.resolving.replace(true) {
                break;
            }
            if let Some(c) = still_valid {
                // Another write of this shard is renewing them.
                return Ok(c);
            }
            // Another write of this shard is asking already: wait for its answer.
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Cleared however this ends (also when the write is cancelled).
        struct Done<'a>(&'a std::cell::Cell<bool>);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _done = Done(&self.resolving);
        // Boxed: the sources' HTTP exchanges would otherwise sit in every caller's future.
        let (c, mut exp) = match Box::pin(self.resolve()).await {
            Ok(v) => v,
            Err(e) => {
                // A failed renewal: the old credentials serve while they last.
                if let Some((c, Some(exp))) = &*self.cached.borrow() {
                    if now() < *exp {
                        crate::warn!("renewing AWS credentials failed ({e}); using the current ones until they expire");
                        return Ok(c.clone());
                    }
                }
                return Err(e);
            }
        };
        if exp.is_none() && c.session_token.is_some() {
            // Temporary credentials whose expiry was not given: ask again in 15 minutes.
            exp = Some(now() + UNKNOWN_EXPIRY);
        }
        *self.cached.borrow_mut() = Some((c.clone(), exp));
        Ok(c)
    }

    async fn resolve(&self) -> Result<(Credentials, Option<i64>), CredError> {
        match &self.source {
            Source::Static(c) => Ok((c.clone(), None)),
            Source::WebIdentity(w) => Box::pin(self.web_identity(w)).await.map_err(CredError),
            Source::Ecs => Box::pin(self.ecs()).await.map_err(CredError),
            Source::Imds(at) => Box::pin(self.imds(at.as_deref())).await.map_err(CredError),
            Source::SharedFile(path, profile) => {
                let (file, profile) = shared_file_of(path.as_deref(), profile.as_deref());
                let t = read_file(&file).await.map_err(|e| CredError(format!("{file}: {e}")))?;
                shared_file_credentials(&t, &profile)
                    .map(|c| (c, None))
                    .ok_or_else(|| CredError(format!("{file}: no keys in profile {profile}")))
            }
            Source::Chain => {
                let mut tried = Vec::new();
                if let (Some(k), Some(s)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                    return Ok((
                        Credentials { access_key: k, secret_key: s, session_token: env("AWS_SESSION_TOKEN") },
                        None,
                    ));
                }
                tried.push("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY unset".to_string());
                let (file, profile) = shared_file_of(None, None);
                match read_file(&file).await {
                    Ok(t) => match shared_file_credentials(&t, &profile) {
                        Some(c) => return Ok((c, None)),
                        None => tried.push(format!("{file}: no keys in profile {profile}")),
                    },
                    Err(e) => tried.push(format!("{file}: {e}")),
                }
                if let (Some(role_arn), Some(token_file)) = (env("AWS_ROLE_ARN"), env("AWS_WEB_IDENTITY_TOKEN_FILE")) {
                    let w = WebIdentity {
                        role_arn,
                        token_file,
                        session_name: env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| format!("spate-{}", now())),
                        policy: None,
                        duration_seconds: None,
                        sts_endpoint: None,
                        sts_region: None,
                    };
                    match Box::pin(self.web_identity(&w)).await {
                        Ok(c) => return Ok(c),
                        Err(e) => tried.push(e),
                    }
                } else {
                    tried.push("AWS_ROLE_ARN/AWS_WEB_IDENTITY_TOKEN_FILE unset".into());
                }
                if env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
                    || env("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
                {
                    match Box::pin(self.ecs()).await {
                        Ok(c) => return Ok(c),
                        Err(e) => tried.push(e),
                    }
                } else {
                    tried.push("AWS_CONTAINER_CREDENTIALS_*_URI unset".into());
                }
                if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                    tried.push("instance metadata disabled (AWS_EC2_METADATA_DISABLED)".into());
                } else {
                    match Box::pin(self.imds(None)).await {
                        Ok(c) => return Ok(c),
                        Err(e) => tried.push(e),
                    }
                }
                Err(CredError(tried.join("; ")))
            }
        }
    }

    async fn get_url(&self, url: &str, headers: &[(String, String)], method: &str) -> Result<Vec<u8>, String> {
        let u = Url::parse(url).map_err(|e| e.to_string())?;
        // The path as written: Url drops a trailing `/`, which the role listing needs.
        let after = url.split_once("://").map_or(url, |(_, r)| r);
        let target = after.find('/').map_or("/", |i| &after[i..]).to_string();
        let req = Request {
            method: if method == "PUT" { "PUT" } else { "GET" },
            url: &u,
            target: &target,
            headers,
            body: b"",
        };
        let r = Box::pin(self.client.send(&req)).await.map_err(|e| format!("{url}: {e}"))?;
        if r.status != 200 {
            return Err(format!("{url}: {}", r.summary()));
        }
        Ok(r.body.to_vec())
    }

    async fn ecs(&self) -> Result<(Credentials, Option<i64>), String> {
        let url = match (env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), env("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
            (Some(rel), _) => format!("http://169.254.170.2{rel}"),
            (None, Some(full)) => full,
            (None, None) => return Err("ECS: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not set".into()),
        };
        let token = match env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(f) => read_file(&f).await.ok().map(|t| t.trim().to_string()),
            None => env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        };
        let headers: Vec<(String, String)> = token.into_iter().map(|t| ("Authorization".to_string(), t)).collect();
        let body = self.get_url(&url, &headers, "GET").await.map_err(|e| format!("ECS: {e}"))?;
        from_json(&body, "ECS")
    }

    async fn imds(&self, at: Option<&str>) -> Result<(Credentials, Option<i64>), String> {
        let base = at
            .map(str::to_string)
            .or_else(|| env("AWS_EC2_METADATA_SERVICE_ENDPOINT"))
            .unwrap_or_else(|| "http://169.254.169.254".into());
        let base = base.trim_end_matches('/');
        let ttl = [("X-aws-ec2-metadata-token-ttl-seconds".to_string(), "21600".to_string())];
        let token = self
            .get_url(&format!("{base}/latest/api/token"), &ttl, "PUT")
            .await
            .map_err(|e| format!("instance metadata: {e}"))?;
        let auth = [("X-aws-ec2-metadata-token".to_string(), String::from_utf8_lossy(&token).trim().to_string())];
        let path = format!("{base}/latest/meta-data/iam/security-credentials/");
        let roles = self.get_url(&path, &auth, "GET").await.map_err(|e| format!("instance metadata: {e}"))?;
        let roles = String::from_utf8_lossy(&roles);
        let role = roles.lines().next().map(str::trim).filter(|r| !r.is_empty());
        let role = role.ok_or("instance metadata: no IAM role attached to the instance")?;
        let body = self
            .get_url(&format!("{path}{role}"), &auth, "GET")
            .await
            .map_err(|e| format!("instance metadata: {e}"))?;
        from_json(&body, "instance metadata")
    }

    async fn web_identity(&self, w: &WebIdentity) -> Result<(Credentials, Option<i64>), String> {
        let token =
            read_file(&w.token_file).await.map_err(|e| format!("web identity token file {}: {e}", w.token_file))?;
        let region = w.sts_region.as_deref().unwrap_or(&self.region);
        let endpoint = w
            .sts_endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_STS"))
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
        let u = Url::parse(&endpoint).map_err(|e| format!("STS endpoint: {e}"))?;
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", "AssumeRoleWithWebIdentity")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", &w.role_arn)
            .append_pair("RoleSessionName", &w.session_name)
            .append_pair("WebIdentityToken", token.trim());
        if let Some(p) = &w.policy {
            form.append_pair("Policy", p);
        }
        if let Some(d) = w.duration_seconds {
            form.append_pair("DurationSeconds", &d.to_string());
        }
        let body = form.finish();
        let headers = [("Content-Type".to_string(), "application/x-www-form-urlencoded; charset=utf-8".to_string())];
        let target = u.target("/");
        let req = Request { method: "POST", url: &u, target: &target, headers: &headers, body: body.as_bytes() };
        let r = self.client.send(&req).await.map_err(|e| format!("STS {endpoint}: {e}"))?;
        let text = &r.body[..];
        if r.status != 200 {
            let why = xml_text(text, "Message").unwrap_or_default();
            return Err(format!("STS AssumeRoleWithWebIdentity for {}: {} {why}", w.role_arn, r.status));
        }
        let field = |t: &str| xml_text(text, t).map(str::to_string);
        match (field("AccessKeyId"), field("SecretAccessKey")) {
            (Some(access_key), Some(secret_key)) => Ok((
                Credentials { access_key, secret_key, session_token: field("SessionToken") },
                field("Expiration").as_deref().and_then(parse_expiration),
            )),
            _ => Err(format!("STS AssumeRoleWithWebIdentity for {}: no credentials in the answer", w.role_arn)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_file_profiles_and_expirations() {
        let f = "# c\n[default]\naws_access_key_id = AK1\naws_secret_access_key=SK1\n\n[other]\naws_access_key_id=AK2\naws_secret_access_key = SK2\naws_session_token = T2\n";
        let d = shared_file_credentials(f, "default").unwrap();
        assert_eq!((d.access_key.as_str(), d.secret_key.as_str(), d.session_token), ("AK1", "SK1", None));
        let o = shared_file_credentials(f, "other").unwrap();
        assert_eq!(o.session_token.as_deref(), Some("T2"));
        assert!(shared_file_credentials(f, "missing").is_none());
        assert_eq!(parse_expiration("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_expiration("2023-11-14T22:13:20.123Z"), Some(1_700_000_000));
        assert_eq!(parse_expiration("soon"), None);
        let (c, exp) = from_json(
            br#"{"Code":"Success","AccessKeyId":"A","SecretAccessKey":"S","Token":"T","Expiration":"2023-11-14T22:13:20Z"}"#,
            "x",
        )
        .unwrap();
        assert_eq!((c.access_key.as_str(), c.session_token.as_deref(), exp), ("A", Some("T"), Some(1_700_000_000)));
        assert!(from_json(br#"{"Code":"Failure","Message":"no"}"#, "x").unwrap_err().contains("Failure"));
    }
}
