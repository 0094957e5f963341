//! `mmipc`: see channels and peers, send and watch messages, clean up after crashes, and
//! measure the transport, from a terminal.
//!
//! Exit codes: 0 success, 1 runtime error (including a timeout), 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod bench;
mod inspect;
mod publish;
mod subscribe;
mod util;

/// Publish/subscribe between processes over shared memory.
#[derive(Parser, Debug)]
#[command(name = "mmipc", version, about, long_about = None)]
struct Cli {
    /// Root directory of the channels (default: $XDG_RUNTIME_DIR/mmipc, else /dev/shm/mmipc-UID).
    #[arg(long, global = true, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Share the channels with the other users of the --dir directory's group (directories
    /// 2770, files 0660; every endpoint of a channel must use it). pub, sub and hz need it on
    /// a group's directory; ls and clean see it by themselves.
    #[arg(long, global = true, requires = "dir")]
    group: bool,
    /// Machine-readable JSON output: ls, clean and bench print one document; sub prints one
    /// object per message (as --format json); hz one object per second and a summary; pub a
    /// summary on stdout at the end.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish messages: each MESSAGE argument (repeated with --count/--rate), else each line
    /// of stdin; a summary (delivered and dropped per subscriber) goes to stderr at the end.
    /// Exits 1 if a subscriber could not take a message (above its max message size).
    Pub(publish::PubArgs),
    /// Print the messages published on a channel, one per line (see --format).
    Sub(subscribe::SubArgs),
    /// List channels and their endpoints (publishers, subscribers, rings).
    Ls {
        /// Only this channel.
        #[arg(value_parser = channel_name)]
        channel: Option<String>,
    },
    /// Remove what dead endpoints left behind.
    Clean {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Measure round-trip latency and throughput between processes on this machine.
    Bench(bench::BenchArgs),
    /// Show a channel's message rate and bandwidth, once a second, and totals at the end.
    Hz {
        /// The channel.
        #[arg(value_parser = channel_name)]
        channel: String,
        /// Stop after this long (e.g. `10s`).
        #[arg(long, value_parser = duration)]
        duration: Option<Duration>,
    },
    /// Internal: a peer process of `bench`.
    #[command(hide = true)]
    BenchPeer(bench::PeerArgs),
}

/// An error worth one line on stderr, and the exit code that goes with it.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    /// A runtime failure (exit code 1).
    pub(crate) fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }

    /// A usage error found after parsing (exit code 2).
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 2,
        }
    }
}

impl From<mmipc::Error> for Failure {
    fn from(e: mmipc::Error) -> Failure {
        match e {
            mmipc::Error::InvalidChannel { .. } | mmipc::Error::InvalidOption { .. } => {
                Failure::usage(e.to_string())
            }
            _ => Failure::runtime(e.to_string()),
        }
    }
}

/// The errors of single operations: each is a runtime failure, said in its own words.
macro_rules! runtime_failure_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Failure {
                Failure::runtime(e.to_string())
            }
        }
    )*};
}
runtime_failure_from!(
    mmipc::PublishError,
    mmipc::RecvTimeoutError,
    mmipc::WaitError
);

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::runtime(e.to_string())
    }
}

pub(crate) type CliResult<T = ()> = Result<T, Failure>;

/// `value_parser` for channel names: a bad one is a usage error (exit 2).
pub(crate) fn channel_name(s: &str) -> Result<String, String> {
    mmipc::validate_channel(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// `value_parser` for durations such as `500ms`, `2s`, `1m`.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 2s, 1m)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = cli.dir.clone().unwrap_or_else(mmipc::default_root);
    let result = match cli.command {
        Command::Pub(args) => publish::run(&root, cli.group, args, cli.json),
        Command::Sub(args) => subscribe::run(&root, cli.group, args, cli.json),
        Command::Ls { channel } => inspect::ls(&root, channel.as_deref(), cli.json),
        Command::Clean { dry_run } => inspect::clean(&root, dry_run, cli.json),
        Command::Bench(args) => bench::run(&root, args, cli.json),
        Command::Hz { channel, duration } => {
            subscribe::hz(&root, cli.group, &channel, duration, cli.json)
        }
        Command::BenchPeer(args) => bench::peer(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("mmipc: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
