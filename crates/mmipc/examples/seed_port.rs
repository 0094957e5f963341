//! A typical program written against the C# library mmipc re-creates, ported line for line:
//! a publisher role (`new IpcPublisher(channel, dir); Publish(bytes); Dispose()`) and a
//! subscriber role (`new IpcSubscriber(channel, dir)` with `RecievedBytes`, `OnConnect` and
//! `OnDisconnect` handlers, `NumActiveConnections()`, `Dispose()`), in two processes.
//!
//! `cargo run --release -p mmipc --example seed_port`

use std::process::{Command, Stdio};
use std::time::Duration;

use mmipc::{Publisher, Subscriber};

type Res = Result<(), Box<dyn std::error::Error>>;

fn publisher(dir: &str) -> Res {
    let publisher = Publisher::builder("seed-port").dir(dir).build()?; // new IpcPublisher(channel, dir)
    for i in 0..5 {
        publisher.publish(format!("message {i}").as_bytes())?; // Publish(bytes)
    }
    Ok(()) // Dispose(): dropping it
}

fn subscriber(dir: &str) -> Res {
    let (gone, wait_gone) = std::sync::mpsc::channel();
    let handle = Subscriber::builder("seed-port")
        .dir(dir)
        .build()? // new IpcSubscriber(channel, dir)
        .callbacks()
        .on_message(|msg| println!("received {}", String::from_utf8_lossy(msg.payload()))) // RecievedBytes
        .on_connect(|peer| println!("connected: publisher pid {}", peer.pid)) // OnConnect
        .on_disconnect(move |peer, why| {
            println!("disconnected: publisher pid {} ({why:?})", peer.pid); // OnDisconnect
            let _ = gone.send(());
        })
        .start();
    println!("ready");
    wait_gone.recv_timeout(Duration::from_secs(30))?;
    println!("active connections: {}", handle.num_active_connections()); // NumActiveConnections()
    Ok(()) // Dispose(): dropping the handle
}

fn main() -> Res {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, dir] = args.as_slice() {
        return if role == "subscriber" {
            subscriber(dir)
        } else {
            publisher(dir)
        };
    }
    // Both roles, each in its own process, sharing a private directory.
    let dir = tempfile::tempdir()?;
    let dir = dir
        .path()
        .to_str()
        .ok_or("temporary directory is not UTF-8")?
        .to_owned();
    let mut sub = Command::new(std::env::current_exe()?)
        .args(["subscriber", &dir])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = std::io::BufReader::new(sub.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line)?;
    print!("subscriber: {line}");
    let status = Command::new(std::env::current_exe()?)
        .args(["publisher", &dir])
        .status()?;
    if !status.success() {
        return Err("the publisher failed".into());
    }
    for line in std::io::BufRead::lines(out) {
        println!("subscriber: {}", line?);
    }
    if !sub.wait()?.success() {
        return Err("the subscriber failed".into());
    }
    Ok(())
}
