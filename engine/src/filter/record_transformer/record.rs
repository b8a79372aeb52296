//! record_transformer's `renew_time_key`: Ruby's `Time.at(value.to_f)` of a record value
//! (nested `remove_keys` use [`crate::ruby::accessor::delete_nest`]).

use spate_protocol::msgpack::{self, Kind};
use spate_protocol::EventTime;

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
