//! The shared state backend of a fleet: Redis 7 / Valkey.
//!
//! [`FleetLink`] owns the node's [`Fleet`] mirror (it outlives reloads) and,
//! with `[state] backend = "redis"`, a dedicated thread that talks to the
//! store: every `sync_interval` (and at once after a ban) it sends the
//! outbox and reads the other nodes' events, so a ban or a penalty written
//! on one node is applied on every other within about two intervals. Quota
//! decisions for requests under a `limit` rule take one round trip on the
//! request path ([`FleetLink::settle`]), bounded by `state.timeout`.
//!
//! When the store is slow or down, the node decides alone: its own limiters
//! keep enforcing the quotas, nothing waits, no visitor sees an error. The
//! incident is logged once, `fixative_state_backend_up` drops to 0, and the
//! link keeps retrying; on recovery it reloads the store's bans, penalties
//! and revocations and resumes.
//!
//! Keys (all under `state.prefix`):
//! - `q:{policy}/{rule}/{key}`: GCRA theoretical arrival time (µs on the
//!   store's clock), expires when the bucket is full again;
//! - `b:{window}:{client}`: behaviour counters (hash r, p, i, n), expire
//!   after two windows;
//! - `pen`, `bans`, `rev`: sorted sets by end time (bans' reasons in
//!   `banr`), pruned as they expire;
//! - `ev`: the event stream nodes read (trimmed to about 10,000 entries).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fixative_config::Config;
use fixative_rules::Verdict;
use fixative_rules::fleet::{
    Backend, BackendError, Ban, Batch, BoxFuture, CountTotals, Counts, Event, Fleet, SharedLimit,
};
use fixative_rules::state::LimitOutcome;
use redis::Value;
use redis::aio::ConnectionManager;

use crate::metrics::Metrics;

/// Events kept in the store's stream (a node that falls further behind
/// reloads the whole state).
const STREAM_LEN: usize = 10_000;
/// Clients' counters sent per round trip.
const COUNTS_PER_TRIP: usize = 1_000;

/// GCRA on the store's clock (µs): ARGV emission interval, burst, and the
/// requests admitted earlier without asking (counted unconditionally).
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local tau = T * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
tat = tat + T * tonumber(ARGV[3])
local new_tat = tat + T
local allow_at = new_tat - tau
if now < allow_at then
  if tonumber(ARGV[3]) > 0 then
    redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1)
  end
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / T), 0, new_tat - now}
"#;

/// Removes ended bans (KEYS[1], by end time) and their reasons (KEYS[2]).
const PRUNE_BANS: &str = r#"
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  redis.call('HDEL', KEYS[2], m)
end
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
"#;

/// Redis as a [`Backend`].
pub struct RedisBackend {
    conns: Vec<ConnectionManager>,
    next: AtomicUsize,
    prefix: String,
    gcra: redis::Script,
    max_penalties: usize,
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

/// The `redis` crate's client for a configuration (no connection yet).
pub fn client(state: &fixative_config::State) -> Result<redis::Client, String> {
    if state.url.starts_with("rediss://") {
        // rustls needs the process's crypto provider (Pingora's).
        pingora::tls::install_default_crypto_provider();
    }
    let mut info: redis::ConnectionInfo =
        redis::IntoConnectionInfo::into_connection_info(state.url.as_str())
            .map_err(|e| format!("state.url {}: {e}", state.url_redacted()))?;
    if let Some(pw) = &state.password {
        let settings = info.redis_settings().clone().set_password(pw.clone());
        info = info.set_redis_settings(settings);
    }
    let built = match &state.ca_pem {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.as_bytes().to_vec()),
            },
        ),
        None => redis::Client::open(info),
    };
    built.map_err(|e| format!("state.url {}: {e}", state.url_redacted()))
}

