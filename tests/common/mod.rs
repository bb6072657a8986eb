//! Test harness: real origins (axum) and the real `fixative` binary on
//! ephemeral loopback ports.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::StreamExt;

pub mod browser;
pub mod raw;

/// A port that was free a moment ago, and never handed out before by
/// this test process (the kernel may offer a just-released port again, and
/// two listeners of one configuration must not get the same one).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0");
        let port = l.local_addr().expect("local addr").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// What an origin saw of one request.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body_len: usize,
}

#[derive(Clone)]
struct OriginState {
    name: String,
    hits: Arc<AtomicUsize>,
    last: Arc<std::sync::Mutex<Option<Seen>>>,
    robots: Option<String>,
    robots_fetches: Arc<AtomicUsize>,
    robots_not_modified: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
    finished: Arc<std::sync::atomic::AtomicBool>,
}

/// An in-process origin server.
pub struct Origin {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// robots.txt fetches, and how many of them were answered 304.
    pub robots_fetches: Arc<AtomicUsize>,
    pub robots_not_modified: Arc<AtomicUsize>,
    /// `/html/big` holds its body after the first chunk until this is notified.
    pub release: Arc<tokio::sync::Notify>,
    /// Set when `/html/big` has sent its last byte.
    pub finished: Arc<std::sync::atomic::AtomicBool>,
    last: Arc<std::sync::Mutex<Option<Seen>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Origin {
    /// Starts an origin named `name` on 127.0.0.1:0.
    ///
    /// Routes: `/big/N` streams N bytes; `/slow/MS` answers after MS ms;
    /// everything else echoes (method, path, headers as JSON, body length),
    /// and streams the request body through a counter without keeping it.
    pub async fn start(name: &str) -> Origin {
        Self::start_with_robots(name, None).await
    }

    /// Starts an origin that serves `robots` at /robots.txt (with an ETag,
    /// answering 304 to a matching If-None-Match); `None`: 404 there.
    pub async fn start_with_robots(name: &str, robots: Option<&str>) -> Origin {
        let state = OriginState {
            name: name.to_string(),
            hits: Arc::new(AtomicUsize::new(0)),
            last: Arc::new(std::sync::Mutex::new(None)),
            robots: robots.map(str::to_string),
            robots_fetches: Arc::new(AtomicUsize::new(0)),
            robots_not_modified: Arc::new(AtomicUsize::new(0)),
            release: Arc::new(tokio::sync::Notify::new()),
            finished: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let app = Router::new()
            .route("/", any(echo))
            .route("/{*rest}", any(echo))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Origin {
            addr,
            hits: state.hits,
            robots_fetches: state.robots_fetches,
            robots_not_modified: state.robots_not_modified,
            release: state.release,
            finished: state.finished,
            last: state.last,
            shutdown: Some(tx),
        }
    }

    /// The last request this origin saw.
    pub fn last(&self) -> Option<Seen> {
        self.last.lock().expect("lock").clone()
    }

    /// Stops the origin.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn echo(State(st): State<OriginState>, req: Request) -> Response {
    st.hits.fetch_add(1, Ordering::SeqCst);
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    if path == "/robots.txt" || path == "/ai.txt" || path == "/.well-known/tdmrep.json" {
        if path != "/robots.txt" {
            return (StatusCode::NOT_FOUND, "").into_response();
        }
        st.robots_fetches.fetch_add(1, Ordering::SeqCst);
        return match &st.robots {
            None => (StatusCode::NOT_FOUND, "").into_response(),
            Some(_) if headers.get("if-none-match").map(String::as_str) == Some("\"r1\"") => {
                st.robots_not_modified.fetch_add(1, Ordering::SeqCst);
                let mut h = HeaderMap::new();
                h.insert("etag", "\"r1\"".parse().unwrap());
                (StatusCode::NOT_MODIFIED, h).into_response()
            }
            Some(body) => {
                let mut h = HeaderMap::new();
                h.insert("content-type", "text/plain".parse().unwrap());
                h.insert("etag", "\"r1\"".parse().unwrap());
                (h, body.clone()).into_response()
            }
        };
    }
    if let Some(name) = path.strip_prefix("/img/") {
        return image_route(name, headers.contains_key("range"));
    }
    if let Some(kind) = path.strip_prefix("/html/") {
        return html_route(&st, kind).await;
    }
    if let Some(n) = path.strip_prefix("/pages/") {
        return gallery_page(n.parse().unwrap_or(0));
    }
    if let Some(kind) = path.strip_prefix("/typed/") {
        // Responses of a given type, with the origin's own directives.
        let (ctype, body): (&str, Vec<u8>) = match kind {
            "page.html" => (
                "text/html; charset=utf-8",
                b"<!doctype html><html><head><title>t</title></head><body>hi</body></html>"
                    .to_vec(),
            ),
            "data.json" => ("application/json", b"{\"ok\":true}".to_vec()),
            _ => ("image/png", b"\x89PNG\r\n\x1a\n".to_vec()),
        };
        let mut h = HeaderMap::new();
        h.insert("content-type", ctype.parse().unwrap());
        h.append("x-robots-tag", "noindex".parse().unwrap());
        h.append("x-robots-tag", "noai".parse().unwrap());
        h.insert("content-usage", "search=y".parse().unwrap());
        return (h, body).into_response();
    }
    if let Some(n) = path.strip_prefix("/slow/") {
        let ms: u64 = n.parse().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(n) = path.strip_prefix("/big/") {
        let total: usize = n.parse().unwrap_or(0);
        let chunk = vec![b'x'; 64 * 1024];
        let stream = futures_util::stream::unfold(0usize, move |sent| {
            let chunk = chunk.clone();
            async move {
                if sent >= total {
                    return None;
                }
                let n = (total - sent).min(chunk.len());
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(&chunk[..n])),
                    sent + n,
                ))
            }
        });
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/octet-stream".parse().unwrap());
        h.insert("x-origin", st.name.parse().unwrap());
        return (h, Body::from_stream(stream)).into_response();
    }
    let mut body = req.into_body().into_data_stream();
    let mut body_len = 0usize;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => body_len += c.len(),
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    }
    let seen = Seen {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
        body_len,
    };
    *st.last.lock().expect("lock") = Some(seen);
    let json = serde_json::json!({
        "origin": st.name,
        "method": method,
        "path": path,
        "headers": headers,
        "body_len": body_len,
    });
    let mut h = HeaderMap::new();
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("x-origin", st.name.parse().unwrap());
    (h, json.to_string()).into_response()
}

