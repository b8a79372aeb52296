//! `out_s3` (fluent-plugin-s3's out_s3.rb): a buffered output archiving each chunk as
//! one S3 object, with fluent-plugin-s3's parameters (parsed, keyed, encoded and signed
//! by [`crate::s3`]) over the project's HTTP/1.1 client ([`crate::http`]).
//!
//! The durability promise: `write` returns Ok only when S3 answered 2xx to the chunk's
//! PutObject; otherwise the chunk stays in the buffer and is retried (or goes to
//! `<secondary>`). Formatting and compressing a chunk (CPU work proportional to the
//! chunk) run on the blocking pool, never on the shard. Default buffer: `<buffer time>`
//! with `timekey 1d`, as fluent-plugin-s3's.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::aws::creds::Provider;
use crate::buffer::{BufferDefaults, Chunk};
use crate::config::{ConfigError, Element};
use crate::http::{Client, ClientConf, Scheme, Url};
use crate::plugin::{
    Build, BuildError, ChunkVars, Kind, LocalFuture, PlanCtx, Registration, ShardCtx, WriteError, Writer, WriterPlan,
    WriterSetup,
};
use crate::s3::client::{Request, Response, Transport, TransportError};
use crate::s3::{S3Conf, S3Error, S3Out, UploadChunk};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "s3",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Buffered(plan),
    params: "`aws_key_id`, `aws_sec_key`, `<web_identity_credentials>` (`role_arn`, `role_session_name`, `web_identity_token_file`, `policy`, `duration_seconds`, `sts_endpoint_url`), `<instance_profile_credentials>` (`ip_address`, `port`), `<shared_credentials>` (`path`, `profile_name`), else the AWS default chain (environment, shared credentials file, web identity from the environment, ECS, EC2 instance metadata; `<assume_role_credentials>` is a config error), `s3_bucket`, `s3_region` (else `AWS_REGION`), `s3_endpoint`, `force_path_style`, `path`, `s3_object_key_format` (`%{path}`, `%{time_slice}`, `%{index}`, `%{file_extension}`, `%{uuid_flush}`, `%{hex_random}`, `%{hostname}`, `${tag}`, `${tag[N]}`, `${chunk_id}`, chunk-key and time placeholders), `index_format`, `hex_random_length`, `store_as` (`gzip` default, `json`, `text`, `zstd` with `<compress> level`; `gzip_command` writes gzip), `time_slice_format`, `check_apikey_on_start`, `check_bucket`, `auto_create_bucket`, `check_object`, `overwrite`, `ssl_verify_peer`, `ssl_ca_bundle`, `storage_class`, `reduced_redundancy`, `acl`, `use_server_side_encryption`, `ssekms_key_id`, `tagging`, `s3_metadata`, `warn_for_delay`, `signature_version v4`, `<format>` (default `out_file`), `<inject>`; default `<buffer time>` with `timekey 1d`. One chunk is one object; it leaves the buffer only after S3 answered 2xx to its PutObject",
};