impl RedisBackend {
    /// Lazily connecting, self-reconnecting connections; call inside the
    /// runtime that will drive them.
    fn new(config: &Config) -> Result<RedisBackend, String> {
        let st = &config.state;
        let client = client(st)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(st.connect_timeout))
            .set_response_timeout(Some(st.connect_timeout.max(Duration::from_millis(100))))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let mut conns = Vec::with_capacity(st.pool_size);
        for _ in 0..st.pool_size {
            conns.push(
                ConnectionManager::new_lazy_with_config(client.clone(), cfg.clone())
                    .map_err(|e| format!("state.url {}: {e}", st.url_redacted()))?,
            );
        }
        Ok(RedisBackend {
            conns,
            next: AtomicUsize::new(0),
            prefix: st.prefix.clone(),
            gcra: redis::Script::new(GCRA),
            max_penalties: config.detection.max_tracked_clients,
        })
    }

    fn conn(&self) -> Result<ConnectionManager, BackendError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns
            .get(i % self.conns.len().max(1))
            .cloned()
            .ok_or_else(|| BackendError("no connection".into()))
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Adds to `p` the removal of ended penalties, revocations and bans
    /// (with their reasons); its replies are ignored.
    fn prune(&self, p: &mut redis::Pipeline, now: u64) {
        for set in ["pen", "rev"] {
            p.cmd("ZREMRANGEBYSCORE")
                .arg(self.key(set))
                .arg("-inf")
                .arg(now)
                .ignore();
        }
        p.cmd("EVAL")
            .arg(PRUNE_BANS)
            .arg(2)
            .arg(self.key("bans"))
            .arg(self.key("banr"))
            .arg(now)
            .ignore();
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// Field/value pairs of a stream entry or a hash (RESP2 flat arrays or
/// RESP3 maps).
fn pairs(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        _ => items(v)
            .chunks(2)
            .filter_map(|c| match c {
                [k, v] => Some((text(k)?, text(v)?)),
                _ => None,
            })
            .collect(),
    }
}

fn micros_to_secs(us: i64) -> u64 {
    let us = us.max(0) as u64;
    us.div_ceil(1_000_000)
}

/// An event as stream fields.
fn fields(e: &Event) -> Vec<(&'static str, String)> {
    match e {
        Event::Penalty {
            client,
            until,
            trapped,
        } => vec![
            ("k", "p".into()),
            ("v", client.to_string()),
            ("u", until.to_string()),
            ("t", if *trapped { "1" } else { "0" }.into()),
        ],
        Event::Ban(b) => vec![
            ("k", "b".into()),
            ("v", b.net.to_string()),
            ("u", b.until.to_string()),
            ("r", b.reason.clone()),
        ],
        Event::Unban(n) => vec![("k", "u".into()), ("v", n.to_string())],
        Event::Revoke { id, until } => vec![
            ("k", "r".into()),
            ("v", format!("{id:016x}")),
            ("u", until.to_string()),
        ],
    }
}

fn event_of(f: &[(String, String)]) -> Option<Event> {
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let until = get("u").and_then(|u| u.parse::<u64>().ok());
    match get("k")? {
        "p" => Some(Event::Penalty {
            client: get("v")?.parse().ok()?,
            until: until?,
            trapped: get("t") == Some("1"),
        }),
        "b" => Some(Event::Ban(Ban {
            net: get("v")?.parse().ok()?,
            until: until?,
            reason: get("r").unwrap_or("").to_string(),
        })),
        "u" => Some(Event::Unban(get("v")?.parse().ok()?)),
        "r" => Some(Event::Revoke {
            id: u64::from_str_radix(get("v")?, 16).ok()?,
            until: until?,
        }),
        _ => None,
    }
}

