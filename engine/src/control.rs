//! The process-wide control flags every shard polls: shutdown, flush, flush-then-exit,
//! and the newest valid configuration handed over by a reload (SIGHUP, SIGUSR2, RPC).
//! Set by the signal thread, the RPC endpoint or tests; read by each shard's control
//! loop in `runtime`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::plan::Plan;

/// Builds the new configuration for a reload (generation `g`), or says why not.
pub type Reloader = Box<dyn Fn(u64) -> Result<Plan, String> + Send>;

/// Process-wide control flags, set by the signal thread, the RPC endpoint or tests.
#[derive(Default)]
pub struct Control {
    shutdown: AtomicBool,
    flush_gen: AtomicU64,
    /// Flush every buffer before exiting (RPC flushBuffersAndKillWorkers).
    drain: AtomicBool,
    /// The newest valid configuration and its generation.
    pending: Mutex<Option<Arc<Plan>>>,
    reload_gen: AtomicU64,
    reloader: Mutex<Option<Reloader>>,
    /// The generation shards last reported running, and how many of them did.
    applied: Mutex<(u64, usize)>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("shutdown", &self.is_shutdown()).finish_non_exhaustive()
    }
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
    pub fn flush_gen(&self) -> u64 {
        self.flush_gen.load(Ordering::SeqCst)
    }
    /// Flushes every buffer (file buffers too), then shuts down.
    pub fn flush_and_shutdown(&self) {
        self.drain.store(true, Ordering::SeqCst);
        self.shutdown();
    }
    /// Whether shutting down must flush every buffer first.
    pub fn draining(&self) -> bool {
        self.drain.load(Ordering::SeqCst)
    }

    /// How a reload builds the new configuration (the binary re-reads its file).
    pub fn set_reloader(&self, f: Reloader) {
        if let Ok(mut r) = self.reloader.lock() {
            *r = Some(f);
        }
    }

    /// Reloads the configuration: builds and validates the new one; if it is invalid
    /// the running one stays and the error is logged (with file:line); if it is valid
    /// every shard swaps it in. Returns whether a new configuration was handed over.
    pub fn reload(&self) -> bool {
        let Ok(r) = self.reloader.lock() else { return false };
        let Some(f) = r.as_ref() else {
            crate::warn!("configuration reload requested, but this engine has no configuration file to reload");
            return false;
        };
        let g = self.reload_gen.load(Ordering::SeqCst) + 1;
        match f(g) {
            Ok(plan) => {
                if let Ok(mut p) = self.pending.lock() {
                    *p = Some(Arc::new(plan));
                }
                self.reload_gen.store(g, Ordering::SeqCst);
                crate::info!("reloading the configuration (generation {g})");
                true
            }
            Err(e) => {
                crate::error!("configuration reload failed; the running configuration stays: {e}");
                false
            }
        }
    }

    /// Hands a new configuration to the shards directly (tests, embedding).
    pub fn reload_with(&self, plan: Plan) {
        let g = self.reload_gen.load(Ordering::SeqCst) + 1;
        if let Ok(mut p) = self.pending.lock() {
            *p = Some(Arc::new(plan.with_generation(g)));
        }
        self.reload_gen.store(g, Ordering::SeqCst);
    }

    pub fn pending_plan(&self) -> Option<Arc<Plan>> {
        self.pending.lock().ok().and_then(|p| p.clone())
    }

    /// One shard runs generation `g` now. True for the last of the `shards` shards to
    /// say so: a reload is running only once every shard has swapped it in (each shard
    /// applies it on its own, at its next control poll).
    pub fn applied(&self, g: u64, shards: usize) -> bool {
        let Ok(mut a) = self.applied.lock() else { return false };
        if a.0 != g {
            *a = (g, 0);
        }
        a.1 += 1;
        a.1 == shards
    }

    /// Generation of the newest configuration handed over (0: the first one).
    pub fn generation(&self) -> u64 {
        self.reload_gen.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_is_running_once_every_shard_applied_it() {
        let c = Control::new();
        assert!(!c.applied(1, 2));
        assert!(c.applied(1, 2), "the second of two shards");
        // A shard that skips a generation (two reloads between its polls): the newer
        // one counts from zero, the older one is never reported.
        assert!(!c.applied(2, 2));
        assert!(!c.applied(3, 2));
        assert!(c.applied(3, 2));
        assert!(c.applied(4, 1), "one shard");
    }
}
