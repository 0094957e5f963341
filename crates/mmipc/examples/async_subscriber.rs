//! An async subscriber on tokio, across processes. This program starts a copy of itself as
//! the publisher (`publish_async` under `OnFull::Block`, pausing now and then so that the
//! subscriber parks), receives its messages through the `messages()` stream and its
//! connection events through `Events` in one `select!` loop, checks their order, then waits
//! idle in `recv_async` for two seconds and reports the CPU time the process used meanwhile.
//!
//! ```text
//! cargo run --release -p mmipc --features tokio --example async_subscriber [-- COUNT]
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use mmipc::{OnFull, Publisher, Subscriber};
use tokio_stream::StreamExt;

const CHANNEL: &str = "async-demo";
const ROLE: &str = "MMIPC_EXAMPLE_PUBLISHER_DIR";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let count: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 200_000,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Ok(dir) = std::env::var(ROLE) {
        return rt.block_on(publish(Path::new(&dir), count));
    }
    let dir = tempfile::tempdir()?;
    rt.block_on(subscribe(dir.path(), count))
}

/// The publisher process.
async fn publish(dir: &Path, count: u64) -> Result<()> {
    let publisher = Publisher::builder(CHANNEL)
        .dir(dir)
        .on_full(OnFull::Block)
        .build()?;
    publisher
        .wait_for_subscribers_async(1, Duration::from_secs(10))
        .await?;
    for i in 0..count {
        publisher.publish_async(&i.to_le_bytes()).await?;
        if i % 10_000 == 9_999 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(())
}

async fn subscribe(dir: &Path, count: u64) -> Result<()> {
    let mut subscriber = Subscriber::builder(CHANNEL).dir(dir).build()?;
    let mut events = subscriber.events();
    let mut publisher = std::process::Command::new(std::env::current_exe()?)
        .arg(count.to_string())
        .env(ROLE, dir)
        .spawn()?;
    let started = Instant::now();
    let mut next = 0u64;
    {
        let mut messages = subscriber.messages();
        while next < count {
            tokio::select! {
                Some(msg) = messages.next() => {
                    let index = u64::from_le_bytes(msg.payload().try_into()?);
                    if index != next {
                        return Err(format!("message {index} where {next} was due").into());
                    }
                    next += 1;
                }
                Some(event) = events.next() => println!("event: {event:?}"),
                _ = tokio::time::sleep(Duration::from_secs(10)) => {
                    return Err(format!("no message for 10 s after {next}").into());
                }
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "received {count} messages in order in {elapsed:.2?} ({:.2} M msgs/s, publisher start included)",
        count as f64 / elapsed.as_secs_f64() / 1e6
    );
    if !publisher.wait()?.success() {
        return Err("the publisher failed".into());
    }
    // Idle: wait for a message that does not come, and measure what it costs.
    let (cpu, wall) = (cpu_time(), Instant::now());
    let quiet = tokio::time::timeout(Duration::from_secs(2), subscriber.recv_async()).await;
    if quiet.is_ok() {
        return Err("a message after the publisher ended".into());
    }
    let used = cpu_time().saturating_sub(cpu);
    println!(
        "idle in recv_async for {:.2?}: {:.3}% of a core (whole process, {} µs of CPU)",
        wall.elapsed(),
        100.0 * used.as_secs_f64() / wall.elapsed().as_secs_f64(),
        used.as_micros()
    );
    while let Some(event) = events.try_recv() {
        println!("event: {event:?}");
    }
    println!(
        "wake-ups rescued by the safety timer (lost): {}",
        mmipc::ring::rescued_wakeups()
    );
    Ok(())
}

/// CPU time (user + system) of this process so far.
#[cfg(windows)]
fn cpu_time() -> Duration {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: the pseudo-handle of this process and four valid out-parameters.
    unsafe {
        GetProcessTimes(
            GetCurrentProcess(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
    Duration::from_nanos((ticks(kernel) + ticks(user)) * 100)
}

/// CPU time (user + system) of this process so far.
#[cfg(unix)]
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
