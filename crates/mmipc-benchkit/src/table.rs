//! Report building blocks: Markdown tables with padded, optionally right-aligned columns
//! ([`markdown`]), and the median of a set of rounds ([`median`]).

use std::fmt::Write as _;

/// A Markdown table with padded columns: `rows[0]` is the header; columns from
/// `numeric_from` on are right-aligned.
pub fn markdown(rows: &[Vec<String>], numeric_from: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push('|');
        for (c, &w) in widths.iter().enumerate() {
            let cell = row.get(c).map_or("", String::as_str);
            let pad = " ".repeat(w - cell.chars().count());
            if c >= numeric_from && i > 0 {
                let _ = write!(out, " {pad}{cell} |");
            } else {
                let _ = write!(out, " {cell}{pad} |");
            }
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for (c, &w) in widths.iter().enumerate() {
                if c >= numeric_from {
                    let _ = write!(out, " {}: |", "-".repeat(w - 1));
                } else {
                    let _ = write!(out, " {} |", "-".repeat(w));
                }
            }
            out.push('\n');
        }
    }
    out
}

/// The median of `v` (the mean of the middle two for an even count); `None` if empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_and_align_numbers_right() {
        let rows = vec![
            vec!["size".to_string(), "p50 µs".into()],
            vec!["8 B".into(), "0.29".into()],
        ];
        assert_eq!(
            markdown(&rows, 1),
            "| size | p50 µs |\n| ---- | -----: |\n| 8 B  |   0.29 |\n"
        );
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
