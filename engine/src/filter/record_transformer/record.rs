//! Record edits and conversions of record_transformer: `renew_time_key`'s Ruby
//! `Time.at(value.to_f)`, and `remove_keys` with nested accessors (fluentd's
//! `Accessor#delete_nest`), on msgpack bytes.

use spate_protocol::encode::raw;
use spate_protocol::msgpack::{self, Head, Kind};
use spate_protocol::{EventTime, ValueRef};

use crate::ruby::accessor::{array_len, key_is, ruby_index, Step};
use crate::ruby::time::exact_nsec;
use crate::ruby::value::ruby_str_to_f;

/// `Fluent::EventTime.from_time(Time.at(value.to_f))`; `Err` where Ruby raises (no `to_f`,
/// or a NaN/infinite time).
pub(super) fn renew_time(v: &[u8]) -> Result<EventTime, ()> {
    let kind = msgpack::head(v).ok().flatten().map(|h| h.kind()).ok_or(())?;
    let f = match kind {
        Kind::Nil => 0.0,
        Kind::UInt | Kind::NegInt => msgpack::read_int(v).ok_or(())? as f64,
        Kind::F32 | Kind::F64 => msgpack::read_float(v).ok_or(())?,
        Kind::Str | Kind::Bin => ruby_str_to_f(msgpack::read_bytes(v).ok_or(())?),
        Kind::Ext => {
            let t = EventTime::from_msgpack(v).ok_or(())?;
            t.sec as f64 + t.nsec as f64 / 1e9
        }
        Kind::Bool | Kind::Array | Kind::Map => return Err(()),
    };
    if !f.is_finite() {
        return Err(());
    }
    let fl = f.floor();
    let nsec = exact_nsec(f - fl);
    // EventTime packs seconds as 32 bits ('N'): out-of-range values wrap.
    let sec = fl.rem_euclid(4_294_967_296.0) as u32;
    Ok(EventTime::new(sec, nsec))
}

/// Deletes the element at `steps` (dig keys, then the key to delete) inside the container
/// `v`, appending the new encoding of `v` to `out`. Returns false when nothing is deleted
/// (then `out` holds garbage). Mirrors fluentd's `Accessor#delete_nest`: a missing path or
/// a path through a scalar deletes nothing.
pub(super) fn delete_in(v: ValueRef<'_>, steps: &[Step], out: &mut Vec<u8>) -> bool {
    let Some((first, rest)) = steps.split_first() else { return false };
    match msgpack::head(v.as_bytes()) {
        Ok(Some(Head::Map { n, .. })) => {
            let Some(m) = v.as_map() else { return false };
            if rest.is_empty() {
                let hits = m.fields().filter(|(k, _)| key_is(*k, first)).count() as u32;
                if hits == 0 {
                    return false;
                }
                raw::map_header(out, n - hits);
                for (k, x) in m.fields().filter(|(k, _)| !key_is(*k, first)) {
                    out.extend_from_slice(k.as_bytes());
                    out.extend_from_slice(x.as_bytes());
                }
                return true;
            }
            // `dig` follows the last duplicate.
            let Some(target) = m.fields().enumerate().filter(|(_, (k, _))| key_is(*k, first)).map(|(i, _)| i).last()
            else {
                return false;
            };
            raw::map_header(out, n);
            for (i, (k, x)) in m.fields().enumerate() {
                out.extend_from_slice(k.as_bytes());
                if i == target {
                    if !delete_in(x, rest, out) {
                        return false;
                    }
                } else {
                    out.extend_from_slice(x.as_bytes());
                }
            }
            true
        }
        Ok(Some(Head::Array { n, .. })) => {
            let Step::Index(i) = first else { return false };
            let Some(pos) = array_len(v).and_then(|len| ruby_index(len, *i)) else { return false };
            let Some(items) = v.as_array() else { return false };
            raw::array_header(out, if rest.is_empty() { n - 1 } else { n });
            for (j, x) in items.enumerate() {
                if j != pos {
                    out.extend_from_slice(x.as_bytes());
                } else if !rest.is_empty() && !delete_in(x, rest, out) {
                    return false;
                }
            }
            true
        }
        _ => false,
    }
}
