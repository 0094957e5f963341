//! Sizes and numbers as benchmarks read and print them: byte sizes on the command line
//! ([`parse_size`]: `64`, `4K`, `4KiB`, `1m`, powers of 1024) and in reports
//! ([`fmt_size`]: `64 B`, `4 KiB`), and the number formats of the tables — microseconds
//! from nanoseconds, integers with thousands separators, message rates, MB/s and ratios.

/// A byte size: `64`, `64B`, `4K`, `4KiB`, `1m`, `1MiB`, `2G` (case-insensitive, powers of
/// 1024). Fits clap's `value_parser`.
///
/// # Errors
///
/// A message naming the problem if `s` is not a number with an optional unit, or too large.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 64, 4K, 1MiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => 1 << 10,
        "m" | "mb" | "mi" | "mib" => 1 << 20,
        "g" | "gb" | "gi" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M or G)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `64 B`, `4 KiB`, `1 MiB`, `2 GiB`; a size that is no whole number of the larger unit stays
/// in bytes (`1536 B`).
pub fn fmt_size(n: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut u = 0;
    while u + 1 < UNITS.len() && n >= 1 << (10 * (u + 1)) && n.is_multiple_of(1 << (10 * (u + 1))) {
        u += 1;
    }
    format!("{} {}", n >> (10 * u), UNITS[u])
}

/// Nanoseconds as microseconds with a precision that suits the value: `0.45`, `63.8`, `1252`.
pub fn fmt_us(ns: f64) -> String {
    let us = ns / 1000.0;
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 1000.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

/// A number rounded to an integer, with thousands separators: `12,345`.
pub fn fmt_thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    if v < 0.0 && digits != "0" {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Messages per second, short: `11.40 M`, `690 k`, `2,810`.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.0} k", r / 1e3)
    } else {
        fmt_thousands(r.max(0.0))
    }
}

/// Bytes per second as MB/s (10^6 bytes): one decimal below 100, thousands separators above.
pub fn fmt_mb(bytes_per_s: f64) -> String {
    let mb = bytes_per_s / 1e6;
    if mb < 100.0 {
        format!("{mb:.1}")
    } else {
        fmt_thousands(mb)
    }
}

/// A ratio: `0.95×`, `34.3×`; `–` for none or an infinite one.
pub fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() && r < 10.0 => format!("{r:.2}×"),
        Some(r) if r.is_finite() => format!("{r:.1}×"),
        _ => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("64B"), Ok(64));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("x").is_err());
        assert!(parse_size("5Q").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn sizes_print_in_the_largest_whole_unit() {
        assert_eq!(fmt_size(64), "64 B");
        assert_eq!(fmt_size(4096), "4 KiB");
        assert_eq!(fmt_size(1 << 20), "1 MiB");
        assert_eq!(fmt_size(3 << 30), "3 GiB");
        assert_eq!(fmt_size(1000), "1000 B");
        assert_eq!(fmt_size(1536), "1536 B");
    }

    #[test]
    fn numbers_print_with_a_precision_that_suits_them() {
        assert_eq!(fmt_us(450.0), "0.45");
        assert_eq!(fmt_us(63_800.0), "63.8");
        assert_eq!(fmt_us(1_252_000.0), "1252");
        assert_eq!(fmt_thousands(1_234_567.4), "1,234,567");
        assert_eq!(fmt_thousands(-1234.0), "-1,234");
        assert_eq!(fmt_rate(2810.4), "2,810");
        assert_eq!(fmt_rate(690_000.0), "690 k");
        assert_eq!(fmt_rate(11_400_000.0), "11.40 M");
        assert_eq!(fmt_mb(44.6e6), "44.6");
        assert_eq!(fmt_mb(23_932e6), "23,932");
        assert_eq!(fmt_ratio(Some(0.951)), "0.95×");
        assert_eq!(fmt_ratio(Some(34.31)), "34.3×");
        assert_eq!(fmt_ratio(None), "–");
    }
}
