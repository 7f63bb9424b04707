//! One HTTP/1.1 connection: hyper's `http1` with a timer, and the relay's own
//! watchdog for the two waits hyper cannot tell apart.
//!
//! hyper 1's `header_read_timeout` also runs while a kept-alive connection waits
//! for its next request, so one setting cannot be both a short header deadline
//! and a longer idle timeout. [`ConnState`] tracks what the connection is doing:
//!
//! - **busy** (a request is being handled, a long-poll included): no deadline
//!   here; the body deadline is the handler's (`http::edge`);
//! - **reading a head** (bytes arrived while no request was in flight, or the
//!   connection is new): closed `header_timeout` after the first byte (after
//!   accept, for a new connection), however slowly the rest trickles in;
//! - **idle** (kept alive, nothing received since the last answer): closed
//!   `idle_timeout` after the last answer.
//!
//! hyper's own `header_read_timeout` stays on as a backstop at the longer of the two.
//!
//! The tracked stream also watches every header block for `Content-Length`
//! together with `Transfer-Encoding`: hyper drops the length and reads such a
//! request as chunked, which a proxy in front may not; the relay refuses it
//! (`http::edge`).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

use super::Ctx;

const UNSET: u64 = u64::MAX;
/// How long, after shutdown, a connection with no request in flight may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A request head (or the first one, after accept) did not arrive in time.
    Header,
    /// A kept-alive connection sent nothing for too long.
    Idle,
}

impl Expiry {
    pub fn as_str(self) -> &'static str {
        match self {
            Expiry::Header => "header_timeout",
            Expiry::Idle => "idle_timeout",
        }
    }
}

/// What one connection is doing, shared by its stream, its requests and its watchdog.
#[derive(Debug)]
pub struct ConnState {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `born` when the head being read began, or [`UNSET`].
    head_since: AtomicU64,
    /// Milliseconds since `born` when the last answer was produced.
    idle_since: AtomicU64,
    framing_conflict: AtomicBool,
    changed: Notify,
}

impl ConnState {
    /// A new connection: its first head is due `header_timeout` after `born`.
    pub fn new(born: Instant) -> Self {
        ConnState {
            born,
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            framing_conflict: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// Bytes arrived: while no request is in flight, they begin the next head.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0
            && self.head_since.load(Ordering::SeqCst) == UNSET
        {
            self.head_since.store(self.now_ms(), Ordering::SeqCst);
            self.changed.notify_one();
        }
    }

    /// A request head was parsed and is being handled until the guard drops.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_since.store(UNSET, Ordering::SeqCst);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// Whether a header block on this connection carried both `Content-Length`
    /// and `Transfer-Encoding` (sticky: hyper closes such a connection anyway).
    pub fn framing_conflict(&self) -> bool {
        self.framing_conflict.load(Ordering::SeqCst)
    }

    fn deadline(&self, header: Duration, idle: Duration) -> Option<(u64, Expiry)> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let head = self.head_since.load(Ordering::SeqCst);
        if head != UNSET {
            return Some((head.saturating_add(ms(header)), Expiry::Header));
        }
        let idle_since = self.idle_since.load(Ordering::SeqCst);
        Some((idle_since.saturating_add(ms(idle)), Expiry::Idle))
    }

    /// Resolves when the connection has overstayed its current wait.
    pub async fn expired(&self, header: Duration, idle: Duration) -> Expiry {
        loop {
            match self.deadline(header, idle) {
                None => self.changed.notified().await,
                Some((at, why)) => {
                    let now = self.now_ms();
                    if at <= now {
                        return why;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(at - now)) => {}
                        _ = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A request in flight; dropping it starts the idle clock.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.0;
        if s.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            s.idle_since.store(s.now_ms(), Ordering::SeqCst);
            s.changed.notify_one();
        }
    }
}

/// A connection's per-request handle, in every request's extensions.
#[derive(Clone, Debug)]
pub struct ConnHandle(pub Arc<ConnState>);

/// Serves HTTP/1.1 on `io` until the client leaves, a deadline passes or,
/// after shutdown, the last in-flight request is answered. Returns why the
/// watchdog closed it, if it did.
pub async fn serve<I>(io: I, peer: SocketAddr, state: Arc<ConnState>, ctx: &Ctx) -> Option<Expiry>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = ctx.router.clone();
    let conn_state = state.clone();
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = conn_state.begin();
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(ConnHandle(conn_state.clone()));
        let router = router.clone();
        async move {
            let resp = router.oneshot(req.map(Body::new)).await;
            drop(guard);
            resp
        }
    });
    let tracked = Tracked {
        inner: io,
        state: state.clone(),
        scan: HeadScanner::default(),
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.header_timeout.max(ctx.idle_timeout))
        .keep_alive(true)
        .serve_connection(TokioIo::new(tracked), service);
    tokio::pin!(conn);
    // After shutdown: hyper closes an idle connection and finishes an answer
    // being written; one with no request in flight a moment later (a head
    // still trickling in) is dropped rather than waited for.
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    let (mut draining, mut grace_over) = (false, false);
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return None;
            }
            // Dropping `conn` closes the socket.
            why = state.expired(ctx.header_timeout, ctx.idle_timeout) => {
                tracing::debug!(%peer, reason = why.as_str(), "closing connection");
                return Some(why);
            }
            _ = ctx.shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
                grace.as_mut().reset(Instant::now() + SHUTDOWN_GRACE);
            }
            _ = grace.as_mut(), if draining && !grace_over => {
                if state.in_flight.load(Ordering::SeqCst) == 0 {
                    return None;
                }
                grace_over = true;
            }
        }
    }
}

