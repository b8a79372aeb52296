//! Message mode (one event per frame: what fluent-logger-python, fluent-logger-golang
//! and Docker's fluentd log driver send) coalesced per read: consecutive Message-mode
//! frames of one tag that arrive in one read are routed as one packed batch, so routing,
//! filters and the buffer append run once per read instead of once per event, and their
//! acks go out together. A frame alone is routed as it arrived (no copy).

use bytes::Bytes;
use spate_protocol::{EntriesFormat, EventBatch, Mode};

/// The frames of one tag gathered so far in this read.
#[derive(Default)]
pub(super) struct MessageRun {
    /// The first frame, as decoded: routed alone when nothing joins it.
    first: Option<EventBatch>,
    /// Once a second frame joined: every frame's `[time, record]`, packed.
    entries: Vec<u8>,
    count: u32,
    invalid: u32,
    wire_len: usize,
    /// The ack ids of the frames in the run, in order.
    pub chunks: Vec<Bytes>,
}

impl MessageRun {
    /// Whether `batch` (a Message-mode frame) can join the run.
    pub fn accepts(&self, batch: &EventBatch) -> bool {
        self.first.as_ref().is_none_or(|f| f.tag == batch.tag)
    }

    /// Adds a frame of the run's tag (see [`MessageRun::accepts`]).
    pub fn push(&mut self, batch: EventBatch) {
        if let Some(c) = &batch.option.chunk {
            self.chunks.push(c.clone());
        }
        let Some(first) = &self.first else {
            self.first = Some(batch);
            return;
        };
        if self.count == 0 && self.invalid == 0 {
            // The second frame: start the packed copy with the first one's entry.
            let f = first.clone();
            self.entries.reserve(2 * (f.entries.len() + 1));
            self.add(&f);
        }
        self.add(&batch);
    }

    fn add(&mut self, b: &EventBatch) {
        self.wire_len += b.wire_len;
        self.invalid += b.invalid;
        if b.count == 0 {
            return;
        }
        self.count += b.count;
        match b.format {
            // A Message-mode entry is the array body `time, record`: one header makes it
            // a packed `[time, record]`.
            EntriesFormat::Message => self.entries.push(0x92),
            EntriesFormat::Packed => {}
        }
        self.entries.extend_from_slice(&b.entries);
    }

    /// The run as one batch, and its ack ids; the run is empty again.
    pub fn take(&mut self) -> Option<(EventBatch, Vec<Bytes>)> {
        let first = self.first.take()?;
        let chunks = std::mem::take(&mut self.chunks);
        if self.count == 0 && self.invalid == 0 {
            return Some((first, chunks));
        }
        let batch = EventBatch {
            tag: first.tag,
            entries: Bytes::from(std::mem::take(&mut self.entries)),
            format: EntriesFormat::Packed,
            count: self.count,
            invalid: self.invalid,
            mode: Mode::Message,
            option: Default::default(),
            wire_len: self.wire_len,
        };
        self.count = 0;
        self.invalid = 0;
        self.wire_len = 0;
        Some((batch, chunks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use spate_protocol::{encode, EventTime, Frame, FrameDecoder, Limits};

    fn message(tag: &[u8], i: u32, chunk: Option<&[u8]>) -> EventBatch {
        let mut rec = Vec::new();
        encode::raw::map_header(&mut rec, 1);
        encode::raw::str(&mut rec, b"n");
        encode::raw::int(&mut rec, i as i64);
        let mut w = Vec::new();
        let opt = encode::OptionsOut { chunk, ..Default::default() };
        encode::message(&mut w, tag, EventTime::new(i, 0), encode::TimeFormat::EventTime, &rec, &opt);
        let mut buf = BytesMut::from(&w[..]);
        match FrameDecoder::new(Limits::default()).decode(&mut buf) {
            Ok(Some(Frame::Events(b))) => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_frame_passes_as_is_and_several_become_one_packed_batch() {
        let mut r = MessageRun::default();
        r.push(message(b"a", 1, Some(b"c1")));
        let (b, chunks) = r.take().unwrap();
        assert_eq!(b.format, EntriesFormat::Message);
        assert_eq!(chunks, vec![Bytes::from_static(b"c1")]);
        assert!(r.take().is_none());

        for i in 0..3 {
            let m = message(b"a", i, Some(format!("c{i}").as_bytes()));
            assert!(r.accepts(&m));
            r.push(m);
        }
        assert!(!r.accepts(&message(b"b", 9, None)));
        let (b, chunks) = r.take().unwrap();
        assert_eq!((b.count, b.format, &b.tag[..]), (3, EntriesFormat::Packed, &b"a"[..]));
        let ns: Vec<i64> = b.events().map(|e| e.record.get(b"n").unwrap().as_i64().unwrap()).collect();
        assert_eq!(ns, [0, 1, 2]);
        assert_eq!(chunks.len(), 3);
        assert!(r.take().is_none());
    }
}
