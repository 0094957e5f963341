//! Handlers run on a thread of their own for a subscriber's messages, connections and
//! disconnections (the C# library's `ReceivedBytes`, `OnConnect`, `OnDisconnect`):
//! [`Callbacks`] registers them, [`CallbackHandle`] owns the thread. Owns the order in which
//! events and messages reach handlers; must not touch rings (it receives through the
//! subscriber).

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::discovery::EndpointId;
use crate::endpoint::Core;
use crate::event::{DisconnectReason, Event, Events, Peer};
use crate::message::Message;
use crate::subscriber::{Receiving, Subscriber};

impl Subscriber {
    /// Runs `callback` on a thread of its own for each message (like the C# library's
    /// `ReceivedBytes` event), until the returned handle is closed or dropped. The same as
    /// `self.callbacks().on_message(callback).start()`; see [`Subscriber::callbacks`] for
    /// connect and disconnect handlers. Dropping the handle from inside the callback is
    /// allowed and does not deadlock.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let subscriber = mmipc::Subscriber::new("telemetry")?;
    /// let handle = subscriber.on_message(|msg| println!("{} bytes", msg.len()));
    /// std::thread::sleep(std::time::Duration::from_secs(1));
    /// println!("{} publishers", handle.num_active_connections());
    /// handle.close();
    /// # Ok::<(), mmipc::Error>(())
    /// ```
    pub fn on_message<F>(self, callback: F) -> CallbackHandle
    where
        F: FnMut(Message) + Send + 'static,
    {
        self.callbacks().on_message(callback).start()
    }

    /// Handlers for messages, connections and disconnections, run in order on one thread
    /// that the returned [`CallbackHandle`] owns (the C# library's `ReceivedBytes`,
    /// `OnConnect` and `OnDisconnect`). The handle still answers
    /// [`num_active_connections`](CallbackHandle::num_active_connections),
    /// [`connections`](CallbackHandle::connections) and [`events`](CallbackHandle::events);
    /// dropping it stops the thread and closes the subscriber.
    ///
    /// Order: a publisher's connect handler runs before any of its messages, its disconnect
    /// handler after the last of them.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let handle = subscriber
    ///     .callbacks()
    ///     .on_connect(|peer| println!("publisher pid {} connected", peer.pid))
    ///     .on_message(move |msg| tx.send(msg.into_payload()).unwrap())
    ///     .on_disconnect(|peer, reason| println!("pid {} left: {reason:?}", peer.pid))
    ///     .start();
    /// let publisher = mmipc::Publisher::builder("docs").dir(dir.path()).deliver_to_same_process(true).build()?;
    /// publisher.publish(b"hello")?;
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(10))?, b"hello");
    /// assert_eq!(handle.num_active_connections(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn callbacks(self) -> Callbacks {
        Callbacks {
            subscriber: self,
            on_message: None,
            on_connect: None,
            on_disconnect: None,
        }
    }

    /// Waits for the next message, or returns `None` as soon as an event was emitted after
    /// `seen` (for the callback thread, which handles both). With a message comes the number
    /// of events emitted before it. `Err(())` once a stop was requested.
    fn recv_or_event(&mut self, seen: u64) -> Result<Option<(Message, u64)>, ()> {
        loop {
            if self.stopping() {
                return Err(());
            }
            if let Some(found) = self.find() {
                // Events emitted up to now came before this message (a ring's `Connected`
                // is emitted before the ring reaches us; its `Disconnected` not before the
                // ring is drained, which it is not while this message is still in it).
                let emitted = self.core.events.emitted();
                return Ok(Some((self.take(found).to_message(), emitted)));
            }
            if self.core.events.emitted() != seen {
                return Ok(None);
            }
            let core = Arc::clone(&self.core);
            let _ = self.wait(None, || core.events.emitted() != seen);
        }
    }
}

type MessageFn = Box<dyn FnMut(Message) + Send>;
type ConnectFn = Box<dyn FnMut(Peer) + Send>;
type DisconnectFn = Box<dyn FnMut(Peer, DisconnectReason) + Send>;

/// Handlers of a subscriber, from [`Subscriber::callbacks`]; [`Callbacks::start`] runs them.
#[must_use = "the handlers run only once `.start()` is called"]
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
/// let callbacks: mmipc::Callbacks = subscriber.callbacks().on_message(|msg| println!("{msg:?}"));
/// let handle = callbacks.start();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Callbacks {
    subscriber: Subscriber,
    on_message: Option<MessageFn>,
    on_connect: Option<ConnectFn>,
    on_disconnect: Option<DisconnectFn>,
}

