//! `deduplicate` on one shard with a file buffer, through in_forward's data path and
//! the real group commit: an id counts only once its events are durable, a commit that
//! fails forgets its ids, ids are kept per source, and a new process reads them back.

use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use spate_protocol::encode::{self, OptionsOut, TimeFormat};
use spate_protocol::{EventTime, FrameDecoder};

use crate::input::forward::{ForwardInput, Peer, Step};
use crate::test_support::{shard, ShardGraph, T0};

fn conf(dir: &Path) -> String {
    format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port 0\n  deduplicate true\n  deduplicate_path {}\n</source>\n\
         <match **>\n  @type forward\n  heartbeat_type none\n  require_ack_response true\n\
         <server>\n    host 127.0.0.1\n    port 1\n  </server>\n\
         <buffer>\n    @type file\n    path {}\n    flush_interval 1h\n  </buffer>\n</match>\n",
        dir.join("ids").display(),
        dir.join("buf").display()
    )
}

/// A PackedForward frame of `n` events of `tag` acked under `id`.
fn frame(tag: &[u8], id: &str, n: u32) -> Vec<u8> {
    let mut entries = Vec::new();
    for i in 0..n {
        encode::entry(&mut entries, EventTime::new(T0.sec + i, 0), TimeFormat::EventTime, b"\x81\xa1k\x01");
    }
    let opt = OptionsOut { chunk: Some(id.as_bytes()), size: Some(n as u64), ..Default::default() };
    let mut f = Vec::new();
    encode::packed_forward_header(&mut f, tag, entries.len(), encode::EntriesType::Str32, &opt);
    f.extend_from_slice(&entries);
    encode::packed_forward_trailer(&mut f, &opt);
    f
}

struct Shard {
    g: ShardGraph,
}

impl Shard {
    /// Builds and starts the shard (outputs, input) on the current executor.
    fn start(conf: &str) -> Shard {
        let g = shard(conf);
        for o in g.ctx.outputs() {
            o.start();
        }
        g.inputs[0].clone().start(true).unwrap();
        Shard { g }
    }

    fn input(&self) -> &ForwardInput {
        self.g.inputs[0].as_any().downcast_ref::<ForwardInput>().unwrap()
    }

    /// Sends one frame from `peer`; returns whether it was acked once durable and
    /// whether it was stored (not a dedup hit).
    async fn send(&self, peer: &Peer, id: &str) -> (bool, bool) {
        self.send_tag(peer, b"t", id).await
    }

    async fn send_tag(&self, peer: &Peer, tag: &[u8], id: &str) -> (bool, bool) {
        let input = self.input();
        let stored_before = self.stored();
        let bytes = frame(tag, id, 10);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = FrameDecoder::new(Default::default());
        let mut acks = Vec::new();
        let first = self.g.ctx.syncer.next_epoch();
        let step = input.process(&mut dec, &mut buf, peer, &mut acks);
        assert!(matches!(step, Step::More), "processed at once");
        let durable = match self.g.ctx.syncer.pending() {
            Some(e) => self.g.ctx.syncer.wait_since(first, e).await.is_ok(),
            None => true,
        };
        (durable && !acks.is_empty(), self.stored() > stored_before)
    }

    fn stored(&self) -> u64 {
        self.g.ctx.outputs()[0].metrics().emit_records.get()
    }
}

fn run<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(f).unwrap().join().unwrap()
}

fn segments(dir: &Path) -> Vec<(usize, usize)> {
    super::log::segment_files(&dir.join("ids"))
        .unwrap()
        .iter()
        .map(|p| {
            let r = super::log::read_segment(&std::fs::read(p).unwrap(), crate::sys::boot_id().as_ref());
            (r.ids.len(), r.unsealed)
        })
        .collect()
}

