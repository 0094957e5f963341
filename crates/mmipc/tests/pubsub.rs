//! Publish/subscribe across real processes: fan-out, fan-in, bidirectional, crashes, hangs,
//! late joiners. Children are this test binary re-executed (see `common`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use mmipc::{DisconnectReason, Event, OnFull, Publisher, Subscriber};

const CHILD: &str = "child_process_entry";

/// Entry point of every child process; does nothing in a normal test run.
#[test]
fn child_process_entry() {
    let Some(role) = child_role() else { return };
    let dir = PathBuf::from(env("DIR"));
    let channel = env("CHANNEL");
    match role.as_str() {
        "pub" => {
            let count: u64 = env("COUNT").parse().unwrap();
            let seed: u64 = env("SEED").parse().unwrap();
            let max: usize = env("MAX").parse().unwrap();
            let subs: usize = env("SUBS").parse().unwrap();
            let ring: usize = env("RING").parse().unwrap();
            let publisher = Publisher::builder(&channel)
                .dir(&dir)
                .ring_capacity(ring)
                .build()
                .unwrap();
            publisher.wait_for_subscribers(subs, WATCHDOG).unwrap();
            for i in 0..count {
                let msg = make_msg(seed, i, max);
                if i % 3 == 0 {
                    let (a, b) = msg.split_at(msg.len() / 2);
                    publisher.publish_parts(&[a, b]).unwrap();
                } else {
                    publisher.publish(&msg).unwrap();
                }
            }
        }
        "sub" => {
            let count: u64 = env("COUNT").parse().unwrap();
            let seed: u64 = env("SEED").parse().unwrap();
            let max: usize = env("MAX").parse().unwrap();
            let pubs: usize = env("PUBS").parse().unwrap();
            let stall: bool = std::env::var("STALL").is_ok();
            let mut sub = Subscriber::builder(&channel)
                .dir(&dir)
                .heartbeat_interval(Duration::from_millis(50))
                .peer_timeout(Duration::from_millis(400))
                .build()
                .unwrap();
            if stall {
                // Never read: the publisher's ring fills up.
                std::thread::sleep(WATCHDOG);
                return;
            }
            let events = sub.events();
            let mut next = std::collections::HashMap::new();
            let mut check = |payload: &[u8], publisher, sequence| {
                let n = next.entry(publisher).or_insert(0u64);
                if let Err(e) = verify_msg(seed, payload, *n, max) {
                    // Say what the connection went through (a reconnect loses messages).
                    let seen: Vec<Event> = events.try_iter().collect();
                    panic!("{e}; sequence {sequence}; events: {seen:?}");
                }
                *n += 1;
            };
            // One fan-out subscriber reads in place (no copy); the others copy, as most
            // users do.
            let in_place = std::env::var("IN_PLACE").is_ok();
            for _ in 0..count * pubs as u64 {
                if in_place {
                    let msg = sub.recv_ref_timeout(WATCHDOG).unwrap();
                    check(msg.payload(), msg.publisher_id(), msg.sequence());
                } else {
                    let msg = sub.recv_timeout(WATCHDOG).unwrap();
                    check(msg.payload(), msg.publisher_id(), msg.sequence());
                }
            }
            assert_eq!(next.len(), pubs);
            println!("OK {}", count * pubs as u64);
        }
        "bidi" => {
            let me = env("NAME");
            let pub_ = Publisher::builder(&channel).dir(&dir).build().unwrap();
            let mut sub = Subscriber::builder(&channel).dir(&dir).build().unwrap();
            pub_.wait_for_subscribers(1, WATCHDOG).unwrap();
            sub.wait_for_publishers(1, WATCHDOG).unwrap();
            for i in 0..100 {
                pub_.publish(format!("{me} {i}").as_bytes()).unwrap();
            }
            for i in 0..100 {
                let msg = sub.recv_timeout(WATCHDOG).unwrap();
                let text = String::from_utf8(msg.into_payload()).unwrap();
                let (from, n) = text.split_once(' ').unwrap();
                assert_ne!(from, me, "a process must not hear its own messages");
                assert_eq!(n, i.to_string());
            }
            assert!(
                sub.recv_timeout(Duration::from_millis(200)).is_err(),
                "no echo arrives later"
            );
            // Keep both ends up until the peer has read everything too.
            std::thread::sleep(Duration::from_millis(500));
            println!("OK");
        }
        "endless" => {
            let seed: u64 = env("SEED").parse().unwrap();
            let max: usize = env("MAX").parse().unwrap();
            let publisher = Publisher::builder(&channel)
                .dir(&dir)
                .ring_capacity(64 * 1024)
                .build()
                .unwrap();
            publisher.wait_for_subscribers(1, WATCHDOG).unwrap();
            for i in 0.. {
                publisher.publish(&make_msg(seed, i, max)).unwrap();
            }
        }
        "idle-sub" => {
            let mut sub = Subscriber::builder(&channel)
                .dir(&dir)
                .heartbeat_interval(Duration::from_millis(50))
                .peer_timeout(Duration::from_millis(400))
                .build()
                .unwrap();
            // Receive until told (by a message "quit") to stop.
            loop {
                let msg = sub.recv_timeout(WATCHDOG).unwrap();
                if msg.payload() == b"quit" {
                    println!("OK");
                    return;
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn child_env(
    dir: &std::path::Path,
    channel: &str,
    extra: &[(&str, String)],
) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("DIR", dir.display().to_string()),
        ("CHANNEL", channel.to_owned()),
    ];
    for (k, val) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        v.push((k, val.clone()));
    }
    v
}

fn our_files(root: &std::path::Path) -> Vec<PathBuf> {
    files_under(root)
}

fn next_event(rx: &std::sync::mpsc::Receiver<Event>) -> Event {
    rx.recv_timeout(WATCHDOG).expect("watchdog: no event")
}

#[test]
fn one_publisher_to_three_subscriber_processes_delivers_everything_in_order() {
    if child_role().is_some() {
        return;
    }
    let root = test_root();
    let (count, max) = (100_000u64, 160 * 1024);
    let common = [
        ("COUNT", count.to_string()),
        ("SEED", "11".into()),
        ("MAX", max.to_string()),
    ];
    let mut env = child_env(root.path(), "fanout", &common);
    env.push(("PUBS", "1".into()));
    let mut subs: Vec<_> = (0..2).map(|_| spawn_child(CHILD, "sub", &env)).collect();
    env.push(("IN_PLACE", "1".into()));
    subs.push(spawn_child(CHILD, "sub", &env));
    let mut penv = child_env(root.path(), "fanout", &common);
    penv.push(("SUBS", "3".into()));
    penv.push(("RING", (64 * 1024).to_string()));
    let publisher = spawn_child(CHILD, "pub", &penv);
    let (status, _) = wait_child(publisher, "publisher");
    assert!(status.success());
    for s in subs {
        let (status, out) = wait_child(s, "subscriber");
        assert!(status.success(), "subscriber failed");
        assert!(
            out.contains(&format!("OK {count}")),
            "subscriber output: {out}"
        );
    }
    assert_eq!(
        our_files(root.path()),
        Vec::<PathBuf>::new(),
        "clean shutdown leaves no files"
    );
}

#[test]
fn three_publisher_processes_to_one_subscriber_keep_per_publisher_order() {
    if child_role().is_some() {
        return;
    }
    let root = test_root();
    let (count, max) = (20_000u64, 100 * 1024);
    let mut sub = Subscriber::builder("fanin")
        .dir(root.path())
        .build()
        .unwrap();
    let events = sub.events();
    let common = [
        ("COUNT", count.to_string()),
        ("SEED", "5".into()),
        ("MAX", max.to_string()),
    ];
    let mut env = child_env(root.path(), "fanin", &common);
    env.push(("SUBS", "1".into()));
    env.push(("RING", (64 * 1024).to_string()));
    let pubs: Vec<_> = (0..3).map(|_| spawn_child(CHILD, "pub", &env)).collect();
    let mut next = std::collections::HashMap::new();
    for _ in 0..3 * count {
        let msg = sub.recv_timeout(WATCHDOG).unwrap();
        let n = next.entry(msg.publisher_id()).or_insert(0u64);
        check_msg(5, msg.payload(), *n, max);
        assert_eq!(
            msg.sequence(),
            *n + 1,
            "sequence numbers count from 1 without gaps"
        );
        *n += 1;
    }
    assert_eq!(next.len(), 3);
    for p in pubs {
        assert!(wait_child(p, "publisher").0.success());
    }
    let mut connected = 0;
    let mut closed = 0;
    while closed < 3 {
        match next_event(&events) {
            Event::Connected { .. } => connected += 1,
            Event::Disconnected { reason, .. } => {
                assert_eq!(reason, DisconnectReason::Closed);
                closed += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(connected, 3);
    drop(sub);
    assert_eq!(
        our_files(root.path()),
        Vec::<PathBuf>::new(),
        "clean shutdown leaves no files"
    );
}

#[test]
fn bidirectional_pair_hears_only_the_other_side() {
    if child_role().is_some() {
        return;
    }
    let root = test_root();
    let a = spawn_child(
        CHILD,
        "bidi",
        &child_env(root.path(), "bidi", &[("NAME", "a".into())]),
    );
    let b = spawn_child(
        CHILD,
        "bidi",
        &child_env(root.path(), "bidi", &[("NAME", "b".into())]),
    );
    for c in [a, b] {
        let (status, out) = wait_child(c, "bidi peer");
        assert!(status.success() && out.contains("OK"));
    }
    assert_eq!(our_files(root.path()), Vec::<PathBuf>::new());
}

#[test]
fn two_subscribers_in_one_process_both_get_everything() {
    if child_role().is_some() {
        return;
    }
    let root = test_root();
    let mut s1 = Subscriber::builder("twosubs")
        .dir(root.path())
        .build()
        .unwrap();
    let mut s2 = Subscriber::builder("twosubs")
        .dir(root.path())
        .build()
        .unwrap();
    let common = [
        ("COUNT", "2000".into()),
        ("SEED", "3".into()),
        ("MAX", "70000".into()),
        ("SUBS", "2".into()),
        ("RING", "65536".into()),
    ];
    let p = spawn_child(CHILD, "pub", &child_env(root.path(), "twosubs", &common));
    // One thread per subscriber: with messages larger than the ring and `OnFull::Block`, a
    // single thread alternating between them could starve the ring the publisher fills.
    std::thread::scope(|scope| {
        for s in [&mut s1, &mut s2] {
            scope.spawn(move || {
                for i in 0..2000 {
                    check_msg(3, s.recv_timeout(WATCHDOG).unwrap().payload(), i, 70000);
                }
            });
        }
    });
    assert!(wait_child(p, "publisher").0.success());
}

#[test]
fn late_subscriber_gets_everything_published_after_it_connected() {
    if child_role().is_some() {
        return;
    }
    let root = test_root();
    let publisher = Publisher::builder("late").dir(root.path()).build().unwrap();
    for i in 0..50u32 {
        publisher.publish(&i.to_le_bytes()).unwrap(); // nobody listens: these go nowhere
    }
    let child = spawn_child(CHILD, "idle-sub", &child_env(root.path(), "late", &[]));
    publisher.wait_for_subscribers(1, WATCHDOG).unwrap();
    for i in 0..1000u32 {
        publisher.publish(&i.to_le_bytes()).unwrap();
    }
    publisher.publish(b"quit").unwrap();
    let (status, out) = wait_child(child, "late subscriber");
    assert!(status.success() && out.contains("OK"));
    let stats = publisher.connections();
    assert!(stats.is_empty() || stats[0].messages == 1001);
}

#[test]
fn a_publisher_that_exits_right_after_publishing_loses_nothing() {
    if child_role().is_some() {
        return;
    }
    // The publisher connects, publishes and exits before the subscriber has necessarily
    // even opened the ring: what `wait_for_subscribers` promised must still arrive.
    let root = test_root();
    for round in 0..10 {
        let channel = format!("brief-{round}");
        let mut sub = Subscriber::builder(&channel)
            .dir(root.path())
            .build()
            .unwrap();
        let events = sub.events();
        let env = child_env(
            root.path(),
            &channel,
            &[
                ("COUNT", "3".into()),
                ("SEED", "5".into()),
                ("MAX", "100".into()),
                ("SUBS", "1".into()),
                ("RING", "4096".into()),
            ],
        );
        let (status, _) = wait_child(spawn_child(CHILD, "pub", &env), "publisher");
        assert!(status.success());
        for i in 0..3 {
            let msg = sub.recv_timeout(WATCHDOG).unwrap_or_else(|e| {
                panic!(
                    "round {round}: message {i} lost ({e}); events {:?}",
                    events.try_iter().collect::<Vec<_>>()
                )
            });
            check_msg(5, msg.payload(), i, 100);
        }
        // The publisher's Disconnected comes after its last message, from the receive call
        // that finds its ring drained.
        assert!(sub.try_recv().unwrap().is_none());
        let seen = [next_event(&events), next_event(&events)];
        assert!(
            matches!(
                seen,
                [
                    Event::Connected { .. },
                    Event::Disconnected {
                        reason: DisconnectReason::Closed,
                        ..
                    }
                ]
            ),
            "round {round}: {seen:?}"
        );
        drop(sub);
        eventually("the ring is removed", || our_files(root.path()).is_empty());
    }
}

#[test]
fn a_ring_that_breaks_the_framing_delivers_nothing_more() {
    if child_role().is_some() {
        return;
    }
    if !Path::new("/dev/shm").is_dir() {
        return; // the rings are made by hand next to the records, on tmpfs
    }
    let root = test_root();
    let mut sub = Subscriber::builder("framing")
        .dir(root.path())
        .build()
        .unwrap();
    let events = sub.events();
    let dir = root.path().join("framing");
    let ring = |publisher: &str| {
        let path = dir.join(format!("ring-{publisher}-{}-1", sub.id()));
        mmipc::ring::RingSegment::create(path, 4096)
            .unwrap()
            .into_producer()
    };
    let frame = |seq: u64, text: &str| [&seq.to_le_bytes()[..], text.as_bytes()].concat();
    // Two "publishers" with no record and no lock: departed ones, whose rings are drained.
    let mut bad = ring(&"a".repeat(32));
    let mut good = ring(&"b".repeat(32));
    for (seq, text) in [
        (1, "A1"),
        (5, "A5"),
        (3, "A3-backwards"),
        (6, "A6"),
        (7, "A7"),
    ] {
        bad.try_write(&frame(seq, text)).unwrap();
    }
    for seq in 1..=10 {
        good.try_write(&frame(seq, &format!("B{seq}"))).unwrap();
    }
    let mut got = Vec::new();
    while let Ok(msg) = sub.recv_timeout(Duration::from_millis(1500)) {
        got.push(String::from_utf8(msg.into_payload()).unwrap());
    }
    let from_a: Vec<&String> = got.iter().filter(|m| m.starts_with('A')).collect();
    assert_eq!(from_a, ["A1", "A5"], "nothing after the violation: {got:?}");
    assert_eq!(
        got.iter().filter(|m| m.starts_with('B')).count(),
        10,
        "{got:?}"
    );
    let reasons: Vec<DisconnectReason> = events
        .try_iter()
        .filter_map(|e| match e {
            Event::Disconnected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    drop((bad, good));
}

#[test]
fn kill_9_of_a_publisher_is_reported_as_crashed_and_what_arrived_is_an_intact_prefix() {
    if child_role().is_some() {
        return;
    }
    let root = test_root();
    let max = 200 * 1024;
    let mut sub = Subscriber::builder("crash")
        .dir(root.path())
        .build()
        .unwrap();
    let events = sub.events();
    let mut child = spawn_child(
        CHILD,
        "endless",
        &child_env(
            root.path(),
            "crash",
            &[("SEED", "9".into()), ("MAX", max.to_string())],
        ),
    );
    let pid = child.id();
    let mut n = 0u64;
    while n < 3000 {
        check_msg(9, sub.recv_timeout(WATCHDOG).unwrap().payload(), n, max);
        n += 1;
    }
    child.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    let _ = child.wait();
    // Drain: every further message is the next one of the stream, intact; then silence.
    while let Ok(msg) = sub.recv_timeout(Duration::from_millis(300)) {
        check_msg(9, msg.payload(), n, max);
        n += 1;
    }
    let mut crashed = None;
    while crashed.is_none() {
        if let Event::Disconnected { peer, reason } = next_event(&events) {
            assert_eq!(peer.pid, pid);
            crashed = Some(reason);
        }
    }
    assert_eq!(crashed, Some(DisconnectReason::Crashed));
    eprintln!(
        "kill -9 -> Disconnected observed within {:?} (upper bound, includes draining)",
        killed.elapsed()
    );
    eventually("the dead publisher's files are removed", || {
        our_files(root.path()).iter().all(|p| {
            !p.file_name().unwrap().to_string_lossy().starts_with("pub-")
                && !p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("ring-")
        })
    });
}

#[test]
fn kill_9_of_a_subscriber_releases_a_publisher_blocked_on_its_full_ring() {
    if child_role().is_some() {
        return;
    }
    let root = test_root();
    let publisher = Publisher::builder("stall")
        .dir(root.path())
        .ring_capacity(4096)
        .on_full(OnFull::Block)
        .build()
        .unwrap();
    let events = publisher.events();
    let env = child_env(
        root.path(),
        "stall",
        &[
            ("COUNT", "0".into()),
            ("SEED", "0".into()),
            ("MAX", "0".into()),
            ("PUBS", "1".into()),
            ("STALL", "1".into()),
        ],
    );
    let mut child = spawn_child(CHILD, "sub", &env);
    publisher.wait_for_subscribers(1, WATCHDOG).unwrap();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            // The ring holds a few of these; then publish blocks until the subscriber dies.
            for _ in 0..100 {
                publisher.publish(&[7u8; 1000]).unwrap();
            }
        });
        eventually("the ring fills up", || {
            publisher
                .connections()
                .first()
                .is_some_and(|c| c.ring_fill > 3000)
        });
        assert!(
            !writer.is_finished(),
            "publish must be blocked on the full ring"
        );
        child.kill().unwrap();
        let _ = child.wait();
        let deadline = Instant::now() + WATCHDOG;
        while !writer.is_finished() {
            assert!(
                Instant::now() < deadline,
                "watchdog: the blocked publisher was never released"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut reason = None;
    while reason.is_none() {
        if let Event::Disconnected { reason: r, .. } = next_event(&events) {
            reason = Some(r);
        }
    }
    assert_eq!(reason, Some(DisconnectReason::Crashed));
    assert_eq!(publisher.num_active_connections(), 0);
    eventually("the dead subscriber's files are removed", || {
        our_files(root.path()).iter().all(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            !name.starts_with("sub-") && !name.starts_with("ring-")
        })
    });
}

#[test]
fn stopped_subscriber_times_out_and_reconnects_after_sigcont() {
    if child_role().is_some() {
        return;
    }
    let root = test_root();
    let publisher = Publisher::builder("stop")
        .dir(root.path())
        .heartbeat_interval(Duration::from_millis(50))
        .peer_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let events = publisher.events();
    let child = spawn_child(CHILD, "idle-sub", &child_env(root.path(), "stop", &[]));
    let pid = child.id() as i32;
    publisher.wait_for_subscribers(1, WATCHDOG).unwrap();
    assert!(matches!(next_event(&events), Event::Connected { .. }));
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    match next_event(&events) {
        Event::Disconnected { reason, .. } => assert_eq!(reason, DisconnectReason::TimedOut),
        other => panic!("expected a time-out, got {other:?}"),
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert!(
        matches!(next_event(&events), Event::Connected { .. }),
        "the resumed subscriber reconnects"
    );
    publisher.publish(b"quit").unwrap();
    let (status, out) = wait_child(child, "resumed subscriber");
    assert!(status.success() && out.contains("OK"));
}

#[test]
fn dropping_the_subscriber_inside_its_callback_does_not_deadlock() {
    if child_role().is_some() {
        return;
    }
    use std::sync::{Arc, Mutex, mpsc};
    let root = test_root();
    let publisher = Publisher::builder("cb")
        .dir(root.path())
        .deliver_to_same_process(true)
        .build()
        .unwrap();
    let sub = Subscriber::builder("cb").dir(root.path()).build().unwrap();
    publisher.wait_for_subscribers(1, WATCHDOG).unwrap();
    let slot: Arc<Mutex<Option<mmipc::CallbackHandle>>> = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel();
    let slot2 = Arc::clone(&slot);
    let handle = sub.on_message(move |msg| {
        tx.send(msg.into_payload()).unwrap();
        let taken = slot2.lock().unwrap().take();
        drop(taken); // closes the subscriber from inside its own callback
    });
    *slot.lock().unwrap() = Some(handle);
    publisher.publish(b"first").unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), b"first");
    eventually("the subscriber goes away", || {
        publisher.num_active_connections() == 0
    });
}

#[test]
fn hostile_directory_contents_are_skipped_and_never_deleted() {
    if child_role().is_some() {
        return;
    }
    let root = test_root();
    for bad in ["", "..", "a/b", "nul\0x", "tab\tx", &"x".repeat(101)] {
        let err = Publisher::builder(bad)
            .dir(root.path())
            .build()
            .unwrap_err();
        assert!(
            matches!(err, mmipc::Error::InvalidChannel { .. }),
            "{bad:?}: {err}"
        );
    }
    // A root others can write is refused.
    let open = root.path().join("open");
    std::fs::create_dir(&open).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Subscriber::builder("x").dir(&open).build().unwrap_err();
    assert!(
        matches!(err, mmipc::Error::InsecureDirectory { .. }),
        "{err}"
    );
    // Junk in the channel directory: truncated and junk records, unrelated files, and a
    // live-looking subscriber whose doorbell is too small.
    let chan = root.path().join("hostile");
    std::fs::create_dir(&chan).unwrap();
    std::fs::set_permissions(&chan, std::fs::Permissions::from_mode(0o700)).unwrap();
    let fake = "0123456789abcdef0123456789abcdef";
    let junk = [
        ("notes.json", &b"{\"mine\": true}"[..]),
        ("README", b"user file"),
        (
            "sub-ffffffffffffffffffffffffffffffff.json",
            b"{\"protocol\": 1, \"ki",
        ),
        (
            "pub-eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.json",
            b"\x00\x01garbage",
        ),
    ];
    for (name, bytes) in junk {
        std::fs::write(chan.join(name), bytes).unwrap();
    }
    let record = format!(
        "{{\"protocol\":1,\"kind\":\"subscriber\",\"id\":\"{fake}\",\"pid\":{},\"max_message_size\":100,\"created_unix_ms\":0}}",
        std::process::id() + 1
    );
    std::fs::write(chan.join(format!("sub-{fake}.json")), record).unwrap();
    let lock = std::fs::File::create(chan.join(format!("sub-{fake}.lock"))).unwrap();
    lock.try_lock().unwrap(); // it looks alive
    std::fs::write(chan.join(format!("sub-{fake}.bell")), b"short").unwrap();
    std::fs::set_permissions(
        chan.join(format!("sub-{fake}.bell")),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    let publisher = Publisher::builder("hostile")
        .dir(root.path())
        .deliver_to_same_process(true)
        .build()
        .unwrap();
    let mut sub = Subscriber::builder("hostile")
        .dir(root.path())
        .build()
        .unwrap();
    publisher.wait_for_subscribers(1, WATCHDOG).unwrap();
    publisher.publish(b"still works").unwrap();
    assert_eq!(
        sub.recv_timeout(WATCHDOG).unwrap().payload(),
        b"still works"
    );
    assert_eq!(
        publisher.num_active_connections(),
        1,
        "the fake subscriber is skipped"
    );
    drop((publisher, sub));
    for (name, _) in junk {
        assert!(chan.join(name).exists(), "{name} must not be deleted");
    }
    assert!(
        chan.join(format!("sub-{fake}.json")).exists(),
        "a live-looking endpoint is left alone"
    );
    drop(lock);
}
