//! `out_irc` (fluent-plugin-irc): each event becomes one IRC message, `message`
//! (Ruby `%s` specifiers) filled with the record's `out_keys`, sent as PRIVMSG or
//! NOTICE to `#channel` (or to channels / commands formatted from the record with
//! `channel_keys` / `command_keys`). One connection per shard, registered with
//! PASS/NICK/USER; the plugin's pacing is kept: one message every `send_interval`
//! (IRC servers kick clients that flood), from a queue of `send_queue_limit`.
//!
//! As in the plugin: the channel is joined before its first message (and again until
//! the server confirmed the JOIN), PING is answered, a nickname in use gets a `_`
//! appended, and time and tag are in the record only when v0.12's inject parameters
//! (`time_key`, `time_format`, `tag_key`, `include_*`...) or an `<inject>` ask for them
//! (fluentd's compat layer; the time as a string, `%Y/%m/%d %H:%M:%S` unless
//! `time_format`).
//!
//! Where spate differs (README): a full queue refuses the batch (the input does not
//! ack it, the sender retries) instead of discarding the events; a batch is taken
//! whole when the queue is not full. Lost connections are retried (1 s doubling to
//! 60 s) with the queue kept. At shutdown the queued messages are sent at once (then
//! QUIT) while the shutdown deadline allows. CR, LF and NUL in a message become spaces
//! (they would end the IRC line and start another command). Only `%s` and `%%` are
//! accepted in the formats.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::io::ErrorKind;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use spate_protocol::{EventBatch, RecordRef};

use crate::config::{ConfigError, Element};
use crate::format::inject::{Inject, View};
use crate::format::time::{zone_of, TimeFormat, TimeType};
use crate::plugin::{
    Build, BuildError, EmitError, Emitter, Kind, Output, OutputMetrics, OutputPlan, PlanCtx, Registration, ShardCtx,
};

/// The registry row.
pub const PLUGIN: Registration = Registration {
    name: "irc",
    aliases: &[],
    kind: Kind::Output,
    build: Build::Output(plan),
    params: "fluent-plugin-irc: `host` (localhost), `port` (6667), `channel` (required, without `#`), `channel_keys`, `nick`/`user`/`real` (fluentd), `password`, `message` (required; `%s` filled with `out_keys`), `out_keys` (required), `command` (`privmsg`/`priv_msg`/`notice`, or a format with `command_keys`), `send_interval` (2s: one message per interval), `send_queue_limit` (100; a full queue refuses the batch), `time_key`/`time_format`/`tag_key` and `<inject>` as fluentd's compat layer; `blocking_timeout` has no effect",
};

/// A Ruby `format` string with only `%s` (filled in order) and `%%`.
#[derive(Debug, Clone)]
struct Template {
    pieces: Vec<Piece>,
    keys: Vec<String>,
}

#[derive(Debug, Clone)]
enum Piece {
    Lit(String),
    Arg,
}

impl Template {
    /// `fmt` with `keys`; `what` names the parameters for errors. Like the plugin's
    /// check (`fmt % (['1'] * keys.length)`), more `%s` than keys is an error.
    fn parse(
        e: &Element,
        param: &str,
        fmt: &str,
        keys: Vec<String>,
        keys_param: &str,
    ) -> Result<Template, ConfigError> {
        let pos = e.get(param).map_or(&e.pos, |a| &a.pos);
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut it = fmt.chars();
        while let Some(c) = it.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            match it.next() {
                Some('%') => lit.push('%'),
                Some('s') => {
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Arg);
                }
                other => {
                    let got = other.map_or("a lone %".to_string(), |c| format!("%{c}"));
                    return Err(ConfigError::at(
                        pos,
                        format!("{param} {fmt:?}: {got}: spate supports %s (a key's value) and %% in {param}"),
                    ));
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        let args = pieces.iter().filter(|p| matches!(p, Piece::Arg)).count();
        if args > keys.len() {
            return Err(ConfigError::at(pos, format!("string specifier '%s' and {keys_param} specification mismatch")));
        }
        Ok(Template { pieces, keys })
    }

    /// The text for one record; a key the record does not have is `''` and named in
    /// `missing`, as the plugin's `fetch_keys` (which warns).
    fn render(&self, view: &View<'_>, out: &mut Vec<u8>, missing: &mut Option<String>) {
        let mut keys = self.keys.iter();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Piece::Arg => {
                    let Some(k) = keys.next() else { continue };
                    match view.get(k.as_bytes()) {
                        Some(v) => v.write_to_s(out),
                        None => {
                            missing.get_or_insert_with(|| k.clone());
                        }
                    }
                }
            }
        }
        // The plugin fetches every key, also those no %s uses.
        for k in keys {
            if view.get(k.as_bytes()).is_none() {
                missing.get_or_insert_with(|| k.clone());
            }
        }
    }
}

