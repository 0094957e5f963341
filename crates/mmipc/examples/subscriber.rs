//! Prints every message on channel "demo" (or the first argument); exits after the optional
//! second argument's number of messages.

fn main() -> Result<(), mmipc::Error> {
    let channel = std::env::args().nth(1).unwrap_or_else(|| "demo".into());
    let count: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    let mut subscriber = mmipc::Subscriber::new(&channel)?;
    println!("subscriber {} on {channel:?}", subscriber.id());
    for msg in subscriber.iter().take(count) {
        println!(
            "#{} from {} (pid {}): {}",
            msg.sequence(),
            msg.publisher_id(),
            msg.publisher_pid(),
            String::from_utf8_lossy(msg.payload())
        );
    }
    Ok(())
}
