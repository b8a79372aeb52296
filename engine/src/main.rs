//! `spate`: a Fluentd-compatible log aggregator. Thin CLI over `spate_engine`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use argh::FromArgs;
use spate_engine::{config, log, plan, registry, runtime};

/// spate: a Fluentd-compatible log aggregator (Forward protocol, fluent.conf).
#[derive(FromArgs)]
struct Cli {
    /// configuration file (fluentd's fluent.conf syntax); without it, the embedded
    /// default: in_forward on 127.0.0.1:24224 -> stdout
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// how to read the configuration file: guess (default: *.yaml and *.yml are YAML,
    /// anything else fluent.conf syntax), yaml or yml (as fluentd's --config-file-type)
    #[argh(option, default = "String::from(\"guess\")")]
    config_file_type: String,
    /// parse and validate the configuration, print the plugin graph, and exit
    #[argh(switch)]
    dry_run: bool,
    /// number of shards (overrides <system> workers; default: one per CPU)
    #[argh(option)]
    workers: Option<usize>,
    /// verbose logging (debug level)
    #[argh(switch, short = 'v')]
    verbose: bool,
    /// quiet logging (warnings and errors only)
    #[argh(switch, short = 'q')]
    quiet: bool,
    /// log format: text (fluentd style, default) or json; overrides <system> <log> format
    #[argh(option)]
    log_format: Option<String>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    /// print the table of supported plugins and their parameters (Markdown) and exit
    #[argh(switch)]
    plugins: bool,
}

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    if cli.version {
        println!("spate {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if cli.plugins {
        print!("{}", registry::markdown_table());
        return ExitCode::SUCCESS;
    }
    match cli.log_format.as_deref() {
        None | Some("text") => {}
        Some("json") => log::set_json(true),
        Some(other) => {
            eprintln!("spate: --log-format {other:?}: expected text or json");
            return ExitCode::from(2);
        }
    }
    let cli_level = if cli.verbose {
        Some(log::Level::Debug)
    } else if cli.quiet {
        Some(log::Level::Warn)
    } else {
        None
    };
    if let Some(l) = cli_level {
        log::set_level(l);
    }
    if cli.workers == Some(0) {
        eprintln!("spate: --workers must be at least 1");
        return ExitCode::from(2);
    }

    let Some(file_type) = config::FileType::from_arg(&cli.config_file_type) else {
        eprintln!("spate: --config-file-type accepts yaml/yml or guess");
        return ExitCode::from(2);
    };
    let ctx = config::EvalContext::from_process();
    let hostname = ctx.hostname.clone();
    let parsed = match &cli.config {
        Some(path) => config::parse_file_as(path, &ctx, file_type),
        None => config::parse_str(
            spate_engine::DEFAULT_CONFIG,
            "(embedded default config)",
            std::path::Path::new("."),
            &ctx,
        ),
    };
    let root = match parsed {
        Ok(r) => r,
        Err(e) => {
            spate_engine::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = match plan::plan(&root, cli.workers, &hostname) {
        Ok(p) => p,
        Err(e) => {
            spate_engine::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (cli_set_level, cli_set_format) = (cli_level.is_some(), cli.log_format.is_some());
    runtime::apply_log_settings(&plan, cli_set_level, cli_set_format);
    if cli.dry_run {
        print!("{}", plan::describe(&plan));
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    let control = runtime::Control::new();
    if let Err(e) = runtime::install_signals(control.clone()) {
        spate_engine::error!("{e}");
        return ExitCode::FAILURE;
    }
    let workers = plan.workers;
    // SIGHUP / SIGUSR2 / RPC: re-read the same file; the worker count stays.
    let path = cli.config.clone();
    control.set_reloader(Box::new(move |generation| {
        let ctx = config::EvalContext::from_process();
        let root = match &path {
            Some(p) => config::parse_file(p, &ctx),
            None => config::parse_str(
                spate_engine::DEFAULT_CONFIG,
                "(embedded default config)",
                std::path::Path::new("."),
                &ctx,
            ),
        }
        .map_err(|e| e.to_string())?;
        let plan = plan::plan(&root, Some(workers), &ctx.hostname).map_err(|e| e.to_string())?;
        if let Some(w) = plan.system.workers.filter(|w| *w != workers) {
            spate_engine::warn!(
                "<system> workers {w}: the number of workers changes at the next restart; reloading with {workers}"
            );
        }
        runtime::apply_log_settings(&plan, cli_set_level, cli_set_format);
        Ok(plan.with_generation(generation))
    }));
    spate_engine::info!("starting spate {} with {} shard(s)", env!("CARGO_PKG_VERSION"), workers);
    let config_path = cli.config.as_ref().map(|p| p.display().to_string());
    let r = runtime::run_with(Arc::new(plan), control, config_path, |s| {
        for l in &s.listening {
            spate_engine::info!("listening on {} ({})", l.addr, l.what);
        }
        spate_engine::info!("spate is ready");
    });
    match r {
        Ok(()) => {
            spate_engine::info!("spate stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            spate_engine::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
