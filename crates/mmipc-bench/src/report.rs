//! Results: rows of per-mechanism samples, their statistics, the Markdown and JSON reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::harness::Group;
use crate::transport::Mech;

/// One measurement (one round of one mechanism in one row).
#[derive(Debug, Clone)]
pub enum Sample {
    /// Ping-pong: the round trips recorded after the warm-up (ns).
    Latency {
        /// Recorded round trips.
        hist: Histogram<u64>,
        /// Round trips made, warm-up included.
        round_trips: u64,
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

fn median(mut v: Vec<f64>) -> Option<f64> {
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

    fn range(&self) -> Option<(f64, f64)> {
        let r = self.rounds();
        let lo = r.iter().copied().reduce(f64::min)?;
        let hi = r.iter().copied().reduce(f64::max)?;
        Some((lo, hi))
    }
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
    /// Unit of the headline figure (`ns`, `msgs/s`, or the scalar's).
    pub unit: String,
    /// Whether a larger headline figure is better.
    pub higher_is_better: bool,
    /// Per mechanism.
    pub cells: BTreeMap<Mech, Cell>,
}

impl Row {
    /// An empty row of one of the measured groups.
    pub fn measured(group: Group, size: usize) -> Row {
        let (g, title, unit, higher) = match group {
            Group::Latency => ("latency", format!("RTT {}", fmt_size(size)), "ns", false),
            Group::Throughput => (
                "throughput",
                format!("{} 1→1", fmt_size(size)),
                "msgs/s",
                true,
            ),
            Group::Fanout => ("fanout", format!("{} 1→2", fmt_size(size)), "msgs/s", true),
            // Rows of these groups are scalar rows made by `crate::hooks`.
            Group::Lifecycle => (crate::hooks::LIFE_CYCLE, fmt_size(size), "", false),
            Group::Memory => (crate::hooks::MEMORY, fmt_size(size), "", false),
            Group::Idle => (crate::hooks::IDLE, fmt_size(size), "", false),
        };
        Row {
            id: group.row_id(size),
            group: g.into(),
            title,
            size: Some(size),
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

/// The comparisons the project has targets for.
pub const TARGETS: &[(&str, Mech, Mech)] = &[
    ("rtt-64", Mech::MmipcSpin, Mech::Iox2Poll),
    ("rtt-64", Mech::MmipcSpin, Mech::Floor),
    ("rtt-64", Mech::MmipcPark, Mech::Uds),
    ("rtt-64", Mech::MmipcPark, Mech::Iox2Event),
    ("tput-64", Mech::MmipcDefault, Mech::Iox2Poll),
    ("tput-4096", Mech::MmipcDefault, Mech::Iox2Poll),
    ("tput-1048576", Mech::MmipcDefault, Mech::Iox2Poll),
];

/// The figures the project has absolute targets for: row, mechanism, what the target is
/// about, and the most the median over rounds may be (in the row's unit), with `strict` for
/// "less than" instead of "at most".
pub const LIMITS: &[Limit] = &[
    Limit {
        row: "crash-publisher-ms",
        mech: Mech::MmipcDefault,
        what: "kill -9 publisher → subscriber's Disconnected, p50",
        limit: 50.0,
        strict: false,
    },
    Limit {
        row: "crash-subscriber-ms",
        mech: Mech::MmipcDefault,
        what: "kill -9 subscriber → publisher's Disconnected, p50",
        limit: 50.0,
        strict: false,
    },
    Limit {
        row: "connect-first-message-ms",
        mech: Mech::MmipcDefault,
        what: "new subscriber → connected (first message in hand), p50",
        limit: 10.0,
        strict: false,
    },
    Limit {
        row: "connect-publisher-event-ms",
        mech: Mech::MmipcDefault,
        what: "new subscriber → connected (publisher's Connected), p50",
        limit: 10.0,
        strict: false,
    },
    Limit {
        row: "shm-1-publisher-16-subscribers-mib",
        mech: Mech::MmipcDefault,
        what: "1 publisher + 16 subscribers fit a 64 MiB /dev/shm with room to spare",
        limit: 32.0,
        strict: false,
    },
    Limit {
        row: "idle-subscriber-cpu-pct",
        mech: Mech::MmipcDefault,
        what: "~0% CPU while idle (subscriber in recv_timeout)",
        limit: 1.0,
        strict: true,
    },
];

/// An absolute target: the median over rounds of one mechanism in one row against a limit.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Row id.
    pub row: &'static str,
    /// The mechanism whose figure counts.
    pub mech: Mech,
    /// What the target is about.
    pub what: &'static str,
    /// The limit, in the row's unit.
    pub limit: f64,
    /// The figure must stay below the limit (else: at most the limit).
    pub strict: bool,
}

/// An absolute target and the figure measured for it.
struct Checked<'a> {
    row: &'a Row,
    target: Limit,
    value: f64,
}

fn limits(rows: &[Row]) -> Vec<Checked<'_>> {
    let mut out = Vec::new();
    for &target in LIMITS {
        let Some(row) = rows.iter().find(|r| r.id == target.row) else {
            continue;
        };
        if let Some(value) = row.headline(target.mech) {
            out.push(Checked { row, target, value });
        }
    }
    out
}

impl Checked<'_> {
    fn met(&self) -> bool {
        match self.target.strict {
            true => self.value < self.target.limit,
            false => self.value <= self.target.limit,
        }
    }

    fn op(&self) -> &'static str {
        match self.target.strict {
            true => "<",
            false => "≤",
        }
    }

