//! Publishes a numbered greeting every 200 ms on channel "demo" (or the first argument).
//!
//! Run `cargo run --example subscriber` in another terminal, then this.

use std::time::Duration;

fn main() -> Result<(), mmipc::Error> {
    let channel = std::env::args().nth(1).unwrap_or_else(|| "demo".into());
    let count: u64 = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    let publisher = mmipc::Publisher::new(&channel)?;
    let events = publisher.events();
    println!(
        "publisher {} on {channel:?}, waiting for a subscriber...",
        publisher.id()
    );
    publisher.wait_for_subscribers(1, Duration::from_secs(60))?;
    for i in 0..count {
        while let Some(event) = events.try_recv() {
            println!("event: {event:?}");
        }
        publisher.publish(format!("hello #{i} from pid {}", std::process::id()).as_bytes())?;
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
