//! What out_s3 needs to archive chunks in S3 (or any S3-compatible store), without the
//! plugin glue: its configuration (fluent-plugin-s3's parameters, [`S3Conf::parse`]),
//! the object key format ([`key`]), the object body (`<format>` then `store_as`,
//! [`store`]), SigV4 signing ([`sigv4`]) and the S3 requests over a pluggable
//! transport ([`client`]).
//!
//! One chunk is one object, written with one PutObject: the chunk may leave the buffer
//! only after S3 answered 2xx to that PUT ([`S3Out::upload`] returns Ok only then).
//! Credentials come from `aws_key_id`/`aws_sec_key`, `<web_identity_credentials>`,
//! `<instance_profile_credentials>` or `<shared_credentials>`, else from the AWS SDK's
//! default chain ([`crate::aws::creds`]); the writer asks for them before each upload.

pub mod client;
pub mod key;
pub mod sigv4;
pub mod store;

use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;
use spate_protocol::{EntriesFormat, Events};

use crate::buffer::BufferConf;
use crate::config::{ConfigError, Element};
use crate::format::{FormatConf, Zone};
pub use client::{Endpoint, S3Client, S3Error, Transport};
use key::{IndexFormat, KeyChunk, KeyFormat};
use sigv4::Credentials;
use store::StoreAs;

/// fluent-plugin-s3 parameters spate does not implement; each is a configuration error
/// naming its line rather than a silent accept.
const UNSUPPORTED: &[&str] = &[
    "aws_profile",
    "aws_credential_process",
    "aws_iam_retries",
    "use_bundled_cert",
    "enable_transfer_acceleration",
    "enable_dual_stack",
    "ssl_ca_directory",
    "proxy_uri",
    "grant_full_control",
    "grant_read",
    "grant_read_acp",
    "grant_write_acp",
    "sse_customer_algorithm",
    "sse_customer_key",
    "sse_customer_key_md5",
    "compute_checksums",
    "checksum_algorithm",
];
const UNSUPPORTED_SECTIONS: &[&str] = &["assume_role_credentials", "bucket_lifecycle_rule"];

/// out_s3's configuration.
#[derive(Debug, Clone)]
pub struct S3Conf {
    /// The bucket's client; its `creds` are the static keys when the config has them
    /// (else empty: [`S3Conf::source`] gives them per upload).
    pub client: S3Client,
    pub source: crate::aws::creds::Source,
    pub key: KeyFormat,
    pub store: StoreAs,
    pub format: FormatConf,
    pub check_apikey_on_start: bool,
    pub check_bucket: bool,
    pub auto_create_bucket: bool,
    pub overwrite: bool,
    /// `ssl_verify_peer false`: accept any server certificate (https endpoints).
    pub ssl_verify_peer: bool,
    /// `ssl_ca_bundle`: CA file for https endpoints (default: the system bundle).
    pub ssl_ca_bundle: Option<String>,
    /// Content-Type and the `x-amz-*` options (storage class, ACL, encryption, tagging,
    /// metadata) sent with every PutObject.
    pub put_headers: Vec<(String, String)>,
    pub warn_for_delay: Option<Duration>,
}

fn err(e: &Element, m: impl Into<String>) -> ConfigError {
    ConfigError::at(&e.pos, m.into())
}

