//! Two processes, each with a publisher and a subscriber on one channel, talking to each
//! other (the C# library's README usage). Neither hears its own messages.
//!
//! `cargo run --example bidirectional` starts both sides (the second is this program
//! re-executed).

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1);
    let Some(name) = name else {
        let me = std::env::current_exe()?;
        let mut other = std::process::Command::new(&me).arg("right").spawn()?;
        let status = std::process::Command::new(&me).arg("left").status()?;
        other.wait()?;
        println!("both sides done (left: {status})");
        return Ok(());
    };
    let channel = "bidirectional-demo";
    let publisher = mmipc::Publisher::new(channel)?;
    let mut subscriber = mmipc::Subscriber::new(channel)?;
    publisher.wait_for_subscribers(1, Duration::from_secs(10))?;
    subscriber.wait_for_publishers(1, Duration::from_secs(10))?;
    for i in 0..3 {
        publisher.publish(format!("{name} says hello #{i}").as_bytes())?;
    }
    for _ in 0..3 {
        let msg = subscriber.recv_timeout(Duration::from_secs(10))?;
        println!("[{name}] got: {}", String::from_utf8_lossy(msg.payload()));
    }
    // Stay connected until the other side has read our messages too.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}
