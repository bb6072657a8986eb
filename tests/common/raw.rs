//! Raw-socket harness: an origin that records the exact bytes it receives
//! and answers with canned bytes, and a client that sends exact bytes and
//! reads whatever comes back (no HTTP library on either side to tidy
//! things up).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the raw origin answers each request it reads.
#[derive(Clone, Debug)]
pub enum Reply {
    /// `HTTP/1.1 200`, `Content-Length`, body "ok"; keeps the connection.
    Ok,
    /// An HTTP/1.0 origin (like Python's `http.server`): status line
    /// `HTTP/1.0 200`, the given content type, no length, body, close.
    Http10(&'static str, Vec<u8>),
    /// A response whose header section holds `n` bytes of one header.
    HugeHeader(usize),
}

/// A raw origin on 127.0.0.1:0. Each accepted connection's bytes are kept
/// in `received` (one entry per connection).
pub struct RawOrigin {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RawOrigin {
    pub fn start(reply: Reply) -> RawOrigin {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind raw origin");
        let addr = l.local_addr().expect("addr");
        let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let rec = received.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let rec = rec.clone();
                let reply = reply.clone();
                std::thread::spawn(move || serve(s, rec, reply));
            }
        });
        RawOrigin { addr, received }
    }

    /// All bytes received so far, over every connection.
    pub fn bytes(&self) -> Vec<u8> {
        self.received.lock().unwrap().concat()
    }
}

fn serve(mut s: TcpStream, rec: Arc<Mutex<Vec<Vec<u8>>>>, reply: Reply) {
    let idx = {
        let mut r = rec.lock().unwrap();
        r.push(Vec::new());
        r.len() - 1
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16384];
    // Reads once more into `pending`, recording the bytes; false at the end.
    let mut more = |s: &mut TcpStream, pending: &mut Vec<u8>| match s.read(&mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            rec.lock().unwrap()[idx].extend_from_slice(&buf[..n]);
            pending.extend_from_slice(&buf[..n]);
            true
        }
    };
    loop {
        // Read one request: header, then a Content-Length or chunked body.
        let header_end = loop {
            if let Some(p) = find(&pending, b"\r\n\r\n") {
                break p + 4;
            }
            if !more(&mut s, &mut pending) {
                return;
            }
        };
        let head = String::from_utf8_lossy(&pending[..header_end]).to_ascii_lowercase();
        let body_len = if head.contains("transfer-encoding: chunked") {
            // Read until the last chunk.
            loop {
                if let Some(p) = find(&pending[header_end..], b"0\r\n\r\n") {
                    break p + 5;
                }
                if !more(&mut s, &mut pending) {
                    return;
                }
            }
        } else {
            head.lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0)
        };
        while pending.len() < header_end + body_len {
            if !more(&mut s, &mut pending) {
                return;
            }
        }
        pending.drain(..header_end + body_len);
        match &reply {
            Reply::Ok => {
                if s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
                )
                .is_err()
                {
                    return;
                }
            }
            Reply::Http10(ctype, body) => {
                let _ = s.write_all(
                    format!("HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11\r\nContent-Type: {ctype}\r\n\r\n")
                        .as_bytes(),
                );
                let _ = s.write_all(body);
                return;
            }
            Reply::HugeHeader(n) => {
                let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Big: ".to_vec();
                r.extend(std::iter::repeat_n(b'a', *n));
                r.extend_from_slice(b"\r\n\r\nok");
                if s.write_all(&r).is_err() {
                    return;
                }
            }
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `bytes` on a new connection and reads until the peer closes or
/// `wait` passes; returns what came back.
pub fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.write_all(bytes);
    read_until_close(&mut s, wait)
}

/// Reads until end of file or until `wait` has passed.
pub fn read_until_close(s: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return out;
            }
            Err(_) => return out,
        }
    }
}

/// A parsed response: status line, headers (lower-case names), body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the first response in `bytes` (its body framed by the headers:
/// chunked, Content-Length, or the rest of the bytes).
pub fn parse_response(bytes: &[u8]) -> Option<RawResponse> {
    let end = find(bytes, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?.to_string();
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &bytes[end + 4..];
    let te = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if te {
        decode_chunked(rest)?
    } else if let Some(n) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest.get(..n)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(RawResponse {
        status_line,
        status,
        headers,
        body,
    })
}

/// Decodes a complete chunked body; `None` when the last chunk is missing.
pub fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Raises this process's open-file limit to its hard limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Firefox's user agent, as the browser helpers below send it.
pub const FIREFOX_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

/// A request exactly as Firefox 133 writes it over HTTP/1.1 (header order
/// and casing matter to the header fingerprint), with `Connection: close`;
/// returns the parsed response. `accept` is the navigation or image
/// `Accept` value.
pub fn firefox_get(addr: SocketAddr, host: &str, path: &str, accept: &str) -> RawResponse {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {FIREFOX_UA}\r\nAccept: {accept}\r\nAccept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: identity\r\nConnection: close\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\nSec-Fetch-User: ?1\r\nPriority: u=0, i\r\n\r\n"
    );
    let out = exchange(addr, req.as_bytes(), Duration::from_secs(10));
    parse_response(&out)
        .unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(&out)))
}

/// [`firefox_get`] from a blocking thread, for async tests.
pub async fn firefox(addr: SocketAddr, host: &str, path: &str, accept: &str) -> RawResponse {
    let (host, path, accept) = (host.to_string(), path.to_string(), accept.to_string());
    tokio::task::spawn_blocking(move || firefox_get(addr, &host, &path, &accept))
        .await
        .expect("join")
}
