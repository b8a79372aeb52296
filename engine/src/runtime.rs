//! The shard-per-core runtime: one glommio `LocalExecutor` thread per shard, pinned to
//! one of the CPUs this process may run on (so `taskset` is respected), each building
//! its own router, outputs and listeners from the shared, immutable [`Plan`]. Nothing on
//! the data path is shared between shards.
//!
//! Control reaches shards through one small shared [`Control`] that each shard's
//! control loop polls every [`hub::POLL`]: SIGTERM/SIGINT stop accepting, drain
//! connections, flush memory buffers and exit 0; SIGUSR1 flushes buffers now; SIGHUP
//! and SIGUSR2 reload the configuration (validated first; a valid one is swapped in by
//! every shard, see [`crate::reload`]). The same loop answers metrics requests (its
//! mailbox in the [`Hub`]) and routes spate's own log lines as events.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use crate::metrics::hub::{self, Hub};
use crate::metrics::ShardSnapshot;
use crate::plan::{build_graph, Plan};
use crate::plugin::{Filter, Listening, ShardCtx};

pub use crate::control::{Control, Reloader};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("shard {shard}: cannot start an input: {source}")]
    Input { shard: usize, source: std::io::Error },
    #[error("cannot start shard {shard}: {reason}")]
    Executor { shard: usize, reason: String },
    #[error("signal handling: {0}")]
    Signals(std::io::Error),
    #[error("shard {shard}: {reason}")]
    Build { shard: usize, reason: String },
    #[error("rpc_endpoint {addr}: {source}")]
    Rpc { addr: std::net::SocketAddr, source: std::io::Error },
}

/// Installs the signal thread: SIGTERM/SIGINT shut down, SIGUSR1 flushes, SIGHUP and
/// SIGUSR2 reload the configuration (fluentd: SIGHUP restarts the workers with the new
/// configuration, SIGUSR2 reloads it gracefully; spate does the graceful reload for
/// both).
pub fn install_signals(control: Arc<Control>) -> Result<(), RuntimeError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    crate::sys::ignore_sigxfsz();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGUSR1, SIGHUP, SIGUSR2])
        .map_err(RuntimeError::Signals)?;
    std::thread::Builder::new()
        .name("spate-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                match s {
                    SIGTERM | SIGINT => {
                        crate::info!("received {}, shutting down", if s == SIGTERM { "SIGTERM" } else { "SIGINT" });
                        control.shutdown();
                    }
                    SIGUSR1 => {
                        crate::info!("received SIGUSR1, flushing buffers");
                        control.flush();
                    }
                    SIGHUP | SIGUSR2 => {
                        crate::info!(
                            "received {}, reloading the configuration",
                            if s == SIGHUP { "SIGHUP" } else { "SIGUSR2" }
                        );
                        control.reload();
                    }
                    _ => {}
                }
            }
        })
        .map_err(RuntimeError::Signals)?;
    Ok(())
}

/// Applies a plan's logging settings process-wide: `<system>` `log_level` (unless the
/// command line set one), per-plugin `@log_level`, `<log>` `format` (unless the command
/// line did) and `time_format`, and the repeated-line suppression.
pub fn apply_log_settings(plan: &Plan, cli_level: bool, cli_format: bool) {
    if !cli_level {
        crate::log::set_level(plan.log_level.unwrap_or(crate::log::Level::Info));
    }
    if !cli_format {
        crate::log::set_json(plan.system.log_json.unwrap_or(false));
    }
    crate::log::set_plugin_levels(plan.plugin_log_levels.clone());
    crate::log::set_suppression(plan.system.ignore_repeated_log_interval, plan.system.ignore_same_log_interval);
    crate::log::set_emit_error_interval(plan.system.emit_error_log_interval);
    let tf: Option<crate::log::TimeFormatter> = plan.system.log_time_format.clone().map(|f| {
        Arc::new(move |out: &mut Vec<u8>, sec: i64, nsec: u32| {
            crate::format::strftime(out, &f, sec, nsec, crate::format::Zone::Local)
        }) as crate::log::TimeFormatter
    });
    crate::log::set_time_format(tf);
}

