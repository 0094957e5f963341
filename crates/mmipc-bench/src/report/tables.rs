//! The tables of the side-by-side report: one column per mechanism, the latency rows (p50,
//! p99, p99.9, p50 range), the throughput and fan-out rows (msgs/s, MB/s, range) and the
//! scalar rows of the hooks (median and range), with the heading and note of each group of
//! scalar rows.

use mmipc_benchkit::table::markdown as table;
use mmipc_benchkit::units::{fmt_mb, fmt_rate, fmt_size, fmt_thousands, fmt_us};

use super::Meta;
use crate::hooks::{MEMORY_MESSAGES, MEMORY_SIZE};
use crate::rows::{Cell, IDLE, LIFE_CYCLE, MEMORY, Row, SOFTWARE};
use crate::transport::Mech;

fn header(first: &str, second: &str, mechs: &[Mech]) -> Vec<String> {
    let mut h = vec![first.to_string(), second.to_string()];
    h.extend(mechs.iter().map(|m| m.label()));
    h
}

/// A cell's text: the value, "FAIL" if every round failed, a mark if some did, "–" if the
/// mechanism was not measured.
fn cell_text(cell: Option<&Cell>, value: impl Fn(&Cell) -> Option<String>) -> String {
    match cell {
        None => "–".into(),
        Some(c) => match (value(c), c.errors.is_empty()) {
            (Some(v), true) => v,
            (Some(v), false) => format!("{v} ({} failed)", c.errors.len()),
            (None, false) => "FAIL".into(),
            (None, true) => "–".into(),
        },
    }
}

/// Renders one statistic of a cell.
type StatFn = dyn Fn(&Cell) -> Option<String>;

