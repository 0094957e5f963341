//! The rows of a report and what fills them, below everything else in the crate: the
//! [`Group`]s of rows (`--rows`), the [`Sample`] of one round of one mechanism, the [`Cell`]
//! of a mechanism's rounds in a row with its median and pooled histogram, the [`Row`], and
//! the mmipc ring size of a row ([`mmipc_ring_for`]). The harness and the hooks fill rows,
//! the report and the `ring` command render them; this module knows none of them.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use mmipc_benchkit::table::median;
use mmipc_benchkit::units::{fmt_mb, fmt_rate, fmt_size, fmt_us};
use serde::Serialize;

use crate::os::Usage;
use crate::transport::{Mech, Pattern};

/// Group names of the scalar rows of `crate::hooks`, as the report shows them.
pub const LIFE_CYCLE: &str = "life cycle";
/// See [`LIFE_CYCLE`].
pub const MEMORY: &str = "memory";
/// See [`LIFE_CYCLE`].
pub const IDLE: &str = "idle";
/// See [`LIFE_CYCLE`]: the latency group's in-thread rows (`crate::hooks::software_path`).
pub const SOFTWARE: &str = "software";
/// Group name of the large-message fan-out rows ([`Group::FanoutLarge`]).
pub const FANOUT_LARGE: &str = "fanout-large";
/// Group name of the threshold rows ([`Group::ThresholdSweep`]).
pub const THRESHOLD: &str = "threshold";

/// A group of rows, selectable with `--rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// Ping-pong round trips.
    Latency,
    /// One publisher process → one subscriber process, as fast as possible.
    Throughput,
    /// One publisher process → two subscriber processes.
    Fanout,
    /// Large messages (64 KiB to 4 MiB), one publisher process → 1, 2 and 4 subscriber
    /// processes: mmipc's one-copy fan-out (loans, `publish`, and inline for comparison)
    /// beside iceoryx2's loans, with the publisher's CPU time per message. Not in `--quick`
    /// unless named.
    FanoutLarge,
    /// mmipc `publish` + `recv` with the payload segment for every message (threshold 0)
    /// and for none (threshold off), 4 KiB to 256 KiB, 1 → 1 and 1 → 2: where the default
    /// threshold should be. Only when named.
    ThresholdSweep,
    /// Connection set-up of a new subscriber process, and detection of a `kill -9`ed peer.
    Lifecycle,
    /// Shared and resident memory of publisher and subscriber processes.
    Memory,
    /// CPU time of connected processes with nothing to do.
    Idle,
}

/// Sizes of the large-message fan-out rows.
const LARGE: &[usize] = &[64 << 10, 1 << 20, 4 << 20];

impl Group {
    /// Every group, in report order.
    pub const ALL: [Group; 8] = [
        Group::Latency,
        Group::Throughput,
        Group::Fanout,
        Group::FanoutLarge,
        Group::ThresholdSweep,
        Group::Lifecycle,
        Group::Memory,
        Group::Idle,
    ];

    /// The groups measured when `--rows` names none: every group but the threshold sweep
    /// and, with `--quick`, the large-message fan-out.
    pub fn defaults(quick: bool) -> Vec<Group> {
        Group::ALL
            .into_iter()
            .filter(|g| *g != Group::ThresholdSweep)
            .filter(|g| !(quick && *g == Group::FanoutLarge))
            .collect()
    }

