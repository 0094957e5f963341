//! The side-by-side report: the facts of a run ([`Meta`]), the Markdown report with its
//! header, tables, target ratios, failures and method note ([`markdown`]), the JSON
//! ([`json()`]), and whether the run passes ([`outcome`]). Tables are drawn in `tables`,
//! targets checked in `targets`; rows come from `crate::rows`.

use std::fmt::Write as _;
use std::time::Duration;

use mmipc_benchkit::table::markdown as table;
use mmipc_benchkit::units::fmt_size;

use crate::harness::Settings;
use crate::rows::{FANOUT_LARGE, MMIPC_RING_RULE, Row, THRESHOLD};
use crate::transport::Mech;

mod json;
mod tables;
mod targets;

pub use json::json;
use tables::{
    cpu_table, fan_table, latency_table, scalar_group_text, scalar_table, throughput_table,
};
use targets::{fan_targets, limits, targets};

/// Facts about the run for the report's header.
#[derive(Debug, Clone)]
pub struct Meta {
    /// When.
    pub date: String,
    /// CPU model and count.
    pub cpu: String,
    /// Operating system.
    pub kernel: String,
    /// Which process ran where.
    pub pinning: String,
    /// The command line.
    pub command: String,
    /// Seconds the run took.
    pub seconds: f64,
    /// How the run was done: rounds, timings, the mmipc ring capacity if one was forced.
    pub settings: Settings,
}

