//! The mechanisms under test, behind one [`Transport`] trait.
//!
//! Every measurement has one *initiator* process (the pinger, or the sender) and one or more
//! *responder* processes (the echoer, or the receivers). Responders start first: each
//! [`Transport::listen`]s, tells the harness it is ready (with an address for the initiator
//! if the mechanism needs one), then [`Transport::accept`]s. The initiator starts next and
//! [`Transport::connect`]s to all responders. Both sides return only once everything is
//! connected, so that nothing sent afterwards can be lost.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use mmipc::WaitStrategy;
use mmipc::ring::DEFAULT_SPIN;
use serde::{Deserialize, Serialize};

mod floor;
mod iceoryx;
mod mmipc_pubsub;
mod ring;
mod stream;
mod tokio_async;

pub use floor::Floor;
pub use iceoryx::{ICEORYX2_VERSION, Iox2Link};
/// iceoryx2 building blocks, for the peers of `crate::hooks`.
pub(crate) mod iox2 {
    pub(crate) use super::iceoryx::{data_service, node, publisher, subscriber};
}
pub use mmipc_pubsub::MmipcLink;
pub use ring::RingLink;
pub use stream::{Pipe, Tcp, Uds};
pub use tokio_async::{MmipcAsync, TokioUds};

/// Longest wait for a peer to connect (outside any timed part).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A mechanism under test (a column of the report).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mech {
    /// mmipc pub/sub, `WaitStrategy::Spin` on both sides.
    MmipcSpin,
    /// mmipc pub/sub, `WaitStrategy::default()` (spin briefly, then park).
    MmipcDefault,
    /// mmipc pub/sub, `WaitStrategy::Park`.
    MmipcPark,
    /// mmipc pub/sub through its async API (`recv_async`, `publish_async`) on a tokio
    /// current-thread runtime, `WaitStrategy::default()`.
    MmipcAsync,
    /// iceoryx2 publish-subscribe, the receiver polls `receive()` in a busy loop.
    Iox2Poll,
    /// iceoryx2 publish-subscribe plus an event service: the sender notifies after each
    /// send, the receiver sleeps in `Listener::timed_wait` when it finds nothing (1 ms at
    /// most: iceoryx2 0.10 can lose a wake-up, see `transport/iceoryx.rs`).
    Iox2Event,
    /// Unix domain stream socket, u32 length prefix, blocking.
    Uds,
    /// tokio's `UnixStream` on a current-thread runtime, u32 length prefix.
    TokioUds,
    /// Named pipes (FIFOs), one per direction, u32 length prefix.
    Pipe,
    /// TCP over loopback with `TCP_NODELAY`, u32 length prefix.
    Tcp,
    /// One-slot shared-memory mailbox, both sides spinning: the hardware lower bound.
    Floor,
    /// mmipc pub/sub, `WaitStrategy::default()`, the sender writing each message in place
    /// in a [`mmipc::Publisher::loan`] (zero copies for a message at or above the payload
    /// threshold; below it a private buffer, copied into each ring at `send`) and the
    /// receivers reading it in place (`recv_ref`): the way iceoryx2 sends in every row.
    /// Large-message rows, and one way (1→1, 1→2).
    MmipcLoan,
    /// As [`Mech::MmipcLoan`] with `WaitStrategy::Park` on both sides: receivers that sleep
    /// at once, like iceoryx2's event variant (fairer when receivers share a CPU).
    MmipcLoanPark,
    /// mmipc pub/sub, `WaitStrategy::default()`, `publish` + `recv` with
    /// `payload_threshold(usize::MAX)`: every message copied into each subscriber's ring
    /// (the behaviour before one-copy fan-out). Large-message and threshold rows.
    MmipcInline,
    /// mmipc pub/sub, `WaitStrategy::default()`, `publish` + `recv` with
    /// `payload_threshold(0)`: every message written once into the payload segment. The
    /// threshold rows.
    MmipcPayload,
    /// iceoryx2 as [`Mech::Iox2Poll`], the sender writing each message in place in its loan
    /// (`loan_slice_uninit` + `assume_init`) instead of copying it in. Large-message rows,
    /// and one way (1→1, 1→2) beside mmipc's loans.
    Iox2LoanPoll,
    /// iceoryx2 as [`Mech::Iox2Event`], the sender writing in place as
    /// [`Mech::Iox2LoanPoll`]. Large-message rows.
    Iox2LoanEvent,
    /// mmipc's ring alone (`mmipc::ring`, no pub/sub layer), `WaitStrategy::Spin`; measured
    /// by the `ring` command, not by `compare`.
    RingSpin,
    /// mmipc's ring alone, `WaitStrategy::default()`.
    RingDefault,
    /// mmipc's ring alone, `WaitStrategy::Park`.
    RingPark,
}