    /// Payload sizes of the group's rows (none for the groups measured in `crate::hooks`).
    pub fn sizes(self) -> &'static [usize] {
        match self {
            Group::Latency => &[8, 64, 1 << 10, 64 << 10],
            Group::Throughput => &[64, 4 << 10, 1 << 20],
            Group::Fanout => &[64, 4 << 10],
            Group::FanoutLarge => LARGE,
            Group::ThresholdSweep => &[4 << 10, 16 << 10, 32 << 10, 64 << 10, 256 << 10],
            Group::Lifecycle | Group::Memory | Group::Idle => &[],
        }
    }

    /// Payload sizes of the group's rows in a `--quick` run: fewer for the large groups.
    pub fn quick_sizes(self) -> &'static [usize] {
        match self {
            Group::FanoutLarge => &[1 << 20],
            Group::ThresholdSweep => &[16 << 10, 64 << 10],
            other => other.sizes(),
        }
    }

    /// Ping-pong for the latency rows, one-way for the others.
    pub fn pattern(self) -> Pattern {
        match self {
            Group::Latency => Pattern::PingPong,
            _ => Pattern::OneWay,
        }
    }

    /// Receiving processes of the group's rows: one row per size and per entry.
    pub fn fan_outs(self) -> &'static [usize] {
        match self {
            Group::Fanout => &[2],
            Group::FanoutLarge => &[1, 2, 4],
            Group::ThresholdSweep => &[1, 2],
            _ => &[1],
        }
    }

    /// The mechanisms the group's rows are for: its own list, or (`None`) every mechanism
    /// but the large-message variants.
    pub fn mechs(self) -> Option<&'static [Mech]> {
        match self {
            Group::FanoutLarge => Some(&[
                Mech::MmipcLoan,
                Mech::MmipcLoanPark,
                Mech::MmipcDefault,
                Mech::MmipcInline,
                Mech::Iox2LoanPoll,
                Mech::Iox2LoanEvent,
            ]),
            Group::ThresholdSweep => Some(&[Mech::MmipcPayload, Mech::MmipcInline]),
            _ => None,
        }
    }

    /// Whether rows of the group measure `mech`.
    pub fn takes(self, mech: Mech) -> bool {
        match self.mechs() {
            Some(list) => list.contains(&mech),
            // Loans read in place are measured one way too, beside iceoryx2's loans written
            // in place (its other columns copy each message into the loan).
            None => {
                !mech.is_payload_variant()
                    || (matches!(mech, Mech::MmipcLoan | Mech::Iox2LoanPoll)
                        && matches!(self, Group::Throughput | Group::Fanout))
            }
        }
    }

    /// The row id for payload `size` to `receivers` processes (`rtt-64`, `tput-4096`,
    /// `fanout2-64`, `fanout-large-1to4-1048576`, `threshold-1to2-16384`).
    pub fn row_id(self, size: usize, receivers: usize) -> String {
        match self {
            Group::Latency => format!("rtt-{size}"),
            Group::Throughput => format!("tput-{size}"),
            Group::Fanout => format!("fanout2-{size}"),
            Group::FanoutLarge => format!("fanout-large-1to{receivers}-{size}"),
            Group::ThresholdSweep => format!("threshold-1to{receivers}-{size}"),
            Group::Lifecycle => format!("lifecycle-{size}"),
            Group::Memory => format!("memory-{size}"),
            Group::Idle => format!("idle-{size}"),
        }
    }
}

/// The rule behind [`mmipc_ring_for`], for the report.
pub const MMIPC_RING_RULE: &str = "max(256 KiB, 4 × message size rounded up to a power of two)";

/// The capacity of the mmipc rings of a row of `size`-byte messages unless
/// `--mmipc-ring-capacity` forces one: room for four messages, and never less than the
/// library's default ([`MMIPC_RING_RULE`]) — what a user sending messages that large would
/// configure, so that a message does not have to pass the ring in fragments.
pub fn mmipc_ring_for(size: usize) -> usize {
    size.saturating_mul(4)
        .next_power_of_two()
        .max(::mmipc::DEFAULT_RING_CAPACITY)
}

