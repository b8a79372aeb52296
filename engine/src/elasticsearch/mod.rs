//! Elasticsearch and OpenSearch: the shared machinery of out_elasticsearch,
//! out_opensearch and elasticsearch_data_stream (fluent-plugin-elasticsearch and
//! fluent-plugin-opensearch): document options ([`conf`]), the bulk body encoder
//! ([`bulk`]), the bulk response parser ([`response`]) and reading times out of records
//! ([`timeparse`]). The plugins that send requests live in `output/`.

pub mod bulk;
pub mod conf;
pub mod conn;
pub mod response;
pub mod timeparse;