    /// "kill -9 publisher → subscriber's Disconnected, p50: mmipc default (50 µs) ≤ 50 ms".
    fn name(&self) -> String {
        format!(
            "{}: {} {} {} {}",
            self.target.what,
            self.target.mech.label(),
            self.op(),
            self.target.limit,
            self.row.unit
        )
    }

    /// "met: 1.84 ms" or "MISSED: 63.0 ms".
    fn reading(&self) -> String {
        let value = fmt_scalar(self.value, &self.row.unit);
        match self.met() {
            true => format!("met: {value} {}", self.row.unit),
            false => format!("MISSED: {value} {}", self.row.unit),
        }
    }
}

struct Target<'a> {
    row: &'a Row,
    a: Mech,
    b: Mech,
    ratio: f64,
}

fn targets(rows: &[Row]) -> Vec<Target<'_>> {
    let mut out = Vec::new();
    for &(id, a, b) in TARGETS {
        let Some(row) = rows.iter().find(|r| r.id == id) else {
            continue;
        };
        if let (Some(ha), Some(hb)) = (row.headline(a), row.headline(b))
            && hb > 0.0
        {
            out.push(Target {
                row,
                a,
                b,
                ratio: ha / hb,
            });
        }
    }
    out
}

impl Target<'_> {
    fn name(&self) -> String {
        let figure = if self.row.higher_is_better {
            "msgs/s"
        } else {
            "p50"
        };
        format!(
            "{} {figure}: {} ÷ {}",
            self.row.title,
            self.a.label(),
            self.b.label()
        )
    }

    /// "mmipc 1.8× faster" or "mmipc 1.2× slower".
    fn reading(&self) -> String {
        let better = if self.row.higher_is_better {
            self.ratio
        } else {
            1.0 / self.ratio
        };
        if better >= 1.0 {
            format!("mmipc {} faster", fmt_factor(better))
        } else {
            format!("mmipc {} slower", fmt_factor(1.0 / better))
        }
    }
}

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
    /// Rounds per row.
    pub rounds: usize,
    /// Ping-pong warm-up and measured time, ms.
    pub latency_ms: (u64, u64),
    /// Throughput warm-up and measured time, ms.
    pub throughput_ms: (u64, u64),
    /// The command line.
    pub command: String,
    /// Seconds the run took.
    pub seconds: f64,
    /// mmipc ring capacity in bytes forced for every row (`--mmipc-ring-capacity`); `None`:
    /// per row, by [`crate::harness::mmipc_ring_for`].
    pub mmipc_ring: Option<usize>,
    /// How long the idle rows waited, ms.
    pub idle_ms: u64,
}