#[test]
fn an_id_counts_once_its_events_are_durable_and_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("spate-dedup-shard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let c = conf(&dir);
    let d = dir.clone();
    run(move || {
        Box::pin(async move {
            let s = Shard::start(&c);
            let a = Peer::named("a");
            assert_eq!(s.send(&a, "id-1").await, (true, true), "stored and acked");
            assert_eq!(s.send(&a, "id-1").await, (true, false), "a resend is acked, not stored");
            assert_eq!(s.input().metrics.resent_frames.get(), 1);
            assert_eq!(s.input().metrics.resent_events.get(), 10);
            // Another source with the same ack id is another frame.
            let mut b = Peer::named("b");
            b.source = super::source(Some("someone-else"), None);
            assert_eq!(s.send(&b, "id-1").await, (true, true), "keyed per source");

            // A commit that fails (the chunk directory is gone, so a new tag's chunk
            // file cannot be created): no ack, and the id is forgotten, so the resend
            // is stored once the disk works again.
            std::fs::remove_dir_all(d.join("buf").join("shard-0")).unwrap();
            let (acked, _) = s.send_tag(&a, b"u", "id-fail").await;
            assert!(!acked, "not acked when its events could not be written");
            std::fs::create_dir_all(d.join("buf").join("shard-0")).unwrap();
            assert_eq!(s.send_tag(&a, b"u", "id-fail").await, (true, true), "the resend of a failed frame is stored");
            glommio::timer::sleep(Duration::from_millis(10)).await;
        })
    });
    // Every id on disk is sealed (the segments name only durable events).
    let segs = segments(&dir);
    assert_eq!(segs.iter().map(|s| s.0).sum::<usize>(), 3, "id-1 (a), id-1 (b), id-fail: {segs:?}");
    assert!(segs.iter().all(|s| s.1 == 0), "all sealed: {segs:?}");

    // A new process (a new plan: a new window) reads the ids back.
    let c = conf(&dir);
    run(move || {
        Box::pin(async move {
            let s = Shard::start(&c);
            let a = Peer::named("a");
            assert_eq!(s.send(&a, "id-1").await, (true, false), "known after the restart");
            assert_eq!(s.send(&a, "id-fail").await, (true, false));
            assert_eq!(s.send(&a, "id-2").await, (true, true));
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_file_buffer_ids_count_at_once_and_are_not_persisted() {
    let dir = std::env::temp_dir().join(format!("spate-dedup-mem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let c = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port 0\n  deduplicate true\n  deduplicate_path {}\n</source>\n\
         <match **>\n  @type null\n</match>\n",
        dir.join("ids").display()
    );
    run(move || {
        Box::pin(async move {
            let s = Shard::start(&c);
            let a = Peer::named("a");
            assert_eq!(s.send(&a, "m-1").await, (true, true));
            assert_eq!(s.send(&a, "m-1").await, (true, false), "deduplicated within the process");
        })
    });
    assert!(segments(&dir).iter().all(|s| s.0 == 0), "memory-held events: no id on disk");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_checks() {
    use crate::test_support::plan_err;
    let base = "<source>\n  @type forward\n  port 0\n";
    let tail = "</source>\n<match **>\n  @type null\n</match>\n";
    let e = plan_err(&format!("{base}  deduplicate_path /tmp/x\n{tail}"));
    assert!(e.contains("need deduplicate true"), "{e}");
    let e = plan_err(&format!("{base}  deduplicate true\n  deduplicate_window_size 0\n{tail}"));
    assert!(e.contains("deduplicate_window_size must be between 1"), "{e}");
    let e = plan_err(&format!("{base}  deduplicate true\n  deduplicate_window_time 0\n{tail}"));
    assert!(e.contains("deduplicate_window_time must be at least 1s"), "{e}");
    let two = format!(
        "<source>\n  @type forward\n  port 0\n  deduplicate true\n  deduplicate_path /tmp/same\n</source>\n\
         <source>\n  @type forward\n  port 1\n  deduplicate true\n  deduplicate_path /tmp/same\n{tail}"
    );
    let e = plan_err(&two);
    assert!(e.contains("already used"), "{e}");
}