/// What a running engine reports once every shard listens.
#[derive(Debug, Clone)]
pub struct Started {
    /// Bound address of each network input (each address once).
    pub listening: Vec<Listening>,
}

/// Runs the engine until `control` says shut down. `on_start` is called once every
/// shard is listening.
pub fn run(plan: Arc<Plan>, control: Arc<Control>, on_start: impl FnOnce(Started)) -> Result<(), RuntimeError> {
    run_with(plan, control, None, on_start)
}

/// [`run`], naming the configuration file (monitor_agent's `/api/config.json`).
pub fn run_with(
    plan: Arc<Plan>,
    control: Arc<Control>,
    config_path: Option<String>,
    on_start: impl FnOnce(Started),
) -> Result<(), RuntimeError> {
    let cpus = crate::sys::allowed_cpus();
    let workers = plan.workers.max(1);
    let (hub, mailboxes) = Hub::new(workers, config_path);
    let (tx, rx) = mpsc::channel::<Result<(usize, Vec<Listening>), RuntimeError>>();
    let mut handles = Vec::new();
    for (shard, mailbox) in mailboxes.into_iter().enumerate() {
        let plan = plan.clone();
        let control = control.clone();
        let hub = hub.clone();
        let tx = tx.clone();
        let cpu = cpus[shard % cpus.len()];
        // Pin only when every shard gets its own CPU; otherwise let the kernel balance.
        let placement = if workers <= cpus.len() { Placement::Fixed(cpu) } else { Placement::Unbound };
        let h = LocalExecutorBuilder::new(placement)
            .name(&format!("spate-shard-{shard}"))
            // glommio's default io_memory (10 MiB) is resident per executor; we do no
            // DMA file I/O through it, so keep it small (idle RSS target: 4 MB).
            .io_memory(128 << 10)
            .spawn(move || async move { shard_main(shard, plan, control, tx, mailbox, hub).await })
            .map_err(|e| RuntimeError::Executor { shard, reason: e.to_string() })?;
        handles.push(h);
    }
    drop(tx);
    let mut listening: Vec<Listening> = Vec::new();
    let mut failed = None;
    for _ in 0..workers {
        match rx.recv() {
            Ok(Ok((_, addrs))) => {
                for a in addrs {
                    if !listening.iter().any(|l| l.addr == a.addr && l.what == a.what) {
                        listening.push(a);
                    }
                }
            }
            Ok(Err(e)) => {
                failed = Some(e);
                control.shutdown();
                break;
            }
            Err(_) => break,
        }
    }
    if failed.is_none() {
        on_start(Started { listening });
        // Start-up code (config parsing, TLS set-up, plugin building) is not run again:
        // let its pages go from the resident set (idle RSS goal: 4 MB).
        let n = crate::sys::release_startup_pages();
        crate::debug!("advised {} KiB of file-backed pages out of the resident set after start-up", n >> 10);
        // Shards go on setting up for a moment after they report ready (first flush
        // timers, connections of outputs): once more when that is over.
        let _ = std::thread::Builder::new().name("spate-trim".into()).stack_size(64 << 10).spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(3));
            crate::sys::release_startup_pages();
        });
    }
    for h in handles {
        let _ = h.join();
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

type Ready = mpsc::Sender<Result<(usize, Vec<Listening>), RuntimeError>>;

async fn shard_main(
    shard: usize,
    plan: Arc<Plan>,
    control: Arc<Control>,
    ready: Ready,
    mailbox: mpsc::Receiver<hub::Request>,
    hub: Arc<Hub>,
) {
    let ctx = ShardCtx::with_hub(shard, plan.workers, &plan.hostname, Some(hub));
    let graph = match build_graph(&plan, &ctx, None) {
        Ok(g) => g,
        Err(e) => {
            let _ = ready.send(Err(RuntimeError::Build { shard, reason: e.to_string() }));
            return;
        }
    };
    for o in &graph.outputs() {
        o.clone().start();
    }
    for f in &graph.filters {
        // Through the slot: a filter's timers emit into the routes of the current
        // configuration, also after a reload.
        f.filter.clone().start(graph.slot.clone());
    }
    let mut addrs = Vec::new();
    for s in &graph.sources {
        match s.input.clone().start(s.first) {
            Ok(l) => addrs.extend(l),
            Err(source) => {
                let _ = ready.send(Err(RuntimeError::Input { shard, source }));
                return;
            }
        }
    }
    let logs = crate::logevents::LogEvents::install();
    let drain = glommio::spawn_local(logs.clone().run(graph.slot.clone(), shard == 0)).detach();
    if shard == 0 {
        let t = crate::logevents::targets(&graph.router);
        if matches!(&t, Some((0, _))) {
            crate::warn!("define <match fluent.**> to capture fluentd logs in top level is deprecated. Use <label @FLUENT_LOG> instead");
        }
        crate::log::set_events(t.is_some());
    }
    let current = Rc::new(RefCell::new(plan.clone()));
    let rpc = match (shard, plan.system.rpc_endpoint) {
        (0, Some(addr)) => match crate::rpc::start(addr, control.clone(), current.clone()) {
            Ok(s) => Some(s),
            Err(source) => {
                let _ = ready.send(Err(RuntimeError::Rpc { addr, source }));
                return;
            }
        },
        _ => None,
    };
    let _ = ready.send(Ok((shard, addrs)));

    let shards = plan.workers.max(1);
    let mut gen = crate::reload::Generation { plan, graph };
    let mut retiring = Vec::new();
    let mut seen_flush = control.flush_gen();
    while !control.is_shutdown() {
        glommio::timer::sleep(hub::POLL).await;
        let g = control.flush_gen();
        if g != seen_flush {
            seen_flush = g;
            for o in &gen.graph.outputs() {
                o.flush_now();
            }
        }
        if control.generation() > gen.plan.generation() {
            if let Some(p) = control.pending_plan().filter(|p| p.generation() > gen.plan.generation()) {
                if p.system.rpc_endpoint != gen.plan.system.rpc_endpoint && shard == 0 {
                    crate::warn!("rpc_endpoint changed: it takes effect after a restart");
                }
                for l in crate::reload::apply(shard, shards, &control, &mut gen, &mut retiring, p).await {
                    crate::info!("listening on {} ({})", l.addr, l.what);
                }
                *current.borrow_mut() = gen.plan.clone();
                if shard == 0 {
                    crate::log::set_events(crate::logevents::targets(&gen.graph.router).is_some());
                }
            }
        }
        while let Ok(req) = mailbox.try_recv() {
            let hub::Request::Snapshot(reply) = req;
            let mut shard_values = gen.graph.ctx.syncer.samples();
            shard_values.extend(logs.samples());
            let _ = reply.send(ShardSnapshot {
                shard,
                catalog: gen.plan.catalog.clone(),
                plugins: gen.graph.snapshot(),
                shard_values,
            });
        }
    }
    if !gen.plan.system.log_event_verbose {
        crate::log::set_events(false);
        // Lines logged before this point (the SIGTERM line...) are routed now, while
        // every output still accepts them; after it there are none to route.
        drain.cancel();
        logs.route_queued(&gen.graph.slot, shard == 0).await;
    }
    if let Some(s) = &rpc {
        s.stop();
    }
    for s in &gen.graph.sources {
        s.input.stop(Duration::from_secs(1)).await;
    }
    // Filters that hold events (concat) emit them before the outputs flush.
    for f in &gen.graph.filters {
        f.filter.shutdown(&*gen.graph.slot);
    }
    let outputs = gen.graph.outputs();
    if control.draining() {
        for o in &outputs {
            crate::output::buffered::drain_on_shutdown(&**o);
        }
    }
    let deadline = Instant::now() + gen.plan.shutdown_timeout;
    for o in outputs.iter().chain(retiring.iter()) {
        o.shutdown(deadline).await;
    }
    drain.cancel();
    crate::input::net::release_unused();
}
