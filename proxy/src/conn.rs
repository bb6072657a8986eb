//! Connection limits in front of Pingora's HTTP handling.
//!
//! Pingora 0.9 reads an HTTP/1 request header with a timeout per read (so a
//! client trickling one byte every few seconds is never closed), keeps up
//! to 1 MiB of an unfinished header per connection, has no cap on
//! connections, and answers malformed requests with a bare 400 of its own.
//! This module closes those gaps without touching Pingora:
//!
//! - [`Gate`] wraps the proxy application ([`ServerApp`]): every connection
//!   takes a place in a [`ConnTable`] (a global cap and a cap per client
//!   address, IPv6 per /64, trusted proxies exempt) for as long as it is
//!   open, and its stream is wrapped in a [`Guarded`] stream.
//! - [`Guarded`] watches the bytes of each HTTP/1 request header as Pingora
//!   reads them: the whole header section must arrive within
//!   `header_timeout` (else 408 and close), must not exceed
//!   `max_request_header_bytes` (else 431 and close; never more than that
//!   many bytes of an unfinished header are handed to Pingora), and a
//!   kept-alive connection may stay idle for `keepalive_timeout` only.
//!   Bytes Pingora writes before Fixative's first hook ran for a request
//!   are Pingora's own error replies (400 for a malformed header, 405 for
//!   CONNECT); they are replaced by Fixative's page with the same status,
//!   the request id and the no-train headers.
//! - The proxy's hooks tell the stream when a request header was accepted
//!   ([`Guarded::mark_hooked`]) and when a request is over
//!   ([`Guarded::request_done`]); they find it through
//!   [`guarded`] on the session.
//!
//! HTTP/2 connections (ALPN `h2`) are counted and capped, but their frames
//! pass untouched: the h2 layer has its own header-list cap and idle
//! timeout (set from the same configuration).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use fixative_config::Limits;
use pingora::apps::ServerApp;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::state::Shared;

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` connections are open.
    GlobalCap,
    /// The client address already holds `max_connections_per_client`.
    ClientCap,
}

impl Refusal {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::GlobalCap => "global_cap",
            Refusal::ClientCap => "client_cap",
        }
    }
}

const SHARDS: usize = 16;

/// Open connections, in total and per client address.
///
/// Entries exist only while a client holds a connection, so the map is
/// bounded by the global cap.
#[derive(Debug)]
pub struct ConnTable {
    open: AtomicUsize,
    shards: Vec<Mutex<HashMap<IpAddr, u32>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for ConnTable {
    fn default() -> Self {
        ConnTable {
            open: AtomicUsize::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

/// A place in the [`ConnTable`]; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    table: Arc<ConnTable>,
    key: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.table.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(k) = self.key
            && let Some(shard) = self.table.shard(&k)
        {
            let mut m = shard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = m.get_mut(&k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&k);
                }
            }
        }
    }
}

impl ConnTable {
    fn shard(&self, k: &IpAddr) -> Option<&Mutex<HashMap<IpAddr, u32>>> {
        self.shards.get((self.hasher.hash_one(k) as usize) % SHARDS)
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections held by `client` (its /64 for IPv6).
    pub fn held_by(&self, client: IpAddr) -> u32 {
        let k = fixative_rules::state::client_key(client);
        self.shard(&k)
            .map(|s| {
                let m = s.lock().unwrap_or_else(|e| e.into_inner());
                m.get(&k).copied().unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// Takes a place for a connection from `client` (`None`: exempt from
    /// the per-client cap, e.g. a trusted proxy or a Unix socket).
    pub fn acquire(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        limits: &Limits,
    ) -> Result<Permit, Refusal> {
        let prev = self.open.fetch_add(1, Ordering::AcqRel);
        if prev >= limits.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::GlobalCap);
        }
        let key = client.map(fixative_rules::state::client_key);
        if let Some(k) = key
            && let Some(shard) = self.shard(&k)
        {
            let mut m = shard.lock().unwrap_or_else(|e| e.into_inner());
            let n = m.entry(k).or_insert(0);
            if *n as usize >= limits.max_connections_per_client {
                if *n == 0 {
                    m.remove(&k);
                }
                drop(m);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::ClientCap);
            }
            *n += 1;
        }
        Ok(Permit {
            table: self.clone(),
            key,
        })
    }

    /// Whether a new connection from `client` would be refused now; a
    /// cheap check before the TLS handshake.
    pub fn would_refuse(&self, client: Option<IpAddr>, limits: &Limits) -> Option<Refusal> {
        if self.open() >= limits.max_connections {
            return Some(Refusal::GlobalCap);
        }
        match client {
            Some(c) if self.held_by(c) as usize >= limits.max_connections_per_client => {
                Some(Refusal::ClientCap)
            }
            _ => None,
        }
    }
}

/// Refuses connections before the TLS handshake when the caps are reached.
pub struct AcceptFilter {
    shared: Arc<Shared>,
    table: Arc<ConnTable>,
}

impl std::fmt::Debug for AcceptFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptFilter")
            .field("table", &self.table)
            .finish()
    }
}

impl AcceptFilter {
    /// A filter over `table`, with the limits of the current configuration.
    pub fn new(shared: Arc<Shared>, table: Arc<ConnTable>) -> AcceptFilter {
        AcceptFilter { shared, table }
    }
}

#[async_trait]
impl pingora::listeners::ConnectionFilter for AcceptFilter {
    async fn should_accept(&self, addr: Option<&std::net::SocketAddr>) -> bool {
        let rt = self.shared.runtime.load();
        let s = &rt.config.server;
        let client = addr
            .map(|a| a.ip())
            .filter(|ip| !crate::forwarding::is_trusted(*ip, &s.trusted_proxies));
        match self.table.would_refuse(client, &s.limits) {
            None => true,
            Some(r) => {
                self.shared
                    .metrics
                    .connections_refused
                    .with_label_values(&[r.as_str()])
                    .inc();
                false
            }
        }
    }
}

/// The proxy application behind connection limits.
pub struct Gate<A> {
    inner: Arc<A>,
    shared: Arc<Shared>,
    table: Arc<ConnTable>,
}

impl<A> Gate<A> {
    /// Wraps `inner`; `table` may be shared by several listeners.
    pub fn new(inner: A, shared: Arc<Shared>, table: Arc<ConnTable>) -> Gate<A> {
        Gate {
            inner: Arc::new(inner),
            shared,
            table,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Gate<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let rt = self.shared.runtime.load_full();
        let server = &rt.config.server;
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let client = peer.filter(|ip| !crate::forwarding::is_trusted(*ip, &server.trusted_proxies));
        let h2 = matches!(
            stream.selected_alpn_proto(),
            Some(pingora::protocols::ALPN::H2)
        );
        let permit = match self.table.acquire(client, &server.limits) {
            Ok(p) => p,
            Err(r) => {
                self.shared
                    .metrics
                    .connections_refused
                    .with_label_values(&[r.as_str()])
                    .inc();
                if !h2 {
                    let page = canned_response(&self.shared, 503, None);
                    let write = async {
                        use tokio::io::AsyncWriteExt;
                        let _ = stream.write_all(&page).await;
                        let _ = stream.flush().await;
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
                }
                return None;
            }
        };
        let metrics = &self.shared.metrics;
        metrics.connections_open.inc();
        let guarded = Guarded::new(stream, self.shared.clone(), server.limits.clone(), !h2);
        drop(rt);
        let reused = self.inner.process_new(Box::new(guarded), shutdown).await;
        metrics.connections_open.dec();
        drop(permit);
        // Pingora's HTTP application never hands a stream back; if one
        // comes, it is closed rather than counted twice.
        drop(reused);
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// The [`Guarded`] stream of an HTTP/1 session, when it has one.
pub fn guarded(session: &pingora::proxy::Session) -> Option<&Guarded> {
    session
        .downstream_session
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<Guarded>())
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request (since `since`).
    Idle { since: Instant, first: bool },
    /// Receiving a request header that began at `started`.
    Header { started: Instant },
    /// Header complete; body and response are Pingora's business.
    Request,
    /// Closed by a limit; reads give end-of-file.
    Closed,
}

const SIGNAL_NONE: u8 = 0;
const SIGNAL_DONE: u8 = 1;

/// A client stream that enforces the header deadline, the header size cap
/// and the keep-alive idle timeout of HTTP/1 connections.
pub struct Guarded {
    inner: Stream,
    shared: Arc<Shared>,
    limits: Limits,
    /// HTTP/1 (checks on) or HTTP/2 (pass-through).
    http1: bool,
    phase: Phase,
    /// Header bytes of the current request read so far.
    header_bytes: usize,
    /// Newlines seen in a row (CR ignored) while scanning the header.
    newlines: u8,
    /// A non-newline byte of this request's header was seen.
    seen_text: bool,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    /// Set by the proxy's first hook for the current request.
    hooked: AtomicBool,
    /// Set by the proxy when a request is over.
    signal: AtomicU8,
    /// Our replacement for an error Pingora writes itself: what is left
    /// to send, and whether the rest of Pingora's reply is swallowed.
    replacement: Vec<u8>,
    replacing: bool,
    /// Set by the proxy while the current response's flushes are held
    /// back ([`Guarded::hold_flushes`]).
    holding: AtomicBool,
    /// Response bytes held back, at most [`HOLD_CAP`]; allocated only
    /// while a response is held.
    held: Vec<u8>,
}

/// Most response bytes a held response keeps back before they are sent.
pub const HOLD_CAP: usize = 16 * 1024;

/// What Pingora writes to end a chunked body.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl Guarded {
    fn new(inner: Stream, shared: Arc<Shared>, limits: Limits, http1: bool) -> Guarded {
        let now = Instant::now();
        Guarded {
            inner,
            shared,
            limits,
            http1,
            phase: Phase::Idle {
                since: now,
                first: true,
            },
            header_bytes: 0,
            newlines: 0,
            seen_text: false,
            timer: Box::pin(tokio::time::sleep_until(now)),
            timer_at: None,
            hooked: AtomicBool::new(false),
            signal: AtomicU8::new(SIGNAL_NONE),
            replacement: Vec::new(),
            replacing: false,
            holding: AtomicBool::new(false),
            held: Vec::new(),
        }
    }

    /// The proxy accepted this request's header (its first hook ran):
    /// from now on Pingora writes the proxy's responses, not its own.
    pub fn mark_hooked(&self) {
        self.hooked.store(true, Ordering::Release);
    }

    /// The request is over: the next read waits for a new request under
    /// the keep-alive idle timeout.
    pub fn request_done(&self) {
        self.holding.store(false, Ordering::Release);
        self.signal.store(SIGNAL_DONE, Ordering::Release);
    }

    /// Coalesces the current response's writes: Pingora flushes the
    /// header of a response without Content-Length and every chunk of a
    /// chunked body, one `send` each, because such a response may be
    /// real-time. The proxy calls this for a response it re-frames as
    /// chunked (a rewritten page, an image getting metadata) whose origin
    /// sent a Content-Length, i.e. that was never real-time: its bytes
    /// are then held back, up to [`HOLD_CAP`], and leave together with
    /// the flush after Pingora's last chunk (`0\r\n\r\n`), as Pingora
    /// itself keeps the origin's Content-Length response in its write
    /// buffer. Should the last chunk never come (a broken response),
    /// [`Guarded::request_done`] ends the hold and the held bytes leave
    /// with the connection's next read or its shutdown. HTTP/1 only.
    pub fn hold_flushes(&self) {
        if self.http1 {
            self.holding.store(true, Ordering::Release);
        }
    }

    /// The held response's body is complete: the next flush sends what
    /// is held.
    fn release_flushes(&self) {
        self.holding.store(false, Ordering::Release);
    }

    fn is_holding(&self) -> bool {
        self.holding.load(Ordering::Acquire)
    }

    /// A write while a response is held (or bytes are still held): kept
    /// back when it fits under [`HOLD_CAP`], else sent together with what
    /// is held in one vectored write.
    fn poll_write_held(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if self.held.len() + len <= HOLD_CAP {
            if self.held.capacity() == 0 {
                self.held.reserve_exact(HOLD_CAP);
            }
            for b in bufs {
                self.held.extend_from_slice(b);
            }
            return Poll::Ready(Ok(len));
        }
        let Guarded { inner, held, .. } = self;
        loop {
            if held.is_empty() {
                *held = Vec::new();
                return Pin::new(&mut *inner).poll_write_vectored(cx, bufs);
            }
            let mut slices = [std::io::IoSlice::new(&[]); 8];
            let mut n = 0;
            for (slot, part) in slices
                .iter_mut()
                .zip(std::iter::once(&held[..]).chain(bufs.iter().map(|b| &b[..])))
            {
                *slot = std::io::IoSlice::new(part);
                n += 1;
            }
            match Pin::new(&mut *inner).poll_write_vectored(cx, slices.get(..n).unwrap_or_default())
            {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(w)) => {
                    let h = held.len();
                    held.drain(..w.min(h));
                    if w > h {
                        *held = Vec::new();
                        return Poll::Ready(Ok(w - h));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Sends what is held (not flushing it).
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match poll_write_out(&mut self.inner, &mut self.held, cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if self.held.capacity() > 0 {
            self.held = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Scans header bytes; returns how many belong to the header and
    /// whether its end (an empty line) was found.
    fn scan(&mut self, data: &[u8]) -> (usize, bool) {
        // Line by line (memchr finds the newlines): a line with any byte
        // but CR is text and resets the run of empty lines.
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            if data.get(start..nl).is_some_and(has_text) {
                self.newlines = 0;
                self.seen_text = true;
            }
            self.newlines = self.newlines.saturating_add(1);
            if self.newlines >= 2 && self.seen_text {
                return (nl + 1, true);
            }
            start = nl + 1;
        }
        if data.get(start..).is_some_and(has_text) {
            self.newlines = 0;
            self.seen_text = true;
        }
        (data.len(), false)
    }

    fn start_request(&mut self) {
        self.header_bytes = 0;
        self.newlines = 0;
        self.seen_text = false;
    }

    /// Best-effort write of a complete response while closing: one attempt,
    /// no waiting (the socket's send buffer is empty at this point).
    fn send_and_close(&mut self, cx: &mut Context<'_>, status: u16, reason: &'static str) {
        self.shared
            .metrics
            .connections_closed
            .with_label_values(&[reason])
            .inc();
        self.phase = Phase::Closed;
        if status > 0 {
            let page = canned_response(&self.shared, status, None);
            let mut off = 0;
            while off < page.len() {
                match Pin::new(&mut self.inner).poll_write(cx, page.get(off..).unwrap_or_default())
                {
                    Poll::Ready(Ok(n)) if n > 0 => off += n,
                    _ => break,
                }
            }
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        let _ = Pin::new(&mut self.inner).poll_shutdown(cx);
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle { since, first: true } => Some(since + self.limits.header_timeout),
            Phase::Idle {
                since,
                first: false,
            } => Some(since + self.limits.keepalive_timeout),
            Phase::Header { started } => Some(started + self.limits.header_timeout),
            Phase::Request | Phase::Closed => None,
        }
    }

    /// Sends what is left of a replacement reply.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        poll_write_out(&mut self.inner, &mut self.replacement, cx)
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.http1 {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.signal.swap(SIGNAL_NONE, Ordering::AcqRel) == SIGNAL_DONE {
            this.phase = Phase::Idle {
                since: Instant::now(),
                first: false,
            };
            this.hooked.store(false, Ordering::Release);
            this.replacing = false;
            this.start_request();
        }
        // Bytes still held after their response was released (its end
        // was not seen by a flush): send them now rather than leave the
        // client waiting.
        if !this.held.is_empty() && !this.is_holding() && this.poll_send_held(cx).is_ready() {
            let _ = Pin::new(&mut this.inner).poll_flush(cx);
        }
        match this.phase {
            Phase::Request => return Pin::new(&mut this.inner).poll_read(cx, buf),
            Phase::Closed => return Poll::Ready(Ok(())),
            Phase::Idle { .. } | Phase::Header { .. } => {}
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // Never hand Pingora more than the cap: its header buffer stays
        // within `max_request_header_bytes`.
        let left = this
            .limits
            .max_request_header_bytes
            .saturating_sub(this.header_bytes);
        if left == 0 {
            this.send_and_close(cx, 431, "header_too_large");
            return Poll::Ready(Ok(()));
        }
        let mut tmp = [0u8; 4096];
        let want = left.min(buf.remaining()).min(tmp.len());
        let mut rb = ReadBuf::new(tmp.get_mut(..want).unwrap_or_default());
        match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let data = rb.filled();
                if data.is_empty() {
                    return Poll::Ready(Ok(())); // end of file
                }
                if let Phase::Idle { since, first } = this.phase {
                    // The first request's clock runs from the connection's
                    // start; later ones from their first byte.
                    this.phase = Phase::Header {
                        started: if first { since } else { Instant::now() },
                    };
                }
                let (in_header, complete) = this.scan(data);
                this.header_bytes += in_header;
                if !complete && this.header_bytes >= this.limits.max_request_header_bytes {
                    this.send_and_close(cx, 431, "header_too_large");
                    return Poll::Ready(Ok(()));
                }
                if complete {
                    this.phase = Phase::Request;
                }
                buf.put_slice(data);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = this.deadline() else {
                    return Poll::Pending;
                };
                if this.timer_at != Some(deadline) {
                    this.timer.as_mut().reset(deadline);
                    this.timer_at = Some(deadline);
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    match this.phase {
                        Phase::Idle { first: false, .. } => {
                            this.send_and_close(cx, 0, "idle_timeout")
                        }
                        Phase::Idle { first: true, .. } => {
                            this.send_and_close(cx, 0, "header_timeout")
                        }
                        _ => this.send_and_close(cx, 408, "header_timeout"),
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
        }
    }
}

impl Guarded {
    /// Before Fixative's first hook, a write that starts with a status
    /// line is Pingora's own error reply: swap in Fixative's page. While
    /// replacing, writes are swallowed (`Some`: reported as written, or the
    /// drain's error or `Pending`); `None`: write through.
    fn poll_replaced(
        &mut self,
        cx: &mut Context<'_>,
        first: &[u8],
        len: usize,
    ) -> Option<Poll<std::io::Result<usize>>> {
        if self.http1
            && !self.replacing
            && !self.hooked.load(Ordering::Acquire)
            && let Some(status) = status_of(first)
        {
            self.replacing = true;
            self.replacement = canned_response(&self.shared, status, None);
        }
        if !self.replacing {
            return None;
        }
        Some(match self.poll_drain(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(len)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        })
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(done) = this.poll_replaced(cx, buf, buf.len()) {
            return done;
        }
        if this.is_holding() || !this.held.is_empty() {
            if buf == LAST_CHUNK {
                this.release_flushes();
            }
            return this.poll_write_held(cx, &[std::io::IoSlice::new(buf)]);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    /// Forwarded, so that Pingora's chunked writer sends a chunk's size
    /// line, data and CRLF in one `writev` as it does on a bare stream
    /// (without this, tokio falls back to one write per part: a 64 KiB
    /// chunk left in two or three sends).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        let len = bufs.iter().map(|b| b.len()).sum();
        if let Some(done) = this.poll_replaced(cx, first, len) {
            return done;
        }
        if this.is_holding() || !this.held.is_empty() {
            return this.poll_write_held(cx, bufs);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// Held back while a response is held ([`Guarded::hold_flushes`]);
    /// otherwise sends what is held, then flushes.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if this.is_holding() {
            return Poll::Ready(Ok(()));
        }
        match this.poll_send_held(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => {}
            Poll::Pending => return Poll::Pending,
        }
        this.release_flushes();
        match this.poll_send_held(cx) {
            Poll::Ready(_) => {}
            Poll::Pending => return Poll::Pending,
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Writes all of `buf` to `inner`, removing what was written.
fn poll_write_out(
    inner: &mut Stream,
    buf: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    while !buf.is_empty() {
        match Pin::new(&mut *inner).poll_write(cx, buf) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                buf.drain(..n.min(buf.len()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    Poll::Ready(Ok(()))
}

/// Whether a header line (without its LF) holds anything but CR.
fn has_text(line: &[u8]) -> bool {
    line.iter().any(|&b| b != b'\r')
}

/// The status of an HTTP/1 status line at the start of `buf`.
fn status_of(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?;
    let digits = rest.get(2..5)?;
    let s = std::str::from_utf8(digits).ok()?.parse::<u16>().ok()?;
    (100..=599).contains(&s).then_some(s)
}

/// A complete `Connection: close` response with Fixative's page for
/// `status`, the request id and the no-train headers of the default site.
pub fn canned_response(shared: &Shared, status: u16, message: Option<&str>) -> Vec<u8> {
    let request_id = shared.next_request_id();
    let (title, text) = crate::pages::status_text(status);
    let html = crate::pages::page(status, title, message.unwrap_or(text), &request_id);
    let mut head = match pingora::http::ResponseHeader::build(status, Some(10)) {
        Ok(h) => h,
        Err(_) => return Vec::new(),
    };
    let rt = shared.runtime.load();
    let site = rt
        .config
        .default_site
        .and_then(|i| rt.sites.get(i))
        .or_else(|| rt.sites.first());
    if let Some(s) = site {
        let _ = crate::directives::apply_headers(&mut head, &s.directives);
    }
    let mut out = Vec::with_capacity(html.len() + 512);
    out.extend_from_slice(format!("HTTP/1.1 {status} {title}\r\n").as_bytes());
    for (k, v) in head.headers.iter() {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n",
            html.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(html.as_bytes());
    out
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = AsyncWriteExt::shutdown(self).await;
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(global: usize, per_client: usize) -> Limits {
        let mut l = Limits::default();
        l.max_connections = global;
        l.max_connections_per_client = per_client;
        l
    }

    #[test]
    fn table_caps_global_and_per_client_and_frees_on_drop() {
        let t = Arc::new(ConnTable::default());
        let l = limits(5, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b2: IpAddr = "2001:db8::2".parse().unwrap(); // same /64
        let p1 = t.acquire(Some(a), &l).unwrap();
        let _p2 = t.acquire(Some(a), &l).unwrap();
        assert_eq!(t.acquire(Some(a), &l).unwrap_err(), Refusal::ClientCap);
        let _p3 = t.acquire(Some(b), &l).unwrap();
        let _p4 = t.acquire(Some(b2), &l).unwrap();
        assert_eq!(t.acquire(Some(b), &l).unwrap_err(), Refusal::ClientCap);
        let _p5 = t.acquire(None, &l).unwrap();
        assert_eq!(t.acquire(None, &l).unwrap_err(), Refusal::GlobalCap);
        assert_eq!(t.open(), 5);
        drop(p1);
        assert_eq!(t.open(), 4);
        assert_eq!(t.held_by(a), 1);
        assert!(t.acquire(Some(a), &l).is_ok());
    }

    /// A `Guarded` over one end of a loopback TCP pair; the other end.
    async fn guarded_pair() -> (Guarded, tokio::net::TcpStream) {
        let config = fixative_config::Config::load_or_default(None).unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new().unwrap());
        let link = crate::fleet::FleetLink::start(&config, metrics.clone()).unwrap();
        let rt = crate::runtime::Runtime::build(config, metrics.clone(), link.fleet.clone(), None)
            .unwrap();
        let shared = Arc::new(Shared::new(rt, metrics, None, link, None));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(server));
        (
            Guarded::new(stream, shared, Limits::default(), true),
            client,
        )
    }

    /// Pingora writes a chunk as size line + data + CRLF with one
    /// `write_vectored`: the guard takes all of it at once (the default
    /// `AsyncWrite` would take the first slice only, one send per part).
    #[tokio::test]
    async fn vectored_writes_pass_through_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut g, mut client) = guarded_pair().await;
        g.mark_hooked();
        assert!(g.is_write_vectored());
        let data = vec![b'x'; 70_000];
        let parts = [
            std::io::IoSlice::new(b"11170\r\n"),
            std::io::IoSlice::new(&data),
            std::io::IoSlice::new(b"\r\n"),
        ];
        let n = g.write_vectored(&parts).await.unwrap();
        assert!(n > 7, "only the size line was taken: {n}");
        let mut want = b"11170\r\n".to_vec();
        want.extend_from_slice(&data);
        want.extend_from_slice(b"\r\n");
        // The rest as a caller would send it, then compare the bytes.
        g.write_all(want.get(n..).unwrap()).await.unwrap();
        g.flush().await.unwrap();
        let mut got = vec![0u8; want.len()];
        client.read_exact(&mut got).await.unwrap();
        assert!(got == want);
    }

    /// Pingora's own error reply, written vectored before any hook ran,
    /// is replaced by Fixative's page all the same.
    #[tokio::test]
    async fn a_vectored_pingora_reply_is_replaced() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut g, mut client) = guarded_pair().await;
        let parts = [
            std::io::IoSlice::new(b""),
            std::io::IoSlice::new(b"HTTP/1.1 400 Bad Request\r\n"),
            std::io::IoSlice::new(b"Content-Length: 0\r\n\r\n"),
        ];
        let n = g.write_vectored(&parts).await.unwrap();
        assert_eq!(n, 26 + 21, "the whole reply is reported as written");
        AsyncWriteExt::shutdown(&mut g).await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(
            text.contains("<html") || text.contains("<!doctype"),
            "{text}"
        );
        assert!(!text.contains("Content-Length: 0\r\n"), "{text}");
    }

    #[test]
    fn status_lines_are_recognised() {
        assert_eq!(status_of(b"HTTP/1.1 400 Bad Request\r\n"), Some(400));
        assert_eq!(status_of(b"HTTP/1.0 405 x"), Some(405));
        assert_eq!(status_of(b"<html>"), None);
        assert_eq!(status_of(b"HTTP/1.1 9"), None);
    }

    /// The header scanner, byte by byte: the definition `scan` must keep.
    fn scan_reference(newlines: &mut u8, seen_text: &mut bool, data: &[u8]) -> (usize, bool) {
        for (i, b) in data.iter().enumerate() {
            match b {
                b'\n' => {
                    *newlines = newlines.saturating_add(1);
                    if *newlines >= 2 && *seen_text {
                        return (i + 1, true);
                    }
                }
                b'\r' => {}
                _ => {
                    *newlines = 0;
                    *seen_text = true;
                }
            }
        }
        (data.len(), false)
    }

    proptest::proptest! {
        /// Any bytes, cut into any reads: `scan` finds the same header end
        /// (or none) as the byte-by-byte definition, read after read.
        #[test]
        fn scan_agrees_with_the_byte_loop(
            data in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b'\r'),
                    proptest::strategy::Just(b'\n'),
                    proptest::strategy::Just(b'a'),
                    proptest::num::u8::ANY
                ],
                0..200,
            ),
            cuts in proptest::collection::vec(1usize..40, 1..12),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (mut g, _client) = rt.block_on(guarded_pair());
            g.start_request();
            let (mut newlines, mut seen_text) = (0, false);
            let mut rest = data.as_slice();
            let mut cuts = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = cuts.next().copied().unwrap_or(1).min(rest.len());
                let (read, tail) = rest.split_at(n);
                let got = g.scan(read);
                let want = scan_reference(&mut newlines, &mut seen_text, read);
                proptest::prop_assert_eq!(got, want);
                proptest::prop_assert_eq!((g.newlines, g.seen_text), (newlines, seen_text));
                rest = tail;
                if got.1 {
                    // The next request starts with what followed the end.
                    g.start_request();
                    (newlines, seen_text) = (0, false);
                    rest = &data[data.len() - tail.len() - (read.len() - got.0)..];
                }
            }
        }
    }

    /// Hundreds of empty lines before a request (no text yet, so no
    /// header end) neither overflow the counter nor end the header early.
    #[tokio::test]
    async fn scan_survives_a_flood_of_empty_lines() {
        let (mut g, _client) = guarded_pair().await;
        g.start_request();
        assert_eq!(g.scan(&[b'\n'; 1000]), (1000, false));
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        assert_eq!(g.scan(req), (req.len() - 4, true));
    }

    /// Whether the client end has bytes within `wait`; reads what comes.
    async fn read_within(client: &mut tokio::net::TcpStream, wait: Duration) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(Ok(n)) = tokio::time::timeout(wait, client.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// A guard holding a response whose `head` was written and flushed.
    async fn holding_pair(head: &[u8]) -> (Guarded, tokio::net::TcpStream) {
        use tokio::io::AsyncWriteExt;
        let (mut g, client) = guarded_pair().await;
        g.mark_hooked();
        g.hold_flushes();
        g.write_all(head).await.unwrap();
        g.flush().await.unwrap();
        (g, client)
    }

    /// A held response: header and chunks stay back through Pingora's
    /// flushes and leave together with the flush after the last chunk.
    #[tokio::test]
    async fn a_held_response_leaves_with_its_last_chunk() {
        use tokio::io::AsyncWriteExt;
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (mut g, mut client) = holding_pair(head).await;
        let parts = [
            std::io::IoSlice::new(b"5\r\n"),
            std::io::IoSlice::new(b"hello"),
            std::io::IoSlice::new(b"\r\n"),
        ];
        assert_eq!(g.write_vectored(&parts).await.unwrap(), 10);
        g.flush().await.unwrap();
        assert!(
            read_within(&mut client, Duration::from_millis(100))
                .await
                .is_empty(),
            "sent before the body ended"
        );
        g.write_all(LAST_CHUNK).await.unwrap();
        g.flush().await.unwrap();
        let mut want = head.to_vec();
        want.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(
            read_within(&mut client, Duration::from_millis(200)).await,
            want
        );
        // The next response is not held.
        g.request_done();
        g.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        g.flush().await.unwrap();
        assert_eq!(
            read_within(&mut client, Duration::from_millis(200)).await,
            b"HTTP/1.1 204 No Content\r\n\r\n"
        );
    }

    /// Past `HOLD_CAP`, what is held leaves with the write that does not
    /// fit, in order; a large body streams on.
    #[tokio::test]
    async fn a_held_response_past_the_cap_is_sent_in_order() {
        use tokio::io::AsyncWriteExt;
        let (mut g, mut client) = holding_pair(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let data: Vec<u8> = (0..HOLD_CAP + 5000).map(|i| (i % 251) as u8).collect();
        // As Pingora writes a chunk: size line and data in one buffer chain.
        let mut chunk = bytes::Buf::chain(&b"x\r\n"[..], &data[..]);
        g.write_all_buf(&mut chunk).await.unwrap();
        g.flush().await.unwrap();
        let got = read_within(&mut client, Duration::from_millis(300)).await;
        let mut want = b"HTTP/1.1 200 OK\r\n\r\nx\r\n".to_vec();
        want.extend_from_slice(&data);
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes out of order");
        assert!(g.held.is_empty());
    }

    /// A held response whose last chunk never comes (a broken body):
    /// once the request is over, the connection's next read sends it.
    #[tokio::test]
    async fn bytes_held_past_the_request_leave_on_the_next_read() {
        use tokio::io::AsyncReadExt;
        let (mut g, mut client) = holding_pair(b"HTTP/1.1 200 OK\r\n\r\n").await;
        assert!(
            read_within(&mut client, Duration::from_millis(100))
                .await
                .is_empty()
        );
        g.request_done();
        let mut buf = [0u8; 16];
        let _ = tokio::time::timeout(Duration::from_millis(50), g.read(&mut buf)).await;
        assert_eq!(
            read_within(&mut client, Duration::from_millis(200)).await,
            b"HTTP/1.1 200 OK\r\n\r\n"
        );
    }
}
