//! The shard-per-core runtime: one glommio `LocalExecutor` thread per shard, pinned to
//! one of the CPUs this process may run on (so `taskset` is respected), each building
//! its own router, outputs and listeners from the shared, immutable [`Plan`]. Nothing on
//! the data path is shared between shards.
//!
//! Control (signals) reaches shards through one small shared [`Control`] that each
//! shard polls every 50 ms: SIGTERM/SIGINT stop accepting, drain connections, flush
//! memory buffers and exit 0; SIGUSR1 flushes buffers now.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use crate::plan::{build_shard, Plan};

/// Process-wide control flags, set by the signal thread (or by tests).
#[derive(Debug, Default)]
pub struct Control {
    shutdown: AtomicBool,
    flush_gen: AtomicU64,
}

impl Control {
    pub fn new() -> Arc<Self> {
        Arc::new(Control::default())
    }
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
    pub fn flush(&self) {
        self.flush_gen.fetch_add(1, Ordering::SeqCst);
    }
    fn flush_gen(&self) -> u64 {
        self.flush_gen.load(Ordering::SeqCst)
    }
}

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
}

/// Installs the signal thread: SIGTERM/SIGINT shut down, SIGUSR1 flushes, SIGHUP is
/// logged (reload is not supported yet).
pub fn install_signals(control: Arc<Control>) -> Result<(), RuntimeError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    crate::sys::ignore_sigxfsz();
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGUSR1, SIGHUP]).map_err(RuntimeError::Signals)?;
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
                    SIGHUP => crate::warn!("received SIGHUP: configuration reload is not supported yet; restart spate to apply a new config"),
                    _ => {}
                }
            }
        })
        .map_err(RuntimeError::Signals)?;
    Ok(())
}

/// What a running engine reports once every shard listens.
#[derive(Debug, Clone)]
pub struct Started {
    /// Bound address of each network input (from shard 0's view).
    pub listening: Vec<crate::plugin::Listening>,
}

/// Runs the engine until `control` says shut down. `on_start` is called once every
/// shard is listening.
pub fn run(plan: Arc<Plan>, control: Arc<Control>, on_start: impl FnOnce(Started)) -> Result<(), RuntimeError> {
    let cpus = crate::sys::allowed_cpus();
    let workers = plan.workers.max(1);
    let (tx, rx) = mpsc::channel::<Result<(usize, Vec<crate::plugin::Listening>), RuntimeError>>();
    let mut handles = Vec::new();
    for shard in 0..workers {
        let plan = plan.clone();
        let control = control.clone();
        let tx = tx.clone();
        let cpu = cpus[shard % cpus.len()];
        // Pin only when every shard gets its own CPU; otherwise let the kernel balance.
        let placement = if workers <= cpus.len() { Placement::Fixed(cpu) } else { Placement::Unbound };
        let h = LocalExecutorBuilder::new(placement)
            .name(&format!("spate-shard-{shard}"))
            // glommio's default io_memory (10 MiB) is resident per executor; we do no
            // DMA file I/O through it, so keep it small (idle RSS target: 4 MB).
            .io_memory(128 << 10)
            .spawn(move || async move { shard_main(shard, plan, control, tx).await })
            .map_err(|e| RuntimeError::Executor { shard, reason: e.to_string() })?;
        handles.push(h);
    }
    drop(tx);
    let mut listening = Vec::new();
    let mut failed = None;
    for _ in 0..workers {
        match rx.recv() {
            Ok(Ok((shard, addrs))) => {
                if shard == 0 {
                    listening = addrs;
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
    }
    for h in handles {
        let _ = h.join();
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

type Ready = mpsc::Sender<Result<(usize, Vec<crate::plugin::Listening>), RuntimeError>>;

async fn shard_main(shard: usize, plan: Arc<Plan>, control: Arc<Control>, ready: Ready) {
    let graph = match build_shard(&plan, shard) {
        Ok(g) => g,
        Err(e) => {
            let _ = ready.send(Err(RuntimeError::Build { shard, reason: e.to_string() }));
            return;
        }
    };
    let outputs = graph.outputs();
    for o in &outputs {
        o.clone().start();
    }
    for f in &graph.filters {
        f.clone().start(graph.router.clone());
    }
    let mut addrs = Vec::new();
    for input in &graph.inputs {
        match input.clone().start(shard == 0) {
            Ok(l) => addrs.extend(l),
            Err(source) => {
                let _ = ready.send(Err(RuntimeError::Input { shard, source }));
                return;
            }
        }
    }
    let _ = ready.send(Ok((shard, addrs)));
    let mut seen_flush = control.flush_gen();
    while !control.is_shutdown() {
        glommio::timer::sleep(Duration::from_millis(50)).await;
        let g = control.flush_gen();
        if g != seen_flush {
            seen_flush = g;
            for o in &outputs {
                o.flush_now();
            }
        }
    }
    for input in &graph.inputs {
        input.stop(Duration::from_secs(1)).await;
    }
    // Filters that hold events (concat) emit them before the outputs flush.
    for f in &graph.filters {
        f.shutdown(&*graph.router);
    }
    let deadline = Instant::now() + plan.shutdown_timeout;
    for o in &outputs {
        o.shutdown(deadline).await;
    }
}