/// fluent-plugin-s3's credential options, in its order: the keys, then one of the
/// credential sections, else the SDK's default chain. Environment keys are taken now
/// (fixed for the process), the rest when an upload needs them.
fn credential_source(
    e: &Element,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<crate::aws::creds::Source, ConfigError> {
    use crate::aws::creds::{Source, WebIdentity};
    match (e.str("aws_key_id"), e.str("aws_sec_key")) {
        (Some(k), Some(s)) => {
            return Ok(Source::Static(Credentials { access_key: k.into(), secret_key: s.into(), session_token: None }))
        }
        (Some(_), None) | (None, Some(_)) => return Err(err(e, "out_s3: aws_key_id and aws_sec_key go together")),
        (None, None) => {}
    }
    if let Some(w) = e.single("web_identity_credentials")? {
        if let Some(a) = w.get("sts_http_proxy") {
            return Err(ConfigError::at(&a.pos, "out_s3: sts_http_proxy is not supported by spate"));
        }
        let mut wi = WebIdentity::from_section(w)?;
        wi.sts_endpoint = w.str("sts_endpoint_url").map(str::to_string);
        wi.sts_region = w.str("sts_region").map(str::to_string);
        return Ok(Source::WebIdentity(wi));
    }
    if let Some(i) = e.single("instance_profile_credentials")? {
        for k in ["retries", "http_open_timeout", "http_read_timeout"] {
            if let Some(a) = i.get(k) {
                crate::info!("{}: {k} has no effect: spate asks the instance metadata once per renewal", a.pos);
            }
        }
        let _ = (i.int("retries")?, i.time("http_open_timeout")?, i.time("http_read_timeout")?);
        let at = match (i.str("ip_address"), i.int("port")?) {
            (None, None) => None,
            (ip, port) => Some(format!("http://{}:{}", ip.unwrap_or("169.254.169.254"), port.unwrap_or(80))),
        };
        return Ok(Source::Imds(at));
    }
    if let Some(c) = e.single("shared_credentials")? {
        return Ok(Source::SharedFile(c.str("path").map(str::to_string), c.str("profile_name").map(str::to_string)));
    }
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(k), Some(s)) => {
            Ok(Source::Static(Credentials { access_key: k, secret_key: s, session_token: env("AWS_SESSION_TOKEN") }))
        }
        _ => Ok(Source::Chain),
    }
}

