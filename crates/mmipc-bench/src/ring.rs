//! `mmipc-bench ring`: latency and throughput of mmipc's ring alone (`mmipc::ring`, no
//! pub/sub layer) between two processes, in each wait mode, with a Unix domain socket
//! measured in the same run as a reference; and, with `--spin-sweep`, the data for choosing
//! `mmipc::ring::DEFAULT_SPIN`. This module owns the command's options, its plan (which
//! rows, sizes and timings it asks the harness for) and its report; the measuring is the
//! harness's, with the ring as one more transport (`transport::ring`).
//!
//! ```text
//! cargo run --release -p mmipc-bench -- ring                  # full run, about a minute
//! cargo run --release -p mmipc-bench -- ring --quick          # smoke run, a few seconds
//! cargo run --release -p mmipc-bench -- ring --sizes 8,64 --modes spin,park
//! cargo run --release -p mmipc-bench -- ring --spin-sweep     # SpinThenPark windows
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Result, ensure};
use clap::{Args, ValueEnum};
use mmipc_benchkit::os::{cpu_model, kernel, utc_now};
use mmipc_benchkit::table::markdown;
use mmipc_benchkit::units::{fmt_mb, fmt_ratio, fmt_size, fmt_thousands, fmt_us, parse_size};

use crate::harness::{self, Ctx, Settings};
use crate::os::Usage;
use crate::rows::{Group, Row, Sample};
use crate::transport::Mech;

/// Largest payload accepted on the command line.
const MAX_SIZE: usize = 64 << 20;
/// Pause between round trips in the "sparse" part of the spin sweep.
const SPARSE_GAP: Duration = Duration::from_millis(1);

/// The `ring` command's options.
#[derive(Args, Debug)]
pub struct RingArgs {
    /// Short rows (a smoke run of a few seconds).
    #[arg(long)]
    quick: bool,
    /// Payload sizes for both tests (suffixes K/KiB, M/MiB) [default: ping-pong
    /// 8,64,1K,64K, throughput 64,4K,1M].
    #[arg(long, value_delimiter = ',', value_parser = payload_size, value_name = "SIZE,...")]
    sizes: Vec<usize>,
    /// Ring wait modes, both sides alike.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "spin,default,park"
    )]
    modes: Vec<Wait>,
    /// Skip the Unix domain socket reference.
    #[arg(long)]
    no_uds: bool,
    /// Measured time of each row in seconds [default: 1.5 ping-pong, 1 throughput; 0.1
    /// with --quick].
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    duration: Option<Duration>,
    /// Capacity of each ring, a power of two.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1MiB")]
    capacity: usize,
    /// Do not pin the two processes to different CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Measure 64-byte ping-pong (the first of --sizes) with `SpinThenPark` windows instead,
    /// back to back and with 1 ms pauses, with the CPU time and sleeps it costs.
    #[arg(long)]
    spin_sweep: bool,
    /// Spin windows of the sweep, in µs.
    #[arg(long, value_delimiter = ',', default_value = "0,5,20,50,100,200")]
    windows: Vec<u64>,
}

/// A ring wait mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Wait {
    /// `WaitStrategy::Spin`.
    Spin,
    /// `WaitStrategy::default()`: spin briefly, then park.
    Default,
    /// `WaitStrategy::Park`.
    Park,
}

impl Wait {
    fn mech(self) -> Mech {
        match self {
            Wait::Spin => Mech::RingSpin,
            Wait::Default => Mech::RingDefault,
            Wait::Park => Mech::RingPark,
        }
    }
}

fn payload_size(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    match (8..=MAX_SIZE).contains(&n) {
        true => Ok(n),
        false => Err(format!("size {s} is not between 8 B and 64 MiB")),
    }
}

fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match (0.001..=3600.0).contains(&secs) {
        true => Ok(Duration::from_secs_f64(secs)),
        false => Err("the duration must be between 0.001 and 3600 s".into()),
    }
}

/// Runs the command and prints its report; `Ok(false)` if a measurement failed.
pub fn run(args: &RingArgs, command: &str) -> Result<bool> {
    ensure!(
        args.capacity.is_power_of_two(),
        "--capacity must be a power of two"
    );
    let ctx = Ctx::new(!args.no_pin)?;
    let pinning = ctx.pinning();
    eprintln!("mmipc-bench: {command} ({pinning})");
    let mut out = String::new();
    writeln!(out, "# mmipc ring benchmark\n")?;
    writeln!(
        out,
        "{} · {} · {} · {pinning}\n",
        utc_now(),
        cpu_model(),
        kernel()
    )?;
    writeln!(out, "`{command}`")?;
    let ok = if args.spin_sweep {
        spin_sweep(&ctx, args, &mut out)?
    } else {
        full_run(&ctx, args, &mut out)?
    };
    println!("{out}");
    Ok(ok)
}

