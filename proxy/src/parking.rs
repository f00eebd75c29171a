//! Where idle keep-alive connections wait for their next request: one thread and one epoll
//! set for all of them, so a parked connection costs a slab entry and a small closure.
//!
//! Waiting in a tokio task of its own cost a parked connection about 1.7 KB: the task's
//! cell, the runtime's per-socket registration and the task's future. nginx keeps an idle
//! connection in about 520 B. Here a parked socket leaves tokio's reactor altogether and
//! is registered with the lot's own poller; when it becomes readable it goes back to tokio
//! with a new task, and the connection goes on as before. A connection idle for the idle
//! timeout, or still parked when the server stops, is closed.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

/// What is done with a parked connection once its client sends again: it is given back as
/// a tokio socket, inside the runtime the lot was made in.
///
/// A value, held in line in the lot's table, not a boxed closure: a box is allocated by the
/// runtime's thread while it serves the connection's last request, among that request's
/// buffers, and a burst of connections going idle together would leave one such small box
/// on each page those buffers freed, keeping the pages (glibc's malloc returns only the
/// free space at the top of a heap).
pub(crate) trait Resume: Send + 'static {
    /// Goes on with the connection.
    fn resume(self, stream: tokio::net::TcpStream);
}

impl<F: FnOnce(tokio::net::TcpStream) + Send + 'static> Resume for F {
    fn resume(self, stream: tokio::net::TcpStream) {
        self(stream)
    }
}

/// The waker's token; parked sockets use their slab key, always below it.
const WAKE: Token = Token(usize::MAX);

/// Readiness events taken from the poller at once.
const EVENTS_PER_POLL: usize = 1024;

/// A thread holding idle connections. Stopped (closing every connection in it) by
/// [`ParkingLot::stop`] or when dropped.
pub(crate) struct ParkingLot<R> {
    shared: Arc<Shared>,
    /// Connections handed over to the thread. A channel, not a vector the thread swaps:
    /// the channel's blocks are small and freed as the thread takes them, while a vector
    /// grows in the runtime's heap to the size of the largest burst. (glibc's malloc
    /// answers a large block freed by raising the size of free space it keeps at the top
    /// of its heaps, and then holds on to the pages that burst's connections freed.)
    arrivals: mpsc::Sender<Arriving<R>>,
    waker: Arc<Waker>,
    /// How long a connection may stay parked: one for all, so the expiry queue is in order.
    idle_timeout: Duration,
}

struct Shared {
    /// Set when the thread has been woken for arrivals and has not yet taken them: one
    /// wake per batch is enough.
    woken: AtomicBool,
    stop: AtomicBool,
    /// Connections parked, shared with the proxy's counters (several lots may add to it).
    parked: Arc<AtomicU64>,
}

