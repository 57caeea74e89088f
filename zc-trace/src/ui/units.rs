//! Sizes, rates and durations as a reader sees them: every renderer and every line of output
//! writes them the same way.

/// A byte count in binary units: "64 MiB" when it is a whole number of the unit, "1.50 KiB"
/// when two decimals give it exactly. Any other count shows its exact bytes, then the rounded
/// figure marked as such: "65537 B (~64.00 KiB)". Not "64.00 KiB", which reads as exactly
/// 64 KiB (a --chunk 65537 looked like --chunk 64K), and not "64.001 KiB" either: that is still
/// rounded (65537 B is 64.0009765625 KiB), and no number of decimals would let the reader
/// tell a rounded figure from an exact one, or get the byte count back.
pub fn human_bytes(x: f64) -> String {
    let (v, unit) = scaled(x);
    if unit == "B" {
        format!("{} B", exact(x))
    } else if v.fract() == 0.0 {
        format!("{v} {unit}")
    } else if (v * 100.0).fract() == 0.0 {
        format!("{v:.2} {unit}")
    } else {
        format!("{} B (~{v:.2} {unit})", exact(x))
    }
}

/// A rate in bytes per second, rounded to two decimals of its unit: a rate is a measured
/// quotient, never an exact count, so it is not held to `human_bytes`' exactness.
pub fn human_rate(bytes_per_sec: f64) -> String {
    let (v, unit) = scaled(bytes_per_sec);
    if unit == "B" {
        format!("{v:.0} B/s")
    } else {
        format!("{v:.2} {unit}/s")
    }
}

/// `x` in the largest binary unit it reaches.
fn scaled(x: f64) -> (f64, &'static str) {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = x;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    (v, UNITS[i])
}

/// Bytes as a number: whole, or (a median of two counts, an average) with up to two decimals.
fn exact(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as u64)
    } else {
        format!("{x:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

pub fn human_duration(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{ns} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_units() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(64.0 * 1024.0 * 1024.0), "64 MiB");
        assert_eq!(human_bytes(1536.0), "1.50 KiB");
        assert_eq!(human_bytes(1280.0), "1.25 KiB");
        assert_eq!(human_bytes(0.0), "0 B");
        assert_eq!(human_bytes(1023.5), "1023.5 B");
    }

    /// A size that is not a whole number of its unit never looks like one (--chunk 65537 was
    /// shown as "64.00 KiB"); whole sizes look as they did.
    #[test]
    fn inexact_sizes_show_their_bytes() {
        assert_eq!(human_bytes(65537.0), "65537 B (~64.00 KiB)");
        assert_eq!(human_bytes(1100.0), "1100 B (~1.07 KiB)");
        assert_eq!(
            human_bytes((64 << 20) as f64 + 4.0),
            "67108868 B (~64.00 MiB)"
        );
        assert_eq!(human_bytes(65536.5), "65536.5 B (~64.00 KiB)");
        assert_eq!(human_bytes((64 << 20) as f64), "64 MiB");
        assert_eq!(human_bytes((128 << 10) as f64), "128 KiB");
        assert_eq!(human_bytes((3 << 29) as f64), "1.50 GiB");
        // Rates are measured quotients: rounded, with no claim to exactness.
        assert_eq!(human_rate(2_297_846_512.3), "2.14 GiB/s");
        assert_eq!(human_rate(512.4), "512 B/s");
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(1_500_000.0), "1.50 ms");
        assert_eq!(human_duration(2.5e9), "2.50 s");
        assert_eq!(human_duration(999.0), "999 ns");
    }
}
