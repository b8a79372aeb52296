//! Message mode (one event per frame: what fluent-logger-python, fluent-logger-golang
//! and Docker's fluentd log driver send) coalesced per read: consecutive Message-mode
//! frames of one tag that arrive in one read are routed as one packed batch, so routing,
//! filters and the buffer append run once per read instead of once per event, and their
//! acks go out together. A frame alone is routed as it arrived (no copy); frames the
//! decoder reads in place (`FrameDecoder::scan`) are copied into the run as they come.

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
    /// The tag of a run that started with a frame read in place ([`MessageRun::push_in_place`]).
    tag: Option<Bytes>,
}

impl MessageRun {
    /// Whether `batch` (a Message-mode frame) can join the run.
    pub fn accepts(&self, batch: &EventBatch) -> bool {
        self.accepts_tag(&batch.tag)
    }

    /// Whether a Message-mode frame of tag `tag` can join the run.
    pub fn accepts_tag(&self, tag: &[u8]) -> bool {
        match (&self.first, &self.tag) {
            (Some(f), _) => f.tag == tag,
            (None, Some(t)) => t == tag,
            (None, None) => true,
        }
    }

    /// Adds a frame read in place (`FrameDecoder::scan`: no options, so no ack id) of
    /// the run's tag: its entry is copied into the run, nothing else is kept.
    pub fn push_in_place(&mut self, tag: &[u8], entry: &[u8], valid: bool, wire_len: usize) {
        match &self.first {
            None if self.tag.is_none() => self.tag = Some(Bytes::copy_from_slice(tag)),
            Some(first) if self.count == 0 && self.invalid == 0 => {
                let f = first.clone();
                self.add(&f);
            }
            _ => {}
        }
        self.wire_len += wire_len;
        if !valid {
            self.invalid += 1;
            return;
        }
        self.count += 1;
        self.entries.push(0x92);
        self.entries.extend_from_slice(entry);
    }

    /// Adds a frame of the run's tag (see [`MessageRun::accepts`]).
    pub fn push(&mut self, batch: EventBatch) {
        if let Some(c) = &batch.option.chunk {
            self.chunks.push(c.clone());
        }
        match &self.first {
            // The run's first frame (unless frames read in place started it).
            None if self.tag.is_none() => {
                self.first = Some(batch);
                return;
            }
            Some(first) if self.count == 0 && self.invalid == 0 => {
                // The second frame: start the packed copy with the first one's entry.
                let f = first.clone();
                self.entries.reserve(2 * (f.entries.len() + 1));
                self.add(&f);
            }
            _ => {}
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
        let tag = match (self.first.take(), self.tag.take()) {
            (Some(first), _) if self.count == 0 && self.invalid == 0 => {
                return Some((first, std::mem::take(&mut self.chunks)));
            }
            (Some(first), _) => first.tag,
            (None, Some(tag)) => tag,
            (None, None) => return None,
        };
        let chunks = std::mem::take(&mut self.chunks);
        let batch = EventBatch {
            tag,
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

    /// A frame read in place: its tag and `time, record` entry, as `FrameDecoder::scan`
    /// gives them.
    fn in_place(r: &mut MessageRun, tag: &[u8], i: u32, valid: bool) {
        let b = message(tag, i, None);
        r.push_in_place(&b.tag, &b.entries, valid, b.wire_len);
    }

    #[test]
    fn frames_read_in_place_join_runs_with_decoded_ones_in_order() {
        let ns = |b: &EventBatch| -> Vec<i64> {
            b.events().map(|e| e.record.get(b"n").unwrap().as_i64().unwrap()).collect()
        };
        // In place only: one packed batch of a copied tag.
        let mut r = MessageRun::default();
        in_place(&mut r, b"a", 0, true);
        assert!(r.accepts_tag(b"a") && !r.accepts_tag(b"b"));
        in_place(&mut r, b"a", 1, true);
        let (b, chunks) = r.take().unwrap();
        assert_eq!((b.count, b.invalid, b.format, &b.tag[..]), (2, 0, EntriesFormat::Packed, &b"a"[..]));
        assert_eq!(ns(&b), [0, 1]);
        assert!(chunks.is_empty() && r.take().is_none());
        // In place, then decoded (an ack request), then in place: every entry, in order.
        in_place(&mut r, b"a", 0, true);
        r.push(message(b"a", 1, Some(b"c1")));
        in_place(&mut r, b"a", 2, true);
        let (b, chunks) = r.take().unwrap();
        assert_eq!(ns(&b), [0, 1, 2]);
        assert_eq!(chunks, vec![Bytes::from_static(b"c1")]);
        // Decoded first, then in place.
        r.push(message(b"a", 5, Some(b"c5")));
        in_place(&mut r, b"a", 6, true);
        let (b, _) = r.take().unwrap();
        assert_eq!(ns(&b), [5, 6]);
        assert_eq!(b.wire_len, message(b"a", 5, Some(b"c5")).wire_len + message(b"a", 6, None).wire_len);
        // An invalid event alone still makes a batch (counted, warned about).
        in_place(&mut r, b"a", 7, false);
        let (b, _) = r.take().unwrap();
        assert_eq!((b.count, b.invalid, b.events().count()), (0, 1, 0));
        assert!(r.take().is_none());
    }
}