impl<R> std::fmt::Debug for ParkingLot<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkingLot")
            .field("shared", &self.shared)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("parked", &self.parked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Arriving<R> {
    stream: mio::net::TcpStream,
    deadline: Instant,
    resume: R,
}

struct Parked<R> {
    stream: mio::net::TcpStream,
    /// Tells this connection apart from a later one in the same slab slot, for the
    /// expiry queue.
    serial: u64,
    resume: R,
}

impl<R: Resume> ParkingLot<R> {
    /// Starts the lot's thread, closing connections parked for longer than `idle_timeout`;
    /// resumed connections are spawned on the current tokio runtime. `parked` counts the
    /// connections in it.
    pub(crate) fn start(
        idle_timeout: Duration,
        parked: Arc<AtomicU64>,
    ) -> io::Result<ParkingLot<R>> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let shared = Arc::new(Shared {
            woken: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            parked,
        });
        let runtime = tokio::runtime::Handle::current();
        let thread_shared = shared.clone();
        let (arrivals, arriving) = mpsc::channel();
        std::thread::Builder::new()
            .name("reef-parking".into())
            .spawn(move || run(poll, &thread_shared, arriving, &runtime))?;
        Ok(ParkingLot {
            shared,
            arrivals,
            waker,
            idle_timeout,
        })
    }

    /// Parks `stream` until it is readable, then calls `resume` with it; closes it if it
    /// stays idle for the lot's idle timeout.
    pub(crate) fn park(&self, stream: tokio::net::TcpStream, resume: R) {
        let stream = match stream.into_std() {
            Ok(s) => mio::net::TcpStream::from_std(s),
            Err(e) => {
                tracing::debug!(error = %e, "could not park a connection; closed");
                return;
            }
        };
        let arriving = Arriving {
            stream,
            deadline: Instant::now() + self.idle_timeout,
            resume,
        };
        // The lot has stopped (its thread dropped the receiver): the connection closes here.
        if self.arrivals.send(arriving).is_err() {
            return;
        }
        // Sent before the flag is looked at, and the thread clears the flag before it takes
        // arrivals: either the thread's next turn sees this arrival, or this wakes it.
        if !self.shared.woken.swap(true, Ordering::SeqCst)
            && let Err(e) = self.waker.wake()
        {
            tracing::warn!(error = %e, "parking thread could not be woken");
        }
    }

    /// Connections parked now.
    #[cfg(test)]
    fn parked(&self) -> u64 {
        self.shared.parked.load(Ordering::Relaxed)
    }
}

impl<R> ParkingLot<R> {
    /// Ends the thread, closing every parked connection.
    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
    }
}

