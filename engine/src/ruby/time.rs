//! Ruby's `Time` as fluentd configs see it: `Time.at(float)` (exact nanoseconds of the
//! float's rational value).

/// `floor(frac * 1e9)` computed exactly for `0 <= frac < 1`, as Ruby's `Time.at(float)`
/// does with the float's exact rational value.
pub fn exact_nsec(frac: f64) -> u32 {
    if frac <= 0.0 {
        return 0;
    }
    let bits = frac.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let mant = bits & ((1u64 << 52) - 1);
    let (m, e) = if exp == 0 { (mant, -1074) } else { (mant | (1u64 << 52), exp - 1075) };
    let shift = -e;
    if shift <= 0 {
        return 0;
    }
    if shift >= 128 {
        return 0;
    }
    (((m as u128) * 1_000_000_000u128) >> shift).min(999_999_999) as u32
}
