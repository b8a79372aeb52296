//! Configurations written the way fluentd's documentation and common deployments write
//! them (Kubernetes daemonset with `"#{ENV[...]}"`, `<buffer tag,time>`, `@include
//! conf.d/*.conf`, labels, workers, v0.12 syntax...), parsed through the public API and
//! checked value by value, plus the error messages users see.

/// In a module named `config` so `cargo test -p spate-engine config` selects these.
mod config {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use spate_engine::config::{
        parse_file_with_warnings, parse_str_with_warnings, ConfigError, Element, EvalContext, Warning,
    };

    fn env_ctx(vars: &[(&str, &str)]) -> EvalContext {
        let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        EvalContext::with_env("node-1", None, env)
    }

    fn parse(conf: &str, ctx: &EvalContext) -> Element {
        let (root, warnings) = parse_str_with_warnings(conf, "fluent.conf", Path::new("."), ctx)
            .unwrap_or_else(|e| panic!("parse failed: {e}"));
        assert!(warnings.is_empty(), "unexpected warnings: {warnings:?}");
        root
    }

    fn parse_err(conf: &str) -> String {
        match parse_str_with_warnings(conf, "fluent.conf", Path::new("."), &env_ctx(&[])) {
            Ok(_) => panic!("expected an error for:\n{conf}"),
            Err(e) => e.to_string(),
        }
    }

    fn first<'a>(e: &'a Element, name: &'a str) -> &'a Element {
        e.elements_named(name).next().unwrap_or_else(|| panic!("no <{name}> in <{} {}>", e.name, e.arg))
    }