impl Backend for RedisBackend {
    fn check_quota<'a>(
        &'a self,
        limit: &'a SharedLimit,
    ) -> BoxFuture<'a, Result<LimitOutcome, BackendError>> {
        Box::pin(async move {
            let mut c = self.conn()?;
            let r: Vec<i64> = self
                .gcra
                .key(self.key(&format!("q:{}", limit.key)))
                .arg(limit.emission_us.max(1))
                .arg(limit.burst.max(1))
                .arg(limit.deferred)
                .invoke_async(&mut c)
                .await
                .map_err(err)?;
            let get = |i: usize| r.get(i).copied().unwrap_or(0);
            Ok(LimitOutcome {
                allowed: get(0) == 1,
                remaining: u32::try_from(get(1).max(0)).unwrap_or(u32::MAX),
                retry_after: micros_to_secs(get(2)).max(u64::from(get(0) != 1)),
                reset: micros_to_secs(get(3)),
            })
        })
    }

    fn push<'a>(
        &'a self,
        batch: &'a Batch,
    ) -> BoxFuture<'a, Result<Vec<CountTotals>, BackendError>> {
        Box::pin(async move {
            let mut c = self.conn()?;
            if !batch.events.is_empty() {
                let mut p = redis::pipe();
                let stream = self.key("ev");
                for e in &batch.events {
                    match e {
                        Event::Penalty {
                            client,
                            until,
                            trapped,
                        } => {
                            p.cmd("ZADD")
                                .arg(self.key("pen"))
                                .arg("GT")
                                .arg(*until)
                                .arg(format!("{client} {}", if *trapped { 't' } else { 'n' }))
                                .ignore();
                        }
                        Event::Ban(b) => {
                            p.cmd("ZADD")
                                .arg(self.key("bans"))
                                .arg(b.until)
                                .arg(b.net.to_string())
                                .ignore();
                            p.cmd("HSET")
                                .arg(self.key("banr"))
                                .arg(b.net.to_string())
                                .arg(&b.reason)
                                .ignore();
                        }
                        Event::Unban(n) => {
                            p.cmd("ZREM")
                                .arg(self.key("bans"))
                                .arg(n.to_string())
                                .ignore();
                            p.cmd("HDEL")
                                .arg(self.key("banr"))
                                .arg(n.to_string())
                                .ignore();
                        }
                        Event::Revoke { id, until } => {
                            p.cmd("ZADD")
                                .arg(self.key("rev"))
                                .arg("GT")
                                .arg(*until)
                                .arg(format!("{id:016x}"))
                                .ignore();
                        }
                    }
                    let mut x = redis::cmd("XADD");
                    x.arg(&stream)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(STREAM_LEN)
                        .arg("*");
                    for (k, v) in fields(e) {
                        x.arg(k).arg(v);
                    }
                    p.add_command(x).ignore();
                }
                // Ended entries go as new ones come, so the sets hold what
                // is in force (and the penalties at most the tracked-client
                // cap, the soonest-ending first).
                self.prune(&mut p, crate::challenge::unix_now());
                p.cmd("ZREMRANGEBYRANK")
                    .arg(self.key("pen"))
                    .arg(0)
                    .arg(-(self.max_penalties as i64) - 1)
                    .ignore();
                p.query_async::<()>(&mut c).await.map_err(err)?;
            }
            let mut totals = Vec::with_capacity(batch.counts.len());
            let ttl_ms = batch.window_secs.saturating_mul(2000).max(1000);
            for chunk in batch.counts.chunks(COUNTS_PER_TRIP) {
                let mut p = redis::pipe();
                for d in chunk {
                    let k = self.key(&format!("b:{}:{}", d.window, d.client));
                    for (f, n) in [
                        ("r", d.delta.requests),
                        ("p", d.delta.pages),
                        ("i", d.delta.images),
                        ("n", d.delta.not_found),
                    ] {
                        p.cmd("HINCRBY").arg(&k).arg(f).arg(n);
                    }
                    p.cmd("PEXPIRE").arg(&k).arg(ttl_ms).ignore();
                }
                let r: Vec<i64> = p.query_async(&mut c).await.map_err(err)?;
                for (d, v) in chunk.iter().zip(r.chunks(4)) {
                    let g = |i: usize| u32::try_from(v.get(i).copied().unwrap_or(0)).unwrap_or(0);
                    totals.push(CountTotals {
                        client: d.client,
                        window: d.window,
                        totals: Counts {
                            requests: g(0),
                            pages: g(1),
                            images: g(2),
                            not_found: g(3),
                        },
                    });
                }
            }
            Ok(totals)
        })
    }

    fn pull<'a>(
        &'a self,
        cursor: &'a str,
    ) -> BoxFuture<'a, Result<(Vec<Event>, String), BackendError>> {
        Box::pin(async move {
            let mut c = self.conn()?;
            let v: Value = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1000)
                .arg("STREAMS")
                .arg(self.key("ev"))
                .arg(cursor)
                .query_async(&mut c)
                .await
                .map_err(err)?;
            let mut next = cursor.to_string();
            let mut events = Vec::new();
            // RESP2: [[stream, [[id, [f, v, …]], …]]]; RESP3: {stream: …}.
            let streams: Vec<&Value> = match &v {
                Value::Map(m) => m.iter().map(|(_, v)| v).collect(),
                Value::Array(a) => a.iter().filter_map(|s| items(s).get(1)).collect(),
                _ => Vec::new(),
            };
            for entries in streams {
                for entry in items(entries) {
                    let (Some(id), Some(f)) = (items(entry).first(), items(entry).get(1)) else {
                        continue;
                    };
                    if let Some(id) = text(id) {
                        next = id;
                    }
                    if let Some(e) = event_of(&pairs(f)) {
                        events.push(e);
                    }
                }
            }
            Ok((events, next))
        })
    }

    fn claim_once<'a>(
        &'a self,
        id: &'a [u8],
        ttl_secs: u64,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let mut c = self.conn()?;
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let v: Value = redis::cmd("SET")
                .arg(self.key(&format!("spent:{hex}")))
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(ttl_secs.max(1))
                .query_async(&mut c)
                .await
                .map_err(err)?;
            Ok(!matches!(v, Value::Nil))
        })
    }

    fn snapshot(&self, now: u64) -> BoxFuture<'_, Result<(Vec<Event>, String), BackendError>> {
        Box::pin(async move {
            let mut c = self.conn()?;
            let mut p = redis::pipe();
            p.cmd("XREVRANGE")
                .arg(self.key("ev"))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
            self.prune(&mut p, now);
            for set in ["pen", "bans", "rev"] {
                p.cmd("ZRANGEBYSCORE")
                    .arg(self.key(set))
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(self.max_penalties);
            }
            p.cmd("HGETALL").arg(self.key("banr"));
            let r: Vec<Value> = p.query_async(&mut c).await.map_err(err)?;
            let cursor = r
                .first()
                .and_then(|v| items(v).first())
                .and_then(|e| items(e).first())
                .and_then(text)
                .unwrap_or_else(|| "0-0".into());
            let scored = |v: Option<&Value>| -> Vec<(String, u64)> {
                v.map(pairs)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(m, s)| (m, s.parse::<f64>().unwrap_or(0.0) as u64))
                    .collect()
            };
            let reasons = pairs(r.get(4).unwrap_or(&Value::Nil));
            let mut events = Vec::new();
            for (m, until) in scored(r.get(1)) {
                let (ip, t) = m.split_once(' ').unwrap_or((m.as_str(), "n"));
                if let Ok(client) = ip.parse() {
                    events.push(Event::Penalty {
                        client,
                        until,
                        trapped: t == "t",
                    });
                }
            }
            for (m, until) in scored(r.get(2)) {
                if let Ok(net) = m.parse() {
                    let reason = reasons
                        .iter()
                        .find(|(n, _)| *n == m)
                        .map(|(_, r)| r.clone())
                        .unwrap_or_default();
                    events.push(Event::Ban(Ban { net, until, reason }));
                }
            }
            for (m, until) in scored(r.get(3)) {
                if let Ok(id) = u64::from_str_radix(&m, 16) {
                    events.push(Event::Revoke { id, until });
                }
            }
            Ok((events, cursor))
        })
    }
}

