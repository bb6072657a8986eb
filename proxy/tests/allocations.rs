//! Heap allocations of a whole proxied request, Fixative against the bare
//! Pingora baseline ([`fixative_proxy::baseline`]), both in this process
//! under one counting allocator, over real loopback sockets: the same
//! client requests (a browser's headers, 100 client addresses through a
//! trusted `X-Forwarded-For`), the same origin, Fixative with its default
//! policy and an access log. The client and the origin allocate nothing
//! per request, so the difference per request is what Fixative's glue and
//! engine allocate beyond what Pingora itself does for any proxy.
//!
//! `cargo test -p fixative-proxy --test allocations -- --nocapture` prints
//! both counts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fixative_proxy::metrics::{ALLOCATIONS, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Fixative's allocations per request beyond bare Pingora's, at most
/// (measured: 11.2, the same in every run). What they are, by call site
/// (heaptrack, each proxy run alone): ~5.4 in Pingora's timer code for the
/// timeouts Fixative sets and bare Pingora does not (the origin's read
/// timeout, the pooled connection's idle timeout: a boxed timer future
/// each time an operation waits); 4 from Pingora's copies of the headers
/// (the response given to the filters and the request sent upstream are
/// copies whose entry lists are copied at their length, so they regrow
/// when Fixative adds its headers; bare Pingora's own additions regrow
/// them less); 2 shared buffers of header values (the request's forwarding
/// headers and id, the rate-limit pair); 1 the routed host name; less 1
/// that bare Pingora spends on building its peer per request.
const MOST_ABOVE_BARE: f64 = 12.0;

/// Requests per measurement, after as many to warm up (connection pools,
/// caches, the 100 clients' state).
const REQUESTS: usize = 3000;

const BODY: [u8; 1024] = [b'a'; 1024];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// An origin answering every request on a connection with 1 KiB of text,
/// from static bytes (no allocation per request).
fn origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve_origin(s));
        }
    });
    addr
}

fn serve_origin(mut s: TcpStream) {
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\nDate: Tue, 01 Dec 2026 12:00:00 GMT\r\nETag: \"abc\"\r\n\r\n";
    // One write per response (two small writes would wait for the
    // client's delayed acknowledgement).
    let response = [HEAD, &BODY[..]].concat();
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 8192];
    let mut have = 0;
    loop {
        match s.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        // Requests have no body: answer each complete header.
        while let Some(end) = find(&buf[..have], b"\r\n\r\n") {
            if s.write_all(&response).is_err() {
                return;
            }
            buf.copy_within(end + 4..have, 0);
            have -= end + 4;
        }
        if have == buf.len() {
            return;
        }
    }
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response (header and a `Content-Length` body) into `buf`;
/// returns the status code.
fn read_response(s: &mut TcpStream, buf: &mut [u8]) -> u16 {
    let mut have = 0;
    let head_end = loop {
        let n = s.read(&mut buf[have..]).unwrap();
        assert!(n > 0, "connection closed");
        have += n;
        if let Some(e) = find(&buf[..have], b"\r\n\r\n") {
            break e + 4;
        }
    };
    let head = &buf[..head_end];
    let status = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
    let line = head
        .split(|&b| b == b'\n')
        .find(|l| l.len() > 15 && l[..15].eq_ignore_ascii_case(b"content-length:"))
        .expect("a Content-Length");
    let len: usize = std::str::from_utf8(&line[15..])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    while have < head_end + len {
        let n = s.read(&mut buf[have..]).unwrap();
        assert!(n > 0, "connection closed");
        have += n;
    }
    assert_eq!(have, head_end + len, "one response at a time");
    status
}

/// The client's requests, built before anything is counted.
fn requests(port: u16) -> Vec<Vec<u8>> {
    (0..100)
        .map(|i| {
            format!(
                "GET /small.txt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: identity\r\n\
Sec-Fetch-Mode: navigate\r\nX-Forwarded-For: 10.0.{}.{}\r\n\r\n",
                i / 256,
                i % 256
            )
            .into_bytes()
        })
        .collect()
}

/// Waits until `port` answers a request; returns the connection.
fn connect(port: u16, reqs: &[Vec<u8>], buf: &mut [u8]) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_nodelay(true).unwrap();
            if s.write_all(&reqs[0]).is_ok() {
                assert_eq!(read_response(&mut s, buf), 200);
                return s;
            }
        }
        assert!(Instant::now() < deadline, "port {port} never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Allocations per request over [`REQUESTS`] requests on one keep-alive
/// connection, after as many to warm up.
fn per_request(port: u16) -> f64 {
    let reqs = requests(port);
    let mut buf = vec![0u8; 65536];
    let mut s = connect(port, &reqs, &mut buf);
    let mut run = |s: &mut TcpStream| {
        for i in 0..REQUESTS {
            s.write_all(&reqs[i % reqs.len()]).unwrap();
            assert_eq!(read_response(s, &mut buf), 200);
        }
    };
    run(&mut s);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    run(&mut s);
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    (after - before) as f64 / REQUESTS as f64
}

#[test]
fn a_proxied_request_allocates_little_more_than_bare_pingora() {
    let upstream = origin().to_string();

    let bare_port = free_port();
    let up = upstream.clone();
    std::thread::spawn(move || {
        fixative_proxy::baseline::run(&format!("127.0.0.1:{bare_port}"), &up, 1)
    });

    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let src = format!(
        r#"
[server]
listen = ["127.0.0.1:{port}"]
admin = "127.0.0.1:{admin}"
threads = 1
trusted_proxies = ["127.0.0.1"]
[log]
access = "{log}"
[[site]]
name = "bench"
hosts = ["127.0.0.1"]
upstreams = ["{upstream}"]
default = true
[protector]
secret = "allocation-test-secret-0123456789"
"#,
        log = dir.path().join("access.log").display()
    );
    let config = fixative_config::Config::from_toml(&src, "allocations.toml", None).unwrap();
    // The access log, as the binary installs it (and so counted too).
    let log = fixative_proxy::init_logging(&config.log).unwrap();
    std::thread::spawn(move || {
        let _log = log;
        fixative_proxy::run(config)
    });

    let bare = per_request(bare_port);
    let fixative = per_request(port);
    println!(
        "allocations per proxied request: bare Pingora {bare:.2}, Fixative {fixative:.2} (+{:.2})",
        fixative - bare
    );
    assert!(
        bare > 10.0,
        "the counter counts ({bare:.2} for bare Pingora)"
    );
    assert!(
        fixative - bare <= MOST_ABOVE_BARE,
        "Fixative allocates {fixative:.2} per request, bare Pingora {bare:.2}: \
         more than {MOST_ABOVE_BARE} above it"
    );
    // Every request was logged (the log is part of what is measured).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = std::fs::read_to_string(dir.path().join("access.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if lines > 2 * REQUESTS {
            break;
        }
        assert!(Instant::now() < deadline, "{lines} access-log lines");
        std::thread::sleep(Duration::from_millis(100));
    }
}
