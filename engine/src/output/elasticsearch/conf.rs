//! The document options of out_elasticsearch / out_opensearch /
//! elasticsearch_data_stream (what goes into each bulk action and source line), parsed
//! with fluent-plugin-elasticsearch's names and defaults, and the list of its
//! parameters spate does not implement (each a configuration error naming it).

use crate::config::{ConfigError, Element};
use crate::ruby::accessor::Accessor;

use super::timeparse::TimeParser;

/// Which plugin family: the parameter names and `_type` rules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Elasticsearch,
    OpenSearch,
}

impl Flavor {
    /// `elasticsearch` / `opensearch` in parameter names (`default_opensearch_version`).
    pub fn word(self) -> &'static str {
        match self {
            Flavor::Elasticsearch => "elasticsearch",
            Flavor::OpenSearch => "opensearch",
        }
    }
    /// `es` / `os` in parameter names (`verify_os_version_at_startup`).
    pub fn short(self) -> &'static str {
        match self {
            Flavor::Elasticsearch => "es",
            Flavor::OpenSearch => "os",
        }
    }
}

/// `write_operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    Index,
    Create,
    Update,
    Upsert,
}

/// `elasticsearch_data_stream`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataStreamConf {
    /// May hold placeholders.
    pub name: String,
    pub ilm_name: String,
    pub template_name: String,
    /// The ILM policy (JSON text) installed for a new data stream.
    pub ilm_policy: String,
    pub ilm_policy_overwrite: bool,
    pub template_use_index_patterns_wildcard: bool,
}

/// Everything that decides the bulk body.
#[derive(Debug, Clone)]
pub struct DocConf {
    pub flavor: Flavor,
    pub write_operation: WriteOp,
    pub index_name: String,
    pub logstash_format: bool,
    pub logstash_prefix: String,
    pub logstash_prefix_separator: String,
    pub logstash_dateformat: String,
    pub utc_index: bool,
    pub include_timestamp: bool,
    pub time_key: Option<String>,
    pub time_key_format: Option<TimeParser>,
    pub time_key_exclude_timestamp: bool,
    pub time_precision: u32,
    pub include_tag_key: bool,
    pub tag_key: String,
    pub(crate) id_key: Option<Accessor>,
    pub(crate) parent_key: Option<Accessor>,
    pub(crate) routing_key: Option<Accessor>,
    pub remove_keys: Vec<String>,
    /// `target_index_key` split at dots.
    pub target_index_key: Option<Vec<String>>,
    pub type_name: Option<String>,
    pub suppress_type_name: bool,
    pub pipeline: Option<String>,
    pub include_index_in_url: bool,
    pub remove_keys_on_update: Vec<String>,
    pub remove_keys_on_update_key: Option<String>,
    pub suppress_doc_wrap: bool,
    pub emit_error_for_missing_id: bool,
    /// `<metadata> include_chunk_id true`: the key (`chunk_id_key`).
    pub chunk_id_key: Option<String>,
    /// `flatten_hashes true`: the separator.
    pub flatten_hashes: Option<String>,
    pub data_stream: Option<DataStreamConf>,
    pub time_parse_error_tag: String,
    /// `bulk_message_request_threshold` (bytes; `None`: -1, never split).
    pub bulk_message_request_threshold: Option<usize>,
}

fn err(e: &Element, m: impl Into<String>) -> ConfigError {
    ConfigError::at(&e.pos, m)
}

/// fluent-plugin-elasticsearch's `convert_compat_id_key`: `a.b` means `$.a.b`.
fn compat_key(k: &str) -> String {
    if k.contains('.') && !k.starts_with("$[") && !k.starts_with("$.") {
        format!("$.{k}")
    } else {
        k.to_string()
    }
}

fn accessor(e: &Element, key: &str) -> Result<Option<Accessor>, ConfigError> {
    match e.str(key) {
        None => Ok(None),
        Some(v) => Accessor::parse(&compat_key(v)).map(Some).map_err(|x| e.error_at(key, format!("{key}: {x}"))),
    }
}

/// `remove_keys`: Ruby's `split(/\s*,\s*/)`.
fn comma_list(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.split(',').map(|x| x.trim().to_string()).collect();
    while v.last().is_some_and(String::is_empty) {
        v.pop();
    }
    v
}

