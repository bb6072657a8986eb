//! Fleet mode: several Fixative nodes sharing limits, penalties and bans
//! through a real Redis (Debian's `redis-server`, started by each test on
//! a free loopback port).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Fixative, Origin, client, free_port, site};

const BOT: &str = "FleetTestBot/1.0 (+https://bots.example.org/fleet)";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// A `redis-server` on a free port, without persistence; killed on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    password: Option<String>,
    /// Serves TLS only (`rediss://`), with a certificate signed by the CA
    /// in `dir/ca.pem`.
    tls: bool,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(None)
    }

    fn start_with(password: Option<&str>) -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir,
            password: password.map(str::to_string),
            tls: false,
        };
        r.restart();
        r
    }

    /// A TLS-only server: a CA and a server certificate for 127.0.0.1
    /// generated now.
    fn start_tls() -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fleet test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir,
            password: None,
            tls: true,
        };
        r.restart();
        r
    }

    /// (Re)starts the server on the same port.
    fn restart(&mut self) {
        let d = self.dir.path();
        let (plain, tls): (u16, Vec<String>) = if self.tls {
            let f = |n: &str| d.join(n).display().to_string();
            (
                0,
                vec![
                    "--tls-port".into(),
                    self.port.to_string(),
                    "--tls-cert-file".into(),
                    f("cert.pem"),
                    "--tls-key-file".into(),
                    f("key.pem"),
                    "--tls-ca-cert-file".into(),
                    f("ca.pem"),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ],
            )
        } else {
            (self.port, Vec::new())
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(plain.to_string())
            .args(tls)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass".to_string(), p.clone()]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (./dev test installs Debian's redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while if self.tls {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        } else {
            self.query(&["PING"]).is_none()
        } {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// One command with the `redis` crate's synchronous client.
    fn query(&self, args: &[&str]) -> Option<redis::Value> {
        let url = match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => self.url(),
        };
        let client = redis::Client::open(url).ok()?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        let mut cmd = redis::cmd(args.first()?);
        for a in args.iter().skip(1) {
            cmd.arg(*a);
        }
        cmd.query(&mut c).ok()
    }

    fn int(&self, args: &[&str]) -> i64 {
        match self.query(args) {
            Some(redis::Value::Int(i)) => i,
            other => panic!("{args:?}: {other:?}"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node's configuration: a site under policy `fleet` (unknown bots
/// limited to a burst of 10, then 10 a minute, per client address), the
/// client address taken from X-Forwarded-For, state in `redis` (or this
/// node's memory when `None`).
fn node(origin: SocketAddr, redis: Option<&Redis>, prefix: &str) -> Fixative {
    let state = match redis {
        Some(r) => {
            let password = match &r.password {
                Some(p) => {
                    let f = r.dir.path().join("password");
                    std::fs::write(&f, format!("{p}\n")).expect("password file");
                    format!("password_file = \"{}\"\n", f.display())
                }
                None => String::new(),
            };
            let ca = if r.tls {
                format!("ca_file = \"{}\"\n", r.dir.path().join("ca.pem").display())
            } else {
                String::new()
            };
            format!(
                "[state]\nbackend = \"redis\"\nurl = \"{}\"\n{password}{ca}prefix = \"{prefix}\"\nsync_interval = \"100ms\"\ntimeout = \"250ms\"\n",
                r.url()
            )
        }
        None => String::new(),
    };
    let rest = format!(
        "{}\n[policy.fleet]\n[[policy.fleet.rule]]\nname = \"limit-bots\"\nmatch = {{ category = [\"unknown-bot\"] }}\naction = \"limit\"\nquota = {{ rate = 10, per = \"minute\", burst = 10, key = \"ip\" }}\n\n[[policy.fleet.rule]]\nname = \"block-penalised\"\nmatch = {{ score_at_least = 100 }}\naction = \"block\"\n\n{state}",
        site("art", &["art.test"], &[origin], "policy = \"fleet\"")
    );
    Fixative::start("trusted_proxies = [\"127.0.0.1/32\"]", &rest)
}

/// `GET /-/bans` of a node.
async fn bans(fx: &Fixative) -> serde_json::Value {
    client()
        .get(fx.admin_url("/-/bans"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn get(fx: &Fixative, path: &str, ua: &str, client_ip: &str) -> u16 {
    client()
        .get(fx.url(path))
        .header("host", "art.test")
        .header("user-agent", ua)
        .header("accept", "text/html")
        .header("accept-language", "en")
        .header("sec-fetch-mode", "navigate")
        .header("x-forwarded-for", client_ip)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Sends `n` bot requests alternating between the nodes; returns how many
/// got 200 and every other status seen.
async fn alternate(nodes: &[&Fixative], n: usize, ip: &str) -> (usize, Vec<u16>) {
    let mut ok = 0;
    let mut other = Vec::new();
    for i in 0..n {
        let fx = nodes[i % nodes.len()];
        match get(fx, &format!("/work/{i}"), BOT, ip).await {
            200 => ok += 1,
            s => other.push(s),
        }
    }
    (ok, other)
}

/// An origin, a Redis, and two connected nodes sharing it under `prefix`.
async fn two_nodes(prefix: &str) -> (Origin, Redis, Fixative, Fixative) {
    let origin = Origin::start("o").await;
    let redis = Redis::start();
    let a = node(origin.addr, Some(&redis), prefix);
    let b = node(origin.addr, Some(&redis), prefix);
    connected(&[&a, &b]);
    (origin, redis, a, b)
}

/// Waits until every node's link to Redis is up.
fn connected(nodes: &[&Fixative]) {
    wait_until("nodes connected", Duration::from_secs(5), || {
        nodes
            .iter()
            .all(|n| n.metric("fixative_state_backend_up") == 1.0)
    });
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_quota() {
    let (origin, redis, a, b) = two_nodes("q:").await;
    let (ok, other) = alternate(&[&a, &b], 30, "198.51.100.7").await;
    assert_eq!(
        ok, 10,
        "the fleet's burst of 10, not twice it; others {other:?}"
    );
    assert!(other.iter().all(|s| *s == 429), "{other:?}");
    assert!(a.metric("fixative_state_decisions_total{by=\"fleet\"}") >= 5.0);
    assert!(b.metric("fixative_state_decisions_total{by=\"fleet\"}") >= 5.0);
    // A person (no limit rule applies) costs no round trip.
    let before = a.metric("fixative_state_decisions_total{by=\"fleet\"}");
    for _ in 0..5 {
        assert_eq!(get(&a, "/", BROWSER, "198.51.100.8").await, 200);
    }
    assert_eq!(
        a.metric("fixative_state_decisions_total{by=\"fleet\"}"),
        before
    );

    // Sizing: what one tracked client costs in Redis.
    let window = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60;
    let q = redis.int(&["MEMORY", "USAGE", "q:q:fleet/limit-bots/198.51.100.7"]);
    // The counters arrive with the next sync.
    let mut counters = 0;
    wait_until("counters in Redis", Duration::from_secs(3), || {
        for w in [window, window.saturating_sub(1), window + 1] {
            if let Some(redis::Value::Int(n)) =
                redis.query(&["MEMORY", "USAGE", &format!("q:b:{w}:198.51.100.7")])
            {
                counters = n;
            }
        }
        counters > 0
    });
    eprintln!("redis bytes per client: quota key {q}, behaviour counters {counters}");
    assert!(q > 0 && q < 512, "{q}");
    assert!(counters > 0 && counters < 512, "{counters}");
    let ttl = redis.int(&["PTTL", "q:q:fleet/limit-bots/198.51.100.7"]);
    assert!(
        ttl > 0 && ttl <= 61_000,
        "quota keys expire on their own: {ttl}"
    );

    // The control: two nodes that keep their state to themselves give a
    // client twice the quota.
    let c = node(origin.addr, None, "");
    let d = node(origin.addr, None, "");
    let (ok, _) = alternate(&[&c, &d], 30, "198.51.100.7").await;
    assert_eq!(ok, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_hit_on_one_node_counts_on_another() {
    let (_origin, _redis, a, b) = two_nodes("t:").await;
    assert_eq!(get(&b, "/", BROWSER, "192.0.2.44").await, 200);
    // The trap (robots.txt disallows it) on node A.
    get(
        &a,
        "/gallery/archive/full-resolution/1.jpg",
        BROWSER,
        "192.0.2.44",
    )
    .await;
    // Node B sees the penalty: the client's score reaches the block rule.
    let trapped = Instant::now();
    let mut n = 1;
    while get(&b, &format!("/p{n}"), BROWSER, "192.0.2.44").await != 403 {
        assert!(
            trapped.elapsed() < Duration::from_secs(1),
            "penalty not seen on node B within a second"
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "penalty seen on the other node after {:?}",
        trapped.elapsed()
    );
    let log = b.access_log_lines(n + 1);
    let last = log
        .iter()
        .rev()
        .find(|l| l["client_ip"] == "192.0.2.44")
        .expect("logged");
    assert!(last.to_string().contains("behaviour.robots-trap"), "{last}");
    // Someone else is untouched.
    assert_eq!(get(&b, "/", BROWSER, "192.0.2.45").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_on_one_node_blocks_on_every_node_within_a_second() {
    let (_origin, redis, a, b) = two_nodes("b:").await;
    assert_eq!(get(&b, "/", BROWSER, "203.0.113.9").await, 200);
    let c = client();
    let r = c
        .post(a.admin_url("/-/bans"))
        .body(r#"{"net": "203.0.113.0/24", "ttl": "10m", "reason": "scraped the archive"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let banned_at = Instant::now();
    // Node A at once; node B within a second.
    assert_eq!(get(&a, "/", BROWSER, "203.0.113.200").await, 403);
    let mut seen = Duration::ZERO;
    while banned_at.elapsed() < Duration::from_secs(1) {
        if get(&b, "/", BROWSER, "203.0.113.9").await == 403 {
            seen = banned_at.elapsed();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !seen.is_zero(),
        "node B did not apply the ban within a second"
    );
    eprintln!("ban applied on the other node after {seen:?}");
    assert_eq!(
        get(&b, "/", BROWSER, "203.0.114.9").await,
        200,
        "outside the ban"
    );
    let list = bans(&b).await;
    assert_eq!(list["backend"], "redis");
    assert_eq!(list["bans"][0]["net"], "203.0.113.0/24");
    assert_eq!(list["bans"][0]["reason"], "scraped the archive");
    wait_until("the verdict names the ban", Duration::from_secs(2), || {
        b.access_log()
            .iter()
            .any(|l| l["rule"] == "ban" && l["status"] == 403)
    });
    // Bad requests are explained.
    let r = c
        .post(a.admin_url("/-/bans"))
        .body(r#"{"net": "not-a-net"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("neither an address nor a network")
    );
    // Lifted on B: A follows.
    let r = c
        .delete(b.admin_url("/-/bans?net=203.0.113.0/24"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let lifted = Instant::now();
    while get(&a, "/", BROWSER, "203.0.113.9").await != 200 {
        assert!(
            lifted.elapsed() < Duration::from_secs(1),
            "unban not seen on A"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Ended bans leave the store as new entries come.
    for (net, ttl) in [("198.51.100.1", "1s"), ("198.51.100.2", "1h")] {
        let r = c
            .post(a.admin_url("/-/bans"))
            .body(format!(r#"{{"net": "{net}", "ttl": "{ttl}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    wait_until("ended ban pruned", Duration::from_secs(2), || {
        redis.int(&["ZCARD", "b:bans"]) == 1 && redis.int(&["HLEN", "b:banr"]) == 1
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_causes_no_visitor_errors_and_heals() {
    let origin = Origin::start("o").await;
    let mut redis = Redis::start();
    let a = node(origin.addr, Some(&redis), "o:");
    let b = node(origin.addr, Some(&redis), "o:");
    connected(&[&a, &b]);
    // Load from people and a bot on both nodes while Redis dies.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u16>::new()));
    let mut tasks = Vec::new();
    for (k, fx) in [&a, &b].into_iter().enumerate() {
        let url = fx.url("/");
        let stop = stop.clone();
        let statuses = statuses.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let bot = i.is_multiple_of(4);
                let r = c
                    .get(format!("{url}p{i}"))
                    .header("host", "art.test")
                    .header("user-agent", if bot { BOT } else { BROWSER })
                    .header("accept", "text/html")
                    .header("accept-language", "en")
                    .header("sec-fetch-mode", "navigate")
                    .header("x-forwarded-for", format!("10.9.{k}.{}", i % 200))
                    .send()
                    .await;
                statuses
                    .lock()
                    .unwrap()
                    .push(r.map(|r| r.status().as_u16()).unwrap_or(0));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    wait_until("both nodes notice", Duration::from_secs(5), || {
        a.metric("fixative_state_backend_up") == 0.0 && b.metric("fixative_state_backend_up") == 0.0
    });
    // A node started now serves at once and joins when Redis is back.
    let late = node(origin.addr, Some(&redis), "o:");
    assert_eq!(get(&late, "/", BROWSER, "192.0.2.1").await, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Limits continue locally: a bot on node A alone gets the burst, then 429.
    let (ok, other) = alternate(&[&a], 15, "198.51.100.99").await;
    assert_eq!(ok, 10, "{other:?}");
    assert!(other.iter().all(|s| *s == 429));
    redis.restart();
    wait_until("every node reconnects", Duration::from_secs(10), || {
        a.metric("fixative_state_backend_up") == 1.0
            && b.metric("fixative_state_backend_up") == 1.0
            && late.metric("fixative_state_backend_up") == 1.0
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    let errors: Vec<&u16> = statuses
        .iter()
        .filter(|s| **s != 200 && **s != 429)
        .collect();
    eprintln!(
        "{} requests during the outage test, non-200/429: {errors:?}",
        statuses.len()
    );
    assert!(statuses.len() > 100);
    assert!(errors.is_empty(), "{errors:?}");
    // Logged once per incident, and the recovery.
    for fx in [&a, &b] {
        let err = fx.stderr();
        assert_eq!(err.matches("unreachable").count(), 1, "{err}");
        assert!(err.contains("answers again"), "{err}");
        assert!(fx.metric("fixative_state_backend_errors_total{op=\"sync\"}") >= 1.0);
    }
    // Shared again: a new client alternating gets the fleet's burst only.
    let (ok, _) = alternate(&[&a, &b], 30, "198.51.100.100").await;
    assert_eq!(ok, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_state_survives_reloads_and_restarts() {
    let origin = Origin::start("o").await;
    let redis = Redis::start();
    let a = node(origin.addr, Some(&redis), "r:");
    wait_until("connected", Duration::from_secs(5), || {
        a.metric("fixative_state_backend_up") == 1.0
    });
    let c = client();
    let r = c
        .post(a.admin_url("/-/bans"))
        .body(r#"{"net": "192.0.2.77", "ttl": "1h"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    get(
        &a,
        "/gallery/archive/full-resolution/x.jpg",
        BROWSER,
        "192.0.2.88",
    )
    .await;
    let (ok, _) = alternate(&[&a], 10, "198.51.100.50").await;
    assert_eq!(ok, 10, "the burst spent");
    // Reload: the same state.
    let r = c.post(a.admin_url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(&a, "/", BROWSER, "192.0.2.77").await, 403, "ban kept");
    assert_eq!(
        get(&a, "/", BROWSER, "192.0.2.88").await,
        403,
        "penalty kept"
    );
    assert_eq!(get(&a, "/", BOT, "198.51.100.50").await, 429, "quota kept");
    assert_eq!(get(&a, "/", BROWSER, "192.0.2.99").await, 200);
    // A node started afterwards loads it all from the store, once the
    // node has written the ban and the penalty there (its outbox is
    // written behind the requests).
    wait_until(
        "the ban and the penalty in the store",
        Duration::from_secs(5),
        || redis.int(&["ZCARD", "r:bans"]) >= 1 && redis.int(&["ZCARD", "r:pen"]) >= 1,
    );
    drop(a);
    let fresh = node(origin.addr, Some(&redis), "r:");
    wait_until("connected", Duration::from_secs(5), || {
        fresh.metric("fixative_state_backend_up") == 1.0
    });
    assert_eq!(
        get(&fresh, "/", BROWSER, "192.0.2.77").await,
        403,
        "ban loaded"
    );
    assert_eq!(
        get(&fresh, "/", BROWSER, "192.0.2.88").await,
        403,
        "penalty loaded"
    );
    // The fresh node knows nothing of the client's counts yet: it may
    // admit a quarter of the burst (here 2) before it asks the fleet.
    let (ok, other) = alternate(&[&fresh], 5, "198.51.100.50").await;
    assert!(ok <= 2, "quota shared: {ok} admitted");
    assert!(other.iter().all(|s| *s == 429), "{other:?}");

    // The memory backend keeps bans and penalties across reloads too.
    let m = node(origin.addr, None, "");
    let r = c
        .post(m.admin_url("/-/bans"))
        .body(r#"{"net": "192.0.2.77"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c.post(m.admin_url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(&m, "/", BROWSER, "192.0.2.77").await, 403);
    let list = bans(&m).await;
    assert_eq!(list["backend"], "memory");
}

/// Behaviour counters add up across nodes: a client fetching images only,
/// spread over two nodes, is "images without pages" on both although each
/// node alone saw too few. The Redis here requires a password, given in a
/// file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behaviour_counts_add_up_across_nodes_behind_a_password() {
    let origin = Origin::start("o").await;
    let redis = Redis::start_with(Some("fleet-password-0123"));
    let a = node(origin.addr, Some(&redis), "c:");
    let b = node(origin.addr, Some(&redis), "c:");
    connected(&[&a, &b]);
    let images_only = |fx: &Fixative| {
        fx.access_log().iter().any(|l| {
            l["client_ip"] == "192.0.2.60" && l.to_string().contains("images-without-pages")
        })
    };
    for i in 0..24 {
        let fx = if i % 2 == 0 { &a } else { &b };
        get(fx, &format!("/img/s{i}.png"), BROWSER, "192.0.2.60").await;
    }
    // Poll with requests that are not images (each node's own count
    // stays at 12) until both nodes know the fleet's count.
    let started = Instant::now();
    let mut n = 0;
    while !(images_only(&a) && images_only(&b)) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "signal not on both nodes"
        );
        n += 1;
        get(&a, &format!("/data/{n}.json"), BROWSER, "192.0.2.60").await;
        get(&b, &format!("/data/{n}.json"), BROWSER, "192.0.2.60").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each node alone saw 13 images: below the signal's 20.
    let c = node(origin.addr, None, "");
    let d = node(origin.addr, None, "");
    for i in 0..26 {
        let fx = if i % 2 == 0 { &c } else { &d };
        get(fx, &format!("/img/s{i}.png"), BROWSER, "192.0.2.60").await;
    }
    c.access_log_lines(13);
    d.access_log_lines(13);
    assert!(!images_only(&c) && !images_only(&d));
    // A wrong password: the node still serves, deciding alone.
    let mut wrong = Redis::start_with(Some("another-password-0123"));
    wrong.password = Some("not-the-password".into());
    let e = node(origin.addr, Some(&wrong), "c:");
    assert_eq!(get(&e, "/", BROWSER, "192.0.2.61").await, 200);
    wait_until("the failure is logged", Duration::from_secs(3), || {
        e.stderr().contains("unreachable")
    });
    assert_eq!(e.metric("fixative_state_backend_up"), 0.0);
    assert!(
        !e.stderr().contains("not-the-password"),
        "passwords stay out of logs"
    );
}

/// A solved challenge is single-use across the fleet: the answer accepted
/// by node A is refused when replayed to node B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solved_challenge_cannot_be_replayed_on_another_node() {
    let (_origin, _redis, a, b) = two_nodes("s:").await;
    let c = client();
    let post = |fx: &Fixative, path: &str, body: String| {
        c.post(fx.url(path))
            .header("host", "art.test")
            .header("user-agent", BROWSER)
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/json")
            .header("x-forwarded-for", "192.0.2.70")
            .body(body)
    };
    let ch: serde_json::Value = post(&a, "/.fixative/challenge", String::new())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = ch["token"].as_str().unwrap().to_string();
    let counter = fixative_rules::pass::solve(&token, ch["difficulty"].as_u64().unwrap() as u8);
    let answer = serde_json::json!({
        "token": token,
        "counter": counter,
        "report": {"webdriver": false, "ua": BROWSER, "chrome": true, "outer": [1280, 900],
                   "plugins": 5, "globals": [], "languages": "en", "platform": "Linux x86_64",
                   "brands": ["Chromium/131", "Google Chrome/131"], "ua_platform": "Linux"},
    })
    .to_string();
    let r = post(&a, "/.fixative/pass", answer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = post(&b, "/.fixative/pass", answer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "replayed on the other node");
    assert!(b.metric("fixative_checks_total{result=\"replayed\"}") >= 1.0);
}

/// `rediss://`: TLS to the store, verified against the operator's CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_state_over_tls() {
    let origin = Origin::start("o").await;
    let redis = Redis::start_tls();
    let a = node(origin.addr, Some(&redis), "tls:");
    let b = node(origin.addr, Some(&redis), "tls:");
    wait_until(
        "both nodes connected over TLS",
        Duration::from_secs(5),
        || {
            a.metric("fixative_state_backend_up") == 1.0
                && b.metric("fixative_state_backend_up") == 1.0
        },
    );
    let (ok, other) = alternate(&[&a, &b], 20, "198.51.100.30").await;
    assert_eq!(ok, 10, "{other:?}");
    // Without the CA the server's certificate is not trusted: no link,
    // and still no visitor error.
    let untrusting = {
        let rest = format!(
            "{}\n[state]\nbackend = \"redis\"\nurl = \"{}\"\n",
            site("art", &["art.test"], &[origin.addr], ""),
            redis.url()
        );
        Fixative::start("trusted_proxies = [\"127.0.0.1/32\"]", &rest)
    };
    assert_eq!(get(&untrusting, "/", BROWSER, "198.51.100.31").await, 200);
    wait_until("the failure is logged", Duration::from_secs(3), || {
        untrusting.stderr().contains("unreachable")
    });
    assert_eq!(untrusting.metric("fixative_state_backend_up"), 0.0);
}

/// 404s add up across nodes: a client probing missing files over two
/// nodes (12 each, a burst is 20) is penalised on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_bursts_add_up_across_nodes() {
    let (_origin, _redis, a, b) = two_nodes("n:").await;
    for i in 0..24 {
        let fx = if i % 2 == 0 { &a } else { &b };
        // 404, or 403 once the fleet's burst (with images without pages)
        // reaches the block rule.
        let status = get(fx, &format!("/img/missing-{i}.png"), BROWSER, "192.0.2.80").await;
        assert!(status == 404 || status == 403, "{status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let burst = |fx: &Fixative| {
        fx.access_log().iter().any(|l| {
            l["client_ip"] == "192.0.2.80" && l.to_string().contains("behaviour.404-burst")
        })
    };
    let started = Instant::now();
    while !(burst(&a) && burst(&b)) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no 404 burst on both nodes"
        );
        get(&a, "/", BROWSER, "192.0.2.80").await;
        get(&b, "/", BROWSER, "192.0.2.80").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With the default policy every request falls under `limit-everyone`
/// (20 a second, burst 100, per address): a person far from it costs no
/// round trip; a client past a quarter of the burst asks the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_under_the_default_policy_cost_no_round_trip() {
    let origin = Origin::start("o").await;
    let redis = Redis::start();
    let rest = format!(
        "{}\n[state]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"d:\"\nsync_interval = \"100ms\"\ntimeout = \"250ms\"\n",
        site("art", &["art.test"], &[origin.addr], ""),
        redis.url()
    );
    let a = Fixative::start("trusted_proxies = [\"127.0.0.1/32\"]", &rest);
    connected(&[&a]);
    for i in 0..20 {
        assert_eq!(
            get(&a, &format!("/work/{i}"), BROWSER, "192.0.2.90").await,
            200
        );
    }
    assert_eq!(
        a.metric("fixative_state_decisions_total{by=\"fleet\"}"),
        0.0
    );
    for i in 0..20 {
        assert_eq!(
            get(&a, &format!("/more/{i}"), BROWSER, "192.0.2.90").await,
            200
        );
    }
    let asked = a.metric("fixative_state_decisions_total{by=\"fleet\"}");
    assert!(asked >= 10.0, "past a quarter of the burst: {asked}");
}
