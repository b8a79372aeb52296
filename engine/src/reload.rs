//! One shard's side of a configuration reload. The new configuration was validated
//! before it got here (an invalid one never leaves the reloader). The shard builds the
//! new generation next to the running one (unchanged inputs, filters and outputs are
//! the running instances; a change to the `<label>` table changes them all, since they
//! hold label positions; a buffered output with the same `@id` or file-buffer path
//! takes over the previous one's buffer), then commits in one step without yielding:
//! the router slot points at the new routes, new outputs start, replaced outputs that
//! handed their buffer over retire (finishing the chunk they are writing) and the
//! others shut down in the background (a memory buffer flushes what it holds, a file
//! buffer keeps it on disk). Removed or changed inputs stop (their connections finish
//! what they read, ack it and close), new ones start on the same pooled listening
//! sockets, so a listener whose address stays is never closed. If building fails (a
//! file buffer's directory cannot be opened...), the running generation stays.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::output::buffered::shares_buffer;
use crate::plan::{build_graph, Plan, ShardGraph};
use crate::plugin::{Filter, Listening, Output};

/// How long a stopped input's connections may finish what they are reading.
const INPUT_GRACE: Duration = Duration::from_secs(5);

/// A shard's running configuration.
pub struct Generation {
    pub plan: Arc<Plan>,
    pub graph: ShardGraph,
}

/// Swaps `plan` in on this shard (one of `shards`). Outputs that keep flushing in the
/// background are added to `retiring` (the shard waits for them at exit). Returns the
/// addresses new inputs listen on. The last shard to swap it in logs that the
/// generation is running.
pub async fn apply(
    shard: usize,
    shards: usize,
    control: &crate::control::Control,
    cur: &mut Generation,
    retiring: &mut Vec<Rc<dyn Output>>,
    plan: Arc<Plan>,
) -> Vec<Listening> {
    let ctx = cur.graph.ctx.clone();
    let old_outputs = cur.graph.outputs();
    let graph = match build_graph(&plan, &ctx, Some(&cur.graph)) {
        Ok(g) => g,
        Err(e) => {
            ctx.abort_generation();
            crate::error!("shard {shard}: reload failed, the running configuration stays: {e}");
            return Vec::new();
        }
    };
    let gone = ctx.end_generation();
    // Commit: from here every batch takes the new routes.
    graph.slot.set(graph.router.clone());
    for f in &graph.filters {
        if !cur.graph.filters.iter().any(|o| Rc::ptr_eq(&o.filter, &f.filter)) {
            f.filter.clone().start(graph.slot.clone());
        }
    }
    // A removed filter that holds events (concat) hands them to the new routes.
    for f in &cur.graph.filters {
        if !graph.filters.iter().any(|n| Rc::ptr_eq(&n.filter, &f.filter)) {
            f.filter.shutdown(&*graph.slot);
        }
    }
    let new_outputs = ctx.outputs();
    for o in &new_outputs {
        if !old_outputs.iter().any(|x| Rc::ptr_eq(x, o)) {
            o.clone().start();
        }
    }
    let deadline = Instant::now() + plan.shutdown_timeout;
    for o in gone {
        if new_outputs.iter().any(|n| shares_buffer(&**n, &*o)) {
            o.retire();
        } else {
            let o2 = o.clone();
            glommio::spawn_local(async move { o2.shutdown(deadline).await }).detach();
            retiring.push(o);
        }
    }
    for s in &cur.graph.sources {
        if !graph.sources.iter().any(|n| Rc::ptr_eq(&n.input, &s.input)) {
            let i = s.input.clone();
            glommio::spawn_local(async move { i.stop(INPUT_GRACE).await }).detach();
        }
    }
    // Let the stopped inputs release their sockets before the new ones start.
    futures_lite::future::yield_now().await;
    let mut addrs = Vec::new();
    for s in &graph.sources {
        if !cur.graph.sources.iter().any(|o| Rc::ptr_eq(&o.input, &s.input)) {
            match s.input.clone().start(s.first) {
                Ok(l) => addrs.extend(l),
                Err(e) => crate::error!("shard {shard}: reload: {} could not start: {e}", s.id),
            }
        }
    }
    crate::input::net::release_unused();
    cur.graph = graph;
    cur.plan = plan;
    if control.applied(cur.plan.generation(), shards) {
        crate::info!("configuration generation {} is running", cur.plan.generation());
    }
    addrs
}