/// Answers one request `503 overloaded` with `Connection: close`, within `patience`.
pub async fn shed<I>(io: I, patience: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(|_req: hyper::Request<Incoming>| async {
        Ok::<_, Infallible>(crate::http::overloaded())
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(patience)
        .keep_alive(false)
        .serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(patience + Duration::from_secs(1), conn).await;
}

/// The stream under hyper: reports reads to [`ConnState`] and scans header blocks.
struct Tracked<I> {
    inner: I,
    state: Arc<ConnState>,
    scan: HeadScanner,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.state.on_read();
                if this.scan.feed(new) {
                    this.state.framing_conflict.store(true, Ordering::SeqCst);
                }
            }
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Finds header blocks (lines up to an empty line) naming both
/// `Content-Length` and `Transfer-Encoding`, across reads of any size.
///
/// It reads lines, not HTTP messages, so a body could in principle look like
/// such a block; the relay's bodies are JSON, which has no line starting with a
/// header name, and a crafted body only ever affects its own connection.
#[derive(Debug, Default)]
struct HeadScanner {
    line: [u8; 20],
    len: usize,
    long: bool,
    content_length: bool,
    transfer_encoding: bool,
}

impl HeadScanner {
    /// Feeds bytes; true when a block just ended with both headers in it.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut conflict = false;
        for &b in bytes {
            if b != b'\n' {
                if self.len < self.line.len() {
                    self.line[self.len] = b;
                    self.len += 1;
                } else {
                    self.long = true;
                }
                continue;
            }
            let mut line = &self.line[..self.len];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() && !self.long {
                conflict |= self.content_length && self.transfer_encoding;
                self.content_length = false;
                self.transfer_encoding = false;
            } else if starts_with_ignore_case(line, b"content-length:") {
                self.content_length = true;
            } else if starts_with_ignore_case(line, b"transfer-encoding:") {
                self.transfer_encoding = true;
            }
            self.len = 0;
            self.long = false;
        }
        conflict
    }
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scanner_flags_length_and_chunking_together_in_any_split() {
        let both = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTRANSFER-encoding: chunked\r\n\r\n0\r\n\r\n";
        for split in 0..both.len() {
            let mut s = HeadScanner::default();
            let flagged = s.feed(&both[..split]) | s.feed(&both[split..]);
            assert!(flagged, "split at {split}");
        }
        let mut s = HeadScanner::default();
        assert!(!s.feed(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(
            !s.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        );
        // Each block is judged alone.
        assert!(!s.feed(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
        assert!(!s.feed(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
        // A header whose name merely begins like one does not count.
        assert!(
            !s.feed(b"GET / HTTP/1.1\r\nContent-Lengthy: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_what_the_connection_is_doing() {
        let header = Duration::from_secs(10);
        let idle = Duration::from_secs(60);
        let s = Arc::new(ConnState::new(Instant::now()));
        // New connection: the first head is due after the header timeout.
        assert_eq!(s.deadline(header, idle), Some((10_000, Expiry::Header)));
        let guard = s.begin();
        assert_eq!(s.deadline(header, idle), None, "busy: no deadline");
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(guard);
        assert_eq!(s.deadline(header, idle), Some((160_000, Expiry::Idle)));
        tokio::time::advance(Duration::from_secs(5)).await;
        s.on_read();
        assert_eq!(s.deadline(header, idle), Some((115_000, Expiry::Header)));
        assert_eq!(s.expired(header, idle).await, Expiry::Header);
        assert_eq!(s.now_ms(), 115_000);
    }
}