/// The watermark key of test configurations.
pub const TEST_SECRET: &str = "test-only-watermark-key-0123456789";

/// A running `fixative` process.
pub struct Fixative {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

/// A test configuration: `[server]` with these ports, `server_extra`
/// inside it, then `rest`, and a watermark key unless `rest` has its own
/// `[protector]` table (protection needs a key of the operator's own).
fn config_text(http: SocketAddr, admin: SocketAddr, server_extra: &str, rest: &str) -> String {
    let secret = if rest.contains("[protector]") {
        String::new()
    } else {
        format!("\n[protector]\nsecret = \"{TEST_SECRET}\"\n")
    };
    format!(
        "[server]\nlisten = [\"{http}\"]\nadmin = \"{admin}\"\nthreads = 2\ngrace_period = \"1s\"\nhealth_check_interval = \"200ms\"\n{server_extra}\n\n{rest}\n{secret}"
    )
}

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fixative")
}

impl Fixative {
    /// Writes `sites_and_extra` after a generated `[server]` section with
    /// fresh ports and starts the binary. `server_extra` is appended inside
    /// `[server]`.
    pub fn start(server_extra: &str, rest: &str) -> Fixative {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, server_extra, rest)
    }

    /// Like [`Fixative::start`] in a given directory (for TLS files).
    pub fn start_in(dir: tempfile::TempDir, server_extra: &str, rest: &str) -> Fixative {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = config_text(http, admin, server_extra, rest);
        let config_path = dir.path().join("fixative.toml");
        std::fs::write(&config_path, config).expect("write config");
        let stdout_path = dir.path().join("stdout.log");
        let stderr_path = dir.path().join("stderr.log");
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(&config_path)
            .stdout(Stdio::from(std::fs::File::create(&stdout_path).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr_path).unwrap()))
            .env("RUST_LOG", "info")
            .spawn()
            .expect("spawn fixative");
        let mut f = Fixative {
            child,
            dir,
            config_path,
            http,
            admin,
            stdout_path,
            stderr_path,
        };
        f.wait_ready();
        f
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("fixative exited early ({status}):\n{}", self.stderr());
            }
            let admin_ok = http_get_status(self.admin, "/readyz") == Some(200);
            let proxy_ok = std::net::TcpStream::connect(self.http).is_ok();
            if admin_ok && proxy_ok {
                return;
            }
            if Instant::now() > deadline {
                panic!("fixative not ready in time:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts with a TLS listener too, using a certificate for `host`
    /// generated now; returns the process, the TLS port and the certificate
    /// (PEM) for clients to trust.
    pub fn start_tls(host: &str, server_extra: &str, rest: &str) -> (Fixative, u16, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ck = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("certificate");
        std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem())
            .expect("write key");
        let port = free_port();
        let extra = format!(
            "tls = {{ listen = \"127.0.0.1:{port}\", cert = \"cert.pem\", key = \"key.pem\" }}\n{server_extra}"
        );
        (Self::start_in(dir, &extra, rest), port, ck.cert.pem())
    }

    /// `http://127.0.0.1:PORT` of the plain listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// `http://127.0.0.1:PORT` of the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        read_to_string(&self.stderr_path)
    }

    /// Access-log lines so far, parsed.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        read_to_string(&self.stdout_path)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Replaces the configuration file (same listeners).
    pub fn rewrite_config(&self, server_extra: &str, rest: &str) {
        let config = config_text(self.http, self.admin, server_extra, rest);
        std::fs::write(&self.config_path, config).expect("rewrite config");
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// The process's peak resident set size in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Scrapes `/metrics` and returns the value of one sample line.
    pub fn metric(&self, name_and_labels: &str) -> f64 {
        let body = http_get(self.admin, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        body.lines()
            .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Polls a metric until it reaches `want` (the logging phase runs just
    /// after the response is sent) or a deadline passes; returns the last value.
    pub fn metric_eventually(&self, name_and_labels: &str, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.metric(name_and_labels);
            if v >= want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the access log has at least `n` lines, then returns them.
    pub fn access_log_lines(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.access_log();
            if log.len() >= n || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Fixative {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_to_string(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// A tiny blocking HTTP/1.1 GET (no client library, safe inside async
/// tests): status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Status of a GET, for readiness polling.
pub fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    http_get(addr, path).map(|(s, _)| s)
}

/// An async client that never uses a system proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A `[[site]]` block.
pub fn site(name: &str, hosts: &[&str], upstreams: &[SocketAddr], extra: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    let ups: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[[site]]\nname = \"{name}\"\nhosts = [{}]\nupstreams = [{}]\n{extra}\n",
        hosts.join(", "),
        ups.join(", ")
    )
}

const PAGE: &str =
    "<!doctype html><html><head><title>Work</title></head><body><h1>Portfolio</h1></body></html>";

async fn html_route(st: &OriginState, kind: &str) -> Response {
    let html = |body: Body, extra: &[(&str, &str)]| {
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/html; charset=utf-8".parse().unwrap());
        h.insert("etag", "\"page-1\"".parse().unwrap());
        for (k, v) in extra {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        (h, body).into_response()
    };
    match kind {
        "cl" => html(Body::from(PAGE), &[]),
        "chunked" => {
            let parts: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                Ok("<!doctype html><html><he".into()),
                Ok("ad><title>Work</title></h".into()),
                Ok("ead><body><h1>Portfolio</h1></body></html>".into()),
            ];
            html(Body::from_stream(futures_util::stream::iter(parts)), &[])
        }
        "gzip" => {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(PAGE.as_bytes()).unwrap();
            html(
                Body::from(e.finish().unwrap()),
                &[("content-encoding", "gzip")],
            )
        }
        "nohead" => html(Body::from("<p>A drawing, no head at all.</p>"), &[]),
        "existing-meta" => html(
            Body::from(
                "<html><head><meta name=\"robots\" content=\"noindex\"></head><body>x</body></html>",
            ),
            &[],
        ),
        "latin1" => {
            let mut h = HeaderMap::new();
            h.insert(
                "content-type",
                "text/html; charset=windows-1252".parse().unwrap(),
            );
            (
                h,
                b"<html><head><title>caf\xe9</title></head><body>caf\xe9</body></html>".to_vec(),
            )
                .into_response()
        }
        "not-modified" => (StatusCode::NOT_MODIFIED, HeaderMap::new()).into_response(),
        "partial" => {
            let mut h = HeaderMap::new();
            h.insert("content-type", "text/html".parse().unwrap());
            h.insert("content-range", "bytes 0-9/100".parse().unwrap());
            (StatusCode::PARTIAL_CONTENT, h, "<html><hea").into_response()
        }
        "big" => {
            // 20 MB: the head first, then (once released) the rest.
            let release = st.release.clone();
            let finished = st.finished.clone();
            let filler = bytes::Bytes::from(vec![b'x'; 1024 * 1024]);
            let stream =
                futures_util::stream::unfold(0usize, move |i| {
                    let release = release.clone();
                    let finished = finished.clone();
                    let filler = filler.clone();
                    async move {
                        match i {
                        0 => Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                            b"<!doctype html><html><head><title>Big</title></head><body><p>",
                        )), 1)),
                        1..=20 => {
                            if i == 1 {
                                release.notified().await;
                            }
                            Some((Ok(filler), i + 1))
                        }
                        21 => {
                            finished.store(true, Ordering::SeqCst);
                            Some((Ok(bytes::Bytes::from_static(b"</p></body></html>")), 22))
                        }
                        _ => None,
                    }
                    }
                });
            html(Body::from_stream(stream), &[])
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Real image files from the repository (demo art and test fixtures),
/// `broken.jpg` (a JPEG header then garbage), and 206 for ranged requests.
/// Images per gallery page.
pub const GALLERY_IMAGES: usize = 6;

/// A gallery page: a few small images and a link to the next page.
fn gallery_page(n: usize) -> Response {
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Gallery {n}</title></head><body><h1>Gallery page {n}</h1>"
    );
    for k in 0..GALLERY_IMAGES {
        html.push_str(&format!(
            "<img src=\"/img/g-{n}-{k}.png\" width=\"64\" height=\"64\" alt=\"work {k}\">"
        ));
    }
    html.push_str(&format!(
        "<p><a href=\"/pages/{}\">next</a></p></body></html>",
        n + 1
    ));
    let mut h = HeaderMap::new();
    h.insert("content-type", "text/html; charset=utf-8".parse().unwrap());
    (h, html).into_response()
}

/// A small PNG whose colours depend on `name` (a distinct image per URL).
pub fn small_png(name: &str) -> Vec<u8> {
    let seed = name
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([
            (x * 4) as u8 ^ seed as u8,
            (y * 4) as u8 ^ (seed >> 8) as u8,
            ((x + y) * 2) as u8 ^ (seed >> 16) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn image_route(name: &str, ranged: bool) -> Response {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = if name.starts_with("g-") && !name.contains(".cloaked.") {
        small_png(name)
    } else if name == "rocket.cloaked.jpg" {
        // A "prepared" variant (e.g. the artist's Glaze output): here, the brick texture.
        return image_bytes(
            std::fs::read(root.join("proxy/assets/art/brick.png")).unwrap(),
            "image/png",
            ranged,
        );
    } else if name.starts_with("big-") && !name.contains(".cloaked.") {
        big_png().to_vec()
    } else if name == "bomb.png" {
        // A valid PNG header declaring 60000×60000 pixels.
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&60000u32.to_be_bytes());
        ihdr.extend_from_slice(&60000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut d = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d".to_vec();
        d.extend_from_slice(&ihdr);
        d.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        d.extend_from_slice(&[0u8; 64]);
        d
    } else if name == "huge.jpg" {
        huge_jpeg()
    } else if name == "broken.jpg" {
        let mut d = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        d.extend(std::iter::repeat_n(0x5a, 5000));
        d
    } else {
        match std::fs::read(root.join("proxy/assets/art").join(name))
            .or_else(|_| std::fs::read(root.join("tests/fixtures").join(name)))
        {
            Ok(d) => d,
            Err(_) => return StatusCode::NOT_FOUND.into_response(),
        }
    };
    let ctype = match name.rsplit('.').next() {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        _ => "image/jpeg",
    };
    image_bytes(data, ctype, ranged)
}

fn image_bytes(data: Vec<u8>, ctype: &str, ranged: bool) -> Response {
    let mut h = HeaderMap::new();
    h.insert("content-type", ctype.parse().unwrap());
    h.insert("etag", "\"img-1\"".parse().unwrap());
    h.insert("accept-ranges", "bytes".parse().unwrap());
    if ranged {
        h.insert(
            "content-range",
            format!("bytes 0-99/{}", data.len()).parse().unwrap(),
        );
        return (StatusCode::PARTIAL_CONTENT, h, data[..100].to_vec()).into_response();
    }
    (h, data).into_response()
}

/// A 3000×2000 PNG made from a demo photo, once per test binary.
pub fn big_png() -> &'static [u8] {
    static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BIG.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let img = image::open(root.join("proxy/assets/art/coffee.png")).unwrap();
        let big = img.resize_exact(3000, 2000, image::imageops::FilterType::Triangle);
        let mut out = std::io::Cursor::new(Vec::new());
        big.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    })
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A 48 MiB JPEG: the head of `rocket.jpg` (up to its first scan) and
/// 48 MiB of scan data, then EOI. Built once.
pub fn huge_jpeg() -> Vec<u8> {
    static HUGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    HUGE.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let rocket = std::fs::read(root.join("proxy/assets/art/rocket.jpg")).unwrap();
        // Walk the segments to the real start of scan.
        let mut sos = 2;
        while rocket[sos + 1] != 0xDA {
            sos += 2 + usize::from(u16::from_be_bytes([rocket[sos + 2], rocket[sos + 3]]));
        }
        let mut d = rocket[..sos + 2].to_vec();
        d.extend_from_slice(&[
            0x00, 0x0C, 0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00, 0x3F, 0x00,
        ]);
        d.extend(std::iter::repeat_n(0x55u8, 48 << 20));
        d.extend_from_slice(&[0xFF, 0xD9]);
        d
    })
    .clone()
}

#[path = "../../protector/tests/support/credential.rs"]
mod c2pa_support;

/// An Ed25519 test CA and a C2PA signing certificate under it (the
/// protector tests' credential), written as `c2pa-chain.pem` and
/// `c2pa-key.pem` into `dir`; returns the CA's PEM (what a reader must
/// trust).
pub fn c2pa_credential(dir: &Path) -> String {
    let (chain, key, ca) = c2pa_support::credential();
    std::fs::write(dir.join("c2pa-chain.pem"), chain).expect("write chain");
    std::fs::write(dir.join("c2pa-key.pem"), key).expect("write key");
    ca
}
