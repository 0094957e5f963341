//! `mmipc-bench`: mmipc side by side with iceoryx2, Unix domain sockets, pipes, TCP over
//! loopback and a one-slot shared-memory mailbox (the hardware floor), two or three processes
//! per measurement.
//!
//! ```text
//! cargo run --release -p mmipc-bench -- compare                 # full run, a few minutes
//! cargo run --release -p mmipc-bench -- compare --quick         # smoke run, well under 30 s
//! cargo run --release -p mmipc-bench -- compare --rows latency --only mmipc-spin,iox2-poll,floor
//! cargo run --release -p mmipc-bench -- compare --json results.json --md   # + bench/RESULTS.md
//! cargo run --release -p mmipc-bench -- compare --rows lifecycle,memory,idle  # the rest
//! cargo run --release -p mmipc-bench -- compare --rows fanout-large    # 64 KiB-4 MiB to 1, 2, 4
//! cargo run --release -p mmipc-bench -- compare --rows threshold-sweep # payload threshold
//! cargo run --release -p mmipc-bench -- ring --quick            # the ring alone, see `ring`
//! ```
//!
//! `ring` measures mmipc's ring without the pub/sub layer, in each wait mode, beside a Unix
//! domain socket (the tables of the former `examples/ring_bench`), with the same harness.
//!
//! `fanout-large` sends 64 KiB, 1 MiB and 4 MiB messages to 1, 2 and 4 receiver processes
//! through mmipc's one-copy fan-out (a loan read in place with `recv_ref`; `publish` +
//! `recv`; inline, the payload segment off) and iceoryx2's loans, and reports the sender
//! process's CPU time per message beside the rates (not part of `--quick` unless named;
//! then 1 MiB only). `threshold-sweep` (only when named) compares mmipc `publish` + `recv`
//! with the payload segment for every message and for none, 4 KiB to 256 KiB.
//!
//! Besides round trips, throughput and fan-out (`--rows latency,throughput,fanout`), it
//! measures the software path of a round trip (with `latency`: a 64 B message sent and
//! received in one thread, mmipc beside the floor, so the instructions apart from the
//! hand-offs between CPUs), connection set-up and crash detection (`lifecycle`), resident and shared memory
//! (`memory`) and idle CPU (`idle`), see `hooks`. mmipc rings in the measured rows are sized
//! for the message: max(256 KiB, 4 × message size rounded up to a power of two), unless
//! `--mmipc-ring-capacity` forces one size.
//!
//! The harness re-executes itself (`mmipc-bench peer <json>`) for every measurement: the
//! responders (echoer, or receivers) first, pinned to one CPU, then the initiator (pinger, or
//! sender), pinned to another. Every peer dies with the harness and ends itself after a
//! deadline; the harness kills peers that do not report in time. The Markdown report goes to
//! stdout, progress to stderr. The exit status is 1 if any measurement of mmipc failed (a
//! peer process error, a hang, or a message that arrived wrong); a failed round of another
//! mechanism (iceoryx2, a socket, ...) is reported in the Failures section, marked in its
//! table and on stderr, and does not change the exit status.

mod harness;
mod hooks;
mod os;
mod payload;
mod peer;
mod report;
mod ring;
mod rows;
mod transport;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use harness::{Ctx, Settings};
use rows::Group;
use transport::Mech;

/// Where `--md` without a file name writes: `bench/RESULTS.md` in the workspace.
const DEFAULT_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/RESULTS.md");

#[derive(Parser)]
#[command(
    name = "mmipc-bench",
    version,
    about = "Benchmark mmipc side by side with iceoryx2, sockets, pipes and TCP"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure every mechanism and print a Markdown report.
    Compare(CompareArgs),
    /// Measure mmipc's ring alone in each wait mode, beside a Unix domain socket.
    Ring(ring::RingArgs),
    /// A peer process of a measurement (started by `compare` and `ring`).
    #[command(hide = true)]
    Peer {
        /// The peer's task, as JSON.
        spec: String,
    },
}