/// One measurement (one round of one mechanism in one row).
#[derive(Debug, Clone)]
pub enum Sample {
    /// Ping-pong: the round trips recorded after the warm-up (ns).
    Latency {
        /// Recorded round trips.
        hist: Histogram<u64>,
        /// Round trips made, warm-up included.
        round_trips: u64,
        /// CPU time and context switches of the pinger's and the echoer's measuring thread
        /// over all round trips, warm-up included.
        cpu: [Usage; 2],
    },
    /// One-way: the rate after the warm-up (the slowest receiver's, with several).
    Throughput {
        /// Messages per second.
        msgs_per_s: f64,
        /// Payload bytes per second.
        bytes_per_s: f64,
        /// Each receiver's rate.
        per_receiver: Vec<f64>,
        /// Messages sent, warm-up included.
        messages: u64,
        /// Messages counted after the warm-up (the slowest receiver's count).
        measured: u64,
        /// CPU time (user + system, every thread) of the sender process per message sent
        /// after its warm-up, ns (`None` if the sender did not measure it).
        sender_cpu_ns: Option<f64>,
    },
    /// Any other figure, in the row's unit (for rows added through `crate::hooks`).
    Scalar(f64),
}

impl Sample {
    /// The figure that rounds are summarised and mechanisms compared by: p50 in ns,
    /// messages per second, or the scalar.
    pub fn headline(&self) -> f64 {
        match self {
            Sample::Latency { hist, .. } => hist.value_at_quantile(0.5) as f64,
            Sample::Throughput { msgs_per_s, .. } => *msgs_per_s,
            Sample::Scalar(v) => *v,
        }
    }

    /// A short description for the progress lines.
    pub fn describe(&self) -> String {
        match self {
            Sample::Latency { hist, .. } => format!(
                "p50 {} µs  p99 {} µs  ({} round trips)",
                fmt_us(hist.value_at_quantile(0.5) as f64),
                fmt_us(hist.value_at_quantile(0.99) as f64),
                hist.len()
            ),
            Sample::Throughput {
                msgs_per_s,
                bytes_per_s,
                ..
            } => format!(
                "{} msgs/s  {} MB/s",
                fmt_rate(*msgs_per_s),
                fmt_mb(*bytes_per_s)
            ),
            Sample::Scalar(v) => format!("{v:.3}"),
        }
    }
}

/// What one mechanism produced over the rounds of a row.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    /// Successful rounds.
    pub samples: Vec<Sample>,
    /// Failed rounds: what went wrong.
    pub errors: Vec<String>,
}

impl Cell {
    /// Each round's headline figure, in round order.
    pub fn rounds(&self) -> Vec<f64> {
        self.samples.iter().map(Sample::headline).collect()
    }

    /// The median over rounds of the headline figure.
    pub fn headline(&self) -> Option<f64> {
        median(self.rounds())
    }

    /// All rounds' round trips in one histogram.
    pub fn pooled(&self) -> Option<Histogram<u64>> {
        let mut pooled: Option<Histogram<u64>> = None;
        for s in &self.samples {
            if let Sample::Latency { hist, .. } = s {
                match &mut pooled {
                    None => pooled = Some(hist.clone()),
                    Some(p) => {
                        // Same bounds everywhere, so adding cannot fail.
                        let _ = p.add(hist);
                    }
                }
            }
        }
        pooled
    }

    /// The lowest and highest round.
    pub fn range(&self) -> Option<(f64, f64)> {
        range(&self.rounds())
    }

    /// Each round's CPU time of the sender per message (ns), where measured.
    pub fn sender_cpu_rounds(&self) -> Vec<f64> {
        self.samples
            .iter()
            .filter_map(|s| match s {
                Sample::Throughput { sender_cpu_ns, .. } => *sender_cpu_ns,
                _ => None,
            })
            .collect()
    }

    /// The median over rounds of the sender's CPU time per message (ns).
    pub fn sender_cpu(&self) -> Option<f64> {
        median(self.sender_cpu_rounds())
    }

    /// The lowest and highest round of the sender's CPU time per message (ns).
    pub fn sender_cpu_range(&self) -> Option<(f64, f64)> {
        range(&self.sender_cpu_rounds())
    }
}

