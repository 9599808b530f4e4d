//! The metrics endpoint's HTTP server: `GET /metrics` (a query string is
//! allowed and ignored), nothing else, from anyone who can reach the port.
//!
//! Written here rather than taken from a crate: tiny_http, used before,
//! allocated whatever `Content-Length` a request declared (one request
//! could abort the process and its capture) and answered every client on
//! one thread (a client that pipelined requests without reading stalled
//! every scrape); hyper would bring an async runtime for one endpoint. What
//! is needed is small enough to bound at every step:
//!
//! * each connection has its own thread, and at most [`MAX_CLIENTS`] are
//!   served at once; when all are taken, the connection that has waited
//!   longest for its request is cut off for the new one (a scraper sends
//!   its request at once, so idle connections cannot keep it out), and
//!   only when every one is busy answering is the new one told 503;
//! * a request's head may take at most [`HEAD_MAX`] bytes and
//!   [`HEAD_TIMEOUT`] in all (a client that trickles bytes is cut off);
//! * a body is never read: only `GET` and `HEAD` are served, anything else
//!   gets 405 before its body;
//! * one request per connection (`Connection: close`), and a response that
//!   the client does not read within [`WRITE_TIMEOUT`] is given up.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections served at once.
pub const MAX_CLIENTS: usize = 64;
/// Bytes of a request line and headers (Prometheus sends about 300).
pub const HEAD_MAX: usize = 8 << 10;
/// Time for a whole request head to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole response to be taken by the client.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, and how many bytes, a closing connection still takes from
/// the client, so that the response is not lost to a reset.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 64 << 10;
/// How often the accepting thread looks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The content type of the metrics page.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A server answering on its own threads until dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    /// Where it listens (the port the system chose, for port 0).
    pub addr: SocketAddr,
}