/// Settings for rows of `groups` over `mechs`: one round, ring capacity and sizes from the
/// command line; warm-up 200 ms, 1.5 s measured (ping-pong) and 1 s (throughput), or
/// 20 + 100 ms with `--quick`, unless `--duration` says otherwise.
fn settings(args: &RingArgs, mechs: Vec<Mech>, groups: Vec<Group>) -> Settings {
    let (warm, pp, tp) = match args.quick {
        true => (20, 100, 100),
        false => (200, 1500, 1000),
    };
    let ms = Duration::from_millis;
    let measure = |d| args.duration.unwrap_or(ms(d));
    Settings {
        rounds: 1,
        latency: (ms(warm), measure(pp)),
        throughput: (ms(warm), measure(tp)),
        mechs,
        groups,
        pin: !args.no_pin,
        mmipc_ring: Some(args.capacity),
        idle: Duration::ZERO,
        sizes: (!args.sizes.is_empty()).then(|| args.sizes.clone()),
        quick: false,
        gap: Duration::ZERO,
        spin_window: None,
        sampled_check: true,
    }
}

/// "mmipc" and the wait mode, or "UDS" and "–".
fn transport(mech: Mech) -> (&'static str, String) {
    match mech {
        Mech::Uds => ("UDS", "–".into()),
        m => {
            let label = m.label();
            let wait = label.strip_prefix("ring ").unwrap_or(&label);
            ("mmipc", wait.to_string())
        }
    }
}

/// The cell of `mech` in `row`: its one sample, or its error.
fn sample(row: &Row, mech: Mech) -> Result<&Sample, String> {
    let cell = row.cells.get(&mech).ok_or("not measured")?;
    match (cell.samples.first(), cell.errors.first()) {
        (Some(s), _) => Ok(s),
        (None, Some(e)) => Err(e.clone()),
        (None, None) => Err("no result".into()),
    }
}

fn full_run(ctx: &Ctx, args: &RingArgs, out: &mut String) -> Result<bool> {
    let mut mechs: Vec<Mech> = args.modes.iter().map(|m| m.mech()).collect();
    if !args.no_uds {
        mechs.push(Mech::Uds);
    }
    let s = settings(args, mechs.clone(), vec![Group::Latency, Group::Throughput]);
    let rows = harness::run_rows(ctx, &s);
    writeln!(
        out,
        "\nRings of {} in {}; per row fresh peer processes, warm-up {} ms, then {} ms \
         measured (ping-pong) / {} ms (throughput).\n",
        fmt_size(args.capacity),
        ctx.dir().parent().unwrap_or(ctx.dir()).display(),
        s.latency.0.as_millis(),
        s.latency.1.as_millis(),
        s.throughput.1.as_millis()
    )?;
    let mut failures = Vec::new();
    out.push_str("## Ping-pong round trip (parent → peer → parent)\n\n");
    let mut table = |group: &str, head: &[&str], line: &LineFn| {
        let t = ring_table(&rows, &mechs, group, head, line, &mut failures);
        if t.len() > 1 {
            markdown(&t, 3)
        } else {
            String::new()
        }
    };
    let latency = table(
        "latency",
        &[
            "size",
            "transport",
            "wait",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "round trips",
            "p50 / UDS p50",
        ],
        &|s, uds, _| {
            let Sample::Latency { hist, .. } = s else {
                return vec![];
            };
            let p = |q| hist.value_at_quantile(q) as f64;
            vec![
                fmt_us(p(0.5)),
                fmt_us(p(0.99)),
                fmt_us(p(0.999)),
                fmt_thousands(hist.len() as f64),
                fmt_ratio(uds.map(|u| p(0.5) / u.headline())),
            ]
        },
    );
    let throughput = table(
        "throughput",
        &[
            "size",
            "transport",
            "wait",
            "msgs/s",
            "MB/s",
            "messages",
            "msgs/s / UDS",
        ],
        &|s, uds, size| {
            let Sample::Throughput {
                msgs_per_s,
                measured,
                ..
            } = s
            else {
                return vec![];
            };
            vec![
                fmt_thousands(*msgs_per_s),
                fmt_mb(msgs_per_s * size as f64),
                fmt_thousands(*measured as f64),
                fmt_ratio(uds.map(|u| msgs_per_s / u.headline())),
            ]
        },
    );
    out.push_str(&latency);
    out.push_str("\n## One-way throughput (peer → parent)\n\n");
    out.push_str(&throughput);
    writeln!(
        out,
        "\nmmipc: the ring alone (`mmipc::ring`): `Producer::write` (one copy in), echo \
         `read_in_place` + `reserve` + `commit` (one copy), receiver `read_in_place` (no \
         copy). UDS: one `write_all` of length prefix + payload per message (two above 64 \
         KiB), `read_exact` through a 256 KiB `BufReader`. Ratios below 1× (latency) or \
         above 1× (throughput) favour mmipc. MB = 10^6 bytes. Every message's sequence \
         words are checked, every 1024th message byte by byte (outside the timed part); a \
         throughput run's count and checksum must match the sender's."
    )?;
    Ok(report_failures(out, failures))
}

