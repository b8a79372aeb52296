//! The Bulk API response (`{"took":..,"errors":bool,"items":[{"<op>":{"status":..,
//! "error":{"type":..,"reason":..}}}, ..]}`), judged per item:
//!
//! - 200/201: stored; 409 on `create`: the document exists (fluentd counts it as a
//!   duplicate, not an error);
//! - 429 and 5xx: retried, only those items (with the chunk's retry policy);
//! - any other status (400-class mapping errors, 404 on update, ...): unrecoverable, the
//!   event goes to the error path (`@ERROR` / `<secondary>`) with `status - type: reason`;
//! - an error type listed in `unrecoverable_error_types` / `unrecoverable_record_types`
//!   is unrecoverable whatever its status.
//!
//! `errors: false` is read without looking at the items (as fluentd does). A response
//! that cannot be matched to the request (not JSON, no items, another item count) is a
//! failure of the whole request.

use serde::Deserialize;

/// What happened to one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Stored,
    /// 409 on `create`: already there.
    Duplicate,
    Retry {
        status: u16,
        reason: String,
    },
    Reject {
        status: u16,
        reason: String,
    },
}

/// Counts per kind, for metrics and the log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub stored: u64,
    pub duplicates: u64,
    /// 429 items.
    pub retried_429: u64,
    /// 5xx items (and items without a usable status).
    pub retried_5xx: u64,
    /// Unrecoverable items (to the error path).
    pub rejected: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.retried_429 += o.retried_429;
        self.retried_5xx += o.retried_5xx;
        self.rejected += o.rejected;
    }
}

/// A response that does not fit the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the bulk response is not JSON: {0}")]
    NotJson(String),
    #[error("the bulk response has no items array although errors is true")]
    NoItems,
    #[error("the number of records submitted {sent} do not match the number returned {got}")]
    Count { sent: usize, got: usize },
}

/// The judged response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// `errors: false`: every document stored.
    AllStored,
    /// One outcome per action, in request order.
    Items(Vec<ItemOutcome>),
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    errors: bool,
}

#[derive(Deserialize)]
struct Full {
    items: Option<Vec<std::collections::BTreeMap<String, ItemBody>>>,
}

#[derive(Deserialize)]
struct ItemBody {
    status: Option<u16>,
    error: Option<serde_json::Value>,
}

/// Which error types are unrecoverable whatever their status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub unrecoverable_types: Vec<String>,
}

/// Judges a bulk response body for a request of `sent` actions using `op` (`index`,
/// `create` or `update`).
pub fn judge(body: &[u8], sent: usize, op: &str, policy: &Policy) -> Result<(Judged, Counts), ResponseError> {
    let head: Head = serde_json::from_slice(body).map_err(|e| ResponseError::NotJson(e.to_string()))?;
    if !head.errors {
        return Ok((Judged::AllStored, Counts { stored: sent as u64, ..Default::default() }));
    }
    let full: Full = serde_json::from_slice(body).map_err(|e| ResponseError::NotJson(e.to_string()))?;
    let items = full.items.ok_or(ResponseError::NoItems)?;
    if items.len() != sent {
        return Err(ResponseError::Count { sent, got: items.len() });
    }
    let mut counts = Counts::default();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        // One key: the operation ES performed (index may be reported as create).
        let Some((item_op, b)) = item.into_iter().next() else {
            counts.retried_5xx += 1;
            out.push(ItemOutcome::Retry { status: 0, reason: "an empty item in the bulk response".into() });
            continue;
        };
        let (ty, reason) = describe(b.error.as_ref());
        let text = |status: u16| match (&ty, &reason) {
            (Some(t), Some(r)) => format!("{status} - {t}: {r}"),
            (Some(t), None) => format!("{status} - {t}"),
            (None, Some(r)) => format!("{status} - {r}"),
            (None, None) => format!("{status} - No error type provided in the response"),
        };
        let o = match b.status {
            None => {
                counts.retried_5xx += 1;
                ItemOutcome::Retry { status: 0, reason: "an item without a status in the bulk response".into() }
            }
            Some(s) if ty.as_ref().is_some_and(|t| policy.unrecoverable_types.iter().any(|u| u == t)) => {
                counts.rejected += 1;
                ItemOutcome::Reject { status: s, reason: text(s) }
            }
            Some(200 | 201) => {
                counts.stored += 1;
                ItemOutcome::Stored
            }
            // fluentd reads an index answered as "create" as a create.
            Some(409) if op == "create" || item_op == "create" => {
                counts.duplicates += 1;
                ItemOutcome::Duplicate
            }
            Some(s @ 429) => {
                counts.retried_429 += 1;
                ItemOutcome::Retry { status: s, reason: text(s) }
            }
            Some(s) if s >= 500 => {
                counts.retried_5xx += 1;
                ItemOutcome::Retry { status: s, reason: text(s) }
            }
            Some(s) if (200..300).contains(&s) => {
                counts.stored += 1;
                ItemOutcome::Stored
            }
            Some(s) => {
                counts.rejected += 1;
                ItemOutcome::Reject { status: s, reason: text(s) }
            }
        };
        out.push(o);
    }
    Ok((Judged::Items(out), counts))
}