/// The lowest and highest of `values`.
fn range(values: &[f64]) -> Option<(f64, f64)> {
    let lo = values.iter().copied().reduce(f64::min)?;
    let hi = values.iter().copied().reduce(f64::max)?;
    Some((lo, hi))
}

/// One row of the report: one figure for every mechanism.
#[derive(Debug, Clone)]
pub struct Row {
    /// Stable identifier (`rtt-64`, `tput-4096`, `fanout2-64`, ...), the key in JSON.
    pub id: String,
    /// Which table it goes in (`latency`, `throughput`, `fanout`, or another name).
    pub group: String,
    /// Human title (`RTT 64 B`).
    pub title: String,
    /// Payload size, when the row has one.
    pub size: Option<usize>,
    /// Receiving processes of a measured row.
    pub receivers: Option<usize>,
    /// Unit of the headline figure (`ns`, `msgs/s`, or the scalar's).
    pub unit: String,
    /// Whether a larger headline figure is better.
    pub higher_is_better: bool,
    /// Per mechanism.
    pub cells: BTreeMap<Mech, Cell>,
}

impl Row {
    /// A row of `group` and `size` with one round per (mechanism, figure or error), for
    /// tests.
    #[cfg(test)]
    pub fn with(group: Group, size: usize, rounds: &[(Mech, Result<f64, &str>)]) -> Row {
        let mut row = Row::measured(group, size, group.fan_outs()[0]);
        for (mech, round) in rounds {
            row.add(*mech, round.map(Sample::Scalar).map_err(String::from));
        }
        row
    }

    /// An empty row of one of the measured groups, `size`-byte messages to `receivers`
    /// processes.
    pub fn measured(group: Group, size: usize, receivers: usize) -> Row {
        let (g, title, unit, higher) = match group {
            Group::Latency => ("latency", format!("RTT {}", fmt_size(size)), "ns", false),
            Group::Throughput => (
                "throughput",
                format!("{} 1→1", fmt_size(size)),
                "msgs/s",
                true,
            ),
            Group::Fanout => ("fanout", format!("{} 1→2", fmt_size(size)), "msgs/s", true),
            Group::FanoutLarge => (
                FANOUT_LARGE,
                format!("{} 1→{receivers}", fmt_size(size)),
                "msgs/s",
                true,
            ),
            Group::ThresholdSweep => (
                THRESHOLD,
                format!("{} 1→{receivers}", fmt_size(size)),
                "msgs/s",
                true,
            ),
            // Rows of these groups are scalar rows made by `crate::hooks`.
            Group::Lifecycle => (LIFE_CYCLE, fmt_size(size), "", false),
            Group::Memory => (MEMORY, fmt_size(size), "", false),
            Group::Idle => (IDLE, fmt_size(size), "", false),
        };
        Row {
            id: group.row_id(size, receivers),
            group: g.into(),
            title,
            size: Some(size),
            receivers: Some(receivers),
            unit: unit.into(),
            higher_is_better: higher,
            cells: BTreeMap::new(),
        }
    }

    /// An empty row of scalar figures (for `crate::hooks`).
    pub fn scalar(id: &str, group: &str, title: &str, unit: &str, higher_is_better: bool) -> Row {
        Row {
            id: id.into(),
            group: group.into(),
            title: title.into(),
            size: None,
            receivers: None,
            unit: unit.into(),
            higher_is_better,
            cells: BTreeMap::new(),
        }
    }

    /// Adds one round's outcome for `mech`.
    pub fn add(&mut self, mech: Mech, outcome: Result<Sample, String>) {
        let cell = self.cells.entry(mech).or_default();
        match outcome {
            Ok(s) => cell.samples.push(s),
            Err(e) => cell.errors.push(e),
        }
    }

    /// Headline of `mech`, if it has one.
    pub fn headline(&self, mech: Mech) -> Option<f64> {
        self.cells.get(&mech).and_then(Cell::headline)
    }