/// A duration in whole milliseconds.
fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Meta {
    /// Rounds per row.
    pub fn rounds(&self) -> usize {
        self.settings.rounds
    }

    /// Ping-pong warm-up and measured time, ms.
    pub fn latency_ms(&self) -> (u64, u64) {
        (ms(self.settings.latency.0), ms(self.settings.latency.1))
    }

    /// Throughput warm-up and measured time, ms.
    pub fn throughput_ms(&self) -> (u64, u64) {
        (
            ms(self.settings.throughput.0),
            ms(self.settings.throughput.1),
        )
    }

    /// How long the idle rows waited, ms.
    pub fn idle_ms(&self) -> u64 {
        ms(self.settings.idle)
    }

    /// mmipc ring capacity in bytes forced for every row (`--mmipc-ring-capacity`); `None`:
    /// per row, by [`crate::rows::mmipc_ring_for`].
    pub fn forced_ring(&self) -> Option<usize> {
        self.settings.mmipc_ring
    }

    /// The mmipc ring capacity of the rows of `size`-byte messages.
    pub fn mmipc_ring(&self, size: usize) -> usize {
        self.settings.mmipc_ring(size)
    }

    /// "256 KiB for 8 B, 64 B; 4 MiB for 1 MiB": the ring of each message size in `rows`.
    fn rings(&self, rows: &[Row]) -> String {
        let mut sizes: Vec<usize> = rows
            .iter()
            .filter(|r| r.cells.keys().any(|m| m.is_mmipc()))
            .filter_map(|r| r.size)
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        let mut groups: Vec<(usize, Vec<String>)> = Vec::new();
        for size in sizes {
            let ring = self.mmipc_ring(size);
            match groups.last_mut() {
                Some((r, list)) if *r == ring => list.push(fmt_size(size)),
                _ => groups.push((ring, vec![fmt_size(size)])),
            }
        }
        groups
            .iter()
            .map(|(ring, list)| format!("{} for {}", fmt_size(*ring), list.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The sentence on mmipc ring sizes for the report's header.
    fn ring_note(&self, rows: &[Row]) -> String {
        let rings = self.rings(rows);
        let per_size = if rings.is_empty() {
            String::new()
        } else {
            format!(": {rings}")
        };
        match self.forced_ring() {
            Some(bytes) => format!(
                "mmipc rings: {} for every row (`--mmipc-ring-capacity`); the life-cycle, \
                 memory and idle rows use the library's defaults (256 KiB rings).",
                fmt_size(bytes)
            ),
            None => format!(
                "mmipc rings: {}, what a user sending messages that large would configure \
                 (`--mmipc-ring-capacity` forces one size){per_size}. The life-cycle, memory \
                 and idle rows use the library's defaults (256 KiB rings).",
                MMIPC_RING_RULE
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------

/// The whole report as Markdown.
pub fn markdown(meta: &Meta, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# mmipc compared with other IPC mechanisms\n");
    let _ = writeln!(
        out,
        "{} · {} · {} · {} · {} rounds · iceoryx2 {} · run took {:.0} s\n",
        meta.date,
        meta.cpu,
        meta.kernel,
        meta.pinning,
        meta.rounds(),
        crate::transport::ICEORYX2_VERSION,
        meta.seconds
    );
    let _ = writeln!(out, "`{}`\n", meta.command);
    let _ = writeln!(out, "{}\n", meta.ring_note(rows));

    let groups: Vec<&str> = {
        let mut g: Vec<&str> = Vec::new();
        for r in rows {
            if !g.contains(&r.group.as_str()) {
                g.push(&r.group);
            }
        }
        g
    };
    for group in groups {
        let rows: Vec<&Row> = rows.iter().filter(|r| r.group == group).collect();
        let mechs: Vec<Mech> = Mech::ALL
            .into_iter()
            .filter(|m| rows.iter().any(|r| r.cells.contains_key(m)))
            .collect();
        match group {
            "latency" => {
                let _ = writeln!(
                    out,
                    "## Round trip (µs): initiator → responder → initiator, one message in \
                     flight\n"
                );
                out.push_str(&latency_table(&rows, &mechs));
            }
            "throughput" => {
                let _ = writeln!(
                    out,
                    "## One-way throughput: 1 sender → 1 receiver process\n"
                );
                out.push_str(&throughput_table(&rows, &mechs));
            }
            "fanout" => {
                let _ = writeln!(
                    out,
                    "## Fan-out: 1 sender → 2 receiver processes (rate of the slower \
                     receiver; every message reaches both)\n"
                );
                out.push_str(&throughput_table(&rows, &mechs));
            }
            FANOUT_LARGE | THRESHOLD => {
                let title = match group {
                    FANOUT_LARGE => {
                        "Large-message fan-out: 1 sender → N receiver processes (rate per \
                         receiver: the slower's; every message reaches each)"
                    }
                    _ => {
                        "Payload threshold: mmipc `publish` + `recv` through the payload \
                         segment (threshold 0) or copied into each ring (threshold off)"
                    }
                };
                let _ = writeln!(out, "## {title}\n");
                out.push_str(&fan_table(&rows, &mechs));
                let _ = writeln!(
                    out,
                    "\nPublisher CPU per message (µs): user + system CPU time of the whole \
                     sender process (getrusage) from the end of its warm-up to its last \
                     message, over the messages sent meanwhile; waiting for room (spinning \
                     or parked) included. Median over rounds, lowest–highest round below.\n"
                );
                out.push_str(&cpu_table(&rows, &mechs));
                if group == FANOUT_LARGE {
                    let _ = writeln!(out, "\n{}", fan_note());
                }
            }
            other => {
                let (title, note) = scalar_group_text(other, meta);
                let _ = writeln!(out, "## {title}\n");
                out.push_str(&scalar_table(&rows, &mechs));
                if !note.is_empty() {
                    let _ = writeln!(out, "\n{note}");
                }
            }
        }
        out.push('\n');
    }

    let targets = targets(rows);
    let limits = limits(rows);
    let fan = fan_targets(rows);
    if !targets.is_empty() || !limits.is_empty() || !fan.is_empty() {
        let _ = writeln!(out, "## Ratios for the targets\n");
        let mut t = vec![vec![
            "comparison".to_string(),
            "ratio".into(),
            "reading".into(),
        ]];
        for x in &targets {
            t.push(vec![x.name(), format!("{:.3}", x.ratio), x.reading()]);
        }
        for x in &limits {
            let ratio = x.value / x.target.limit;
            t.push(vec![x.name(), format!("{ratio:.3}"), x.reading()]);
        }
        for x in &fan {
            t.push(vec![x.name(), format!("{:.3}", x.ratio), x.reading()]);
        }
        out.push_str(&table(&t, 1));
        if !limits.is_empty() {
            let _ = writeln!(
                out,
                "\nFor absolute targets the ratio is the figure ÷ the target's limit: at most 1 \
                 meets it."
            );
        }
        if !fan.is_empty() {
            let _ = writeln!(
                out,
                "\nLarge-message targets (issue 15) compare two figures of the same run against \
                 a bound on their ratio; \"met\" or \"MISSED\" says whether the ratio is within \
                 it."
            );
        }
        out.push('\n');
    }

    let failures: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.cells.iter().flat_map(move |(m, c)| {
                let whose = if m.is_mmipc() { "mmipc" } else { "peer" };
                c.errors
                    .iter()
                    .map(move |e| format!("- {} {} ({whose}): {e}", r.title, m.id()))
            })
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "## Failures\n");
        let _ = writeln!(
            out,
            "A failed round of an mmipc row makes the run fail; a failed round of a peer \
             (another mechanism) is reported here and marked in its table, and the run still \
             passes.\n"
        );
        for f in failures {
            let _ = writeln!(out, "{}", f.replace('\n', " "));
        }
        out.push('\n');
    }
    out.push_str(&method(meta));
    out
}

/// How the large-message rows are measured.
fn fan_note() -> String {
    format!(
        "Every mechanism here runs as the other throughput rows do (same sender loop, same \
         checks). The sender writes each message's sequence words (first, middle and last 8 \
         bytes) and, every 1024th message, the whole pattern: into its own buffer, which \
         `publish` then copies (mmipc default, mmipc inline), or in place in a loan (mmipc \
         loan: `Publisher::loan` + `Loan::send`; iceoryx2 loan: `loan_slice_uninit`, each \
         sample slot zeroed once the first time it is lent, then `assume_init` + `send`). \
         Receivers check the three words of every message and every 1024th message byte by \
         byte, reading in place (mmipc loan: `recv_ref`; iceoryx2: `receive()`) or from their \
         copy (mmipc `recv`: a copy out of the payload segment to 2 or 4 receivers, out of \
         the ring 1→1, where `publish` copies into the ring, once either way, and inline). \
         mmipc: `WaitStrategy::default()` both sides (park: `WaitStrategy::Park`), \
         `OnFull::Block`, payload segment of max({}, 16 × message size × (receivers + 1)): \
         each subscriber may hold about 16 messages (15 of 4 MiB: blocks have a 64-byte \
         header), as the iceoryx2 subscribers' buffers; \
         threshold {} (the default) except inline (`payload_threshold(usize::MAX)`). All \
         receivers share one CPU.",
        fmt_size(::mmipc::DEFAULT_PAYLOAD_CAPACITY),
        fmt_size(::mmipc::DEFAULT_PAYLOAD_THRESHOLD),
    )
}

fn method(meta: &Meta) -> String {
    format!(
        "How: every measurement starts fresh processes (the harness re-executes itself), the \
         initiator (pinger, sender) pinned to one CPU and the responders (echoer, receivers) \
         to another; each row runs {rounds} rounds, and each round measures every mechanism \
         once, in an order rotated by one per round. Ping-pong: {lw} ms warm-up, then {lm} ms \
         recorded; p50 is the median over rounds of each round's p50, p99 and p99.9 come from \
         all rounds pooled, \"range\" is the lowest and highest round p50. Every message \
         carries a fresh pattern and its echo is compared byte for byte (outside the timed \
         part). Throughput: the sender runs {tw} + {tm} ms; the receiver counts from {tw} ms \
         after its first message to the end marker; figures are medians over rounds; every \
         message's sequence words are checked, every 1024th message byte by byte, and count \
         and checksum must match the sender's exactly. MB = 10^6 bytes. mmipc: public \
         pub/sub API, `publish(&[u8])` and the copying `recv()`, {ring}, `OnFull::Block`. \
         iceoryx2: `loan_slice_uninit` + `write_from_slice` + `send`, \
         zero-copy `receive()`; safe overflow off with `RetryUntilDelivered` (lossless), \
         subscriber buffer 16 MiB / size samples (16..1024); the event variant notifies after \
         every send and the receiver waits in `Listener::timed_wait` when it finds nothing, \
         1 ms at a time (iceoryx2 0.10 can lose a wake-up; it looks for samples again). \
         Sockets and pipes: u32 length prefix, blocking I/O, default kernel buffers, TCP with \
         `TCP_NODELAY`. The floor is a one-slot shared-memory mailbox with both sides \
         spinning: the cost of the hardware hand-off plus copies, not a transport. With two \
         receivers on one CPU (fan-out), spinning receivers share that CPU.\n",
        rounds = meta.rounds(),
        lw = meta.latency_ms().0,
        lm = meta.latency_ms().1,
        tw = meta.throughput_ms().0,
        tm = meta.throughput_ms().1,
        ring = match meta.forced_ring() {
            Some(bytes) => format!("rings of {}", fmt_size(bytes)),
            None => format!("rings of {}", MMIPC_RING_RULE),
        },
    )
}

/// Whether every round of every mmipc cell succeeded, and whether every round of every
/// other mechanism's cell did. Only the first decides the exit status: a peer's failure (a
/// timed-out iceoryx2 round, say) is reported, not fatal.
pub fn outcome(rows: &[Row]) -> (bool, bool) {
    let clean = |want_mmipc: bool| {
        rows.iter().all(|r| {
            r.cells
                .iter()
                .filter(|(m, _)| m.is_mmipc() == want_mmipc)
                .all(|(_, c)| c.errors.is_empty())
        })
    };
    (clean(true), clean(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Group;

    #[test]
    fn only_an_mmipc_failure_fails_the_run() {
        let timed_out = Err("peer did not answer in time");
        let rounds = [(Mech::MmipcSpin, Ok(1.0)), (Mech::Iox2Event, timed_out)];
        let rows = vec![Row::with(Group::Latency, 64, &rounds)];
        assert_eq!(outcome(&rows), (true, false));
        let md = markdown(&test_meta(), &rows);
        assert!(
            md.contains("iox2-event (peer): peer did not answer"),
            "{md}"
        );
        let mut rows = rows;
        rows[0].add(Mech::MmipcPark, Err("message 3: length".into()));
        assert_eq!(outcome(&rows), (false, false));
    }

    #[test]
    fn the_header_names_each_row_size_ring() {
        let meta = test_meta();
        let mut rows = Vec::new();
        for size in [64, 4096, 1 << 20] {
            rows.push(Row::with(
                Group::Throughput,
                size,
                &[(Mech::MmipcDefault, Ok(1.0))],
            ));
        }
        let note = meta.ring_note(&rows);
        assert!(
            note.contains("256 KiB for 64 B, 4 KiB; 4 MiB for 1 MiB"),
            "{note}"
        );
        let json = json(&meta, &rows);
        assert_eq!(json["rows"][2]["mmipc_ring_capacity"], 4 << 20);
    }

    /// Facts of a run for tests: nothing but defaults.
    pub(crate) fn test_meta() -> Meta {
        Meta {
            date: String::new(),
            cpu: String::new(),
            kernel: String::new(),
            pinning: String::new(),
            command: String::new(),
            seconds: 0.0,
            settings: crate::harness::test_settings(),
        }
    }
}