impl Mech {
    /// Every mechanism, in report order.
    pub const ALL: [Mech; 17] = [
        Mech::MmipcSpin,
        Mech::MmipcDefault,
        Mech::MmipcPark,
        Mech::MmipcAsync,
        Mech::MmipcLoan,
        Mech::MmipcLoanPark,
        Mech::MmipcInline,
        Mech::MmipcPayload,
        Mech::Iox2Poll,
        Mech::Iox2Event,
        Mech::Iox2LoanPoll,
        Mech::Iox2LoanEvent,
        Mech::Uds,
        Mech::TokioUds,
        Mech::Pipe,
        Mech::Tcp,
        Mech::Floor,
    ];

    /// The name on the command line and in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Mech::MmipcSpin => "mmipc-spin",
            Mech::MmipcDefault => "mmipc-default",
            Mech::MmipcPark => "mmipc-park",
            Mech::MmipcAsync => "mmipc-async",
            Mech::Iox2Poll => "iox2-poll",
            Mech::Iox2Event => "iox2-event",
            Mech::Uds => "uds",
            Mech::TokioUds => "tokio-uds",
            Mech::Pipe => "pipe",
            Mech::Tcp => "tcp",
            Mech::Floor => "floor",
            Mech::MmipcLoan => "mmipc-loan",
            Mech::MmipcLoanPark => "mmipc-loan-park",
            Mech::MmipcInline => "mmipc-inline",
            Mech::MmipcPayload => "mmipc-payload",
            Mech::Iox2LoanPoll => "iox2-loan-poll",
            Mech::Iox2LoanEvent => "iox2-loan-event",
            Mech::RingSpin => "ring-spin",
            Mech::RingDefault => "ring-default",
            Mech::RingPark => "ring-park",
        }
    }

    /// The column heading in the report.
    pub fn label(self) -> String {
        match self {
            Mech::MmipcSpin => "mmipc spin".into(),
            Mech::MmipcDefault => format!("mmipc default ({} µs)", DEFAULT_SPIN.as_micros()),
            Mech::MmipcPark => "mmipc park".into(),
            Mech::MmipcAsync => "mmipc async (tokio)".into(),
            Mech::Iox2Poll => "iceoryx2 busy-poll".into(),
            Mech::Iox2Event => "iceoryx2 event".into(),
            Mech::Uds => "Unix socket".into(),
            Mech::TokioUds => "tokio UnixStream".into(),
            Mech::Pipe => "pipe".into(),
            Mech::Tcp => "TCP loopback".into(),
            Mech::Floor => "floor (1-slot shm)".into(),
            Mech::MmipcLoan => "mmipc loan + recv_ref".into(),
            Mech::MmipcLoanPark => "mmipc loan + recv_ref, park".into(),
            Mech::MmipcInline => "mmipc inline (threshold off)".into(),
            Mech::MmipcPayload => "mmipc payload (threshold 0)".into(),
            Mech::Iox2LoanPoll => "iceoryx2 loan, busy-poll".into(),
            Mech::Iox2LoanEvent => "iceoryx2 loan, event".into(),
            Mech::RingSpin | Mech::RingDefault | Mech::RingPark => match self.wait_strategy() {
                Some(WaitStrategy::Spin) => "ring spin".into(),
                Some(WaitStrategy::Park) => "ring park".into(),
                _ => format!("ring default ({} µs)", DEFAULT_SPIN.as_micros()),
            },
        }
    }

    /// The wait strategy of an mmipc mechanism (pub/sub or ring alone), both sides alike.
    pub fn wait_strategy(self) -> Option<WaitStrategy> {
        match self {
            Mech::MmipcSpin | Mech::RingSpin => Some(WaitStrategy::Spin),
            Mech::MmipcDefault
            | Mech::MmipcAsync
            | Mech::MmipcLoan
            | Mech::MmipcInline
            | Mech::MmipcPayload
            | Mech::RingDefault => Some(WaitStrategy::default()),
            Mech::MmipcPark | Mech::MmipcLoanPark | Mech::RingPark => Some(WaitStrategy::Park),
            _ => None,
        }
    }

    /// One of mmipc's own variants (pub/sub or the ring alone).
    pub fn is_mmipc(self) -> bool {
        self.wait_strategy().is_some()
    }

    /// Whether the mechanism is one of the variants measured only in the large-message and
    /// threshold rows (`crate::rows::Group::mechs`; `Group::takes` adds the loan variant
    /// to the one-way rows).
    pub fn is_payload_variant(self) -> bool {
        matches!(
            self,
            Mech::MmipcLoan
                | Mech::MmipcLoanPark
                | Mech::MmipcInline
                | Mech::MmipcPayload
                | Mech::Iox2LoanPoll
                | Mech::Iox2LoanEvent
        )
    }

    /// Whether the sender writes each message in place in a buffer the mechanism lends
    /// ([`Transport::send_with`]), and (mmipc) the receivers read it in place.
    pub fn loans(self) -> bool {
        matches!(
            self,
            Mech::MmipcLoan | Mech::MmipcLoanPark | Mech::Iox2LoanPoll | Mech::Iox2LoanEvent
        )
    }

    /// The mmipc `payload_threshold` of the mechanism (`None`: the library's default).
    pub fn payload_threshold(self) -> Option<usize> {
        match self {
            Mech::MmipcInline => Some(usize::MAX),
            Mech::MmipcPayload => Some(0),
            _ => None,
        }
    }

    /// Whether the mechanism can carry `pattern` to `receivers` processes.
    pub fn supports(self, pattern: Pattern, receivers: usize) -> bool {
        match self {
            // A one-slot mailbox is a ping-pong device.
            Mech::Floor => pattern == Pattern::PingPong && receivers == 1,
            // A ring has one producer and one consumer.
            Mech::RingSpin | Mech::RingDefault | Mech::RingPark => receivers == 1,
            _ => true,
        }
    }
}