    const DAEMONSET: &str = r##"
@include "#{ENV['FLUENTD_SYSTEMD_CONF'] || 'systemd'}.conf"
@include "#{ENV['FLUENTD_PROMETHEUS_CONF'] || 'prometheus'}.conf"

<label @FLUENT_LOG>
  <match fluent.**>
    @type null
    @id ignore_fluent_logs
  </match>
</label>

<source>
  @type tail
  @id in_tail_container_logs
  path "#{ENV['FLUENT_CONTAINER_TAIL_PATH'] || '/var/log/containers/*.log'}"
  pos_file "#{File.join('/var/log/', ENV.fetch('FLUENT_POS_EXTRA_DIR', ''), 'fluentd-containers.log.pos')}"
  tag "#{ENV['FLUENT_CONTAINER_TAIL_TAG'] || 'kubernetes.*'}"
  exclude_path "#{ENV['FLUENT_CONTAINER_TAIL_EXCLUDE_PATH'] || use_default}"
  read_from_head true
  <parse>
    @type "#{ENV['FLUENT_CONTAINER_TAIL_PARSER_TYPE'] || 'json'}"
    time_format "#{ENV['FLUENT_CONTAINER_TAIL_PARSER_TIME_FORMAT'] || '%Y-%m-%dT%H:%M:%S.%NZ'}"
  </parse>
</source>

<filter kubernetes.**>
  @type kubernetes_metadata
  @id filter_kube_metadata
  kubernetes_url "#{ENV['FLUENT_FILTER_KUBERNETES_URL'] || 'https://' + ENV.fetch('KUBERNETES_SERVICE_HOST') + ':' + ENV.fetch('KUBERNETES_SERVICE_PORT') + '/api'}"
  verify_ssl "#{ENV['KUBERNETES_VERIFY_SSL'] || true}"
  ca_file "#{ENV['KUBERNETES_CA_FILE']}"
  skip_labels "#{ENV['FLUENT_KUBERNETES_METADATA_SKIP_LABELS'] || 'false'}"
</filter>

<match **>
   @type elasticsearch
   @id out_es
   @log_level info
   include_tag_key true
   host "#{ENV['FLUENT_ELASTICSEARCH_HOST']}"
   port "#{ENV['FLUENT_ELASTICSEARCH_PORT']}"
   path "#{ENV['FLUENT_ELASTICSEARCH_PATH']}"
   scheme "#{ENV['FLUENT_ELASTICSEARCH_SCHEME'] || 'http'}"
   ssl_verify "#{ENV['FLUENT_ELASTICSEARCH_SSL_VERIFY'] || 'true'}"
   user "#{ENV['FLUENT_ELASTICSEARCH_USER'] || use_default}"
   password "#{ENV['FLUENT_ELASTICSEARCH_PASSWORD'] || use_default}"
   reload_connections "#{ENV['FLUENT_ELASTICSEARCH_RELOAD_CONNECTIONS'] || 'false'}"
   logstash_prefix "#{ENV['FLUENT_ELASTICSEARCH_LOGSTASH_PREFIX'] || 'logstash'}"
   logstash_format "#{ENV['FLUENT_ELASTICSEARCH_LOGSTASH_FORMAT'] || 'true'}"
   request_timeout "#{ENV['FLUENT_ELASTICSEARCH_REQUEST_TIMEOUT'] || '5s'}"
   <buffer>
     flush_thread_count "#{ENV['FLUENT_ELASTICSEARCH_BUFFER_FLUSH_THREAD_COUNT'] || '8'}"
     flush_interval "#{ENV['FLUENT_ELASTICSEARCH_BUFFER_FLUSH_INTERVAL'] || '5s'}"
     chunk_limit_size "#{ENV['FLUENT_ELASTICSEARCH_BUFFER_CHUNK_LIMIT_SIZE'] || '2M'}"
     queue_limit_length "#{ENV['FLUENT_ELASTICSEARCH_BUFFER_QUEUE_LIMIT_LENGTH'] || '32'}"
     retry_max_interval "#{ENV['FLUENT_ELASTICSEARCH_BUFFER_RETRY_MAX_INTERVAL'] || '30'}"
     retry_forever true
   </buffer>
</match>
"##;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let d = std::env::temp_dir().join(format!("spate-config-docs-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let f = self.0.join(rel);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, text).unwrap();
            f
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn kubernetes_daemonset_config_with_env() {
        let dir = TempDir::new("k8s");
        dir.write("systemd.conf", "<source>\n  @type systemd\n  @id in_systemd_kubelet\n  matches [{ \"_SYSTEMD_UNIT\": \"kubelet.service\" }]\n  read_from_head true\n  tag kubelet\n</source>\n");
        dir.write("prometheus.conf", "<source>\n  @type prometheus\n  bind \"#{ENV['FLUENTD_PROMETHEUS_BIND'] || '0.0.0.0'}\"\n  port \"#{ENV['FLUENTD_PROMETHEUS_PORT'] || '24231'}\"\n  metrics_path \"#{ENV['FLUENTD_PROMETHEUS_PATH'] || '/metrics'}\"\n</source>\n");
        let main = dir.write("fluent.conf", DAEMONSET);
        let ctx = env_ctx(&[
            ("FLUENT_ELASTICSEARCH_HOST", "elasticsearch-master.logging.svc"),
            ("FLUENT_ELASTICSEARCH_PORT", "9200"),
            ("FLUENT_ELASTICSEARCH_USER", "elastic"),
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("FLUENT_POS_EXTRA_DIR", "pos"),
        ]);
        let (root, warnings) = parse_file_with_warnings(&main, &ctx).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");

        let names: Vec<&str> = root.elements.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["source", "source", "label", "source", "filter", "match"]);

        // The included files come first, named in positions.
        let systemd = &root.elements[0];
        assert_eq!(systemd.plugin_type(), Some("systemd"));
        assert!(systemd.pos.to_string().ends_with("systemd.conf:1:1"), "{}", systemd.pos);
        assert_eq!(systemd.str("matches"), Some(r#"[{"_SYSTEMD_UNIT":"kubelet.service"}]"#));
        let prom = &root.elements[1];
        assert_eq!((prom.str("bind"), prom.int("port").unwrap()), (Some("0.0.0.0"), Some(24231)));

        let label = &root.elements[2];
        assert_eq!(label.arg, "@FLUENT_LOG");
        let m = first(label, "match");
        assert_eq!(
            (m.arg.as_str(), m.plugin_type(), m.str("@id")),
            ("fluent.**", Some("null"), Some("ignore_fluent_logs"))
        );

        let tail = &root.elements[3];
        assert_eq!(tail.str("path"), Some("/var/log/containers/*.log"));
        assert_eq!(tail.str("pos_file"), Some("/var/log/pos/fluentd-containers.log.pos"));
        assert_eq!(tail.str("tag"), Some("kubernetes.*"));
        // use_default: not set at all.
        assert_eq!(tail.str("exclude_path"), None);
        assert_eq!(tail.bool("read_from_head").unwrap(), Some(true));
        let parse_sec = first(tail, "parse");
        assert_eq!(parse_sec.plugin_type(), Some("json"));
        assert_eq!(parse_sec.str("time_format"), Some("%Y-%m-%dT%H:%M:%S.%NZ"));

        let filter = &root.elements[4];
        assert_eq!(filter.arg, "kubernetes.**");
        assert_eq!(filter.str("kubernetes_url"), Some("https://10.96.0.1:443/api"));
        assert_eq!(filter.bool("verify_ssl").unwrap(), Some(true));
        // ENV['KUBERNETES_CA_FILE'] is unset: nil, so the parameter is not set.
        assert_eq!(filter.str("ca_file"), None);
        assert_eq!(filter.bool("skip_labels").unwrap(), Some(false));

        let es = &root.elements[5];
        assert_eq!(es.arg, "**");
        assert_eq!(
            (es.plugin_type(), es.str("@id"), es.str("@log_level")),
            (Some("elasticsearch"), Some("out_es"), Some("info"))
        );
        assert_eq!(es.str("host"), Some("elasticsearch-master.logging.svc"));
        assert_eq!(es.int("port").unwrap(), Some(9200));
        assert_eq!(es.str("path"), None);
        assert_eq!(es.enum_of("scheme", &["http", "https"]).unwrap().as_deref(), Some("http"));
        assert_eq!(es.str("user"), Some("elastic"));
        assert_eq!(es.str("password"), None);
        assert_eq!(es.time("request_timeout").unwrap(), Some(Duration::from_secs(5)));
        let buf = first(es, "buffer");
        assert_eq!(buf.arg, "");
        assert_eq!(buf.int("flush_thread_count").unwrap(), Some(8));
        assert_eq!(buf.time("flush_interval").unwrap(), Some(Duration::from_secs(5)));
        assert_eq!(buf.size("chunk_limit_size").unwrap(), Some(2 << 20));
        assert_eq!(buf.time("retry_max_interval").unwrap(), Some(Duration::from_secs(30)));
        assert_eq!(buf.bool("retry_forever").unwrap(), Some(true));
        // Parameters nothing read are reported with their place.
        let unused: Vec<String> = buf.unused_attrs().iter().map(|a| format!("{} {}", a.key, a.pos.line)).collect();
        assert_eq!(unused, ["queue_limit_length 55"]);

        // The same configuration on a node where a required variable is missing.
        let bare = env_ctx(&[]);
        let e = parse_file_with_warnings(&main, &bare).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}:29:19: in embedded code `ENV['FLUENT_FILTER_KUBERNETES_URL'] ||",
                main.display()
            )) && e.contains("ENV.fetch('KUBERNETES_SERVICE_HOST'): key not found"),
            "{e}"
        );
    }

    #[test]
    fn include_conf_d_glob_relative_to_the_including_file() {
        let dir = TempDir::new("confd");
        dir.write(
            "etc/fluent.conf",
            "<system>\n  log_level info\n</system>\n\n@include conf.d/*.conf\n\n<match **>\n  @type stdout\n</match>\n",
        );
        dir.write("etc/conf.d/10-forward.conf", "<source>\n  @type forward\n  port 24224\n</source>\n");
        dir.write(
            "etc/conf.d/20-app.conf",
            "@include ../shared/app-filter.conf\n<match app.**>\n  @type null\n</match>\n",
        );
        dir.write("etc/shared/app-filter.conf", "<filter app.**>\n  @type grep\n  <regexp>\n    key level\n    pattern /^(error|warn)$/\n  </regexp>\n</filter>\n");
        dir.write("etc/conf.d/README.md", "not a config\n");
        dir.write("etc/conf.d/.30-hidden.conf", "<match hidden>\n</match>\n");
        let (root, warnings) = parse_file_with_warnings(&dir.0.join("etc/fluent.conf"), &env_ctx(&[])).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let got: Vec<(String, String, String)> = root
            .elements
            .iter()
            .map(|e| {
                let file = Path::new(&*e.pos.file).file_name().unwrap().to_string_lossy().into_owned();
                (e.name.clone(), e.arg.clone(), format!("{file}:{}", e.pos.line))
            })
            .collect();
        let want = [
            ("system", "", "fluent.conf:1"),
            ("source", "", "10-forward.conf:1"),
            ("filter", "app.**", "app-filter.conf:1"),
            ("match", "app.**", "20-app.conf:2"),
            ("match", "**", "fluent.conf:7"),
        ];
        let want: Vec<(String, String, String)> =
            want.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
        assert_eq!(got, want);
        let grep = &root.elements[2];
        let re = first(grep, "regexp");
        assert_eq!((re.str("key"), re.str("pattern")), (Some("level"), Some("/^(error|warn)$/")));
    }

    #[test]
    fn buffer_chunk_keys_time_and_size_units() {
        let root = parse(
            r#"
<match app.**>
  @type file
  path /var/log/fluent/app.${tag}.%Y%m%d
  <buffer tag,time>
    @type file
    path /var/log/fluent/buffer/app
    timekey 1h
    timekey_wait 10m
    timekey_use_utc true
    chunk_limit_size 256m
    total_limit_size 64GB
    flush_mode interval
    flush_interval 0.5
    flush_at_shutdown
    retry_type exponential_backoff
    retry_wait 1s
    retry_max_times 17
    retry_exponential_backoff_base 2.5
    overflow_action drop_oldest_chunk
  </buffer>
  <format>
    @type json
  </format>
  <secondary>
    @type secondary_file
    directory /var/log/fluent/error/
    basename dump.${chunk_id}
  </secondary>
</match>
"#,
            &env_ctx(&[]),
        );
        let m = first(&root, "match");
        assert_eq!(m.str("path"), Some("/var/log/fluent/app.${tag}.%Y%m%d"));
        let b = first(m, "buffer");
        assert_eq!(b.arg, "tag,time");
        assert_eq!(b.time("timekey").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(b.time("timekey_wait").unwrap(), Some(Duration::from_secs(600)));
        assert_eq!(b.bool("timekey_use_utc").unwrap(), Some(true));
        assert_eq!(b.size("chunk_limit_size").unwrap(), Some(256 << 20));
        assert_eq!(b.size("total_limit_size").unwrap(), Some(64 << 30));
        assert_eq!(
            b.enum_of("flush_mode", &["default", "lazy", "interval", "immediate"]).unwrap().as_deref(),
            Some("interval")
        );
        assert_eq!(b.time("flush_interval").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(b.bool("flush_at_shutdown").unwrap(), Some(true));
        assert_eq!(b.time("retry_wait").unwrap(), Some(Duration::from_secs(1)));
        assert_eq!(b.int("retry_max_times").unwrap(), Some(17));
        assert_eq!(b.float("retry_exponential_backoff_base").unwrap(), Some(2.5));
        let e = b.enum_of("overflow_action", &["throw_exception", "block"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fluent.conf:20:5: overflow_action: valid options are throw_exception,block but got drop_oldest_chunk"
        );
        assert_eq!(first(m, "format").plugin_type(), Some("json"));
        assert_eq!(first(m, "secondary").str("basename"), Some("dump.${chunk_id}"));
    }

    #[test]
    fn record_transformer_regexps_and_multiline_json() {
        let root = parse(
            r##"
<source>
  @type dummy
  tag app.dummy
  dummy [
    {"message": "hello", "level": "info"},   # first
    {"message": "oops #1", "level": "error"} # second
  ]
</source>

<filter app.**>
  @type record_transformer
  enable_ruby false
  <record>
    hostname "#{Socket.gethostname}"
    tag ${tag}
    message level=${record["level"]} ${record["message"]}
    service_name app # comment after a value
  </record>
</filter>

<filter app.**>
  @type parser
  key_name log
  reserve_data true
  <parse>
    @type regexp
    expression /^(?<time>[^ ]+) (?<level>\w+) (?<msg>.*)$/
    time_format %Y-%m-%dT%H:%M:%S%z
    types code:integer,latency:float
  </parse>
</filter>

<match {app,web}.** other.*>
  @type copy
  <store ignore_error>
    @type stdout
  </store>
  <store>
    @type forward
    <server>
      name primary
      host 192.168.1.3
      port 24224
      weight 60
    </server>
    <server>
      host 192.168.1.4
      port 24224
      standby
    </server>
  </store>
</match>
"##,
            &env_ctx(&[]),
        );
        let src = first(&root, "source");
        let dummy: serde_json::Value = serde_json::from_str(src.str("dummy").unwrap()).unwrap();
        assert_eq!(
            dummy,
            serde_json::json!([{"message": "hello", "level": "info"}, {"message": "oops #1", "level": "error"}])
        );
        let rt = &root.elements[1];
        let rec = first(rt, "record");
        let kv: Vec<(&str, &str)> = rec.attrs.iter().map(|a| (a.key.as_str(), a.value.as_str())).collect();
        assert_eq!(
            kv,
            [
                ("hostname", "node-1"),
                ("tag", "${tag}"),
                ("message", r#"level=${record["level"]} ${record["message"]}"#),
                ("service_name", "app")
            ]
        );
        let parser = first(&root.elements[2], "parse");
        assert_eq!(parser.str("expression"), Some(r"/^(?<time>[^ ]+) (?<level>\w+) (?<msg>.*)$/"));
        assert_eq!(parser.str("time_format"), Some("%Y-%m-%dT%H:%M:%S%z"));
        assert_eq!(
            parser.hash("types").unwrap(),
            Some(vec![("code".into(), "integer".into()), ("latency".into(), "float".into())])
        );

        let m = first(&root, "match");
        assert_eq!(m.arg, "{app,web}.** other.*");
        let stores: Vec<&Element> = m.elements_named("store").collect();
        assert_eq!((stores.len(), stores[0].arg.as_str()), (2, "ignore_error"));
        let servers: Vec<&Element> = stores[1].elements_named("server").collect();
        assert_eq!(servers.len(), 2);
        assert_eq!((servers[0].str("name"), servers[0].int("weight").unwrap()), (Some("primary"), Some(60)));
        assert_eq!(servers[1].bool("standby").unwrap(), Some(true));
    }

    #[test]
    fn workers_system_and_security() {
        let root = parse(
            r##"
<system>
  workers 4
  root_dir /var/lib/fluentd
  log_level warn
  <log>
    format json
    time_format %Y-%m-%d %H:%M:%S
  </log>
</system>

<worker 0>
  <source>
    @type forward
    port 24224
    <transport tls>
      cert_path /etc/td-agent/certs/fluentd.crt
      private_key_path /etc/td-agent/certs/fluentd.key
      private_key_passphrase "#{ENV['FLUENT_TLS_PASSPHRASE'] || ''}"
    </transport>
    <security>
      self_hostname "#{Socket.gethostname}"
      shared_key "#{ENV['FLUENT_SHARED_KEY']}"
      user_auth true
      <user>
        username alice
        password 'p@ss #word'
      </user>
      <client>
        network 192.168.0.0/16
        shared_key "s3cr3t\tkey"
      </client>
    </security>
  </source>
</worker>

<worker 1-3>
  <match worker.**>
    @type stdout
    <inject>
      worker_id_key worker_id
      hostname_key host
    </inject>
  </match>
</worker>
"##,
            &env_ctx(&[("FLUENT_SHARED_KEY", "cluster-key")]),
        );
        let sys = first(&root, "system");
        assert_eq!(sys.int("workers").unwrap(), Some(4));
        assert_eq!(first(sys, "log").str("time_format"), Some("%Y-%m-%d %H:%M:%S"));
        let workers: Vec<&str> = root.elements_named("worker").map(|w| w.arg.as_str()).collect();
        assert_eq!(workers, ["0", "1-3"]);
        let src = first(first(&root, "worker"), "source");
        let tls = first(src, "transport");
        assert_eq!(tls.arg, "tls");
        assert_eq!(tls.str("private_key_passphrase"), Some(""));
        let sec = first(src, "security");
        assert_eq!(sec.str("self_hostname"), Some("node-1"));
        assert_eq!(sec.str("shared_key"), Some("cluster-key"));
        assert_eq!(first(sec, "user").str("password"), Some("p@ss #word"));
        let client = first(sec, "client");
        assert_eq!((client.str("network"), client.str("shared_key")), (Some("192.168.0.0/16"), Some("s3cr3t\tkey")));
    }

    #[test]
    fn v0_12_style_configuration() {
        let root = parse(
            r#"
<source>
  type forward
  port 24224
</source>

<match td.*.*>
  type tdlog
  apikey YOUR_API_KEY
  auto_create_table
  buffer_type file
  buffer_path /var/log/td-agent/buffer/td
  buffer_chunk_limit 8m
  buffer_queue_limit 64
  flush_interval 10s
  retry_limit 17
  disable_retry_limit false
</match>

<match debug.**>
  type stdout
</match>
"#,
            &env_ctx(&[]),
        );
        let src = first(&root, "source");
        assert_eq!((src.plugin_type(), src.int("port").unwrap()), (Some("forward"), Some(24224)));
        let td = &root.elements[1];
        assert_eq!(td.plugin_type(), Some("tdlog"));
        assert_eq!(td.bool("auto_create_table").unwrap(), Some(true));
        assert_eq!(td.size("buffer_chunk_limit").unwrap(), Some(8 << 20));
        assert_eq!(td.time("flush_interval").unwrap(), Some(Duration::from_secs(10)));
        assert_eq!(td.bool("disable_retry_limit").unwrap(), Some(false));
    }

    #[test]
    fn mistakes_users_make_are_located_and_explained() {
        let cases: &[(&str, &str)] = &[
        (
            "<source>\n  @type forward\n\n<match **>\n  @type stdout\n</match>\n",
            // The <match> nests inside the unclosed <source>.
            "fluent.conf:7:1: expected end tag '</source>' to close <source> (opened at line 1) but got end of file",
        ),
        (
            "<source>\n  @type forward\n</match>\n",
            "fluent.conf:3:1: unmatched end tag </match>: expected </source> to close <source> (opened at line 1)",
        ),
        (
            "<match app.**\n  @type stdout\n</match>\n",
            "fluent.conf:1:14: expected '>' to close <match app.**",
        ),
        (
            "<match **>\n  @type stdout\n",
            "fluent.conf:3:1: expected end tag '</match>' to close <match **> (opened at line 1) but got end of file",
        ),
        (
            "<source>\n  @type forward\n  @port 24224\n</source>\n",
            "fluent.conf:3:3: '@' is the system reserved prefix. Don't use '@' prefix parameter in the configuration: @port",
        ),
        (
            "<match **>\n  @type stdout\n  format \"json\" # ok\n  path \"/var/log/a\" \"/var/log/b\"\n</match>\n",
            "fluent.conf:4:21: expected end of line after the value of 'path' (text after a quoted or JSON value?)",
        ),
        (
            "<source>\n  @type dummy\n  dummy {\"message\": \"unterminated\"\n</source>\n",
            "fluent.conf:3:9: got incomplete JSON hash configuration (no matching '}' before end of file)",
        ),
        (
            "<match **>\n  @type forward\n  <server>\n    host \"#{ENV['HOST'].downcase}\"\n  </server>\n</match>\n",
            "fluent.conf:4:11: embedded Ruby is not supported: `ENV['HOST'].downcase`; spate supports ENV['X'], ENV['X'] || 'default', ENV.fetch('X', 'default'), c ? a : b, ==, !=, local variables, ';', x rescue y, Socket.gethostname, Socket.gethostbyname(h).first, IPAddr.new(x).ipv6?, hostname, worker_id, use_default, use_nil, File.join, string literals and '+'",
        ),
        (
            "<match **>\n  @type http\n  endpoint \"https://#{ENV.fetch('COLLECTOR')}/v1\"\n</match>\n",
            "fluent.conf:3:21: in embedded code `ENV.fetch('COLLECTOR')`: ENV.fetch('COLLECTOR'): key not found: set COLLECTOR or give a default, e.g. ENV.fetch('COLLECTOR', 'value')",
        ),
        (
            // A double quote inside a double-quoted value ends it (fluentd too).
            "<filter **>\n  @type record_transformer\n  <record>\n    message \"${record[\"message\"]}\"\n  </record>\n</filter>\n",
            "fluent.conf:4:24: expected end of line after the value of 'message' (text after a quoted or JSON value?)",
        ),
        (
            "@include https://example.com/fluent.conf\n",
            "fluent.conf:1:1: @include https://example.com/fluent.conf: only local files can be included (https:// is not supported)",
        ),
        (
            "<match **>\n  @type file\n  path \"/var/log/\\d\"\n</match>\n",
            "fluent.conf:3:18: unexpected back-slash escape character 'd' (fluentd knows \\\" \\' \\\\ \\r \\n \\t \\f \\b \\0)",
        ),
    ];
        for (conf, want) in cases {
            assert_eq!(parse_err(conf), *want, "\n{conf}");
        }
    }

    #[test]
    fn typed_values_report_what_was_expected() {
        let root = parse(
        "<match **>\n  @type forward\n  flush_interval 0.5s\n  chunk_limit_size 1.5m\n  send_timeout 100ms\n  require_ack_response True\n  port 24224x\n  retry_wait 5M\n  total_limit_size 10x\n</match>\n",
        &env_ctx(&[]),
    );
        let m = first(&root, "match");
        let msg = |e: ConfigError| e.to_string();
        // Fractions and `ms` mean what they say (README: deliberate differences; fluentd's
        // regexes would read these as 5s, 5 MiB and 100 minutes).
        assert_eq!(m.time("flush_interval").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(m.size("chunk_limit_size").unwrap(), Some(3 << 19));
        assert_eq!(m.time("send_timeout").unwrap(), Some(Duration::from_millis(100)));
        assert_eq!(
            msg(m.bool("require_ack_response").unwrap_err()),
            "fluent.conf:6:3: require_ack_response \"True\": expected true, false, yes or no (lowercase)"
        );
        assert_eq!(msg(m.int("port").unwrap_err()), "fluent.conf:7:3: port \"24224x\": expected an integer");
        assert_eq!(
        msg(m.time("retry_wait").unwrap_err()),
        "fluent.conf:8:3: retry_wait \"5M\": expected a time such as 30 (seconds), 0.5, 10s, 5m, 1h, 2d or 100ms; units are lowercase (fluentd ignores \"M\" and would read \"5M\" as 5 seconds)"
    );
        assert_eq!(
            msg(m.size("total_limit_size").unwrap_err()),
            "fluent.conf:9:3: total_limit_size \"10x\": expected a size such as 1024, 512k, 8m, 1g (powers of 1024)"
        );
    }

    #[test]
    fn warnings_for_accepted_mistakes() {
        let (root, warnings) = parse_str_with_warnings(
        "<match **>\n  @type stdout\n  @type null\n  <inject>\n    @time_key t\n  </inject>\n</match>\n@include /nonexistent/conf.d/*.conf\n",
        "fluent.conf",
        Path::new("."),
        &env_ctx(&[]),
    )
    .unwrap();
        assert_eq!(first(&root, "match").plugin_type(), Some("null"));
        let w: Vec<String> = warnings.iter().map(Warning::to_string).collect();
        assert_eq!(
        w,
        [
            "fluent.conf:3:3: parameter '@type' is given twice in <match **> (previously at line 2); the later value wins, as in fluentd",
            "fluent.conf:5:5: '@' is the system reserved prefix. It works in the nested configuration for now but it will be rejected: @time_key",
            "fluent.conf:8:1: @include /nonexistent/conf.d/*.conf: no file matches /nonexistent/conf.d/*.conf; nothing is included (fluentd ignores it too)",
        ]
    );
    }
}