/// What a path is answered with, for a client that does or does not take
/// OpenMetrics (its `Accept` header names it): its content type and body,
/// or `None` for 404.
pub type Page = dyn Fn(&str, bool) -> Option<(&'static str, String)> + Send + Sync;

impl Server {
    /// Binds `addr` (the caller's error if that fails: a port in use is
    /// the first thing a user must hear) and serves `page` there.
    pub fn bind(addr: SocketAddr, page: Arc<Page>) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        // Non-blocking, so that the thread can look at `stop` between
        // connections rather than wait in accept for ever.
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("metrics-http".into())
                .spawn(move || accept_loop(&listener, &stop, &page))?
        };
        Ok(Server {
            stop,
            accept: Some(accept),
            addr,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, page: &Arc<Page>) {
    let clients = Arc::new(Clients::default());
    while !stop.load(Ordering::Relaxed) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_readable(listener, STOP_CHECK);
                continue;
            }
            // A connection that failed before it was taken (reset, out
            // of descriptors for a moment): the next one may do.
            Err(_) => {
                std::thread::sleep(STOP_CHECK);
                continue;
            }
        };
        // The handler relies on blocking reads with timeouts.
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        let Some(id) = clients.admit(&stream) else {
            let mut s = stream;
            let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = respond(&mut s, 503, "text/plain", "too many clients\n", false);
            continue;
        };
        let (done, page) = (Arc::clone(&clients), Arc::clone(page));
        let spawned = std::thread::Builder::new()
            .name("metrics-client".into())
            .spawn(move || {
                serve_one(stream, &*page, &done, id);
                done.busy.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            // No thread for it: the stream went with the closure.
            clients.arrived(id);
            clients.busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The connections being served, and those still sending their request.
#[derive(Default)]
struct Clients {
    busy: AtomicUsize,
    next_id: AtomicUsize,
    /// Connections whose request head has not arrived yet, oldest first,
    /// with a handle to cut each off.
    waiting: Mutex<Vec<(usize, TcpStream)>>,
}

impl Clients {
    /// Takes a slot for a new connection, and counts it as waiting for its
    /// request head until [`Clients::arrived`]. When all slots are taken,
    /// the one that has waited longest is cut off to make room: idle
    /// connections cannot keep a scraper out, as a scraper sends its
    /// request at once. Only if every slot is busy answering is the new
    /// one refused (`None`). Done as each connection is accepted, not in
    /// its thread, so that the list is whole even while threads start.
    fn admit(&self, stream: &TcpStream) -> Option<usize> {
        let handle = stream.try_clone().ok()?;
        let mut waiting = lock(&self.waiting);
        if self.busy.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            if waiting.is_empty() {
                self.busy.fetch_sub(1, Ordering::AcqRel);
                return None;
            }
            // Its thread wakes from its read at once and frees its slot.
            let (_, oldest) = waiting.remove(0);
            let _ = oldest.shutdown(Shutdown::Both);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        waiting.push((id, handle));
        Some(id)
    }

    /// Its request arrived: the connection is answered, never cut off.
    fn arrived(&self, id: usize) {
        lock(&self.waiting).retain(|(i, _)| *i != id);
    }

    /// Its answer is out: the connection may be cut off again to make
    /// room. False if it could not be listed (then it is not lingered on).
    fn idle(&self, id: usize, stream: &TcpStream) -> bool {
        let Ok(handle) = stream.try_clone() else {
            return false;
        };
        lock(&self.waiting).push((id, handle));
        true
    }
}

/// The list of waiting clients, also after a thread panicked holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits until `listener` has a connection or `timeout` passes.
fn wait_readable(listener: &TcpListener, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one pollfd that lives across the call.
    unsafe { libc::poll(&mut fd, 1, ms) };
}

/// One connection: one request, one response, closed.
fn serve_one(mut stream: TcpStream, page: &Page, clients: &Clients, id: usize) {
    let head = read_head(&mut stream);
    clients.arrived(id);
    let (status, kind, body, head_only) = match head {
        Ok(h) => answer(&h, page),
        Err(Bad::TooLarge) => (431, "text/plain", "request head too large\n".into(), false),
        Err(Bad::Malformed) => (400, "text/plain", "bad request\n".into(), false),
        Err(Bad::Gone) => return,
    };
    if respond(&mut stream, status, kind, &body, head_only).is_ok() {
        // Answered: while it lingers the connection is as idle as one that
        // never sent its request, and as open to being cut off for a scraper.
        if clients.idle(id, &stream) {
            linger(&mut stream);
            clients.arrived(id);
        }
    }
}

/// The response to a request head: status, content type, body, and
/// whether the body is left out (`HEAD`).
fn answer(head: &str, page: &Page) -> (u16, &'static str, String, bool) {
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return (400, "text/plain", "bad request\n".into(), false);
    };
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return (400, "text/plain", "bad request\n".into(), false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (
            405,
            "text/plain",
            "only GET and HEAD are served here\n".into(),
            false,
        );
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let openmetrics = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("accept")
                && value.contains("application/openmetrics-text")
        })
    });
    match page(path, openmetrics) {
        Some((kind, body)) => (200, kind, body, head_only),
        None => (
            404,
            "text/plain",
            "tcpcong serves /metrics\n".into(),
            head_only,
        ),
    }
}

enum Bad {
    TooLarge,
    Malformed,
    /// The client went away or was too slow: nothing to answer.
    Gone,
}

/// Reads up to the blank line that ends a request head, within
/// [`HEAD_MAX`] bytes and [`HEAD_TIMEOUT`].
fn read_head(stream: &mut TcpStream) -> Result<String, Bad> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(Bad::Gone);
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(Bad::Gone),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = head_of(&buf)? {
            return Ok(head);
        }
    }
}

/// The request head in `buf` once it is whole, within [`HEAD_MAX`] bytes
/// with its blank line (whatever came after it in the same read).
fn head_of(buf: &[u8]) -> Result<Option<String>, Bad> {
    match find_end(buf) {
        Some((end, blank)) if end + blank <= HEAD_MAX => String::from_utf8(buf[..end].to_vec())
            .map(Some)
            .map_err(|_| Bad::Malformed),
        Some(_) => Err(Bad::TooLarge),
        // Whatever ends it now makes it longer than that.
        None if buf.len() >= HEAD_MAX => Err(Bad::TooLarge),
        None => Ok(None),
    }
}