/// Parameters of fluent-plugin-elasticsearch / -opensearch that spate does not
/// implement, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("target_type_key", "document types are gone since Elasticsearch 7; use type_name"),
    ("retry_tag", "failed documents are retried inside their buffer chunk, not re-emitted with a tag"),
    ("template_file", "index templates are not installed by spate; install them with the Elasticsearch API"),
    ("templates", "index templates are not installed by spate; install them with the Elasticsearch API"),
    ("customize_template", "index templates are not installed by spate"),
    ("rollover_index", "rollover aliases are not created by spate"),
    ("deflector_alias", "rollover aliases are not created by spate"),
    ("enable_ilm", "ILM policies are not installed by spate (elasticsearch_data_stream installs its own)"),
    ("ilm_policy", "ILM policies are not installed by spate"),
    ("ilm_policies", "ILM policies are not installed by spate"),
    ("target_index_affinity", "affinity lookups (a search per chunk) are not supported"),
    ("ignore_exceptions", "Ruby exception classes do not exist in spate"),
    ("selector_class_name", "Ruby classes cannot be loaded; spate rotates through the hosts"),
];

impl DocConf {
    /// Parses the document options of `e` (an out_elasticsearch/out_opensearch
    /// `<match>`); `data_stream` for `elasticsearch_data_stream`.
    pub fn from_element(e: &Element, flavor: Flavor, data_stream: bool) -> Result<DocConf, ConfigError> {
        for (k, why) in UNSUPPORTED {
            if let Some(a) = e.get(k) {
                // An empty value is fluentd's "not set".
                if !a.value.is_empty() && a.value != "false" && a.value != "[]" {
                    return Err(ConfigError::at(&a.pos, format!("{k} is not supported by spate: {why}")));
                }
            }
        }
        if let Some(a) = e.get("template_name") {
            if e.get("template_file").is_none() {
                // Without template_file fluentd ignores template_name too.
                crate::warn!("{}: template_name without template_file has no effect (as in fluentd)", a.pos);
            }
        }
        for k in [
            "template_overwrite",
            "use_legacy_template",
            "max_retry_putting_template",
            "fail_on_putting_template_retry_exceed",
            "ilm_policy_id",
            "ilm_policy_overwrite",
            "index_date_pattern",
            "index_separator",
            "truncate_caches_interval",
            "catch_transport_exception_on_retry",
            "exception_backup",
        ] {
            // Only meaningful with template/ILM/exception features spate rejects above.
            let _ = e.get(k);
        }
        if let Some(a) = e.get("application_name") {
            crate::warn!(
                "{}: application_name only names ILM rollover aliases, which spate does not create; ignored",
                a.pos
            );
        }
        let write_operation = if data_stream {
            WriteOp::Create
        } else {
            match e.enum_of("write_operation", &["index", "create", "update", "upsert"])?.as_deref() {
                None | Some("index") => WriteOp::Index,
                Some("create") => WriteOp::Create,
                Some("update") => WriteOp::Update,
                _ => WriteOp::Upsert,
            }
        };
        let time_key_format = match e.str("time_key_format") {
            None => None,
            Some(f) => Some(TimeParser::new(f).map_err(|x| e.error_at("time_key_format", x.to_string()))?),
        };
        let time_precision = match e.int("time_precision")? {
            None => 9,
            Some(p) if (0..=64).contains(&p) => p as u32,
            Some(p) => return Err(e.error_at("time_precision", format!("time_precision {p}: expected 0 to 64"))),
        };
        let chunk_id_key = match e.elements_named("metadata").next() {
            Some(m) => {
                let on = m.bool("include_chunk_id")?.unwrap_or(false);
                let key = m.str("chunk_id_key").unwrap_or("chunk_id").to_string();
                m.warn_unused();
                on.then_some(key)
            }
            None => None,
        };
        let bulk_message_request_threshold = match e.get("bulk_message_request_threshold") {
            None => None,
            Some(a) if a.value.trim() == "-1" => None,
            Some(_) => Some(e.size("bulk_message_request_threshold")?.unwrap_or(0) as usize),
        };
        let data_stream = if data_stream {
            let name = e.str("data_stream_name").ok_or_else(|| err(e, "'data_stream_name' parameter is required"))?;
            let ds = DataStreamConf {
                name: name.to_string(),
                ilm_name: e.str("data_stream_ilm_name").map_or_else(|| format!("{name}_policy"), str::to_string),
                template_name: e
                    .str("data_stream_template_name")
                    .map_or_else(|| format!("{name}_template"), str::to_string),
                ilm_policy: e
                    .str("data_stream_ilm_policy")
                    .map_or_else(|| DEFAULT_ILM_POLICY.to_string(), str::to_string),
                ilm_policy_overwrite: e.bool("data_stream_ilm_policy_overwrite")?.unwrap_or(false),
                template_use_index_patterns_wildcard: e
                    .bool("data_stream_template_use_index_patterns_wildcard")?
                    .unwrap_or(true),
            };
            if !name.contains("${") && !name.contains('%') {
                for (p, v) in [
                    ("data_stream_name", &ds.name),
                    ("data_stream_template_name", &ds.template_name),
                    ("data_stream_ilm_name", &ds.ilm_name),
                ] {
                    validate_data_stream_name(p, v).map_err(|m| e.error_at(p, m))?;
                }
            }
            if serde_json::from_str::<serde_json::Value>(&ds.ilm_policy).is_err() {
                return Err(e.error_at("data_stream_ilm_policy", "data_stream_ilm_policy: not valid JSON"));
            }
            Some(ds)
        } else {
            None
        };
        let c = DocConf {
            flavor,
            write_operation,
            index_name: e.str("index_name").unwrap_or("fluentd").to_string(),
            logstash_format: e.bool("logstash_format")?.unwrap_or(false),
            logstash_prefix: e.str("logstash_prefix").unwrap_or("logstash").to_string(),
            logstash_prefix_separator: e.str("logstash_prefix_separator").unwrap_or("-").to_string(),
            logstash_dateformat: e.str("logstash_dateformat").unwrap_or("%Y.%m.%d").to_string(),
            utc_index: e.bool("utc_index")?.unwrap_or(true),
            include_timestamp: e.bool("include_timestamp")?.unwrap_or(false),
            time_key: e.str("time_key").map(str::to_string),
            time_key_format,
            time_key_exclude_timestamp: e.bool("time_key_exclude_timestamp")?.unwrap_or(false),
            time_precision,
            include_tag_key: e.bool("include_tag_key")?.unwrap_or(false),
            tag_key: e.str("tag_key").unwrap_or("tag").to_string(),
            id_key: accessor(e, "id_key")?,
            parent_key: accessor(e, "parent_key")?,
            routing_key: accessor(e, "routing_key")?,
            remove_keys: e.str("remove_keys").map(comma_list).unwrap_or_default(),
            target_index_key: e.str("target_index_key").map(|k| k.split('.').map(str::to_string).collect()),
            type_name: match flavor {
                Flavor::Elasticsearch => Some(e.str("type_name").unwrap_or("fluentd").to_string()),
                Flavor::OpenSearch => None,
            },
            suppress_type_name: e.bool("suppress_type_name")?.unwrap_or(false),
            pipeline: e.str("pipeline").map(str::to_string),
            include_index_in_url: e.bool("include_index_in_url")?.unwrap_or(false),
            remove_keys_on_update: e
                .str("remove_keys_on_update")
                .map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect())
                .unwrap_or_default(),
            remove_keys_on_update_key: e.str("remove_keys_on_update_key").map(str::to_string),
            suppress_doc_wrap: e.bool("suppress_doc_wrap")?.unwrap_or(false),
            emit_error_for_missing_id: e.bool("emit_error_for_missing_id")?.unwrap_or(false),
            chunk_id_key,
            flatten_hashes: if e.bool("flatten_hashes")?.unwrap_or(false) {
                Some(e.str("flatten_hashes_separator").unwrap_or("_").to_string())
            } else {
                let _ = e.get("flatten_hashes_separator");
                None
            },
            data_stream,
            time_parse_error_tag: e
                .str("time_parse_error_tag")
                .unwrap_or(match flavor {
                    Flavor::Elasticsearch => "Fluent::ElasticsearchOutput::TimeParser.error",
                    Flavor::OpenSearch => "opensearch_plugin.output.time.error",
                })
                .to_string(),
            bulk_message_request_threshold,
        };
        if c.logstash_dateformat.is_empty() && c.logstash_format {
            return Err(e.error_at("logstash_dateformat", "logstash_dateformat must not be empty"));
        }
        Ok(c)
    }
}