impl S3Conf {
    /// Parses `<match> @type s3`. `buffer` is its parsed `<buffer>` (out_s3's default is
    /// `<buffer time>` with `timekey 1d`); `env` looks up environment variables.
    pub fn parse(
        e: &Element,
        buffer: &BufferConf,
        hostname: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<S3Conf, ConfigError> {
        for p in UNSUPPORTED {
            if let Some(a) = e.get(p) {
                return Err(ConfigError::at(&a.pos, format!("out_s3: '{p}' is not supported by spate")));
            }
        }
        for s in UNSUPPORTED_SECTIONS {
            if let Some(x) = e.elements_named(s).next() {
                return Err(err(
                    x,
                    format!(
                        "out_s3: <{s}> is not supported by spate; give aws_key_id/aws_sec_key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                    ),
                ));
            }
        }
        if let Some(v) = e.str("signature_version") {
            if v != "v4" {
                return Err(err(e, format!("out_s3: signature_version {v:?}: only v4 is supported")));
            }
        }
        let bucket = e.str("s3_bucket").ok_or_else(|| err(e, "out_s3 needs s3_bucket"))?.to_string();
        let region = e
            .str("s3_region")
            .map(str::to_string)
            .or_else(|| env("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string());
        let endpoint_s = e.str("s3_endpoint");
        if let Some(ep) = endpoint_s {
            // fluent-plugin-s3's reject_s3_endpoint?
            if !ep.ends_with("vpce.amazonaws.com")
                && ep.ends_with("amazonaws.com")
                && !["fips", "gov"].iter().any(|x| ep.contains(x))
            {
                return Err(err(e, "s3_endpoint parameter is not supported for S3, use s3_region instead. This parameter is for S3 compatible services"));
            }
        }
        let endpoint = match endpoint_s {
            Some(u) => Endpoint::parse(u).map_err(|m| err(e, m))?,
            None => Endpoint::aws(&region),
        };
        let source = credential_source(e, env)?;
        let creds = match &source {
            crate::aws::creds::Source::Static(c) => c.clone(),
            _ => Credentials { access_key: String::new(), secret_key: String::new(), session_token: None },
        };
        let path_style = e.bool("force_path_style")?.unwrap_or(false);
        let client = S3Client { endpoint, bucket, region, path_style, creds };

        let zstd_level = match e.elements_named("compress").next() {
            Some(c) => {
                let l = c.int("level")?.unwrap_or(3);
                if !(1..=22).contains(&l) {
                    return Err(err(c, format!("zstd level {l}: expected 1-22")));
                }
                c.mark_all_used();
                l as i32
            }
            None => 3,
        };
        let store = StoreAs::parse(e.str("store_as").unwrap_or("gzip"), zstd_level).map_err(|m| err(e, m))?;

        let mut fmt = e.str("s3_object_key_format").unwrap_or("%{path}%{time_slice}_%{index}.%{file_extension}");
        for ph in key::REMOVED {
            if fmt.contains(ph) {
                return Err(err(e, format!("{ph} placeholder in s3_object_key_format is removed")));
            }
        }
        let check_object = e.bool("check_object")?.unwrap_or(true);
        if !check_object && e.get("s3_object_key_format").is_none() {
            crate::warn!(
                "{}: Set 'check_object false' and s3_object_key_format is not specified. Use '%{{path}}/%{{time_slice}}_%{{hms_slice}}.%{{file_extension}}' for s3_object_key_format",
                e.pos
            );
            fmt = "%{path}/%{time_slice}_%{hms_slice}.%{file_extension}";
        }
        let format = fmt.replace("%{hostname}", hostname);
        let hex_random_length = e.int("hex_random_length")?.unwrap_or(4);
        if !(0..=16).contains(&hex_random_length) {
            return Err(err(e, "hex_random_length parameter must be less than or equal to 16"));
        }
        let index = IndexFormat::parse(e.str("index_format").unwrap_or("%d")).map_err(|m| err(e, m))?;
        let (timekey, zone) = match &buffer.timekey {
            Some(k) => (Some(k.secs), Zone::Fixed(k.utc_offset)),
            None => (None, Zone::Local),
        };
        let time_slice_format = e.str("time_slice_format").unwrap_or(key::timekey_to_timeformat(timekey)).to_string();
        let key = KeyFormat {
            format,
            path: e.str("path").unwrap_or("").to_string(),
            ext: store.ext(),
            index,
            hex_random_length: hex_random_length as usize,
            time_slice_format,
            zone,
            time_chunk_key: timekey.is_some(),
            check_object,
        };
        if !key.uses_index() && check_object && !e.bool("overwrite")?.unwrap_or(false) {
            crate::debug!("{}: s3_object_key_format has no %{{index}}: an existing key fails the write", e.pos);
        }

        let mut put_headers = vec![("Content-Type".to_string(), store.content_type().to_string())];
        let storage_class = if e.bool("reduced_redundancy")?.unwrap_or(false) {
            crate::warn!("{}: reduced_redundancy parameter is deprecated. Use storage_class parameter instead", e.pos);
            "REDUCED_REDUNDANCY".to_string()
        } else {
            e.str("storage_class").unwrap_or("STANDARD").to_string()
        };
        put_headers.push(("x-amz-storage-class".into(), storage_class));
        for (param, header) in [
            ("acl", "x-amz-acl"),
            ("use_server_side_encryption", "x-amz-server-side-encryption"),
            ("ssekms_key_id", "x-amz-server-side-encryption-aws-kms-key-id"),
            ("tagging", "x-amz-tagging"),
        ] {
            if let Some(v) = e.str(param) {
                put_headers.push((header.into(), v.into()));
            }
        }
        if let Some(meta) = e.hash("s3_metadata")? {
            for (k, v) in meta {
                if v.contains("${") || v.contains("%{") {
                    return Err(err(e, "out_s3: placeholders in s3_metadata values are not supported by spate"));
                }
                put_headers.push((format!("x-amz-meta-{}", k.to_ascii_lowercase()), v));
            }
        }
        let format = crate::format::format_conf(e, "out_file", hostname)?;
        Ok(S3Conf {
            source,
            client,
            key,
            store,
            format,
            check_apikey_on_start: e.bool("check_apikey_on_start")?.unwrap_or(true),
            check_bucket: e.bool("check_bucket")?.unwrap_or(true),
            auto_create_bucket: e.bool("auto_create_bucket")?.unwrap_or(true),
            overwrite: e.bool("overwrite")?.unwrap_or(false),
            ssl_verify_peer: e.bool("ssl_verify_peer")?.unwrap_or(true),
            ssl_ca_bundle: e.str("ssl_ca_bundle").map(str::to_string),
            put_headers,
            warn_for_delay: e.time("warn_for_delay")?,
        })
    }
}

/// The chunk an upload is for.
pub struct UploadChunk<'a> {
    pub id: &'a [u8; 16],
    pub tag: &'a str,
    pub timekey: Option<i64>,
    pub vars: &'a [(String, String)],
}

/// out_s3's write path, shard-local: the bucket check runs once (before the first
/// upload, and again after a failure), then each chunk is one PutObject.
pub struct S3Out {
    pub id: String,
    pub conf: S3Conf,
    ready: Cell<bool>,
}

impl S3Out {
    pub fn new(id: String, conf: S3Conf) -> S3Out {
        S3Out { id, conf, ready: Cell::new(false) }
    }

    /// The object body of a chunk: each event formatted, then `store_as` applied. CPU
    /// work proportional to the chunk: call it off the shard.
    pub fn body(format: &FormatConf, store: StoreAs, tag: &[u8], entries: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut text = Vec::with_capacity(entries.len() + entries.len() / 4);
        for ev in Events::new(entries, EntriesFormat::Packed) {
            format.format(&mut text, tag, ev.time, ev.record.as_bytes());
        }
        store.encode(text)
    }

    /// fluent-plugin-s3's start-up checks (`check_apikey_on_start`, `check_bucket` with
    /// `auto_create_bucket`), run before the first upload.
    pub async fn ensure_ready<T: Transport>(&self, t: &T) -> Result<(), S3Error> {
        self.ensure_ready_as(t, &self.conf.client).await
    }

    async fn ensure_ready_as<T: Transport>(&self, t: &T, client: &S3Client) -> Result<(), S3Error> {
        if self.ready.get() {
            return Ok(());
        }
        let c = &self.conf;
        if c.check_apikey_on_start {
            client.check_access(t, &c.key.path).await?;
        }
        if c.check_bucket && !client.bucket_exists(t).await? {
            if !c.auto_create_bucket {
                return Err(S3Error::NoBucket(client.bucket.clone()));
            }
            crate::info!("{}: Creating bucket {} on {}", self.id, client.bucket, client.endpoint.host);
            client.create_bucket(t).await?;
        }
        self.ready.set(true);
        Ok(())
    }

    /// Uploads one chunk's body; Ok (with the key) only once S3 stored it.
    pub async fn upload<T: Transport>(&self, t: &T, chunk: &UploadChunk<'_>, body: Bytes) -> Result<String, S3Error> {
        self.upload_as(t, chunk, body, &self.conf.client).await
    }

    /// [`S3Out::upload`] signed with `creds` (from the conf's credential source).
    pub async fn upload_signed<T: Transport>(
        &self,
        t: &T,
        chunk: &UploadChunk<'_>,
        body: Bytes,
        creds: Credentials,
    ) -> Result<String, S3Error> {
        let client = S3Client { creds, ..self.conf.client.clone() };
        self.upload_as(t, chunk, body, &client).await
    }

    async fn upload_as<T: Transport>(
        &self,
        t: &T,
        chunk: &UploadChunk<'_>,
        body: Bytes,
        client: &S3Client,
    ) -> Result<String, S3Error> {
        self.ensure_ready_as(t, client).await.inspect_err(|_| self.ready.set(false))?;
        let c = &self.conf;
        let kc = KeyChunk { tag: chunk.tag, timekey: chunk.timekey, chunk_id: chunk.id, vars: chunk.vars };
        let uuid = if c.key.uses_uuid_flush() { key::uuid_v4() } else { String::new() };
        let now = client::now();
        let key = if c.key.check_object {
            let mut i = 0u64;
            let mut prev: Option<String> = None;
            loop {
                let k = c.key.key(&kc, i, &uuid, now);
                if prev.as_deref() == Some(k.as_str()) {
                    if c.overwrite {
                        crate::warn!("{}: {k} already exists, but will overwrite", self.id);
                        break k;
                    }
                    return Err(S3Error::DuplicatePath(k));
                }
                if !client.object_exists(t, &k).await? {
                    break k;
                }
                i += 1;
                prev = Some(k);
            }
        } else {
            c.key.key(&kc, 0, &uuid, now)
        };
        client.put_object(t, &key, body, &c.put_headers).await?;
        if let (Some(d), Some(tk)) = (c.warn_for_delay, chunk.timekey) {
            if tk < now - d.as_secs() as i64 {
                crate::warn!("{}: delayed events were put to s3://{}/{key}", self.id, client.bucket);
            }
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests;