/// Who sends what to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Initiator → responder → initiator, one message in flight.
    PingPong,
    /// Initiator → every responder, as fast as possible.
    OneWay,
}

/// Everything a process needs to set up its end of a link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkSpec {
    /// The mechanism.
    pub mech: Mech,
    /// Ping-pong or one-way.
    pub pattern: Pattern,
    /// Largest payload that will be sent.
    pub size: usize,
    /// Number of responder processes.
    pub receivers: usize,
    /// A private (0700) directory for this measurement's files, on tmpfs when available.
    pub dir: PathBuf,
    /// A name unique to this measurement (channel, service, socket and file names).
    pub name: String,
    /// Which responder this is (0 for the initiator).
    pub index: usize,
    /// mmipc ring capacity in bytes (`None`: the library's default). The harness sets it
    /// for the measured rows ([`crate::harness::Settings::mmipc_ring`]).
    pub mmipc_ring: Option<usize>,
    /// mmipc wait strategy `SpinThenPark(spin_window_ns)` on both sides instead of the
    /// mechanism's (the `ring --spin-sweep` rows; only the ring alone heeds it).
    #[serde(default)]
    pub spin_window_ns: Option<u64>,
}

impl LinkSpec {
    /// Whether messages also travel back from responder to initiator.
    pub fn two_way(&self) -> bool {
        self.pattern == Pattern::PingPong
    }

    /// Largest frame a receiver must accept: a payload or a control message.
    pub fn max_frame(&self) -> usize {
        self.size.max(crate::payload::END_LEN)
    }
}

/// One end of a link, for one mechanism.
///
/// `send` and `recv` are what the timed loops call; `echo` is the echoer's loop body. The
/// control messages of the harness ([`STOP`](crate::payload::STOP), the end marker) travel
/// as ordinary messages.
pub trait Transport: Sized {
    /// A responder between [`listen`](Transport::listen) and [`accept`](Transport::accept).
    type Pending;

