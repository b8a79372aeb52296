//! The CloudWatch Logs operations out_cloudwatch_logs uses, over the JSON 1.1 protocol:
//! `POST /` with `X-Amz-Target: Logs_20140328.<Operation>`, a JSON body, signed with
//! SigV4 for service `logs`. Errors come back as 4xx/5xx with
//! `{"__type": "...#Code", "message": "..."}`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::aws::creds::Provider;
use crate::http::{Client, ClientConf, Request, Url};
use crate::s3::sigv4::{self, SignInput};

/// One log event.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub timestamp: i64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{op}: {code}: {message}")]
    Aws { op: &'static str, code: String, message: String, expected_token: Option<String> },
    #[error("{op}: HTTP {status}: {body}")]
    Status { op: &'static str, status: u16, body: String },
    #[error("{op}: {reason}")]
    Transport { op: &'static str, reason: String },
    #[error("{0}")]
    Credentials(#[from] crate::aws::creds::CredError),
}

pub struct Api {
    client: Client,
    url: Url,
    region: String,
    creds: Provider,
}

impl Api {
    pub fn new(conf: ClientConf, url: Url, region: String, creds: Provider) -> Api {
        Api { client: Client::new(conf), url, region, creds }
    }

    /// One operation, tried up to 3 times on connection errors and 5xx answers (as the
    /// AWS SDK retries before the plugin sees an error).
    async fn call(&self, op: &'static str, body: Value) -> Result<Value, ApiError> {
        let body = body.to_string().into_bytes();
        let mut attempt = 0;
        loop {
            match Box::pin(self.call_once(op, &body)).await {
                Err((e, true)) if attempt < 2 => {
                    crate::debug!("CloudWatch Logs {op}: {e}; trying again");
                    glommio::timer::sleep(Duration::from_millis(300 << attempt)).await;
                    attempt += 1;
                }
                r => return r.map_err(|(e, _)| e),
            }
        }
    }

    /// One attempt; the error says whether another may succeed.
    async fn call_once(&self, op: &'static str, body: &[u8]) -> Result<Value, (ApiError, bool)> {
        let creds = self.creds.get().await.map_err(|e| (ApiError::from(e), false))?;
        let date = sigv4::amz_date(crate::buffer::queue::unix_now());
        let payload = sigv4::sha256_hex(body);
        let host = if self.url.port == self.url.scheme.default_port() {
            self.url.host.clone()
        } else {
            format!("{}:{}", self.url.host, self.url.port)
        };
        let mut headers = vec![
            ("Host".to_string(), host),
            ("Content-Type".to_string(), "application/x-amz-json-1.1".to_string()),
            ("X-Amz-Target".to_string(), format!("Logs_20140328.{op}")),
            ("X-Amz-Date".to_string(), date.clone()),
            ("X-Amz-Content-Sha256".to_string(), payload.clone()),
        ];
        if let Some(t) = &creds.session_token {
            headers.push(("X-Amz-Security-Token".to_string(), t.clone()));
        }
        let path = if self.url.path.is_empty() { "/".to_string() } else { self.url.path.clone() };
        let auth = sigv4::authorization(
            &creds,
            &SignInput {
                method: "POST",
                path: &path,
                query: &[],
                headers: &headers,
                payload_sha256: &payload,
                amz_date: &date,
                region: &self.region,
                service: "logs",
            },
        );
        // The client writes Host itself.
        headers.retain(|(k, _)| k != "Host");
        headers.push(("Authorization".to_string(), auth));
        let req = Request { method: "POST", url: &self.url, target: &path, headers: &headers, body };
        let r = self.client.send(&req).await.map_err(|e| (ApiError::Transport { op, reason: e.to_string() }, true))?;
        let retryable = r.status >= 500;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if r.status == 200 {
            return Ok(v);
        }
        let code = v.get("__type").and_then(Value::as_str).map(|t| t.rsplit('#').next().unwrap_or(t).to_string());
        let e = match code {
            Some(code) => ApiError::Aws {
                op,
                code,
                message: v
                    .get("message")
                    .or_else(|| v.get("Message"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                expected_token: v.get("expectedSequenceToken").and_then(Value::as_str).map(str::to_string),
            },
            None => ApiError::Status {
                op,
                status: r.status,
                body: String::from_utf8_lossy(&r.body).chars().take(500).collect(),
            },
        };
        Err((e, retryable))
    }

    /// Pages of a Describe* call until `found` says yes or there is no next page.
    async fn pages(
        &self,
        op: &'static str,
        mut body: Value,
        mut found: impl FnMut(&Value) -> Option<Option<String>>,
    ) -> Result<Option<Option<String>>, ApiError> {
        for _ in 0..1000 {
            let v = self.call(op, body.clone()).await?;
            if let Some(hit) = found(&v) {
                return Ok(Some(hit));
            }
            match v.get("nextToken").and_then(Value::as_str) {
                Some(t) => body["nextToken"] = json!(t),
                None => return Ok(None),
            }
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    pub async fn log_group_exists(&self, group: &str) -> Result<bool, ApiError> {
        let hit = self
            .pages("DescribeLogGroups", json!({ "logGroupNamePrefix": group }), |v| {
                let gs = v.get("logGroups")?.as_array()?;
                gs.iter().any(|g| g.get("logGroupName").and_then(Value::as_str) == Some(group)).then_some(None)
            })
            .await?;
        Ok(hit.is_some())
    }

    /// The stream's upload sequence token when it exists (`Some(None)`: no token).
    pub async fn find_log_stream(&self, group: &str, stream: &str) -> Result<Option<Option<String>>, ApiError> {
        self.pages("DescribeLogStreams", json!({ "logGroupName": group, "logStreamNamePrefix": stream }), |v| {
            let ss = v.get("logStreams")?.as_array()?;
            let s = ss.iter().find(|s| s.get("logStreamName").and_then(Value::as_str) == Some(stream))?;
            Some(s.get("uploadSequenceToken").and_then(Value::as_str).map(str::to_string))
        })
        .await
    }

    pub async fn create_log_group(&self, group: &str, tags: Option<&[(String, String)]>) -> Result<(), ApiError> {
        let mut body = json!({ "logGroupName": group });
        if let Some(t) = tags {
            body["tags"] = Value::Object(t.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
        }
        self.call("CreateLogGroup", body).await.map(|_| ())
    }

    pub async fn put_retention_policy(&self, group: &str, days: i64) -> Result<(), ApiError> {
        self.call("PutRetentionPolicy", json!({ "logGroupName": group, "retentionInDays": days })).await.map(|_| ())
    }

    pub async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ApiError> {
        self.call("CreateLogStream", json!({ "logGroupName": group, "logStreamName": stream })).await.map(|_| ())
    }

    /// Returns the next sequence token and the rejected-events info (as text) if any.
    pub async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[LogEvent],
        token: Option<&str>,
    ) -> Result<(Option<String>, Option<String>), ApiError> {
        let evs: Vec<Value> =
            events.iter().map(|e| json!({ "timestamp": e.timestamp, "message": e.message })).collect();
        let mut body = json!({ "logGroupName": group, "logStreamName": stream, "logEvents": evs });
        if let Some(t) = token {
            body["sequenceToken"] = json!(t);
        }
        let v = self.call("PutLogEvents", body).await?;
        let next = v.get("nextSequenceToken").and_then(Value::as_str).map(str::to_string);
        let rejected = v.get("rejectedLogEventsInfo").filter(|r| !r.is_null()).map(Value::to_string);
        Ok((next, rejected))
    }
}