    /// Headline of every mmipc variant divided by that of every other mechanism.
    pub fn ratios(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (&a, ca) in &self.cells {
            if !a.is_mmipc() {
                continue;
            }
            let Some(ha) = ca.headline() else { continue };
            for (&b, cb) in &self.cells {
                if b.is_mmipc() {
                    continue;
                }
                if let Some(hb) = cb.headline().filter(|&h| h > 0.0) {
                    out.insert(format!("{}/{}", a.id(), b.id()), ha / hb);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_fan_out_rows_have_their_own_mechanisms_and_ids() {
        assert_eq!(Group::FanoutLarge.sizes(), [64 << 10, 1 << 20, 4 << 20]);
        assert_eq!(Group::FanoutLarge.quick_sizes(), [1 << 20]);
        assert_eq!(Group::FanoutLarge.fan_outs(), [1, 2, 4]);
        assert_eq!(Group::Fanout.fan_outs(), [2]);
        assert_eq!(Group::Throughput.fan_outs(), [1]);
        assert_eq!(
            Group::FanoutLarge.row_id(1 << 20, 4),
            "fanout-large-1to4-1048576"
        );
        assert_eq!(Group::Fanout.row_id(64, 2), "fanout2-64");
        assert_eq!(Group::Throughput.quick_sizes(), Group::Throughput.sizes());
        let row = Row::measured(Group::FanoutLarge, 4 << 20, 2);
        assert_eq!(
            (row.title.as_str(), row.group.as_str()),
            ("4 MiB 1→2", FANOUT_LARGE)
        );
        assert_eq!(row.receivers, Some(2));
        // The new variants only in their groups; the old rows keep their mechanisms.
        assert!(Group::FanoutLarge.takes(Mech::MmipcLoan));
        assert!(Group::FanoutLarge.takes(Mech::MmipcDefault));
        assert!(!Group::FanoutLarge.takes(Mech::Uds));
        assert!(Group::Fanout.takes(Mech::MmipcLoan));
        assert!(Group::Throughput.takes(Mech::MmipcLoan));
        assert!(Group::Throughput.takes(Mech::Iox2LoanPoll));
        assert!(!Group::Throughput.takes(Mech::Iox2LoanEvent));
        assert!(!Group::Latency.takes(Mech::MmipcLoan));
        assert!(!Group::Fanout.takes(Mech::MmipcLoanPark));
        assert!(!Group::Latency.takes(Mech::Iox2LoanEvent));
        assert!(Group::Fanout.takes(Mech::Iox2Event));
        assert!(Group::ThresholdSweep.takes(Mech::MmipcPayload));
        assert!(!Group::ThresholdSweep.takes(Mech::MmipcDefault));
    }

    #[test]
    fn quick_runs_leave_out_the_large_groups_unless_named() {
        let full = Group::defaults(false);
        assert!(full.contains(&Group::FanoutLarge));
        assert!(!full.contains(&Group::ThresholdSweep));
        let quick = Group::defaults(true);
        assert!(!quick.contains(&Group::FanoutLarge));
        assert_eq!(quick.len(), Group::ALL.len() - 2);
    }

    #[test]
    fn the_sender_cpu_is_summarised_over_rounds() {
        let mut row = Row::measured(Group::FanoutLarge, 1 << 20, 1);
        for cpu in [Some(3000.0), None, Some(1000.0), Some(2000.0)] {
            row.add(
                Mech::MmipcLoan,
                Ok(Sample::Throughput {
                    msgs_per_s: 1.0,
                    bytes_per_s: 1.0,
                    per_receiver: vec![1.0],
                    messages: 1,
                    measured: 1,
                    sender_cpu_ns: cpu,
                }),
            );
        }
        let cell = &row.cells[&Mech::MmipcLoan];
        assert_eq!(cell.sender_cpu_rounds(), [3000.0, 1000.0, 2000.0]);
        assert_eq!(cell.sender_cpu(), Some(2000.0));
        assert_eq!(cell.sender_cpu_range(), Some((1000.0, 3000.0)));
    }
}
