//! The project's targets, checked against a run: ratios of mmipc to another mechanism in a
//! row ([`TARGETS`]) and absolute limits on one figure ([`LIMITS`]), with the sentences the
//! report shows for each ("mmipc 1.8× faster", "met: 0.50 ms").

use mmipc_benchkit::units::fmt_ratio;

use super::tables::fmt_scalar;
use crate::rows::{Cell, Row};
use crate::transport::Mech;

/// The comparisons the project has targets for.
pub const TARGETS: &[(&str, Mech, Mech)] = &[
    ("rtt-64", Mech::MmipcSpin, Mech::Iox2Poll),
    ("rtt-64", Mech::MmipcSpin, Mech::Floor),
    ("rtt-64", Mech::MmipcPark, Mech::Uds),
    ("rtt-64", Mech::MmipcPark, Mech::Iox2Event),
    ("tput-64", Mech::MmipcDefault, Mech::Iox2Poll),
    ("tput-4096", Mech::MmipcDefault, Mech::Iox2Poll),
    ("tput-1048576", Mech::MmipcDefault, Mech::Iox2Poll),
    // Like for like with the zero-copy APIs: each side's loan, written and read in place.
    ("tput-64", Mech::MmipcLoan, Mech::Iox2LoanPoll),
    ("tput-4096", Mech::MmipcLoan, Mech::Iox2LoanPoll),
    ("tput-1048576", Mech::MmipcLoan, Mech::Iox2LoanPoll),
    // Async (issue 14): RTT within 2× of the sync default mode and 10× below tokio's
    // UnixStream, throughput at least 0.8× sync.
    ("rtt-64", Mech::MmipcAsync, Mech::MmipcDefault),
    ("rtt-1024", Mech::MmipcAsync, Mech::MmipcDefault),
    ("rtt-64", Mech::MmipcAsync, Mech::TokioUds),
    ("rtt-1024", Mech::MmipcAsync, Mech::TokioUds),
    ("tput-64", Mech::MmipcAsync, Mech::MmipcDefault),
    ("tput-4096", Mech::MmipcAsync, Mech::MmipcDefault),
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
    Limit {
        row: "idle-subscriber-cpu-pct",
        mech: Mech::MmipcAsync,
        what: "idle async subscriber (awaiting recv_async)",
        limit: 0.1,
        strict: false,
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
pub(super) struct Checked<'a> {
    pub(super) row: &'a Row,
    pub(super) target: Limit,
    pub(super) value: f64,
}

pub(super) fn limits(rows: &[Row]) -> Vec<Checked<'_>> {
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
    pub(super) fn met(&self) -> bool {
        match self.target.strict {
            true => self.value < self.target.limit,
            false => self.value <= self.target.limit,
        }
    }

    pub(super) fn op(&self) -> &'static str {
        match self.target.strict {
            true => "<",
            false => "≤",
        }
    }

    /// "kill -9 publisher → subscriber's Disconnected, p50: mmipc default (50 µs) ≤ 50 ms".
    pub(super) fn name(&self) -> String {
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
    pub(super) fn reading(&self) -> String {
        let value = fmt_scalar(self.value, &self.row.unit);
        match self.met() {
            true => format!("met: {value} {}", self.row.unit),
            false => format!("MISSED: {value} {}", self.row.unit),
        }
    }
}

/// Which figure of a cell a [`RatioTarget`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Messages per second per receiver (the row's headline).
    Rate,
    /// The sender process's CPU time per message.
    SenderCpu,
}

impl Figure {
    fn of(self, cell: &Cell) -> Option<f64> {
        match self {
            Figure::Rate => cell.headline(),
            Figure::SenderCpu => cell.sender_cpu(),
        }
    }
}