impl Meta {
    /// The mmipc ring capacity of the rows of `size`-byte messages.
    pub fn mmipc_ring(&self, size: usize) -> usize {
        self.mmipc_ring
            .unwrap_or_else(|| crate::harness::mmipc_ring_for(size))
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
        match self.mmipc_ring {
            Some(bytes) => format!(
                "mmipc rings: {} for every row (`--mmipc-ring-capacity`); the life-cycle, \
                 memory and idle rows use the library's defaults (256 KiB rings).",
                fmt_size(bytes)
            ),
            None => format!(
                "mmipc rings: {}, what a user sending messages that large would configure \
                 (`--mmipc-ring-capacity` forces one size){per_size}. The life-cycle, memory \
                 and idle rows use the library's defaults (256 KiB rings).",
                crate::harness::MMIPC_RING_RULE
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
        meta.rounds,
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
    if !targets.is_empty() || !limits.is_empty() {
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
        out.push_str(&table(&t, 1));
        if !limits.is_empty() {
            let _ = writeln!(
                out,
                "\nFor absolute targets the ratio is the figure ÷ the target's limit: at most 1 \
                 meets it."
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
        rounds = meta.rounds,
        lw = meta.latency_ms.0,
        lm = meta.latency_ms.1,
        tw = meta.throughput_ms.0,
        tm = meta.throughput_ms.1,
        ring = match meta.mmipc_ring {
            Some(bytes) => format!("rings of {}", fmt_size(bytes)),
            None => format!("rings of {}", crate::harness::MMIPC_RING_RULE),
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

fn latency_table(rows: &[&Row], mechs: &[Mech]) -> String {
    let mut t = vec![header("size", "", mechs)];
    type Stat = fn(&Cell) -> Option<String>;
    let stats: [(&str, Stat); 4] = [
        ("p50", |c| c.headline().map(fmt_us)),
        ("p99", |c| {
            c.pooled().map(|h| fmt_us(h.value_at_quantile(0.99) as f64))
        }),
        ("p99.9", |c| {
            c.pooled()
                .map(|h| fmt_us(h.value_at_quantile(0.999) as f64))
        }),
        ("p50 range", |c| {
            c.range()
                .map(|(lo, hi)| format!("{}–{}", fmt_us(lo), fmt_us(hi)))
        }),
    ];
    for row in rows {
        for (i, (name, stat)) in stats.iter().enumerate() {
            let mut line = vec![
                if i == 0 {
                    row.size.map(fmt_size).unwrap_or_default()
                } else {
                    String::new()
                },
                (*name).to_string(),
            ];
            line.extend(mechs.iter().map(|m| cell_text(row.cells.get(m), stat)));
            t.push(line);
        }
    }
    table(&t, 2)
}

/// Renders one statistic of a cell.
type StatFn = dyn Fn(&Cell) -> Option<String>;

fn throughput_table(rows: &[&Row], mechs: &[Mech]) -> String {
    let mut t = vec![header("size", "", mechs)];
    for row in rows {
        let size = row.size.unwrap_or(0) as f64;
        let lines: [(&str, Box<StatFn>); 3] = [
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
        ];
        for (i, (name, stat)) in lines.iter().enumerate() {
            let mut line = vec![
                if i == 0 {
                    row.size.map(fmt_size).unwrap_or_default()
                } else {
                    String::new()
                },
                (*name).to_string(),
            ];
            line.extend(mechs.iter().map(|m| cell_text(row.cells.get(m), stat)));
            t.push(line);
        }
    }
    table(&t, 2)
}

/// Heading and explanatory note of a table of scalar rows.
fn scalar_group_text(group: &str, meta: &Meta) -> (String, String) {
    let how = |what: &str| {
        format!(
            "Median over {} rounds, lowest–highest round in brackets; each round starts fresh \
             processes (pinned like the others). {what}",
            meta.rounds
        )
    };
    match group {
        crate::hooks::LIFE_CYCLE => (
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
        crate::hooks::MEMORY => (
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
                 per process), one message each, and rounds every segment file up to whole \
                 pages: what tmpfs holds once every page has been touched. KiB = 1024 bytes.",
                fmt_thousands(crate::hooks::MEMORY_MESSAGES as f64),
                fmt_size(crate::hooks::MEMORY_SIZE),
            )),
        ),
        crate::hooks::IDLE => (
            "Idle: CPU time with nothing to do".into(),
            how(&format!(
                "A subscriber process with the default wait strategy, connected to a \
                 publisher process, waits {:.1} s in `recv_timeout` with nothing sent; CPU \
                 time (user + system, every thread, from getrusage) over wall time, in % of \
                 one core. The publisher process is measured over its own {:.1} s meanwhile.",
                meta.idle_ms as f64 / 1000.0,
                meta.idle_ms as f64 / 1000.0
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

/// A number rounded to an integer, with thousands separators: `12,345`.
fn fmt_thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    if v < 0.0 {
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

fn scalar_table(rows: &[&Row], mechs: &[Mech]) -> String {
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

/// A Markdown table with padded columns; columns from `numeric_from` on are right-aligned.
fn table(rows: &[Vec<String>], numeric_from: usize) -> String {
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

/// `8 B`, `4 KiB`, `1 MiB`.
pub fn fmt_size(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

/// Nanoseconds as microseconds with a precision that suits the value.
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

/// Messages per second: `11.4 M`, `690 k`, `2,810`.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.0} k", r / 1e3)
    } else {
        let digits = format!("{:.0}", r.max(0.0));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }
}

/// Bytes per second as MB/s (10^6).
pub fn fmt_mb(bytes_per_s: f64) -> String {
    let mb = bytes_per_s / 1e6;
    if mb < 100.0 {
        format!("{mb:.1}")
    } else {
        format!("{mb:.0}")
    }
}

fn fmt_factor(f: f64) -> String {
    if f < 10.0 {
        format!("{f:.2}×")
    } else {
        format!("{f:.1}×")
    }
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

fn cell_json(row: &Row, cell: &Cell) -> Value {
    let mut v = json!({
        "headline": cell.headline(),
        "rounds": cell.rounds(),
        "errors": cell.errors,
    });
    if let Some(h) = cell.pooled() {
        v["unit"] = json!("ns");
        v["p50_median_of_rounds_ns"] = json!(cell.headline());
        v["pooled"] = json!({
            "count": h.len(),
            "p50_ns": h.value_at_quantile(0.5),
            "p99_ns": h.value_at_quantile(0.99),
            "p999_ns": h.value_at_quantile(0.999),
            "max_ns": h.max(),
        });
        v["round_trips_incl_warmup"] = json!(
            cell.samples
                .iter()
                .filter_map(|s| match s {
                    Sample::Latency { round_trips, .. } => Some(*round_trips),
                    _ => None,
                })
                .collect::<Vec<_>>()
        );
        v["round_p99_ns"] = json!(
            cell.samples
                .iter()
                .filter_map(|s| match s {
                    Sample::Latency { hist, .. } => Some(hist.value_at_quantile(0.99)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        );
    } else if cell
        .samples
        .iter()
        .any(|s| matches!(s, Sample::Throughput { .. }))
    {
        v["unit"] = json!("msgs/s");
        v["msgs_per_s"] = json!(cell.headline());
        v["mb_per_s"] = json!(
            cell.headline()
                .map(|r| r * row.size.unwrap_or(0) as f64 / 1e6)
        );
        v["per_receiver_msgs_per_s"] = json!(
            cell.samples
                .iter()
                .filter_map(|s| match s {
                    Sample::Throughput { per_receiver, .. } => Some(per_receiver.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        );
        v["messages"] = json!(
            cell.samples
                .iter()
                .filter_map(|s| match s {
                    Sample::Throughput { messages, .. } => Some(*messages),
                    _ => None,
                })
                .collect::<Vec<_>>()
        );
    } else {
        v["unit"] = json!(row.unit);
    }
    v
}

/// The whole report as JSON.
pub fn json(meta: &Meta, rows: &[Row]) -> Value {
    let rows_json: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mechs: serde_json::Map<String, Value> = r
                .cells
                .iter()
                .map(|(m, c)| (m.id().to_string(), cell_json(r, c)))
                .collect();
            let ring = match (r.size, r.cells.keys().any(|m| m.is_mmipc())) {
                (Some(size), true) => Some(meta.mmipc_ring(size)),
                _ => None,
            };
            json!({
                "id": r.id,
                "group": r.group,
                "title": r.title,
                "size": r.size,
                "unit": r.unit,
                "higher_is_better": r.higher_is_better,
                "mmipc_ring_capacity": ring,
                "mechanisms": mechs,
                "ratios_mmipc_over_peer": r.ratios(),
            })
        })
        .collect();
    let mut targets: Vec<Value> = targets(rows)
        .iter()
        .map(|t| {
            json!({
                "row": t.row.id,
                "mmipc": t.a.id(),
                "peer": t.b.id(),
                "ratio": t.ratio,
                "reading": t.reading(),
            })
        })
        .collect();
    targets.extend(limits(rows).iter().map(|l| {
        json!({
            "row": l.row.id,
            "mmipc": l.target.mech.id(),
            "peer": null,
            "target": l.name(),
            "value": l.value,
            "limit": l.target.limit,
            "strict": l.target.strict,
            "unit": l.row.unit,
            "ratio": l.value / l.target.limit,
            "met": l.met(),
            "reading": l.reading(),
        })
    }));
    let (ok, peers_ok) = outcome(rows);
    json!({
        "tool": "mmipc-bench compare",
        "date": meta.date,
        "machine": { "cpu": meta.cpu, "kernel": meta.kernel },
        "pinning": meta.pinning,
        "rounds": meta.rounds,
        "latency_warm_measure_ms": [meta.latency_ms.0, meta.latency_ms.1],
        "throughput_warm_measure_ms": [meta.throughput_ms.0, meta.throughput_ms.1],
        "command": meta.command,
        "seconds": meta.seconds,
        "mmipc_ring_capacity": meta.mmipc_ring,
        "mmipc_ring_rule": match meta.mmipc_ring {
            Some(_) => "fixed (--mmipc-ring-capacity)",
            None => crate::harness::MMIPC_RING_RULE,
        },
        "mmipc_ring_default_for_other_rows": ::mmipc::DEFAULT_RING_CAPACITY,
        "idle_ms": meta.idle_ms,
        "iceoryx2_version": crate::transport::ICEORYX2_VERSION,
        "mechanisms": Mech::ALL.iter().map(|m| json!({"id": m.id(), "label": m.label()})).collect::<Vec<_>>(),
        "rows": rows_json,
        "targets": targets,
        "ok": ok,
        "peers_ok": peers_ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formats() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        assert_eq!(fmt_size(64), "64 B");
        assert_eq!(fmt_size(4096), "4 KiB");
        assert_eq!(fmt_size(1 << 20), "1 MiB");
        assert_eq!(fmt_rate(2810.4), "2,810");
        assert_eq!(fmt_rate(690_000.0), "690 k");
        assert_eq!(fmt_rate(11_400_000.0), "11.40 M");
        assert_eq!(fmt_us(450.0), "0.45");
    }

    #[test]
    fn only_an_mmipc_failure_fails_the_run() {
        let mut row = Row::measured(Group::Latency, 64);
        row.add(Mech::MmipcSpin, Ok(Sample::Scalar(1.0)));
        row.add(Mech::Iox2Event, Err("peer did not answer in time".into()));
        let rows = vec![row];
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
    fn ratios_compare_mmipc_with_the_others() {
        let mut row = Row::measured(Group::Throughput, 64);
        row.add(Mech::MmipcDefault, Ok(Sample::Scalar(10.0)));
        row.add(Mech::Iox2Poll, Ok(Sample::Scalar(5.0)));
        row.add(Mech::Uds, Err("broken".into()));
        let r = row.ratios();
        assert_eq!(r.get("mmipc-default/iox2-poll"), Some(&2.0));
        assert_eq!(r.len(), 1);
        let rows = [Row {
            id: "tput-64".into(),
            ..row
        }];
        let t = targets(&rows);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].reading(), "mmipc 2.00× faster");
    }

    #[test]
    fn absolute_targets_are_checked_against_their_limit() {
        let mut crash = Row::scalar("crash-publisher-ms", "life cycle", "kill", "ms", false);
        crash.add(Mech::MmipcDefault, Ok(Sample::Scalar(0.4)));
        crash.add(Mech::MmipcDefault, Ok(Sample::Scalar(0.5)));
        crash.add(Mech::MmipcDefault, Ok(Sample::Scalar(90.0)));
        let mut idle = Row::scalar("idle-subscriber-cpu-pct", "idle", "idle", "%", false);
        idle.add(Mech::MmipcDefault, Ok(Sample::Scalar(1.0)));
        let rows = [crash, idle];
        let l = limits(&rows);
        assert_eq!(l.len(), 2);
        assert!(l[0].met());
        assert_eq!(l[0].reading(), "met: 0.50 ms");
        // "< 1%": exactly 1 misses.
        assert!(!l[1].met());
        assert!(l[1].reading().starts_with("MISSED"));
        assert!(l[1].name().contains("< 1 %"), "{}", l[1].name());
    }

    #[test]
    fn scalars_are_formatted_for_their_unit() {
        assert_eq!(fmt_scalar(5300.0, "KiB"), "5,300");
        assert_eq!(fmt_scalar(256.25, "KiB"), "256.25");
        assert_eq!(fmt_scalar(64.0, "B"), "64");
        assert_eq!(fmt_scalar(4.125, "MiB"), "4.12");
        assert_eq!(fmt_scalar(0.026, "%"), "0.026");
        assert_eq!(fmt_scalar(2.345, "ms"), "2.35");
        assert_eq!(fmt_scalar(12.34, "ms"), "12.3");
    }

    #[test]
    fn the_header_names_each_row_size_ring() {
        let meta = test_meta();
        let mut rows = Vec::new();
        for size in [64, 4096, 1 << 20] {
            let mut row = Row::measured(Group::Throughput, size);
            row.add(Mech::MmipcDefault, Ok(Sample::Scalar(1.0)));
            rows.push(row);
        }
        let note = meta.ring_note(&rows);
        assert!(
            note.contains("256 KiB for 64 B, 4 KiB; 4 MiB for 1 MiB"),
            "{note}"
        );
        let json = json(&meta, &rows);
        assert_eq!(json["rows"][2]["mmipc_ring_capacity"], 4 << 20);
    }

    fn test_meta() -> Meta {
        Meta {
            date: String::new(),
            cpu: String::new(),
            kernel: String::new(),
            pinning: String::new(),
            rounds: 1,
            latency_ms: (0, 0),
            throughput_ms: (0, 0),
            command: String::new(),
            seconds: 0.0,
            mmipc_ring: None,
            idle_ms: 2000,
        }
    }
}
