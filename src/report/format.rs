//! Field formatting shared by the reports: numbers without float noise or
//! exponents, times in UTC.

/// A value as the exports print it: plain decimal notation (never `1e-7`),
/// no trailing `.0`, no `-0`.
///
/// The value is first rounded to 15 significant digits, the precision an
/// f64 carries reliably, so the binary noise of a unit conversion
/// (`0.8999999999999999`) is not printed; no laboratory value has anywhere
/// near 15 significant digits, so nothing measured is lost. Then Rust's
/// shortest round-trip representation of the rounded value is printed, which
/// `Display` for f64 gives in positional notation.
pub fn format_value(value: f64) -> String {
    if !value.is_finite() {
        // The store refuses non-finite values; say what it is rather than
        // printing something that looks like a measurement.
        return value.to_string();
    }
    let rounded: f64 = format!("{value:.14e}").parse().unwrap_or(value);
    if rounded == 0.0 {
        return "0".to_owned();
    }
    rounded.to_string()
}

/// A UTC time in RFC 3339 at whole seconds: `2026-03-02T07:45:00Z`.
pub fn utc_time(t: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(t.as_second()).unwrap_or(t).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_plainly_without_noise_or_exponents() {
        assert_eq!(format_value(0.33109), "0.33109");
        assert_eq!(format_value(0.01), "0.01");
        assert_eq!(format_value(1e-7), "0.0000001");
        assert_eq!(format_value(1.5e-12), "0.0000000000015");
        assert_eq!(format_value(12.0), "12");
        assert_eq!(format_value(120.5), "120.5");
        assert_eq!(format_value(-3.25), "-3.25");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        // Conversion noise is dropped; real digits are kept.
        assert_eq!(format_value(0.3 * 3.0), "0.9");
        assert_eq!(format_value(0.1 * 0.33109), "0.033109");
        assert_eq!(format_value(90.0 / 18.016), "4.9955595026643");
        assert_eq!(format_value(0.123456789012345), "0.123456789012345");
        assert!(!format_value(6.02e23).contains('e'));
    }

    #[test]
    fn values_round_trip_at_15_significant_digits() {
        for v in [0.017, 0.0085, 5.4, 11.1, 3.9, 0.33109 * 1.7, 5.4 / 18.016, 1e-7, 20.0] {
            let printed = format_value(v);
            let back: f64 = printed.parse().unwrap();
            assert!((back - v).abs() <= v.abs() * 1e-14, "{v} printed as {printed}");
            assert!(!printed.contains('e'), "{printed}");
        }
    }

    #[test]
    fn times_are_utc_rfc3339_at_whole_seconds() {
        let t: jiff::Timestamp = "2026-03-02T08:45:00.750+01:00".parse().unwrap();
        assert_eq!(utc_time(t), "2026-03-02T07:45:00Z");
    }
}