#[derive(Args)]
struct CompareArgs {
    /// A tiny run for CI smoke tests: one short round of everything.
    #[arg(long)]
    quick: bool,
    /// Rounds per row [default: 7; 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    rounds: Option<u16>,
    /// Only these mechanisms (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "MECH,...")]
    only: Vec<Mech>,
    /// Only these groups of rows (comma-separated) [default: all but threshold-sweep; with
    /// --quick also without fanout-large, which --quick runs at 1 MiB only when named].
    #[arg(long, value_delimiter = ',', value_name = "GROUP,...")]
    rows: Vec<Group>,
    /// Recorded or counted time of each run, after the warm-up, in ms [default: 300; 60 with
    /// --quick].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=600_000))]
    measure_ms: Option<u64>,
    /// Unrecorded warm-up of each run, in ms [default: 100; 20 with --quick].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=60_000))]
    warm_ms: Option<u64>,
    /// Also write the results as JSON to FILE (with the mmipc/other ratios of every row).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write the Markdown report to FILE [default FILE: bench/RESULTS.md in the
    /// workspace].
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = DEFAULT_MD)]
    md: Option<PathBuf>,
    /// Do not pin the processes to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Capacity of each mmipc ring in bytes, a power of two, for every row [default: per
    /// row, max(256 KiB, 4 × message size rounded up to a power of two)].
    #[arg(long, value_name = "BYTES")]
    mmipc_ring_capacity: Option<usize>,
    /// How long the idle rows wait, in ms [default: 2000].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    idle_ms: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Peer { spec } => match peer::main(&spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mmipc-bench peer {}: {e:#}", std::process::id());
                ExitCode::FAILURE
            }
        },
        Cmd::Ring(args) => match ring::run(&args, &command_line()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("mmipc-bench: some measurements failed (see the Failures section)");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("mmipc-bench: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Compare(args) => match compare(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("mmipc-bench: some mmipc measurements failed (see the Failures section)");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("mmipc-bench: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The command that reproduces this run, for the report.
fn command_line() -> String {
    std::iter::once("cargo run --release -p mmipc-bench --".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the comparison; `Ok(false)` if some measurement of mmipc failed.
fn compare(args: &CompareArgs) -> Result<bool> {
    let started = Instant::now();
    let (rounds, warm, measure) = if args.quick {
        (1, 20, 60)
    } else {
        (7, 100, 300)
    };
    let warm = Duration::from_millis(args.warm_ms.unwrap_or(warm));
    let measure = Duration::from_millis(args.measure_ms.unwrap_or(measure));
    let settings = Settings {
        rounds: args.rounds.map_or(rounds, usize::from),
        latency: (warm, measure),
        throughput: (warm, measure),
        mechs: if args.only.is_empty() {
            Mech::ALL.to_vec()
        } else {
            Mech::ALL
                .into_iter()
                .filter(|m| args.only.contains(m))
                .collect()
        },
        groups: if args.rows.is_empty() {
            Group::defaults(args.quick)
        } else {
            args.rows.clone()
        },
        pin: !args.no_pin,
        mmipc_ring: args.mmipc_ring_capacity,
        idle: Duration::from_millis(args.idle_ms.unwrap_or(2000)),
        sizes: None,
        quick: args.quick,
        gap: Duration::ZERO,
        spin_window: None,
        sampled_check: false,
    };
    let ctx = Ctx::new(settings.pin)?;
    let command = command_line();
    eprintln!(
        "mmipc-bench: {} rounds, {} ms warm-up + {} ms per run, {}",
        settings.rounds,
        warm.as_millis(),
        measure.as_millis(),
        ctx.pinning()
    );

    let mut rows = harness::run_rows(&ctx, &settings);
    rows.extend(hooks::extra_rows(&ctx, &settings)?);

    let meta = report::Meta {
        date: mmipc_benchkit::os::utc_now(),
        cpu: mmipc_benchkit::os::cpu_model(),
        kernel: mmipc_benchkit::os::kernel(),
        pinning: ctx.pinning(),
        command,
        seconds: started.elapsed().as_secs_f64(),
        settings,
    };
    let markdown = report::markdown(&meta, &rows);
    println!("{markdown}");
    let json = report::json(&meta, &rows);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))?;
        eprintln!("mmipc-bench: wrote {}", path.display());
    }
    if let Some(path) = &args.md {
        let workspace_results = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .map(|root| root.join("bench/RESULTS.md"));
        let path = match workspace_results {
            Some(p) if path.as_os_str() == DEFAULT_MD => p,
            _ => path.clone(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(&path, &markdown).with_context(|| format!("write {}", path.display()))?;
        eprintln!("mmipc-bench: wrote {}", path.display());
    }
    if json["peers_ok"] == false {
        eprintln!(
            "mmipc-bench: warning: some rounds of other mechanisms failed (see the Failures \
             section); they do not fail the run"
        );
    }
    Ok(json["ok"].as_bool().unwrap_or(false))
}