/// Where the head ends (the blank line), if it has, and the blank line's
/// length.
fn find_end(buf: &[u8]) -> Option<(usize, usize)> {
    // The first blank line, whichever its ends: a pipelined request or a
    // body after an LF-only head may hold a CRLF one.
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(c), Some(l)) => Some(if l.0 < c.0 { l } else { c }),
        (c, l) => c.or(l),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    kind: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    // One deadline for the whole response, not one per write: a client
    // that takes a byte now and then must not hold its slot for ever.
    let deadline = Instant::now() + WRITE_TIMEOUT;
    let body = if head_only { "" } else { body };
    for mut part in [head.as_bytes(), body.as_bytes()] {
        while !part.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            stream.set_write_timeout(Some(left))?;
            match stream.write(part) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => part = &part[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Unread request bytes (a body refused, requests pipelined) would make
/// the close send a reset, which can destroy the response before the
/// client reads it: say that writing is done, and take a little of what
/// still comes, for [`LINGER`] in all (a client trickling bytes must not
/// renew it read by read).
fn linger(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut taken = 0;
    while taken < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => taken += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Arc<Page> {
        Arc::new(|path: &str, _| (path == "/metrics").then(|| (OPENMETRICS, "x 1\n".to_string())))
    }

    #[test]
    fn answers_get_and_head_refuses_the_rest() {
        let p = page();
        let a = |h: &str| {
            let (s, _, b, only) = answer(h, &*p);
            (s, b, only)
        };
        assert_eq!(a("GET /metrics HTTP/1.1"), (200, "x 1\n".into(), false));
        assert_eq!(a("GET /metrics?x=1 HTTP/1.1").0, 200);
        assert_eq!(a("HEAD /metrics HTTP/1.0"), (200, "x 1\n".into(), true));
        assert_eq!(a("GET / HTTP/1.1").0, 404);
        assert_eq!(a("POST /metrics HTTP/1.1").0, 405);
        assert_eq!(a("DELETE /metrics HTTP/1.1").0, 405);
        assert_eq!(a("GET /metrics").0, 400);
        assert_eq!(a("GET /metrics HTTP/1.1 x").0, 400);
        assert_eq!(a("").0, 400);
        assert_eq!(a("GET /metrics SPDY/3").0, 400);
    }

    #[test]
    fn a_head_ends_at_its_blank_line() {
        assert_eq!(
            find_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"),
            Some((23, 4))
        );
        assert_eq!(find_end(b"GET / HTTP/1.1\n\n"), Some((14, 2)));
        // The first blank line, not a later one of another kind.
        assert_eq!(
            find_end(b"GET / HTTP/1.1\n\nGET / HTTP/1.1\r\n\r\n"),
            Some((14, 2))
        );
        assert_eq!(find_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    /// A head may take HEAD_MAX bytes with its blank line, not one more,
    /// whatever follows it in the same read.
    #[test]
    fn a_head_may_take_head_max_bytes_and_no_more() {
        let head = |len: usize| {
            let mut h = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
            h.resize(len - 4, b'a');
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        assert!(matches!(head_of(&head(HEAD_MAX)), Ok(Some(_))));
        assert!(matches!(head_of(&head(HEAD_MAX + 1)), Err(Bad::TooLarge)));
        let mut more = head(HEAD_MAX);
        more.extend_from_slice(b"body");
        assert!(matches!(head_of(&more), Ok(Some(_))));
        // Not whole yet: read on below the limit, refused at it.
        assert!(matches!(head_of(&head(HEAD_MAX)[..HEAD_MAX - 1]), Ok(None)));
        assert!(matches!(head_of(&[b'a'; HEAD_MAX]), Err(Bad::TooLarge)));
    }
}
