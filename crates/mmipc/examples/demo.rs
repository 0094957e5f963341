//! The README's main command: a subscriber process and a publisher process talk over
//! shared memory, then a short two-process throughput run.
//!
//! `cargo run --release -p mmipc --example demo`

use std::process::Command;
use std::time::{Duration, Instant};

const CHANNEL: &str = "mmipc-demo";
const COUNT: u64 = 1_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args().nth(1).as_deref() {
        Some("subscriber") => subscriber(),
        Some("publisher") => publisher(),
        _ => {
            println!("mmipc demo: directory {}", mmipc::default_root().display());
            let me = std::env::current_exe()?;
            let mut sub = Command::new(&me).arg("subscriber").spawn()?;
            let publ = Command::new(&me).arg("publisher").status()?;
            let sub = sub.wait()?;
            if !publ.success() || !sub.success() {
                return Err("a demo process failed".into());
            }
            Ok(())
        }
    }
}

fn publisher() -> Result<(), Box<dyn std::error::Error>> {
    let publisher = mmipc::Publisher::new(CHANNEL)?;
    publisher.wait_for_subscribers(1, Duration::from_secs(10))?;
    println!(
        "[publisher pid {}] connected to {} subscriber(s)",
        std::process::id(),
        publisher.num_active_connections()
    );
    for word in ["hello", "from", "another", "process"] {
        publisher.publish(word.as_bytes())?;
    }
    let payload = [0u8; 64];
    let start = Instant::now();
    for _ in 0..COUNT {
        publisher.publish(&payload)?;
    }
    publisher.publish(b"done")?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "[publisher] sent {COUNT} x 64 B in {:.3} s: {:.2} M msgs/s",
        secs,
        COUNT as f64 / secs / 1e6
    );
    Ok(())
}

fn subscriber() -> Result<(), Box<dyn std::error::Error>> {
    let mut subscriber = mmipc::Subscriber::new(CHANNEL)?;
    for _ in 0..4 {
        let msg = subscriber.recv_timeout(Duration::from_secs(10))?;
        println!(
            "[subscriber pid {}] got {:?} from pid {}",
            std::process::id(),
            String::from_utf8_lossy(msg.payload()),
            msg.publisher_pid()
        );
    }
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        // Read in place: no copy, no allocation per message.
        let msg = subscriber.recv_ref_timeout(Duration::from_secs(10))?;
        if msg.payload() == b"done" {
            break;
        }
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "[subscriber] received {n} messages in {:.3} s: {:.2} M msgs/s",
        secs,
        n as f64 / secs / 1e6
    );
    if n != COUNT {
        return Err(format!("expected {COUNT} messages, got {n}").into());
    }
    Ok(())
}