/// The figures of one sample, given the UDS sample of its row (none for UDS itself) and
/// the payload size.
type LineFn = dyn Fn(&Sample, Option<&Sample>, usize) -> Vec<String>;

/// The lines of a table of the rows of `group`: per size, one line per mechanism with size,
/// transport, wait mode and the figures of `line`; a failed cell says FAIL and its error
/// goes to `failures`.
fn ring_table(
    rows: &[Row],
    mechs: &[Mech],
    group: &str,
    head: &[&str],
    line: &LineFn,
    failures: &mut Vec<String>,
) -> Vec<Vec<String>> {
    let mut t = vec![head.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for row in rows.iter().filter(|r| r.group == group) {
        let size = row.size.unwrap_or(0);
        let uds = sample(row, Mech::Uds).ok();
        for &mech in mechs {
            let (tr, wait) = transport(mech);
            let mut cells = vec![fmt_size(size), tr.into(), wait];
            match sample(row, mech) {
                Ok(s) => cells.extend(line(s, uds.filter(|_| mech != Mech::Uds), size)),
                Err(e) => {
                    failures.push(format!("- {} {}: {e}", row.title, mech.id()));
                    cells.push("FAIL".into());
                }
            }
            t.push(cells);
        }
    }
    t
}

/// Appends the failures, if any; true if there were none.
fn report_failures(out: &mut String, failures: Vec<String>) -> bool {
    if failures.is_empty() {
        return true;
    }
    out.push_str("\n## Failures\n\n");
    for f in &failures {
        out.push_str(&f.replace('\n', " "));
        out.push('\n');
    }
    false
}

/// One ping-pong of the sweep with `window` (`None`: `WaitStrategy::Spin`): its round
/// trips, the CPU use of both sides, and the round trips it made, warm-up included.
fn sweep_once(
    ctx: &Ctx,
    s: &Settings,
    size: usize,
    window: Option<Duration>,
) -> Result<(Sample, [Usage; 2], u64)> {
    let mech = match window {
        None => Mech::RingSpin,
        Some(_) => Mech::RingDefault,
    };
    let s = Settings {
        spin_window: window,
        mechs: vec![mech],
        ..s.clone()
    };
    let sample = ctx.measure(&s, Group::Latency, size, mech)?;
    let Sample::Latency {
        cpu, round_trips, ..
    } = &sample
    else {
        anyhow::bail!("a ping-pong gave {sample:?}");
    };
    let (cpu, n) = (*cpu, *round_trips);
    Ok((sample, cpu, n))
}

/// The 50th, 99th or 99.9th percentile of a ping-pong sample, ns.
fn pct(s: &Sample, q: f64) -> f64 {
    match s {
        Sample::Latency { hist, .. } => hist.value_at_quantile(q) as f64,
        _ => f64::NAN,
    }
}

fn spin_sweep(ctx: &Ctx, args: &RingArgs, out: &mut String) -> Result<bool> {
    let size = args.sizes.first().copied().unwrap_or(64);
    let (warm, b2b, sparse) = match args.quick {
        true => (20, 200, 150),
        false => (200, 1500, 1000),
    };
    let ms = Duration::from_millis;
    let b2b_settings = Settings {
        latency: (ms(warm), args.duration.unwrap_or(ms(b2b))),
        ..settings(args, vec![], vec![Group::Latency])
    };
    let sparse_settings = Settings {
        latency: (ms(warm).min(ms(50)), args.duration.unwrap_or(ms(sparse))),
        gap: SPARSE_GAP,
        ..b2b_settings.clone()
    };
    let windows: Vec<Option<Duration>> = std::iter::once(None)
        .chain(
            args.windows
                .iter()
                .map(|&us| Some(Duration::from_micros(us))),
        )
        .collect();
    let mut t = vec![
        [
            "wait",
            "b2b p50 µs",
            "b2b p99 µs",
            "b2b p99.9 µs",
            "b2b sleeps/msg parent·peer",
            "b2b CPU µs/msg parent·peer",
            "sparse p50 µs",
            "sparse p99 µs",
            "sparse sleeps/msg parent·peer",
            "sparse CPU µs/msg parent·peer",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut failures = Vec::new();
    for (i, &window) in windows.iter().enumerate() {
        let label = match window {
            None => "spin".to_string(),
            Some(d) if d.is_zero() => "spin-then-park 0 µs (= park)".to_string(),
            Some(d) => format!("spin-then-park {} µs", d.as_micros()),
        };
        let both = sweep_once(ctx, &b2b_settings, size, window)
            .and_then(|a| Ok((a, sweep_once(ctx, &sparse_settings, size, window)?)));
        let (a, b) = match both {
            Ok(ab) => ab,
            Err(e) => {
                failures.push(format!("- {label}: {e:#}"));
                continue;
            }
        };
        eprintln!(
            "[{}/{}] {label}: b2b p50 {} µs, sparse p50 {} µs",
            i + 1,
            windows.len(),
            fmt_us(pct(&a.0, 0.5)),
            fmt_us(pct(&b.0, 0.5))
        );
        let per = |(_, cpu, n): &(Sample, [Usage; 2], u64), f: fn(&Usage) -> f64| {
            let n = (*n).max(1) as f64;
            (f(&cpu[0]) / n, f(&cpu[1]) / n)
        };
        let sleeps = |u: &Usage| u.vcsw as f64;
        let cpu_us = |u: &Usage| u.cpu_ns as f64 / 1000.0;
        // The pinger's pause between sparse round trips is one voluntary switch of its own.
        let (sp, sc) = per(&b, sleeps);
        let pair = |(p, c): (f64, f64)| format!("{p:.2} · {c:.2}");
        let pair1 = |(p, c): (f64, f64)| format!("{p:.1} · {c:.1}");
        t.push(vec![
            label,
            fmt_us(pct(&a.0, 0.5)),
            fmt_us(pct(&a.0, 0.99)),
            fmt_us(pct(&a.0, 0.999)),
            pair(per(&a, sleeps)),
            pair1(per(&a, cpu_us)),
            fmt_us(pct(&b.0, 0.5)),
            fmt_us(pct(&b.0, 0.99)),
            pair(((sp - 1.0).max(0.0), sc)),
            pair1(per(&b, cpu_us)),
        ]);
    }
    writeln!(
        out,
        "\n## Spin window sweep: {} ping-pong over mmipc rings\n",
        fmt_size(size)
    )?;
    out.push_str(&markdown(&t, 1));
    writeln!(
        out,
        "\nb2b: back to back, {} ms measured after {} ms warm-up. sparse: a {} ms pause \
         between round trips, {} ms measured. sleeps = voluntary context switches (futex \
         waits) per round trip, not counting the sparse pause itself; CPU = user + system \
         time per round trip, warm-up included; parent = the pinging thread, peer = the \
         echoing thread.",
        b2b_settings.latency.1.as_millis(),
        b2b_settings.latency.0.as_millis(),
        SPARSE_GAP.as_millis(),
        sparse_settings.latency.1.as_millis()
    )?;
    Ok(report_failures(out, failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_take_sizes_and_seconds_in_range() {
        assert_eq!(payload_size("64k"), Ok(64 << 10));
        assert!(payload_size("4").is_err());
        assert!(payload_size("65MiB").is_err());
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(seconds("0").is_err() && seconds("x").is_err());
    }

    #[test]
    fn rows_are_labelled_like_the_old_ring_bench() {
        assert_eq!(transport(Mech::RingSpin), ("mmipc", "spin".to_string()));
        assert_eq!(transport(Mech::RingPark), ("mmipc", "park".to_string()));
        let default = transport(Mech::RingDefault).1;
        assert!(default.starts_with("default (") && default.ends_with(" µs)"));
        assert_eq!(transport(Mech::Uds), ("UDS", "–".to_string()));
    }
}