/// The node's link to its fleet (or, with the memory backend, just the
/// mirror that outlives reloads).
pub struct FleetLink {
    /// The local mirror every engine generation reads.
    pub fleet: Arc<Fleet>,
    backend: Option<Arc<RedisBackend>>,
    up: AtomicBool,
    /// An incident has been logged and not yet closed.
    incident: AtomicBool,
    timeout: Duration,
    wake: tokio::sync::Notify,
    metrics: Arc<Metrics>,
    /// Where the store is, for messages (no password).
    pub url: String,
}

impl FleetLink {
    /// A link for `config`; with a shared backend, starts its thread (the
    /// store is reached lazily: a node starts even when it is down).
    pub fn start(config: &Config, metrics: Arc<Metrics>) -> Result<Arc<FleetLink>, String> {
        let fleet = Arc::new(Fleet::new(config));
        let shared = config.state.shared();
        metrics.state_up.set(i64::from(!shared));
        if !shared {
            return Ok(Arc::new(FleetLink {
                fleet,
                backend: None,
                up: AtomicBool::new(true),
                incident: AtomicBool::new(false),
                timeout: config.state.timeout,
                wake: tokio::sync::Notify::new(),
                metrics,
                url: String::new(),
            }));
        }
        // Fail now, not in the thread, on a URL the client refuses.
        client(&config.state)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let cfg = config.clone();
        let interval = config.state.sync_interval;
        let sync_timeout = config.state.connect_timeout + Duration::from_millis(500);
        std::thread::Builder::new()
            .name("fixative-state".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(format!("state backend: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let link = match RedisBackend::new(&cfg) {
                        Ok(b) => Arc::new(FleetLink {
                            fleet,
                            backend: Some(Arc::new(b)),
                            up: AtomicBool::new(false),
                            incident: AtomicBool::new(false),
                            timeout: cfg.state.timeout,
                            wake: tokio::sync::Notify::new(),
                            metrics,
                            url: cfg.state.url_redacted(),
                        }),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(link.clone()));
                    link.sync_forever(interval, sync_timeout).await;
                });
            })
            .map_err(|e| format!("state backend: cannot start its thread: {e}"))?;
        rx.recv()
            .map_err(|_| "state backend: its thread ended".to_string())?
    }

    /// Whether the shared store answers (always with memory).
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Whether state is shared with a fleet.
    pub fn shared(&self) -> bool {
        self.backend.is_some()
    }

    /// Asks for a sync now (after a ban).
    pub fn sync_soon(&self) {
        self.wake.notify_one();
    }

    fn went_down(&self, op: &str, e: &str) {
        self.metrics.state_errors.with_label_values(&[op]).inc();
        self.up.store(false, Ordering::Release);
        self.metrics.state_up.set(0);
        if !self.incident.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "state backend {} unreachable ({op}: {e}); this node decides alone until it answers again",
                self.url
            );
        }
    }

    fn came_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.metrics.state_up.set(1);
            if self.incident.swap(false, Ordering::AcqRel) {
                tracing::info!(
                    "state backend {} answers again; fleet state reloaded",
                    self.url
                );
            } else {
                tracing::info!("state backend {} connected", self.url);
            }
        }
    }

    async fn sync_forever(&self, interval: Duration, limit: Duration) {
        let Some(backend) = self.backend.clone() else {
            return;
        };
        let mut cursor: Option<String> = None;
        loop {
            let now = crate::challenge::unix_now();
            match &cursor {
                None => match tokio::time::timeout(limit, backend.snapshot(now)).await {
                    Ok(Ok((events, c))) => {
                        for e in &events {
                            self.fleet.apply(e);
                        }
                        cursor = Some(c);
                        self.came_up();
                        // Send what waited at once.
                        continue;
                    }
                    Ok(Err(e)) => self.went_down("snapshot", &e.0),
                    Err(_) => self.went_down("snapshot", "timed out"),
                },
                Some(c) => {
                    let r = tokio::time::timeout(
                        limit,
                        fixative_rules::fleet::sync_once(&self.fleet, backend.as_ref(), c),
                    )
                    .await;
                    match r {
                        Ok(Ok(s)) => {
                            let m = &self.metrics.state_events;
                            m.with_label_values(&["received"]).inc_by(s.received as u64);
                            m.with_label_values(&["sent"]).inc_by(s.sent as u64);
                            cursor = Some(s.cursor);
                            self.came_up();
                        }
                        Ok(Err(e)) => {
                            self.went_down("sync", &e.0);
                            cursor = None;
                        }
                        Err(_) => {
                            self.went_down("sync", "timed out");
                            cursor = None;
                        }
                    }
                }
            }
            self.metrics.state_dropped.set(self.fleet.dropped() as i64);
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Counts a request a `limit` rule allowed on this node against the
    /// fleet's quota: one round trip, at most `state.timeout`. When the
    /// store is down or slow the node's own decision stands.
    pub async fn settle(&self, v: &mut Verdict) {
        let Some(limit) = v.shared_limit.clone() else {
            return;
        };
        let by_local = |v: &mut Verdict| {
            v.shared_limit = None;
            self.metrics
                .state_decisions
                .with_label_values(&["local"])
                .inc();
        };
        let Some(backend) = &self.backend else {
            return by_local(v);
        };
        if !self.up() {
            return by_local(v);
        }
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, backend.check_quota(&limit)).await {
            Ok(Ok(o)) => {
                self.metrics
                    .state_quota_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics
                    .state_decisions
                    .with_label_values(&["fleet"])
                    .inc();
                fixative_rules::Engine::settle_limit(v, o);
            }
            Ok(Err(e)) => {
                self.went_down("quota", &e.0);
                by_local(v);
            }
            Err(_) => {
                // Slow, perhaps not down: count it, let the sync loop judge.
                self.metrics
                    .state_errors
                    .with_label_values(&["quota_timeout"])
                    .inc();
                by_local(v);
            }
        }
    }

    /// Whether a solved challenge is used for the first time in the fleet
    /// (its nonce is claimed on the store for `ttl_secs`). Without an
    /// answer in time it counts as fresh: this node's own record of spent
    /// challenges has already refused a replay here.
    pub async fn claim_once(&self, nonce: &[u8], ttl_secs: u64) -> bool {
        let Some(backend) = &self.backend else {
            return true;
        };
        if !self.up() {
            return true;
        }
        match tokio::time::timeout(self.timeout, backend.claim_once(nonce, ttl_secs)).await {
            Ok(Ok(fresh)) => fresh,
            Ok(Err(e)) => {
                self.went_down("claim", &e.0);
                true
            }
            Err(_) => {
                self.metrics
                    .state_errors
                    .with_label_values(&["claim_timeout"])
                    .inc();
                true
            }
        }
    }

    /// Records a ban on every node.
    pub fn ban(&self, ban: Ban) {
        self.fleet.publish(Event::Ban(ban));
        self.sync_soon();
    }

    /// Lifts a ban on every node.
    pub fn unban(&self, net: ipnet::IpNet) {
        self.fleet.publish(Event::Unban(net));
        self.sync_soon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_stream_fields() {
        let evs = [
            Event::Penalty {
                client: "2001:db8:1:2::".parse().unwrap(),
                until: 99,
                trapped: true,
            },
            Event::Ban(Ban {
                net: "203.0.113.0/24".parse().unwrap(),
                until: 7,
                reason: "scraping; see ticket 4".into(),
            }),
            Event::Unban("10.0.0.1/32".parse().unwrap()),
            Event::Revoke {
                id: 0xdead_beef_0000_0001,
                until: 5,
            },
        ];
        for e in evs {
            let f: Vec<(String, String)> = fields(&e)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            assert_eq!(event_of(&f), Some(e));
        }
        assert_eq!(event_of(&[("k".into(), "zz".into())]), None);
        assert_eq!(
            event_of(&[("k".into(), "p".into()), ("v".into(), "x".into())]),
            None
        );
    }
}