impl<R> Drop for ParkingLot<R> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a client that shut its side sent nothing before it did.
fn said_nothing(stream: &mio::net::TcpStream) -> bool {
    match stream.peek(&mut [0u8; 1]) {
        Ok(n) => n == 0,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

/// The lot's thread: registers arrivals, resumes readable connections, closes expired ones.
fn run<R: Resume>(
    mut poll: Poll,
    shared: &Shared,
    arriving: mpsc::Receiver<Arriving<R>>,
    runtime: &tokio::runtime::Handle,
) {
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut parked: Slab<Parked<R>> = Slab::new();
    // Every connection parks for the same idle timeout, so deadlines arrive in order.
    let mut expiry: VecDeque<(Instant, usize, u64)> = VecDeque::new();
    let mut serial = 0u64;
    // The gauge moves by differences: other lots add to it too.
    let mut counted = 0u64;
    let mut count = |now: usize| {
        let now = now as u64;
        if now >= counted {
            shared.parked.fetch_add(now - counted, Ordering::Relaxed);
        } else {
            shared.parked.fetch_sub(counted - now, Ordering::Relaxed);
        }
        counted = now;
    };
    while !shared.stop.load(Ordering::Relaxed) {
        let timeout = expiry
            .front()
            .map(|(at, _, _)| at.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(error = %e, "parking thread failed; parked connections closed");
            break;
        }
        for event in events.iter() {
            if event.token() == WAKE {
                continue;
            }
            let Some(p) = parked.try_remove(event.token().0) else {
                continue;
            };
            let mut stream = p.stream;
            // A client that left without a word is closed here: a task and a hyper
            // connection only to read the end would cost more than the rest of its stay.
            if event.is_read_closed() && said_nothing(&stream) {
                continue;
            }
            let _ = poll.registry().deregister(&mut stream);
            let _entered = runtime.enter();
            match tokio::net::TcpStream::from_std(stream.into()) {
                Ok(stream) => p.resume.resume(stream),
                Err(e) => tracing::debug!(error = %e, "parked connection could not resume"),
            }
        }
        shared.woken.store(false, Ordering::SeqCst);
        for a in arriving.try_iter() {
            serial += 1;
            let entry = parked.vacant_entry();
            let key = entry.key();
            let mut stream = a.stream;
            if let Err(e) = poll
                .registry()
                .register(&mut stream, Token(key), Interest::READABLE)
            {
                tracing::debug!(error = %e, "could not park a connection; closed");
                continue;
            }
            entry.insert(Parked {
                stream,
                serial,
                resume: a.resume,
            });
            expiry.push_back((a.deadline, key, serial));
        }
        // Entries of connections resumed since are dropped on the way.
        let now = Instant::now();
        while let Some(&(at, key, serial)) = expiry.front() {
            let current = parked.get(key).is_some_and(|p| p.serial == serial);
            if current && at > now {
                break;
            }
            expiry.pop_front();
            if current {
                // Closed by dropping: the kernel removes it from the poller with the socket.
                parked.remove(key);
            }
        }
        count(parked.len());
    }
    // Whatever arrived meanwhile closes with the rest (a receiver dropped drops what it
    // holds); nothing arrives after (a send to a dropped receiver fails).
    drop(arriving);
    count(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// The tests' resumption: any closure.
    type Boxed = Box<dyn FnOnce(TcpStream) + Send>;

    /// A connected pair: (client, server side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    /// Bytes the client reads next (0: the connection was closed), within 5 s.
    async fn read_within_5s(client: &mut TcpStream) -> usize {
        let mut buf = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("closed in time")
            .expect("read")
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..500 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached in 5 s");
    }

    #[tokio::test]
    async fn a_parked_connection_resumes_with_its_bytes_when_the_client_sends() {
        let lot = ParkingLot::<Boxed>::start(Duration::from_secs(60), Arc::default()).expect("lot");
        let (mut client, server) = pair().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        lot.park(server, Box::new(move |s| drop(tx.send(s))));
        until(|| lot.parked() == 1).await;
        client
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut server = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("resumed in time")
            .expect("resumed");
        let mut got = [0u8; 16];
        server.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"GET / HTTP/1.1\r\n");
        // The count is updated at the end of the thread's turn, after the resume.
        until(|| lot.parked() == 0).await;
        // The resumed socket is an ordinary tokio socket again.
        server.write_all(b"ok").await.expect("write back");
        let mut back = [0u8; 2];
        client.read_exact(&mut back).await.expect("read back");
        assert_eq!(&back, b"ok");
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_at_its_timeout_and_never_resumed() {
        let lot =
            ParkingLot::<Boxed>::start(Duration::from_millis(1000), Arc::default()).expect("lot");
        let (mut quiet, server) = pair().await;
        let resumed = Arc::new(AtomicU64::new(0));
        let r = resumed.clone();
        lot.park(
            server,
            Box::new(move |_| {
                r.fetch_add(1, Ordering::Relaxed);
            }),
        );
        // Another, parked later: its time is not up when the first one's is.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (_busy, busy_server) = pair().await;
        lot.park(busy_server, Box::new(|_| {}));
        until(|| lot.parked() == 2).await;
        assert_eq!(
            read_within_5s(&mut quiet).await,
            0,
            "the idle connection gets EOF"
        );
        assert_eq!(resumed.load(Ordering::Relaxed), 0);
        // The count is updated after the close, at the end of the thread's turn.
        until(|| lot.parked() == 1).await;
    }

    #[tokio::test]
    async fn stopping_the_lot_closes_its_connections_and_any_parked_later() {
        let lot = ParkingLot::<Boxed>::start(Duration::from_secs(60), Arc::default()).expect("lot");
        let (mut busy, busy_server) = pair().await;
        lot.park(busy_server, Box::new(|_| {}));
        until(|| lot.parked() == 1).await;
        // Stopping the lot closes what is left.
        lot.stop();
        assert_eq!(
            read_within_5s(&mut busy).await,
            0,
            "a parked connection is closed when the lot stops"
        );
        // One parked after the stop is closed too, not left waiting for a thread that ended.
        let (mut late, late_server) = pair().await;
        lot.park(late_server, Box::new(|_| {}));
        assert_eq!(
            read_within_5s(&mut late).await,
            0,
            "parked after the stop: closed"
        );
    }
}