    /// Responder: creates what the initiator connects to. Returns the half-open link and a
    /// string for the initiator (an address; empty when names derive from the spec).
    fn listen(spec: &LinkSpec) -> Result<(Self::Pending, String)>;

    /// Responder: waits until the initiator is connected.
    fn accept(pending: Self::Pending, spec: &LinkSpec) -> Result<Self>;

    /// Initiator: connects to every responder (`peers` holds what each `listen` returned)
    /// and waits until they are all connected.
    fn connect(spec: &LinkSpec, peers: &[String]) -> Result<Self>;

    /// Sends one message (to every responder, for the initiator).
    fn send(&mut self, msg: &[u8]) -> Result<()>;

    /// Sends one message of `scratch.len()` bytes written by `write`. By default `write`
    /// writes into `scratch` (the sender's own buffer, which keeps what earlier messages
    /// left in it), which is then [`send`](Transport::send)-copied; mechanisms that lend
    /// their buffer ([`Mech::loans`]) pass `write` the lent buffer instead, which likewise
    /// holds what an earlier message left there (or zeros), and copy nothing.
    fn send_with(&mut self, scratch: &mut [u8], write: impl FnOnce(&mut [u8])) -> Result<()> {
        write(scratch);
        self.send(scratch)
    }

    /// Waits for the next message and passes it to `f`, in place where the mechanism allows.
    fn recv<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<T>;

    /// Responder of a ping-pong: receives one message and sends it back unchanged; `false`
    /// (sending nothing) when the message was [`STOP`](crate::payload::STOP).
    fn echo(&mut self) -> Result<bool>;
}

/// Calls `$f::<T>($args)` with `T` the [`Transport`] of mechanism `$mech`.
macro_rules! with_transport {
    ($mech:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $mech {
            $crate::transport::Mech::MmipcSpin
            | $crate::transport::Mech::MmipcDefault
            | $crate::transport::Mech::MmipcPark
            | $crate::transport::Mech::MmipcLoan
            | $crate::transport::Mech::MmipcLoanPark
            | $crate::transport::Mech::MmipcInline
            | $crate::transport::Mech::MmipcPayload => {
                $f::<$crate::transport::MmipcLink>($($arg),*)
            }
            $crate::transport::Mech::Iox2Poll
            | $crate::transport::Mech::Iox2Event
            | $crate::transport::Mech::Iox2LoanPoll
            | $crate::transport::Mech::Iox2LoanEvent => {
                $f::<$crate::transport::Iox2Link>($($arg),*)
            }
            $crate::transport::Mech::Uds => $f::<$crate::transport::Uds>($($arg),*),
            $crate::transport::Mech::MmipcAsync => $f::<$crate::transport::MmipcAsync>($($arg),*),
            $crate::transport::Mech::TokioUds => $f::<$crate::transport::TokioUds>($($arg),*),
            $crate::transport::Mech::Pipe => $f::<$crate::transport::Pipe>($($arg),*),
            $crate::transport::Mech::Tcp => $f::<$crate::transport::Tcp>($($arg),*),
            $crate::transport::Mech::Floor => $f::<$crate::transport::Floor>($($arg),*),
            $crate::transport::Mech::RingSpin
            | $crate::transport::Mech::RingDefault
            | $crate::transport::Mech::RingPark => $f::<$crate::transport::RingLink>($($arg),*),
        }
    };
}
pub(crate) use with_transport;

/// The sending (`what`: "send") or receiving ("receive") half of one end of a link, or an
/// error if this end has none.
pub(crate) fn half<'a, T>(half: &'a mut Option<T>, what: &str) -> Result<&'a mut T> {
    half.as_mut()
        .with_context(|| format!("this end of the link does not {what}"))
}

/// Waits until `ready()` holds, polling every millisecond, at most [`SETUP_TIMEOUT`].
pub fn poll_until(what: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = std::time::Instant::now() + SETUP_TIMEOUT;
    while !ready()? {
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {SETUP_TIMEOUT:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