/// `error.type` and `error.reason` (or the error itself when it is a string).
fn describe(e: Option<&serde_json::Value>) -> (Option<String>, Option<String>) {
    match e {
        None => (None, None),
        Some(serde_json::Value::String(s)) => (None, Some(s.clone())),
        Some(v) => (
            v.get("type").and_then(|t| t.as_str()).map(str::to_string),
            v.get("reason").and_then(|t| t.as_str()).map(str::to_string),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shapes from the Bulk API documentation (docs-bulk, "Response body") and
    // fluent-plugin-elasticsearch's test_elasticsearch_error_handler.rb.
    const MIXED: &str = r#"{"took":1,"errors":true,"items":[
        {"create":{"_index":"y","_id":"1","status":201}},
        {"create":{"_index":"y","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}},
        {"create":{"_index":"y","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n] of type [long]"}}},
        {"create":{"_index":"y","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}},
        {"create":{"_index":"y","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
        {"create":{"_index":"y","status":500,"error":"some string error"}},
        {"create":{"_index":"y","status":404,"error":{"type":"index_not_found_exception","reason":"no such index [y]"}}},
        {"create":{"_index":"y"}}
    ]}"#;

    #[test]
    fn per_item_outcomes() {
        let (j, c) = judge(MIXED.as_bytes(), 8, "create", &Policy::default()).unwrap();
        let Judged::Items(items) = j else { panic!() };
        assert_eq!(items[0], ItemOutcome::Stored);
        assert_eq!(items[1], ItemOutcome::Duplicate);
        assert_eq!(
            items[2],
            ItemOutcome::Reject {
                status: 400,
                reason: "400 - mapper_parsing_exception: failed to parse field [n] of type [long]".into()
            }
        );
        assert!(matches!(items[3], ItemOutcome::Retry { status: 429, .. }));
        assert!(matches!(items[4], ItemOutcome::Retry { status: 503, .. }));
        assert_eq!(items[5], ItemOutcome::Retry { status: 500, reason: "500 - some string error".into() });
        assert!(matches!(&items[6], ItemOutcome::Reject { status: 404, reason } if reason.contains("no such index")));
        assert!(matches!(items[7], ItemOutcome::Retry { status: 0, .. }));
        assert_eq!(c, Counts { stored: 1, duplicates: 1, retried_429: 1, retried_5xx: 3, rejected: 2 });
        // 409 on index (a version conflict with external versioning) is not a duplicate.
        let body = r#"{"errors":true,"items":[{"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"x"}}}]}"#;
        let (j, _) = judge(body.as_bytes(), 1, "index", &Policy::default()).unwrap();
        assert!(matches!(j, Judged::Items(v) if matches!(v[0], ItemOutcome::Reject { status: 409, .. })));
        // unrecoverable_error_types: rejected whatever the status.
        let p = Policy { unrecoverable_types: vec!["es_rejected_execution_exception".into()] };
        let (j, c) = judge(MIXED.as_bytes(), 8, "create", &p).unwrap();
        assert!(matches!(j, Judged::Items(v) if matches!(v[3], ItemOutcome::Reject { status: 429, .. })));
        assert_eq!(c.rejected, 3);
    }

    #[test]
    fn whole_response_cases() {
        let (j, c) =
            judge(br#"{"took":3,"errors":false,"items":[{"index":{"status":201}}]}"#, 1, "index", &Policy::default())
                .unwrap();
        assert_eq!(j, Judged::AllStored);
        assert_eq!(c.stored, 1);
        assert!(matches!(judge(b"<html>", 1, "index", &Policy::default()), Err(ResponseError::NotJson(_))));
        assert_eq!(judge(br#"{"errors":true}"#, 1, "index", &Policy::default()), Err(ResponseError::NoItems));
        assert_eq!(
            judge(br#"{"errors":true,"items":[]}"#, 2, "index", &Policy::default()),
            Err(ResponseError::Count { sent: 2, got: 0 })
        );
    }
}