impl Callbacks {
    /// Runs `f` for each message.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let handle = subscriber.callbacks().on_message(|msg| println!("{} bytes", msg.len())).start();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_message(mut self, f: impl FnMut(Message) + Send + 'static) -> Self {
        self.on_message = Some(Box::new(f));
        self
    }

    /// Runs `f` when a publisher connects (also, at start, for each publisher already
    /// connected), before any of its messages.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let handle = subscriber.callbacks().on_connect(|peer| println!("pid {} here", peer.pid)).start();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_connect(mut self, f: impl FnMut(Peer) + Send + 'static) -> Self {
        self.on_connect = Some(Box::new(f));
        self
    }

    /// Runs `f` when a publisher's connection ends, after the last of its messages.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let handle = subscriber
    ///     .callbacks()
    ///     .on_disconnect(|peer, reason| println!("pid {} left: {reason:?}", peer.pid))
    ///     .start();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_disconnect(mut self, f: impl FnMut(Peer, DisconnectReason) + Send + 'static) -> Self {
        self.on_disconnect = Some(Box::new(f));
        self
    }

    /// Starts the handler thread. It runs until the handle is closed or dropped (which also
    /// closes the subscriber).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let handle = subscriber.callbacks().on_message(|_| {}).start();
    /// handle.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(self) -> CallbackHandle {
        let Callbacks {
            mut subscriber,
            mut on_message,
            mut on_connect,
            mut on_disconnect,
        } = self;
        let core = Arc::clone(&subscriber.core);
        // Subscribed before the snapshot of current connections: a connection made in
        // between is announced once (the set of announced publishers dedups).
        let events = subscriber.events();
        // Events emitted before this were not sent to `events` (or are counted in it).
        let base = subscriber.core.events.emitted();
        let thread = std::thread::Builder::new()
            .name("mmipc-callback".into())
            .spawn(move || {
                let mut announced: HashSet<EndpointId> = HashSet::new();
                for c in subscriber.connections() {
                    announced.insert(c.peer.id);
                    if let Some(f) = on_connect.as_mut() {
                        f(c.peer);
                    }
                }
                let mut handled = 0u64;
                // Handles the events in the channel, up to the one numbered `upto` (counted
                // from `base`) if given.
                let mut dispatch = |upto: Option<u64>, handled: &mut u64| loop {
                    if upto.is_some_and(|u| base + *handled >= u) {
                        return;
                    }
                    let Some(event) = events.try_recv() else {
                        return;
                    };
                    *handled += 1;
                    match event {
                        Event::Connected { peer } => {
                            if announced.insert(peer.id)
                                && let Some(f) = on_connect.as_mut()
                            {
                                f(peer);
                            }
                        }
                        Event::Disconnected { peer, reason } => {
                            announced.remove(&peer.id);
                            if let Some(f) = on_disconnect.as_mut() {
                                f(peer, reason);
                            }
                        }
                        _ => {}
                    }
                };
                loop {
                    let seen = subscriber.core.events.emitted();
                    dispatch(None, &mut handled);
                    match subscriber.recv_or_event(seen) {
                        Ok(Some((msg, emitted))) => {
                            // The events that came before this message, first.
                            dispatch(Some(emitted), &mut handled);
                            if let Some(f) = on_message.as_mut() {
                                f(msg);
                            }
                        }
                        Ok(None) => {}
                        Err(_) => return,
                    }
                }
            })
            .expect("cannot spawn the callback thread");
        CallbackHandle {
            core,
            thread: Some(thread),
        }
    }
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("subscriber", &self.subscriber.core.id)
            .finish()
    }
}

/// Owns the handler thread of [`Subscriber::callbacks`] / [`Subscriber::on_message`]; stops it
/// (and closes the subscriber) when closed or dropped, and still answers for the subscriber.
#[must_use = "the callbacks stop when the handle is dropped: keep it in a variable \
              (`let handle = ...`), not `let _ = ...`"]
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
/// let handle: mmipc::CallbackHandle = subscriber.on_message(|msg| println!("{msg:?}"));
/// drop(handle); // stops the callback
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CallbackHandle {
    core: Arc<Core<Receiving>>,
    thread: Option<JoinHandle<()>>,
}

impl CallbackHandle {
    crate::endpoint::endpoint_views!(
        "let ep = mmipc::Subscriber::builder(\"docs\").dir(dir.path()).build()?.on_message(|_| {});",
        "publishers"
    );

    /// Stops the callback thread and waits for it (unless called from the callback itself),
    /// then closes the subscriber.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let subscriber = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?;
    /// let handle = subscriber.on_message(|msg| println!("{} bytes", msg.len()));
    /// handle.close(); // stops the callback thread and closes the subscriber
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(self) {}

    /// A new receiver of the subscriber's connection events, as [`Subscriber::events`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let handle = mmipc::Subscriber::builder("docs").dir(dir.path()).build()?.on_message(|_| {});
    /// let events = handle.events();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn events(&self) -> Events {
        self.core.subscribe()
    }
}

impl Drop for CallbackHandle {
    fn drop(&mut self) {
        self.core.role.request_stop();
        if let Some(t) = self.thread.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for CallbackHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.fmt_handle(f, "CallbackHandle")
    }
}