#[derive(Debug)]
pub struct S3Plan {
    conf: Arc<S3Conf>,
    client: ClientConf,
    sts_tls: Option<crate::tls::ClientTls>,
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>, setup: &mut WriterSetup) -> Result<Box<dyn WriterPlan>, ConfigError> {
    let buffer = match setup.primary_buffer() {
        Some(b) => b.clone(),
        None => {
            let defaults = BufferDefaults { keys: &["time"], timekey: Some(86400), ..Default::default() };
            setup.buffer(e, &defaults)?.unwrap_or_default()
        }
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let conf = S3Conf::parse(e, &buffer, &ctx.hostname, &env)?;
    let tls = if conf.client.endpoint.tls {
        let verify = conf.ssl_verify_peer;
        let p = crate::tls::HttpTlsParams {
            ca_files: conf.ssl_ca_bundle.iter().cloned().collect(),
            client_cert: None,
            client_key: None,
            client_key_pass: None,
            verify,
            verify_hostname: verify,
            version: "TLSv1_2",
            min_version: None,
            max_version: None,
            names: ("ssl_ca_bundle", "", ""),
            allow_self_signed: false,
            system_roots: Default::default(),
        };
        Some(crate::tls::http_client_tls(e, &p)?)
    } else {
        None
    };
    let client = ClientConf {
        tls,
        connect_timeout: Duration::from_secs(15),
        // aws-sdk-ruby's default http_read_timeout (an upload may take a while).
        timeout: Duration::from_secs(60),
        keepalive: true,
        // S3 error documents are small; object bodies are never read.
        max_body: 1 << 20,
        ..Default::default()
    };
    let sts_tls = conf.source.tls(e)?;
    Ok(Box::new(S3Plan { conf: Arc::new(conf), client, sts_tls }))
}

impl WriterPlan for S3Plan {
    fn type_name(&self) -> &'static str {
        "s3"
    }

    fn describe(&self) -> String {
        let c = &self.conf.client;
        format!(
            "s3://{}/{} via {}://{}:{} ({})",
            c.bucket,
            self.conf.key.format,
            if c.endpoint.tls { "https" } else { "http" },
            c.endpoint.host,
            c.endpoint.port,
            self.conf.store.ext()
        )
    }

    fn build(&self, id: &str, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Writer>, BuildError> {
        let sts_tls = self.sts_tls.clone();
        Ok(Rc::new(S3Writer {
            id: id.to_string(),
            creds: Provider::new(self.conf.source.clone(), &self.conf.client.region, sts_tls),
            out: S3Out::new(id.to_string(), (*self.conf).clone()),
            http: Http(Client::new(self.client.clone())),
        }))
    }
}

/// The HTTP client as the S3 code's transport.
struct Http(Client);

impl Transport for Http {
    async fn send(&self, req: Request) -> Result<Response, TransportError> {
        let url = Url {
            scheme: if req.tls { Scheme::Https } else { Scheme::Http },
            host: req.host.clone(),
            port: req.port,
            path: String::new(),
            query: None,
            user: None,
            password: None,
        };
        // The client writes Host (the same value as signed) and Content-Length itself.
        let headers: Vec<(String, String)> = req
            .headers
            .into_iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host") && !k.eq_ignore_ascii_case("content-length"))
            .collect();
        let r = crate::http::Request {
            method: req.method,
            url: &url,
            target: &req.target,
            headers: &headers,
            body: &req.body,
        };
        match self.0.send(&r).await {
            Ok(resp) => Ok(Response { status: resp.status, body: resp.body }),
            Err(e) => {
                self.0.reset();
                Err(TransportError(e.to_string()))
            }
        }
    }
}

pub struct S3Writer {
    id: String,
    creds: Provider,
    out: S3Out,
    http: Http,
}

impl Writer for S3Writer {
    fn type_name(&self) -> &'static str {
        "s3"
    }

    fn write<'a>(&'a self, chunk: &'a Chunk, vars: &'a ChunkVars) -> LocalFuture<'a, Result<usize, WriteError>> {
        Box::pin(async move {
            // Formatting and compressing: off the shard.
            let (format, store) = (self.out.conf.format.clone(), self.out.conf.store);
            let (tag, data) = (chunk.tag.clone(), chunk.data.clone());
            let body = glommio::executor()
                .spawn_blocking(move || S3Out::body(&format, store, &tag, &data))
                .await
                .map_err(|e| WriteError::Retry(format!("cannot encode the chunk: {e}")))?;
            let n = body.len();
            let tag = String::from_utf8_lossy(&chunk.tag);
            let up = UploadChunk { id: &chunk.id, tag: &tag, timekey: chunk.timekey, vars };
            let creds = self.creds.get().await.map_err(|e| WriteError::Retry(e.to_string()))?;
            match Box::pin(self.out.upload_signed(&self.http, &up, Bytes::from(body), creds)).await {
                Ok(key) => {
                    crate::debug!(
                        "{}: wrote chunk {} ({n} bytes) to s3://{}/{key}",
                        self.id,
                        spate_protocol::hex(&chunk.id),
                        self.out.conf.client.bucket
                    );
                    Ok(n)
                }
                // fluent-plugin-s3 raises (and fluentd retries) on every failure.
                Err(
                    e @ (S3Error::Transport { .. }
                    | S3Error::Status { .. }
                    | S3Error::NoBucket(_)
                    | S3Error::DuplicatePath(_)),
                ) => Err(WriteError::Retry(e.to_string())),
            }
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