/// PRIVMSG or NOTICE (`command`).
fn command_of(name: &str) -> Option<&'static str> {
    match name {
        "privmsg" | "priv_msg" => Some("PRIVMSG"),
        "notice" => Some("NOTICE"),
        _ => None,
    }
}

#[derive(Debug, Clone)]
enum Command {
    Fixed(&'static str),
    Formatted(Template),
}

#[derive(Debug, Clone)]
enum Channel {
    Fixed(String),
    Formatted(Template),
}

#[derive(Debug, Clone)]
struct IrcConf {
    host: String,
    port: u16,
    channel: Channel,
    command: Command,
    message: Template,
    nick: String,
    user: String,
    real: String,
    password: Option<String>,
    inject: Inject,
    queue_limit: usize,
    interval: Duration,
}

/// fluentd's compat_parameters_inject for this plugin: an `<inject>` (time as a string
/// by default), else one made of the flat parameters when any is given.
fn inject(e: &Element, hostname: &str) -> Result<Inject, ConfigError> {
    if e.single("inject")?.is_some() {
        let mut c = crate::format::inject::inject_conf(e, hostname)?;
        c.time_type.get_or_insert(TimeType::String);
        return Ok(c);
    }
    let flat =
        ["include_time_key", "include_tag_key", "time_key", "time_format", "timezone", "tag_key", "localtime", "utc"];
    let mut c = Inject { hostname: hostname.to_string(), ..Default::default() };
    if !flat.iter().any(|k| e.get(k).is_some()) {
        return Ok(c);
    }
    c.time_key = e.str("time_key").map(str::to_string);
    c.tag_key = e.str("tag_key").map(str::to_string);
    if e.bool("include_time_key")?.unwrap_or(false) {
        c.time_key.get_or_insert_with(|| "time".into());
    }
    if e.bool("include_tag_key")?.unwrap_or(false) {
        c.tag_key.get_or_insert_with(|| "tag".into());
    }
    c.time_type = Some(TimeType::String);
    c.time = Some(TimeFormat { format: e.str("time_format").map(str::to_string), zone: zone_of(e)? });
    Ok(c)
}

fn plan(e: &Element, ctx: &mut PlanCtx<'_>) -> Result<Box<dyn OutputPlan>, ConfigError> {
    let id = ctx.id(e, "irc");
    let host = e.string_or("host", "localhost");
    let port = match e.int("port")?.unwrap_or(6667) {
        p @ 1..=65535 => p as u16,
        p => return Err(e.error(format!("port {p}: expected 1 to 65535"))),
    };
    let keys = |k: &str| -> Result<Vec<String>, ConfigError> { Ok(e.array(k)?.unwrap_or_default()) };
    let channel = e.str("channel").ok_or_else(|| e.error("'channel' parameter is required"))?;
    let channel_keys = keys("channel_keys")?;
    let channel = match channel_keys.is_empty() {
        true => Channel::Fixed(format!("#{channel}")),
        false => {
            Channel::Formatted(Template::parse(e, "channel", &format!("#{channel}"), channel_keys, "channel_keys")?)
        }
    };
    let command_name = e.string_or("command", "privmsg");
    let command_keys = keys("command_keys")?;
    let command = match command_keys.is_empty() {
        true => Command::Fixed(command_of(&command_name).ok_or_else(|| {
            ConfigError::at(
                e.get("command").map_or(&e.pos, |a| &a.pos),
                "command must be one of priv_msg, privmsg, notice",
            )
        })?),
        false => Command::Formatted(Template::parse(e, "command", &command_name, command_keys, "command_keys")?),
    };
    let message = e.str("message").ok_or_else(|| e.error("'message' parameter is required"))?;
    let out_keys = e.array("out_keys")?.ok_or_else(|| e.error("'out_keys' parameter is required"))?;
    let message = Template::parse(e, "message", message, out_keys, "out_keys")?;
    let queue_limit = match e.int("send_queue_limit")?.unwrap_or(100) {
        n if n >= 1 => n as usize,
        n => return Err(e.error(format!("send_queue_limit {n}: expected at least 1"))),
    };
    let interval = e.time("send_interval")?.unwrap_or(Duration::from_secs(2));
    if interval.is_zero() {
        return Err(e.error("send_interval must be greater than 0"));
    }
    if let Some(a) = e.get("blocking_timeout") {
        crate::warn!(
            "{}: blocking_timeout {} has no effect: it times cool.io's event loop in fluentd; spate's connection task waits on the socket",
            a.pos,
            a.value
        );
    }
    let conf = IrcConf {
        host,
        port,
        channel,
        command,
        message,
        nick: e.string_or("nick", "fluentd"),
        user: e.string_or("user", "fluentd"),
        real: e.string_or("real", "fluentd"),
        password: e.str("password").map(str::to_string),
        inject: inject(e, &ctx.hostname)?,
        queue_limit,
        interval,
    };
    for (k, v) in [("nick", &conf.nick), ("user", &conf.user)] {
        if v.is_empty() || v.contains([' ', '\r', '\n', '\0']) {
            return Err(e.error(format!("{k} {v:?}: expected one word")));
        }
    }
    Ok(Box::new(IrcPlan { id, conf }))
}

#[derive(Debug)]
struct IrcPlan {
    id: String,
    conf: IrcConf,
}

impl OutputPlan for IrcPlan {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "irc"
    }
    fn describe(&self, _labels: &[String]) -> String {
        let channel = match &self.conf.channel {
            Channel::Fixed(c) => c.clone(),
            Channel::Formatted(_) => "(channel_keys)".into(),
        };
        format!(
            "irc {} -> {}:{} {channel}, one message every {:?}",
            self.id, self.conf.host, self.conf.port, self.conf.interval
        )
    }
    fn build(&self, _ctx: &Rc<ShardCtx>) -> Result<Rc<dyn Output>, BuildError> {
        Ok(Rc::new(IrcOutput {
            id: self.id.clone(),
            metrics: OutputMetrics::default(),
            conf: self.conf.clone(),
            queue: RefCell::new(VecDeque::new()),
            task: RefCell::new(None),
            stopping: Cell::new(false),
            done: Cell::new(false),
            scratch: RefCell::new(Vec::new()),
            warned: Cell::new(None),
        }))
    }
}

