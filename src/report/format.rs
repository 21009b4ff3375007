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
    if value == 0.0 {
        return "0".to_owned();
    }
    // The shortest round-trip text of a value with at most 15 significant
    // digits is already what rounding to 15 digits gives back: the exact
    // value lies within half an ulp (about 1.1e-16 relative) of that text,
    // far inside the half step of a 15-digit grid (at least 5e-16 relative),
    // so the rounding lands on the same digits and parses to `value` itself.
    // Only longer texts (conversion noise) need the rounding.
    let shortest = value.to_string();
    if significant_digits(&shortest) <= 15 {
        return shortest;
    }
    rounded_to_15_digits(value)
}

/// [`format_value`] the long way: round to 15 significant digits through
/// text, then print the rounded value's shortest text.
fn rounded_to_15_digits(value: f64) -> String {
    let rounded: f64 = format!("{value:.14e}").parse().unwrap_or(value);
    if rounded == 0.0 {
        return "0".to_owned();
    }
    rounded.to_string()
}

/// Significant digits of a plain decimal text (`-0.00120` has 2, `1200` 2).
fn significant_digits(text: &str) -> usize {
    let digits = text.bytes().filter(u8::is_ascii_digit);
    let mut count = 0;
    let mut started = false;
    let mut trailing_zeros = 0;
    for d in digits {
        if d == b'0' {
            if started {
                trailing_zeros += 1;
            }
            continue;
        }
        if started {
            count += trailing_zeros;
        }
        started = true;
        trailing_zeros = 0;
        count += 1;
    }
    count
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
    fn the_shortcut_prints_what_rounding_to_15_digits_prints() {
        assert_eq!(significant_digits("-0.00120"), 2);
        assert_eq!(significant_digits("1200"), 2);
        assert_eq!(significant_digits("1020.5"), 5);
        assert_eq!(significant_digits("0"), 0);
        // Values with noise, values without, conversions, tiny and huge ones.
        let mut values = vec![0.3 * 3.0, 0.1 * 0.33109, 90.0 / 18.016, 1e21, 1e-300, f64::MAX, f64::MIN_POSITIVE];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Random bit patterns, and short decimals scaled like lab values.
            values.push(f64::from_bits(state));
            let short = (state % 1_000_000) as f64 / 10f64.powi((state >> 40) as i32 % 9);
            values.extend([short, short * 0.33109, short / 18.016, -short * 1.7]);
        }
        for v in values.into_iter().filter(|v| v.is_finite()) {
            assert_eq!(format_value(v), rounded_to_15_digits(v), "{v:e}");
        }
    }

    #[test]
    fn times_are_utc_rfc3339_at_whole_seconds() {
        let t: jiff::Timestamp = "2026-03-02T08:45:00.750+01:00".parse().unwrap();
        assert_eq!(utc_time(t), "2026-03-02T07:45:00Z");
    }
}