/// fluent-plugin-elasticsearch's default ILM policy for data streams
/// (lib/fluent/plugin/default-ilm-policy.json).
pub const DEFAULT_ILM_POLICY: &str =
    r#"{"policy":{"phases":{"hot":{"actions":{"rollover":{"max_size":"50gb","max_age":"30d"}}}}}}"#;

/// out_elasticsearch_data_stream's `validate_data_stream_parameters`.
fn validate_data_stream_name(param: &str, v: &str) -> Result<(), String> {
    const BAD_START: [char; 4] = ['-', '_', '+', '.'];
    const BAD: [char; 12] = ['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];
    if v.starts_with(BAD_START) {
        return Err(format!("'{param}' must not start with -,_,+,.: <{v}>"));
    }
    if v == "." || v == ".." {
        return Err(format!("'{param}' must not be . or ..: <{v}>"));
    }
    if v.contains(BAD) {
        return Err(format!("'{param}' must not contain invalid characters \\,/,*,?,\",<,>,|, ,,,#,:: <{v}>"));
    }
    if v.to_lowercase() != v {
        return Err(format!("'{param}' must be lowercase only: <{v}>"));
    }
    if v.len() > 255 {
        return Err(format!("'{param}' must not be longer than 255 bytes: <{v}>"));
    }
    Ok(())
}