/// One message to send.
#[derive(Debug)]
struct Msg {
    command: &'static str,
    channel: String,
    text: String,
}

pub struct IrcOutput {
    id: String,
    metrics: OutputMetrics,
    conf: IrcConf,
    queue: RefCell<VecDeque<Msg>>,
    task: RefCell<Option<glommio::task::JoinHandle<()>>>,
    stopping: Cell<bool>,
    /// The connection task has ended (shutdown).
    done: Cell<bool>,
    scratch: RefCell<Vec<u8>>,
    /// When a missing key was last warned about (at most one line a minute).
    warned: Cell<Option<Instant>>,
}

/// The text of an IRC line's parameter: CR, LF and NUL would end the line (and let a
/// record's text send commands of its own), so they become spaces.
fn line_safe(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace(['\r', '\n', '\0'], " ")
}

/// At most this long a line from the server (IRC's limit is 512 bytes; a server that
/// sends more without a newline is not one).
const MAX_LINE: usize = 64 << 10;

impl IrcOutput {
    fn message_for(
        &self,
        tag: &[u8],
        t: spate_protocol::EventTime,
        rec: RecordRef<'_>,
        missing: &mut Option<String>,
    ) -> Msg {
        let mut tscratch = Vec::new();
        let view = View { rec, extra: self.conf.inject.fields(tag, t, &mut tscratch) };
        let mut s = self.scratch.borrow_mut();
        s.clear();
        self.conf.message.render(&view, &mut s, missing);
        let text = line_safe(&s);
        let channel = match &self.conf.channel {
            Channel::Fixed(c) => c.clone(),
            Channel::Formatted(tpl) => {
                s.clear();
                tpl.render(&view, &mut s, missing);
                line_safe(&s).replace([' ', ','], "_")
            }
        };
        let command = match &self.conf.command {
            Command::Fixed(c) => c,
            Command::Formatted(tpl) => {
                s.clear();
                tpl.render(&view, &mut s, missing);
                let name = String::from_utf8_lossy(&s).into_owned();
                command_of(&name).unwrap_or_else(|| {
                    crate::warn!("{}: command {name:?} is not one of priv_msg, privmsg, notice, use privmsg", self.id);
                    "PRIVMSG"
                })
            }
        };
        Msg { command, channel, text }
    }