/// A table with, per row, one line per statistic of `stats(row)`: the row's size on the
/// first line, the statistic's name, then its value for each mechanism.
fn stat_table(
    rows: &[&Row],
    mechs: &[Mech],
    stats: impl Fn(&Row) -> Vec<(&'static str, Box<StatFn>)>,
) -> String {
    labelled_table(rows, mechs, ("size", |r| r.size.map(fmt_size)), stats)
}

/// A [`stat_table`] whose first column is headed `first.0` and says `first.1(row)`.
fn labelled_table(
    rows: &[&Row],
    mechs: &[Mech],
    first: (&str, fn(&Row) -> Option<String>),
    stats: impl Fn(&Row) -> Vec<(&'static str, Box<StatFn>)>,
) -> String {
    let mut t = vec![header(first.0, "", mechs)];
    for row in rows {
        for (i, (name, stat)) in stats(row).iter().enumerate() {
            let size = match i {
                0 => first.1(row).unwrap_or_default(),
                _ => String::new(),
            };
            let mut line = vec![size, (*name).to_string()];
            line.extend(mechs.iter().map(|m| cell_text(row.cells.get(m), stat)));
            t.push(line);
        }
    }
    table(&t, 2)
}

/// Round trips: p50 (median of the rounds), p99 and p99.9 (rounds pooled), the p50 range.
pub(super) fn latency_table(rows: &[&Row], mechs: &[Mech]) -> String {
    let pooled = |q: f64| -> Box<StatFn> {
        Box::new(move |c: &Cell| c.pooled().map(|h| fmt_us(h.value_at_quantile(q) as f64)))
    };
    stat_table(rows, mechs, |_| {
        vec![
            ("p50", Box::new(|c: &Cell| c.headline().map(fmt_us))),
            ("p99", pooled(0.99)),
            ("p99.9", pooled(0.999)),
            (
                "p50 range",
                Box::new(|c: &Cell| {
                    c.range()
                        .map(|(lo, hi)| format!("{}–{}", fmt_us(lo), fmt_us(hi)))
                }),
            ),
        ]
    })
}

/// Rates: msgs/s and MB/s (medians of the rounds), the msgs/s range.
pub(super) fn throughput_table(rows: &[&Row], mechs: &[Mech]) -> String {
    stat_table(rows, mechs, rate_stats)
}

/// As [`throughput_table`], one row per size and number of receivers ("1 MiB 1→4").
pub(super) fn fan_table(rows: &[&Row], mechs: &[Mech]) -> String {
    labelled_table(rows, mechs, ("row", |r| Some(r.title.clone())), rate_stats)
}

/// The sender's CPU time per message (µs, median of the rounds) and its range, one row per
/// size and number of receivers.
pub(super) fn cpu_table(rows: &[&Row], mechs: &[Mech]) -> String {
    labelled_table(rows, mechs, ("row", |r| Some(r.title.clone())), |_| {
        vec![
            (
                "µs/msg",
                Box::new(|c: &Cell| c.sender_cpu().map(|ns| fmt_cpu_us(ns / 1e3))),
            ),
            (
                "range",
                Box::new(|c: &Cell| {
                    c.sender_cpu_range().map(|(lo, hi)| {
                        format!("{}–{}", fmt_cpu_us(lo / 1e3), fmt_cpu_us(hi / 1e3))
                    })
                }),
            ),
        ]
    })
}

/// CPU µs with three significant digits or so.
pub fn fmt_cpu_us(us: f64) -> String {
    match us {
        _ if us >= 100.0 => format!("{us:.0}"),
        _ if us >= 10.0 => format!("{us:.1}"),
        _ => format!("{us:.2}"),
    }
}

fn rate_stats(row: &Row) -> Vec<(&'static str, Box<StatFn>)> {
    let size = row.size.unwrap_or(0) as f64;
    vec![
        ("msgs/s", Box::new(|c: &Cell| c.headline().map(fmt_rate))),
        (
            "MB/s",
            Box::new(move |c: &Cell| c.headline().map(|r| fmt_mb(r * size))),
        ),
        (
            "msgs/s range",
            Box::new(|c: &Cell| {
                c.range()
                    .map(|(lo, hi)| format!("{}–{}", fmt_rate(lo), fmt_rate(hi)))
            }),
        ),
    ]
}

/// Heading and explanatory note of a table of scalar rows.
pub(super) fn scalar_group_text(group: &str, meta: &Meta) -> (String, String) {
    let how = |what: &str| {
        format!(
            "Median over {} rounds, lowest–highest round in brackets; each round starts fresh \
             processes (pinned like the others). {what}",
            meta.rounds()
        )
    };
    match group {
        LIFE_CYCLE => (
            "Life cycle: connecting and crash detection (ms)".into(),
            how(
                "Connect: the publisher's process runs first; the clock starts when a new \
                 subscriber process starts building its subscriber (iceoryx2: its node) and \
                 stops when it holds its first message, or at the publisher's `Connected` \
                 event (both on CLOCK_MONOTONIC). The mmipc publisher publishes as soon as \
                 `Connected` arrives; the iceoryx2 one sends every ~0.1 ms until a send \
                 reaches the subscriber, which polls. Crash: from just before `kill -9` of \
                 one process to the other's `Disconnected` event, which must say `Crashed`; \
                 default options (heartbeat 1 s, peer timeout 5 s): detection comes from the \
                 dead process's lock file being released. mmipc endpoints have the default \
                 options and wait strategy.",
            ),
        ),
        MEMORY => (
            "Memory: resident and shared memory".into(),
            how(&format!(
                "A publisher process sends {} messages of {} to a subscriber process (mmipc \
                 with default options, iceoryx2 with this harness's configuration), then \
                 each reads its own /proc/self/status (VmRSS, RssShmem) and adds up its \
                 mappings of files under /dev/shm (their virtual size, touched or not). mmipc \
                 segment files are read from the channel directory (on /dev/shm, next to the \
                 records) by the subscriber once it has received everything: their sizes, and \
                 the tmpfs pages allocated to them (st_blocks). The 16-subscriber total has \
                 the 16 subscribers in one process (segments are per subscriber endpoint, not \
                 per process), one message each, and rounds every ring and doorbell file up \
                 to whole pages: what tmpfs holds once every page has been touched (the \
                 publisher's payload segment, sparse and untouched by 64 B messages, is left \
                 out). KiB = 1024 bytes.",
                fmt_thousands(MEMORY_MESSAGES as f64),
                fmt_size(MEMORY_SIZE),
            )),
        ),
        SOFTWARE => (
            "Software path: a round trip's instructions, without the hand-offs (ns)".into(),
            format!(
                "Median over {} rounds, lowest–highest round in brackets. One 64-byte \
                 message sent and received in one thread of the measuring \
                 process, both ends in it, 10^6 times after 10^5 unmeasured: mmipc `publish` \
                 then the copying `recv` (spin strategy, `deliver_to_same_process`), the \
                 floor's send then its receive copying the bytes out, as its echo does. \
                 Nothing crosses a CPU and the data stays in the cache, so this is the cost \
                 of the instructions alone. A round trip has one such send-and-receive per \
                 direction on its critical path: twice the difference here is what the \
                 software adds to the round trip beyond the floor's hand-offs.",
                meta.rounds()
            ),
        ),
        IDLE => (
            "Idle: CPU time with nothing to do".into(),
            how(&format!(
                "A subscriber process with the default wait strategy, connected to a \
                 publisher process, waits {:.1} s in `recv_timeout` with nothing sent; CPU \
                 time (user + system, every thread, from getrusage) over wall time, in % of \
                 one core. The publisher process is measured over its own {:.1} s meanwhile.",
                meta.idle_ms() as f64 / 1000.0,
                meta.idle_ms() as f64 / 1000.0
            )),
        ),
        other => (other.to_string(), String::new()),
    }
}

/// A scalar in its unit, with a precision that suits the value.
pub fn fmt_scalar(v: f64, unit: &str) -> String {
    match unit {
        "B" => fmt_thousands(v),
        "KiB" if v.fract() == 0.0 => fmt_thousands(v),
        "KiB" => format!("{v:.2}"),
        "MiB" => format!("{v:.2}"),
        _ if v.abs() >= 100.0 => format!("{v:.0}"),
        _ if v.abs() >= 10.0 => format!("{v:.1}"),
        _ if v.abs() >= 0.1 || v == 0.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

pub(super) fn scalar_table(rows: &[&Row], mechs: &[Mech]) -> String {
    let mut t = vec![header("row", "unit", mechs)];
    for row in rows {
        let unit = row.unit.as_str();
        let mut line = vec![row.title.clone(), row.unit.clone()];
        line.extend(mechs.iter().map(|m| {
            cell_text(row.cells.get(m), |c| {
                let v = fmt_scalar(c.headline()?, unit);
                Some(match c.range() {
                    Some((lo, hi)) if fmt_scalar(lo, unit) != fmt_scalar(hi, unit) => {
                        format!("{v} ({}–{})", fmt_scalar(lo, unit), fmt_scalar(hi, unit))
                    }
                    _ => v,
                })
            })
        }));
        t.push(line);
    }
    table(&t, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_formatted_for_their_unit() {
        assert_eq!(fmt_scalar(5300.0, "KiB"), "5,300");
        assert_eq!(fmt_scalar(256.25, "KiB"), "256.25");
        assert_eq!(fmt_scalar(64.0, "B"), "64");
        assert_eq!(fmt_scalar(4.125, "MiB"), "4.12");
        assert_eq!(fmt_scalar(0.026, "%"), "0.026");
        assert_eq!(fmt_scalar(2.345, "ms"), "2.35");
        assert_eq!(fmt_scalar(12.34, "ms"), "12.3");
        assert_eq!(fmt_cpu_us(1.234), "1.23");
        assert_eq!(fmt_cpu_us(56.78), "56.8");
        assert_eq!(fmt_cpu_us(345.6), "346");
    }
}
