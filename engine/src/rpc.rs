//! `<system> rpc_endpoint`: fluentd's RPC HTTP API on shard 0, with fluentd's paths and
//! replies (`{"ok":true}`): `/api/processes.interruptWorkers` and
//! `/api/processes.killWorkers` (shut down), `/api/processes.flushBuffersAndKillWorkers`
//! (flush every buffer, then shut down), `/api/plugins.flushBuffers` (SIGUSR1),
//! `/api/config.reload` and `/api/config.gracefulReload` (reload; spate always reloads
//! gracefully), `/api/processes.zeroDowntimeRestart` (spate: a graceful reload, which
//! keeps every listener), `/api/config.dump` (logs the configuration) and, with
//! `enable_get_dump`, `/api/config.getDump` (`{"conf": ..., "ok": true}`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use crate::control::Control;
use crate::input::httpd::{Handler, Request, Response, Server};
use crate::plan::Plan;

const OK: &str = r#"{"ok":true}"#;

/// Starts the RPC server; `current` is shard 0's running configuration.
pub fn start(addr: SocketAddr, control: Arc<Control>, current: Rc<RefCell<Arc<Plan>>>) -> std::io::Result<Server> {
    let l = crate::input::net::listen(addr, None)?;
    crate::debug!("listening RPC http server on http://{}/", l.local_addr());
    let h: Handler = Rc::new(move |req: Request| {
        let control = control.clone();
        let current = current.clone();
        Box::pin(async move { handle(req, control, current).await })
    });
    Ok(Server::start(l, "rpc".into(), h))
}

async fn handle(req: Request, control: Arc<Control>, current: Rc<RefCell<Arc<Plan>>>) -> Response {
    crate::debug!("fluentd RPC got {} request", req.path);
    match req.path.as_str() {
        "/api/processes.interruptWorkers" | "/api/processes.killWorkers" => {
            control.shutdown();
            Response::json(200, OK)
        }
        "/api/processes.flushBuffersAndKillWorkers" => {
            control.flush_and_shutdown();
            Response::json(200, OK)
        }
        "/api/plugins.flushBuffers" => {
            crate::info!("force flushing buffered events");
            control.flush();
            Response::json(200, OK)
        }
        "/api/config.reload" | "/api/config.gracefulReload" | "/api/processes.zeroDowntimeRestart" => {
            // Parsing and planning read files: off the shard.
            let c = control.clone();
            glommio::executor().spawn_blocking(move || c.reload()).await;
            Response::json(200, OK)
        }
        "/api/config.dump" => {
            crate::info!("dump in-memory config\n{}", current.borrow().config_text);
            Response::json(200, OK)
        }
        "/api/config.getDump" if current.borrow().system.enable_get_dump => {
            crate::info!("get dump in-memory config via HTTP");
            let body = serde_json::json!({ "conf": current.borrow().config_text, "ok": true });
            Response::json(200, body.to_string())
        }
        _ => Response::json(404, r#"{"message":"Not found","ok":false}"#),
    }
}