/// A target on the ratio of two figures of the same run, `a` ÷ `b`: at least or at most
/// `bound` (issue 15, one-copy fan-out of large messages).
#[derive(Debug, Clone, Copy)]
pub struct RatioTarget {
    /// What the target is about.
    pub what: &'static str,
    /// The figure compared.
    pub figure: Figure,
    /// Row id and mechanism of the numerator.
    pub a: (&'static str, Mech),
    /// Row id and mechanism of the denominator.
    pub b: (&'static str, Mech),
    /// The ratio must be at least `bound` (else: at most).
    pub at_least: bool,
    /// The bound on the ratio.
    pub bound: f64,
}

const MIB_1: &str = "fanout-large-1to1-1048576";
const MIB_2: &str = "fanout-large-1to2-1048576";
const MIB_4: &str = "fanout-large-1to4-1048576";

/// The large-message targets.
pub const FAN_TARGETS: &[RatioTarget] = &[
    RatioTarget {
        what: "publisher CPU per 1 MiB message, 1→4 ÷ 1→1, mmipc loan",
        figure: Figure::SenderCpu,
        a: (MIB_4, Mech::MmipcLoan),
        b: (MIB_1, Mech::MmipcLoan),
        at_least: false,
        bound: 1.5,
    },
    RatioTarget {
        what: "publisher CPU per 1 MiB message, 1→4 ÷ 1→1, mmipc loan, park",
        figure: Figure::SenderCpu,
        a: (MIB_4, Mech::MmipcLoanPark),
        b: (MIB_1, Mech::MmipcLoanPark),
        at_least: false,
        bound: 1.5,
    },
    RatioTarget {
        what: "publisher CPU per 1 MiB message, 1→4 ÷ 1→1, mmipc publish (for reference)",
        figure: Figure::SenderCpu,
        a: (MIB_4, Mech::MmipcDefault),
        b: (MIB_1, Mech::MmipcDefault),
        at_least: false,
        bound: 1.5,
    },
    RatioTarget {
        what: "1 MiB 1→2 msgs/s per subscriber, mmipc loan ÷ iceoryx2 loan, event",
        figure: Figure::Rate,
        a: (MIB_2, Mech::MmipcLoan),
        b: (MIB_2, Mech::Iox2LoanEvent),
        at_least: true,
        bound: 1.0,
    },
    RatioTarget {
        what: "1 MiB 1→2 msgs/s per subscriber, mmipc loan, park ÷ iceoryx2 loan, event",
        figure: Figure::Rate,
        a: (MIB_2, Mech::MmipcLoanPark),
        b: (MIB_2, Mech::Iox2LoanEvent),
        at_least: true,
        bound: 1.0,
    },
    RatioTarget {
        what: "1 MiB 1→2 msgs/s per subscriber, mmipc loan ÷ iceoryx2 loan, busy-poll",
        figure: Figure::Rate,
        a: (MIB_2, Mech::MmipcLoan),
        b: (MIB_2, Mech::Iox2LoanPoll),
        at_least: true,
        bound: 1.0,
    },
    RatioTarget {
        what: "1 MiB 1→1 msgs/s, mmipc loan ÷ iceoryx2 loan, event",
        figure: Figure::Rate,
        a: (MIB_1, Mech::MmipcLoan),
        b: (MIB_1, Mech::Iox2LoanEvent),
        at_least: true,
        bound: 1.2,
    },
    RatioTarget {
        what: "1 MiB 1→1 msgs/s, mmipc loan ÷ iceoryx2 loan, busy-poll",
        figure: Figure::Rate,
        a: (MIB_1, Mech::MmipcLoan),
        b: (MIB_1, Mech::Iox2LoanPoll),
        at_least: true,
        bound: 1.2,
    },
];

/// A [`RatioTarget`] and the ratio measured for it.
pub(super) struct FanChecked {
    pub(super) target: RatioTarget,
    pub(super) ratio: f64,
}

/// The [`FAN_TARGETS`] whose two figures the run has.
pub(super) fn fan_targets(rows: &[Row]) -> Vec<FanChecked> {
    check_ratios(FAN_TARGETS, rows)
}

fn check_ratios(list: &[RatioTarget], rows: &[Row]) -> Vec<FanChecked> {
    let figure = |(id, mech): (&str, Mech), f: Figure| {
        rows.iter()
            .find(|r| r.id == id)
            .and_then(|r| r.cells.get(&mech))
            .and_then(|c| f.of(c))
    };
    list.iter()
        .filter_map(|&target| {
            let a = figure(target.a, target.figure)?;
            let b = figure(target.b, target.figure).filter(|&b| b > 0.0)?;
            Some(FanChecked {
                target,
                ratio: a / b,
            })
        })
        .collect()
}

impl FanChecked {
    pub(super) fn met(&self) -> bool {
        match self.target.at_least {
            true => self.ratio >= self.target.bound,
            false => self.ratio <= self.target.bound,
        }
    }

    /// "… ≥ 1.2×".
    pub(super) fn name(&self) -> String {
        let op = if self.target.at_least { "≥" } else { "≤" };
        format!("{} {op} {}×", self.target.what, self.target.bound)
    }

    /// "met: 1.31×" or "MISSED: 0.85×".
    pub(super) fn reading(&self) -> String {
        let verdict = if self.met() { "met" } else { "MISSED" };
        format!("{verdict}: {:.2}×", self.ratio)
    }
}

pub(super) struct Target<'a> {
    pub(super) row: &'a Row,
    pub(super) a: Mech,
    pub(super) b: Mech,
    pub(super) ratio: f64,
}

pub(super) fn targets(rows: &[Row]) -> Vec<Target<'_>> {
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
    pub(super) fn name(&self) -> String {
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
    pub(super) fn reading(&self) -> String {
        let better = if self.row.higher_is_better {
            self.ratio
        } else {
            1.0 / self.ratio
        };
        if better >= 1.0 {
            format!("mmipc {} faster", fmt_ratio(Some(better)))
        } else {
            format!("mmipc {} slower", fmt_ratio(Some(1.0 / better)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{Group, Sample};

    #[test]
    fn ratios_compare_mmipc_with_the_others() {
        let rounds = [
            (Mech::MmipcDefault, Ok(10.0)),
            (Mech::Iox2Poll, Ok(5.0)),
            (Mech::Uds, Err("broken")),
        ];
        let row = Row::with(Group::Throughput, 64, &rounds);
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

    fn fan_row(receivers: usize, cells: &[(Mech, f64, Option<f64>)]) -> Row {
        let mut row = Row::measured(Group::FanoutLarge, 1 << 20, receivers);
        for &(mech, rate, cpu) in cells {
            row.add(
                mech,
                Ok(Sample::Throughput {
                    msgs_per_s: rate,
                    bytes_per_s: rate * (1 << 20) as f64,
                    per_receiver: vec![rate; receivers],
                    messages: 1,
                    measured: 1,
                    sender_cpu_ns: cpu,
                }),
            );
        }
        row
    }

    #[test]
    fn large_message_targets_compare_two_figures_of_a_run() {
        let rows = [
            fan_row(
                1,
                &[
                    (Mech::MmipcLoan, 1300.0, Some(2000.0)),
                    (Mech::Iox2LoanEvent, 1000.0, None),
                ],
            ),
            fan_row(
                2,
                &[
                    (Mech::MmipcLoan, 900.0, Some(2500.0)),
                    (Mech::Iox2LoanEvent, 1000.0, None),
                ],
            ),
            fan_row(4, &[(Mech::MmipcLoan, 500.0, Some(3200.0))]),
        ];
        assert_eq!(rows[2].id, MIB_4);
        let t = fan_targets(&rows);
        // CPU 1→4 ÷ 1→1, rate 1→2 and 1→1 against the event variant; nothing measured for
        // mmipc publish or the busy-poll variant.
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].target.figure, Figure::SenderCpu);
        assert!((t[0].ratio - 1.6).abs() < 1e-9);
        assert!(!t[0].met());
        assert_eq!(t[0].reading(), "MISSED: 1.60×");
        assert!(t[0].name().ends_with("≤ 1.5×"), "{}", t[0].name());
        assert!(!t[1].met(), "0.9 < 1");
        assert!(t[2].met(), "1.3 ≥ 1.2");
        assert_eq!(t[2].reading(), "met: 1.30×");
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
}