    /// Runs connections until shutdown, reconnecting with a backoff.
    async fn run(self: Rc<Self>) {
        let (host, port) = (self.conf.host.clone(), self.conf.port);
        let mut nick = self.conf.nick.clone();
        let mut backoff = Duration::from_secs(1);
        while !self.stopping.get() {
            let resolved = match crate::http::resolve(&host, port).await {
                Ok(a) => a.into_iter().next().ok_or_else(|| "no address".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let addr = match resolved {
                Ok(a) => a,
                Err(e) => {
                    crate::warn!("{}: cannot resolve IRC server {host}: {e}; retrying in {backoff:?}", self.id);
                    self.pause(&mut backoff).await;
                    continue;
                }
            };
            let stream = match TcpStream::connect_timeout(addr, Duration::from_secs(10)).await {
                Ok(s) => s,
                Err(e) => {
                    crate::warn!(
                        "{}: cannot connect to IRC server {host}:{port}: {e}; retrying in {backoff:?}",
                        self.id
                    );
                    self.pause(&mut backoff).await;
                    continue;
                }
            };
            backoff = Duration::from_secs(1);
            match self.session(stream, &mut nick).await {
                Ok(()) => break,
                Err(e) => {
                    if self.stopping.get() {
                        break;
                    }
                    crate::warn!("{}: connection to IRC server {host}:{port} lost: {e}; reconnecting", self.id);
                    self.pause(&mut backoff).await;
                }
            }
        }
        let left = self.queue.borrow().len();
        if left > 0 {
            crate::warn!("{}: {left} queued IRC messages were not sent (no connection at shutdown)", self.id);
        }
        self.done.set(true);
    }

    /// Sleeps `backoff` (in steps, to notice shutdown) and doubles it up to 60 s.
    async fn pause(&self, backoff: &mut Duration) {
        let until = Instant::now() + *backoff;
        while !self.stopping.get() && Instant::now() < until {
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        *backoff = (*backoff * 2).min(Duration::from_secs(60));
    }

    /// One connection: registers, then sends a queued message every `send_interval`
    /// and answers the server, until the connection fails (Err) or shutdown (Ok).
    async fn session(&self, mut s: TcpStream, nick: &mut String) -> std::io::Result<()> {
        let c = &self.conf;
        let mut hello = String::new();
        if let Some(p) = &c.password {
            hello.push_str(&format!("PASS {}\r\n", line_safe(p.as_bytes())));
        }
        hello.push_str(&format!("NICK {nick}\r\nUSER {} 0 * :{}\r\n", c.user, line_safe(c.real.as_bytes())));
        s.write_all(hello.as_bytes()).await?;
        let (mut registered, mut joined) = (false, HashSet::<String>::new());
        let mut buf: Vec<u8> = Vec::new();
        let mut next_send = Instant::now() + c.interval;
        let mut chunk = [0u8; 4096];
        loop {
            if self.stopping.get() {
                if registered {
                    let mut out = String::new();
                    let held: Vec<Msg> = self.queue.borrow_mut().drain(..).collect();
                    let n = held.len();
                    for m in &held {
                        self.render_send(m, &mut joined, &mut out);
                    }
                    out.push_str("QUIT :spate shutting down\r\n");
                    s.write_all(out.as_bytes()).await?;
                    OutputMetrics::add(&self.metrics.write_count, n as u64);
                }
                let _ = s.close().await;
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_send {
                next_send = now + c.interval;
                let m = if registered { self.queue.borrow_mut().pop_front() } else { None };
                if let Some(m) = m {
                    let mut out = String::new();
                    self.render_send(&m, &mut joined, &mut out);
                    if let Err(e) = s.write_all(out.as_bytes()).await {
                        // Not sent: first again after the reconnect.
                        self.queue.borrow_mut().push_front(m);
                        return Err(e);
                    }
                    OutputMetrics::add(&self.metrics.write_count, 1);
                }
            }
            // Wake for the next send, or every 200 ms to notice shutdown.
            let wait = next_send
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(200));
            s.set_read_timeout(Some(wait))?;
            let n = match s.read(&mut chunk).await {
                Ok(0) => return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed by the server")),
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => continue,
                Err(e) => return Err(e),
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut replies = String::new();
            while let Some(end) = memchr::memchr(b'\n', &buf) {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                self.on_line(line.trim_end_matches(['\r', '\n']), nick, &mut registered, &mut joined, &mut replies);
            }
            if buf.len() > MAX_LINE {
                return Err(std::io::Error::new(ErrorKind::InvalidData, "a line from the server over 64 KiB"));
            }
            if !replies.is_empty() {
                s.write_all(replies.as_bytes()).await?;
            }
        }
    }

    /// JOIN (until the server confirmed it) and the message, as IRC lines.
    fn render_send(&self, m: &Msg, joined: &mut HashSet<String>, out: &mut String) {
        if !joined.contains(&m.channel) {
            out.push_str(&format!("JOIN {}\r\n", m.channel));
        }
        out.push_str(&format!("{} {} :{}\r\n", m.command, m.channel, m.text));
    }

    /// What the plugin's `on_read` does with a server line.
    fn on_line(
        &self,
        line: &str,
        nick: &mut String,
        registered: &mut bool,
        joined: &mut HashSet<String>,
        replies: &mut String,
    ) {
        let (prefix, rest) = match line.strip_prefix(':') {
            Some(l) => l.split_once(' ').unwrap_or((l, "")),
            None => ("", line),
        };
        let (cmd, params) = rest.split_once(' ').unwrap_or((rest, ""));
        let trailing = params.split_once(':').map_or(params, |(_, t)| t);
        match cmd {
            "PING" => replies.push_str(&format!("PONG :{}\r\n", line_safe(trailing.as_bytes()))),
            "001" => {
                *registered = true;
                crate::info!("{}: welcome \"{nick}\" to \"{prefix}\"", self.id);
            }
            "433" => {
                crate::warn!("{}: nickname \"{nick}\" is already in use. use \"{nick}_\" instead.", self.id);
                nick.push('_');
                replies.push_str(&format!("NICK {nick}\r\n"));
            }
            "JOIN" if prefix.split('!').next() == Some(nick.as_str()) => {
                let chans = params.trim_start_matches(':');
                crate::info!("{}: joined to {chans}", self.id);
                for ch in chans.split(',') {
                    joined.insert(ch.to_string());
                }
            }
            "ERROR" => crate::warn!("{}: an error occurred: \"{trailing}\"", self.id),
            _ => {}
        }
    }
}

impl Output for IrcOutput {
    fn id(&self) -> &str {
        &self.id
    }
    fn type_name(&self) -> &'static str {
        "irc"
    }
    fn metrics(&self) -> &OutputMetrics {
        &self.metrics
    }
    fn emit(&self, batch: &EventBatch, _emitter: &dyn Emitter) -> Result<(), EmitError> {
        let queued = self.queue.borrow().len();
        if queued >= self.conf.queue_limit {
            return Err(EmitError::Write {
                id: self.id.clone(),
                reason: format!(
                    "the IRC send queue is full (send_queue_limit {}, one message every {:?}): not acked, the sender retries",
                    self.conf.queue_limit, self.conf.interval
                ),
            });
        }
        let mut missing = None;
        let mut msgs = Vec::with_capacity(batch.count as usize);
        for ev in batch.events() {
            msgs.push(self.message_for(&batch.tag, ev.time, ev.record, &mut missing));
        }
        self.queue.borrow_mut().extend(msgs);
        if let Some(k) = missing {
            let now = Instant::now();
            if self.warned.get().is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
                self.warned.set(Some(now));
                crate::warn!(
                    "{}: the specified key '{k}' not found in record (sent as ''; said once a minute)",
                    self.id
                );
            }
        }
        Ok(())
    }
    fn start(self: Rc<Self>) {
        let me = self.clone();
        *self.task.borrow_mut() = Some(glommio::spawn_local(async move { me.run().await }).detach());
    }
    fn shutdown(&self, deadline: Instant) -> crate::plugin::LocalFuture<'_, ()> {
        self.stopping.set(true);
        Box::pin(async move {
            while !self.done.get() && Instant::now() < deadline {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            if let Some(t) = self.task.borrow_mut().take() {
                t.cancel();
            }
        })
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str_with_warnings, EvalContext};

    fn elem(body: &str) -> Element {
        let ctx = EvalContext::with_env("h", None, Default::default());
        let text = format!("<match **>\n  @type irc\n{body}</match>\n");
        let (root, _) = parse_str_with_warnings(&text, "t.conf", std::path::Path::new("."), &ctx).unwrap();
        root.elements.into_iter().next().unwrap()
    }

    #[test]
    fn templates_take_percent_s_in_order_and_check_the_keys() {
        let e = elem("  message x\n");
        let t = Template::parse(
            &e,
            "message",
            "notice: %s [%s] 100%% %s",
            vec!["a".into(), "b".into(), "c".into()],
            "out_keys",
        )
        .unwrap();
        let rec = spate_protocol::json::to_msgpack(br#"{"a":"A","b":2,"c":null}"#).unwrap();
        let view = View { rec: RecordRef::new(&rec).unwrap(), extra: Default::default() };
        let (mut out, mut missing) = (Vec::new(), None);
        t.render(&view, &mut out, &mut missing);
        assert_eq!((String::from_utf8(out).unwrap(), missing), ("notice: A [2] 100% ".to_string(), None));
        let t = Template::parse(&e, "message", "%s %s", vec!["a".into(), "zz".into()], "out_keys").unwrap();
        let (mut out, mut missing) = (Vec::new(), None);
        t.render(&view, &mut out, &mut missing);
        assert_eq!((String::from_utf8(out).unwrap(), missing.as_deref()), ("A ".to_string(), Some("zz")));
        // More %s than keys: the plugin's check; another directive: spate's.
        let err = Template::parse(&e, "message", "%s %s", vec!["a".into()], "out_keys").unwrap_err().to_string();
        assert!(err.ends_with("string specifier '%s' and out_keys specification mismatch"), "{err}");
        let err = Template::parse(&e, "message", "%d", vec!["a".into()], "out_keys").unwrap_err().to_string();
        assert!(err.contains("%d: spate supports %s"), "{err}");
        assert_eq!(line_safe(b"a\r\nQUIT\0b"), "a  QUIT b");
    }
}
