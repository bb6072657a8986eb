//! State a fleet of nodes shares: bans, penalties, revoked passes,
//! behaviour counts and rate-limit quotas.
//!
//! The engine never waits for a network. It reads a local mirror
//! ([`Fleet`]) synchronously; what this node learns (a trap hit, a 404
//! burst, a ban) goes into the mirror at once and into a bounded outbox,
//! which the proxy sends to the shared store ([`Backend`]) in the
//! background, together with the other nodes' events it reads back.
//! Quotas are the one decision taken on the store itself (GCRA, one round
//! trip), and only for requests a `limit` rule applies to: the engine marks
//! them with a [`SharedLimit`] after its local limiter has allowed them,
//! and the proxy settles them with [`Backend::check_quota`] under a
//! timeout ([`crate::Engine::settle_limit`]).
//!
//! With the `memory` backend the mirror is the only copy: nothing is sent,
//! and bans and penalties outlive reloads because the mirror does.
//!
//! Memory is bounded: penalties and counts are LRU maps of at most the
//! configured number of tracked clients, bans are capped (`state.max_bans`,
//! the soonest to expire dropped first), the outbox holds at most
//! [`OUTBOX_EVENTS`] events and [`OUTBOX_CLIENTS`] clients with unsent
//! counts; what does not fit is counted in [`Fleet::dropped`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use ipnet::IpNet;
use lru::LruCache;

use crate::state::{LimitOutcome, RequestKind, client_key};

/// Events a node keeps for sending at most.
pub const OUTBOX_EVENTS: usize = 10_000;
/// Clients with unsent counts at most.
pub const OUTBOX_CLIENTS: usize = 65_536;

const SHARDS: usize = 16;

/// A ban: every client in `net` is refused until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The banned network (a single address is a /32 or /128).
    pub net: IpNet,
    /// Unix seconds.
    pub until: u64,
    /// Why (shown in the verdict and `GET /-/bans`).
    pub reason: String,
}

/// Something one node learnt that every node should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client (its client key) is penalised until `until` (Unix s).
    Penalty {
        /// Client key (IPv4 address, IPv6 /64).
        client: IpAddr,
        /// Unix seconds.
        until: u64,
        /// From the robots.txt trap (else a 404 burst).
        trapped: bool,
    },
    /// A network is banned.
    Ban(Ban),
    /// A ban is lifted.
    Unban(IpNet),
    /// A pass (by [`pass_id`]) no longer counts, until it would expire.
    Revoke {
        /// The pass.
        id: u64,
        /// Unix seconds.
        until: u64,
    },
}

/// Behaviour counters of one client in one fixed window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests.
    pub requests: u32,
    /// HTML pages.
    pub pages: u32,
    /// Images.
    pub images: u32,
    /// 404 answers.
    pub not_found: u32,
}

impl Counts {
    fn add(self, o: Counts) -> Counts {
        Counts {
            requests: self.requests.saturating_add(o.requests),
            pages: self.pages.saturating_add(o.pages),
            images: self.images.saturating_add(o.images),
            not_found: self.not_found.saturating_add(o.not_found),
        }
    }
    fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// Unsent counts of one client, as the backend sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountDelta {
    /// Client key.
    pub client: IpAddr,
    /// Window number (Unix seconds / window length).
    pub window: u64,
    /// Increments.
    pub delta: Counts,
}

/// What a node sends in one round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Events, oldest first.
    pub events: Vec<Event>,
    /// Counter increments.
    pub counts: Vec<CountDelta>,
    /// Length of a counting window, seconds (keys expire after two).
    pub window_secs: u64,
}

/// A request a `limit` rule applies to, allowed by this node's limiter,
/// to be counted against the fleet's quota.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SharedLimit {
    /// Store key: policy, rule and limiter key.
    pub key: String,
    /// Time between two requests at the sustained rate, microseconds.
    pub emission_us: u64,
    /// Requests allowed in a burst.
    pub burst: u32,
    /// The rule is in observe mode (a refusal is only reported).
    pub observe: bool,
    /// Requests this node admitted earlier without asking (the client was
    /// far from the limit), counted first.
    pub deferred: u32,
}

/// Why the shared store could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError(pub String);

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BackendError {}

/// A boxed future, so that the trait stays object-safe without a runtime.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Counter totals for one client, as the store answers a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountTotals {
    /// Client key.
    pub client: IpAddr,
    /// Window number.
    pub window: u64,
    /// The fleet's totals (this node's sent increments included).
    pub totals: Counts,
}

/// A store shared by a fleet. The proxy implements it on Redis; every call
/// is one round trip and the caller bounds it with a timeout.
pub trait Backend: Send + Sync {
    /// Counts one request against a quota, atomically on the store (GCRA
    /// on the store's clock).
    fn check_quota<'a>(
        &'a self,
        limit: &'a SharedLimit,
    ) -> BoxFuture<'a, Result<LimitOutcome, BackendError>>;

    /// Sends a batch; answers the fleet's totals of the counts sent.
    fn push<'a>(
        &'a self,
        batch: &'a Batch,
    ) -> BoxFuture<'a, Result<Vec<CountTotals>, BackendError>>;

    /// Events written after `cursor` (by any node), and the new cursor.
    fn pull<'a>(
        &'a self,
        cursor: &'a str,
    ) -> BoxFuture<'a, Result<(Vec<Event>, String), BackendError>>;

    /// Every ban, penalty and revocation in force at `now` (Unix s), and
    /// the cursor to pull from afterwards: after a start or an outage.
    fn snapshot(&self, now: u64) -> BoxFuture<'_, Result<(Vec<Event>, String), BackendError>>;

    /// Claims a single-use token (a solved challenge) for `ttl_secs`:
    /// `true` the first time on any node, `false` after.
    fn claim_once<'a>(
        &'a self,
        id: &'a [u8],
        ttl_secs: u64,
    ) -> BoxFuture<'a, Result<bool, BackendError>>;
}

/// The identifier of a pass token (the same on every node).
pub fn pass_id(token: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(token.as_bytes());
    let mut b = [0u8; 8];
    for (o, i) in b.iter_mut().zip(d.iter()) {
        *o = *i;
    }
    u64::from_be_bytes(b)
}

#[derive(Debug, Clone, Copy)]
struct Penalty {
    until: u64,
    trapped: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    window: u64,
    /// The fleet's totals as last answered (this node's sent counts in).
    base: Counts,
    /// Counted here, not yet sent.
    pending: Counts,
    /// In the outbox's list of clients to send.
    queued: bool,
    /// The fleet's requests of the previous window (0 when older).
    previous: u32,
}

/// What the fleet has seen of a client, as [`Fleet::count`] answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// This window's counts (this request included).
    pub counts: Counts,
    /// Requests in the previous window.
    pub previous_requests: u32,
}

impl Seen {
    /// Requests over this window and the previous one.
    pub fn recent_requests(&self) -> u32 {
        self.counts.requests.saturating_add(self.previous_requests)
    }
}

struct Bans {
    by_net: HashMap<IpNet, Ban>,
    /// How many bans have each prefix length (IPv4 0–32, IPv6 33+ offset).
    lengths: [u32; 33 + 129],
}

impl Default for Bans {
    fn default() -> Self {
        Bans {
            by_net: HashMap::new(),
            lengths: [0; 33 + 129],
        }
    }
}

impl Bans {
    fn slot(net: &IpNet) -> usize {
        match net {
            IpNet::V4(n) => usize::from(n.prefix_len()),
            IpNet::V6(n) => 33 + usize::from(n.prefix_len()),
        }
    }
    fn insert(&mut self, b: Ban) {
        let slot = Bans::slot(&b.net);
        if self.by_net.insert(b.net, b).is_none()
            && let Some(n) = self.lengths.get_mut(slot)
        {
            *n += 1;
        }
    }
    fn remove(&mut self, net: &IpNet) {
        if self.by_net.remove(net).is_some()
            && let Some(n) = self.lengths.get_mut(Bans::slot(net))
        {
            *n = n.saturating_sub(1);
        }
    }
    /// The ban covering `ip`, looking up only prefix lengths in use.
    fn find(&self, ip: IpAddr) -> Option<&Ban> {
        let (lo, hi, max) = match ip {
            IpAddr::V4(_) => (0usize, 33usize, 32u8),
            IpAddr::V6(_) => (33, 33 + 129, 128),
        };
        for slot in (lo..hi).rev() {
            if self.lengths.get(slot).copied().unwrap_or(0) == 0 {
                continue;
            }
            let len = (slot - lo) as u8;
            let Ok(net) = IpNet::new(ip, len.min(max)) else {
                continue;
            };
            if let Some(b) = self.by_net.get(&net.trunc()) {
                return Some(b);
            }
        }
        None
    }
}

struct Outbox {
    events: VecDeque<Event>,
    clients: Vec<IpAddr>,
}

/// The local mirror of a fleet's state (see the module documentation).
pub struct Fleet {
    shared: bool,
    window_secs: u64,
    max_bans: usize,
    bans: RwLock<Bans>,
    any_bans: AtomicBool,
    penalties: Vec<Mutex<LruCache<IpAddr, Penalty>>>,
    /// The latest end of any penalty applied: past it, none is active and
    /// no lookup is needed (most traffic, most of the time).
    penalties_until: AtomicU64,
    tallies: Vec<Mutex<LruCache<IpAddr, Tally>>>,
    revoked: Mutex<LruCache<u64, u64>>,
    any_revoked: AtomicBool,
    outbox: Mutex<Outbox>,
    /// Requests admitted here under a quota without asking the store yet
    /// (by quota key hash); sent with the key's next store decision.
    deferred: Mutex<LruCache<u64, u32>>,
    hasher: std::collections::hash_map::RandomState,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

fn shards<K: Hash + Eq, V>(cap: usize) -> Vec<Mutex<LruCache<K, V>>> {
    let per = NonZeroUsize::new(cap.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
    (0..SHARDS)
        .map(|_| Mutex::new(LruCache::new(per)))
        .collect()
}

impl Fleet {
    /// A mirror for `config`: shared when `[state] backend` is not
    /// `memory`; penalties and counts for at most
    /// `detection.max_tracked_clients` clients.
    pub fn new(config: &fixative_config::Config) -> Fleet {
        Fleet::with_limits(
            config.state.shared(),
            config.detection.max_tracked_clients,
            config.state.max_bans,
            config.detection.window.as_secs().max(1),
            config.challenge.max_spent,
        )
    }

    /// A mirror with explicit bounds.
    pub fn with_limits(
        shared: bool,
        max_clients: usize,
        max_bans: usize,
        window_secs: u64,
        max_revoked: usize,
    ) -> Fleet {
        Fleet {
            shared,
            window_secs: window_secs.max(1),
            max_bans: max_bans.max(1),
            bans: RwLock::new(Bans::default()),
            any_bans: AtomicBool::new(false),
            penalties: shards(max_clients),
            penalties_until: AtomicU64::new(0),
            tallies: shards(if shared { max_clients } else { 1 }),
            revoked: Mutex::new(LruCache::new(
                NonZeroUsize::new(max_revoked.max(1)).unwrap_or(NonZeroUsize::MIN),
            )),
            any_revoked: AtomicBool::new(false),
            outbox: Mutex::new(Outbox {
                events: VecDeque::new(),
                clients: Vec::new(),
            }),
            deferred: Mutex::new(LruCache::new(
                NonZeroUsize::new(if shared { max_clients.max(1) } else { 1 })
                    .unwrap_or(NonZeroUsize::MIN),
            )),
            hasher: std::collections::hash_map::RandomState::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether a fleet shares this state (else it is this node's alone).
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// Events and counts that did not fit the outbox.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn shard<'s, V>(&self, v: &'s [Mutex<V>], key: &IpAddr) -> Option<&'s Mutex<V>> {
        v.get((self.hasher.hash_one(key) as usize) % SHARDS)
    }

    fn send(&self, e: Event) {
        if !self.shared {
            return;
        }
        let mut o = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        if o.events.len() >= OUTBOX_EVENTS {
            // Newest first: the oldest unsent event goes.
            o.events.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        o.events.push_back(e);
    }

    /// Applies an event (from this node or another); returns whether it
    /// changed anything.
    pub fn apply(&self, e: &Event) -> bool {
        match e {
            Event::Penalty {
                client,
                until,
                trapped,
            } => {
                let key = client_key(*client);
                let Some(s) = self.shard(&self.penalties, &key) else {
                    return false;
                };
                // Raised before the entry exists, so that a lookup that
                // can see the entry also sees it may be active.
                self.penalties_until.fetch_max(*until, Ordering::AcqRel);
                let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
                let p = g.get_or_insert_mut(key, || Penalty {
                    until: 0,
                    trapped: false,
                });
                if *until > p.until || (*trapped && !p.trapped) {
                    p.until = p.until.max(*until);
                    p.trapped |= *trapped;
                    return true;
                }
                false
            }
            Event::Ban(b) => {
                let mut g = self.bans.write().unwrap_or_else(|e| e.into_inner());
                if g.by_net.get(&b.net) == Some(b) {
                    return false;
                }
                if !g.by_net.contains_key(&b.net) && g.by_net.len() >= self.max_bans {
                    // Full: the ban that ends soonest makes room.
                    let soonest = g.by_net.values().min_by_key(|b| b.until).map(|b| b.net);
                    if let Some(n) = soonest {
                        g.remove(&n);
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                g.insert(b.clone());
                self.any_bans.store(true, Ordering::Release);
                true
            }
            Event::Unban(net) => {
                let mut g = self.bans.write().unwrap_or_else(|e| e.into_inner());
                let had = g.by_net.contains_key(net);
                g.remove(net);
                self.any_bans.store(!g.by_net.is_empty(), Ordering::Release);
                had
            }
            Event::Revoke { id, until } => {
                let mut g = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
                let changed = g.put(*id, *until) != Some(*until);
                self.any_revoked.store(true, Ordering::Release);
                changed
            }
        }
    }

    /// Records what this node learnt: applied here, sent to the fleet.
    pub fn publish(&self, e: Event) {
        if self.apply(&e) {
            self.send(e);
        }
    }

    /// The ban covering `ip` at `now` (Unix s), if any.
    pub fn banned(&self, ip: IpAddr, now: u64) -> Option<Ban> {
        if !self.any_bans.load(Ordering::Acquire) {
            return None;
        }
        let g = self.bans.read().unwrap_or_else(|e| e.into_inner());
        g.find(ip).filter(|b| b.until > now).cloned()
    }

    /// Bans in force at `now`, most recent end first.
    pub fn bans(&self, now: u64) -> Vec<Ban> {
        let g = self.bans.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Ban> = g
            .by_net
            .values()
            .filter(|b| b.until > now)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.until.cmp(&a.until).then(a.net.cmp(&b.net)));
        v
    }

    /// Drops expired bans and revocations (call now and then).
    pub fn sweep(&self, now: u64) {
        {
            let mut g = self.bans.write().unwrap_or_else(|e| e.into_inner());
            let expired: Vec<IpNet> = g
                .by_net
                .values()
                .filter(|b| b.until <= now)
                .map(|b| b.net)
                .collect();
            for n in &expired {
                g.remove(n);
            }
            self.any_bans.store(!g.by_net.is_empty(), Ordering::Release);
        }
        let mut g = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        let expired: Vec<u64> = g
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            g.pop(&id);
        }
    }

    /// The penalty of a client at `now`: `Some(trapped)` while it lasts.
    pub fn penalty(&self, ip: IpAddr, now: u64) -> Option<bool> {
        if now >= self.penalties_until.load(Ordering::Acquire) {
            return None;
        }
        let key = client_key(ip);
        let s = self.shard(&self.penalties, &key)?;
        let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
        g.get(&key).filter(|p| p.until > now).map(|p| p.trapped)
    }

    /// Penalises a client (here and, when shared, on every node).
    pub fn penalise(&self, ip: IpAddr, until: u64, trapped: bool) {
        self.publish(Event::Penalty {
            client: client_key(ip),
            until,
            trapped,
        });
    }

    /// Whether any pass is revoked (so that passes are worth checking).
    pub fn has_revocations(&self) -> bool {
        self.any_revoked.load(Ordering::Acquire)
    }

    /// Whether a pass has been revoked (by any node).
    pub fn revoked(&self, id: u64, now: u64) -> bool {
        if !self.any_revoked.load(Ordering::Acquire) {
            return false;
        }
        let mut g = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        g.get(&id).is_some_and(|until| *until > now)
    }

    /// Counts a request (or, with `not_found`, a 404 answer) of a client
    /// in the fleet's current window and returns the fleet's counts
    /// including it: the totals last answered by the store plus what this
    /// node has counted since (so they lag other nodes by at most one sync
    /// interval). `None` when nothing is shared.
    pub fn count(
        &self,
        ip: IpAddr,
        now: u64,
        kind: Option<RequestKind>,
        not_found: bool,
    ) -> Option<Seen> {
        if !self.shared {
            return None;
        }
        let key = client_key(ip);
        let window = now / self.window_secs;
        let mut queue = false;
        let total = {
            let s = self.shard(&self.tallies, &key)?;
            let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
            let t = g.get_or_insert_mut(key, Tally::default);
            if t.window != window {
                let previous = if window == t.window.saturating_add(1) {
                    t.base.add(t.pending).requests
                } else {
                    0
                };
                *t = Tally {
                    window,
                    queued: t.queued,
                    previous,
                    ..Tally::default()
                };
            }
            let mut d = Counts::default();
            if let Some(k) = kind {
                d.requests = 1;
                match k {
                    RequestKind::Page => d.pages = 1,
                    RequestKind::Image => d.images = 1,
                    RequestKind::Other => {}
                }
            }
            if not_found {
                d.not_found = 1;
            }
            t.pending = t.pending.add(d);
            if !t.queued {
                t.queued = true;
                queue = true;
            }
            Seen {
                counts: t.base.add(t.pending),
                previous_requests: t.previous,
            }
        };
        if queue && !self.queue_client(key) {
            // Not queued after all: the next request tries again.
            if let Some(s) = self.shard(&self.tallies, &key) {
                let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(t) = g.peek_mut(&key) {
                    t.queued = false;
                }
            }
        }
        Some(total)
    }

    /// Records a request admitted under a quota without asking the store
    /// (the client is far from the limit).
    pub fn defer(&self, quota_key: u64) {
        let mut g = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        let n = g.get_or_insert_mut(quota_key, || 0);
        *n = n.saturating_add(1);
    }

    /// Takes the requests admitted under a quota without the store, to be
    /// counted with its next decision.
    pub fn take_deferred(&self, quota_key: u64) -> u32 {
        let mut g = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        g.pop(&quota_key).unwrap_or(0)
    }

    /// Takes what is to be sent: the events and every queued client's
    /// unsent counts (moved into its base, as the store will add them).
    pub fn take_batch(&self) -> Batch {
        let (events, clients) = {
            let mut o = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
            (
                o.events.drain(..).collect::<Vec<_>>(),
                std::mem::take(&mut o.clients),
            )
        };
        let mut counts = Vec::with_capacity(clients.len());
        for c in clients {
            let Some(s) = self.shard(&self.tallies, &c) else {
                continue;
            };
            let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = g.peek_mut(&c) {
                t.queued = false;
                if !t.pending.is_zero() {
                    counts.push(CountDelta {
                        client: c,
                        window: t.window,
                        delta: t.pending,
                    });
                    t.base = t.base.add(t.pending);
                    t.pending = Counts::default();
                }
            }
        }
        Batch {
            events,
            counts,
            window_secs: self.window_secs,
        }
    }

    /// Puts a batch that could not be sent back at the front of the
    /// outbox (bounded as ever), so that an outage loses nothing that fits.
    pub fn requeue(&self, batch: Batch) {
        let mut o = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        for e in batch.events.into_iter().rev() {
            if o.events.len() >= OUTBOX_EVENTS {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            o.events.push_front(e);
        }
        drop(o);
        for d in batch.counts {
            let Some(s) = self.shard(&self.tallies, &d.client) else {
                continue;
            };
            let mut queue = false;
            {
                let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(t) = g.peek_mut(&d.client)
                    && t.window == d.window
                {
                    t.pending = t.pending.add(d.delta);
                    t.base = Counts {
                        requests: t.base.requests.saturating_sub(d.delta.requests),
                        pages: t.base.pages.saturating_sub(d.delta.pages),
                        images: t.base.images.saturating_sub(d.delta.images),
                        not_found: t.base.not_found.saturating_sub(d.delta.not_found),
                    };
                    if !t.queued {
                        t.queued = true;
                        queue = true;
                    }
                }
            }
            if queue {
                self.queue_client(d.client);
            }
        }
    }

    /// Puts a client on the list of counts to send; `false` (counted in
    /// [`Fleet::dropped`]) when the list is full.
    fn queue_client(&self, client: IpAddr) -> bool {
        let mut o = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        if o.clients.len() < OUTBOX_CLIENTS {
            o.clients.push(client);
            true
        } else {
            drop(o);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Whether anything waits to be sent.
    pub fn has_outgoing(&self) -> bool {
        let o = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        !o.events.is_empty() || !o.clients.is_empty()
    }

    /// Takes the fleet's totals answered for a batch.
    pub fn set_totals(&self, totals: &[CountTotals]) {
        for t in totals {
            let Some(s) = self.shard(&self.tallies, &t.client) else {
                continue;
            };
            let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(x) = g.peek_mut(&t.client)
                && x.window == t.window
            {
                x.base = t.totals;
            }
        }
    }
}

/// What one exchange did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Where to read from next time.
    pub cursor: String,
    /// Events sent.
    pub sent: usize,
    /// Events received (this node's own included).
    pub received: usize,
}

/// One exchange with the store: send this node's batch, take the fleet's
/// totals, read the events written since `cursor` and apply them. On an
/// error the batch is put back.
pub async fn sync_once(
    fleet: &Fleet,
    backend: &dyn Backend,
    cursor: &str,
) -> Result<Synced, BackendError> {
    let batch = fleet.take_batch();
    let sent = batch.events.len();
    if !batch.events.is_empty() || !batch.counts.is_empty() {
        match backend.push(&batch).await {
            Ok(totals) => fleet.set_totals(&totals),
            Err(e) => {
                fleet.requeue(batch);
                return Err(e);
            }
        }
    }
    let (events, next) = backend.pull(cursor).await?;
    for e in &events {
        fleet.apply(e);
    }
    Ok(Synced {
        cursor: next,
        sent,
        received: events.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bans_cover_their_networks_and_expire() {
        let f = Fleet::with_limits(false, 1000, 10, 60, 100);
        assert!(f.banned(ip("203.0.113.7"), 10).is_none());
        f.publish(Event::Ban(Ban {
            net: "203.0.113.0/24".parse().unwrap(),
            until: 100,
            reason: "scraper".into(),
        }));
        f.publish(Event::Ban(Ban {
            net: "2001:db8::/48".parse().unwrap(),
            until: 100,
            reason: "x".into(),
        }));
        assert_eq!(f.banned(ip("203.0.113.7"), 10).unwrap().reason, "scraper");
        assert!(f.banned(ip("203.0.114.7"), 10).is_none());
        assert!(f.banned(ip("2001:db8:0:ffff::1"), 10).is_some());
        assert!(f.banned(ip("2001:db8:1::1"), 10).is_none());
        assert!(f.banned(ip("203.0.113.7"), 100).is_none(), "expired");
        f.publish(Event::Unban("203.0.113.0/24".parse().unwrap()));
        assert!(f.banned(ip("203.0.113.7"), 10).is_none());
        // Nothing is queued without a fleet.
        assert!(!f.has_outgoing());
    }

    #[test]
    fn bans_are_capped_soonest_end_first() {
        let f = Fleet::with_limits(true, 1000, 3, 60, 100);
        for i in 0..5u8 {
            f.publish(Event::Ban(Ban {
                net: IpNet::new(IpAddr::from([10, 0, i, 1]), 32).unwrap(),
                until: 100 + u64::from(i),
                reason: String::new(),
            }));
        }
        let b = f.bans(0);
        assert_eq!(b.len(), 3);
        assert_eq!(b.last().unwrap().until, 102);
        assert_eq!(f.dropped(), 2);
    }

    #[test]
    fn penalties_keep_the_latest_end() {
        let f = Fleet::with_limits(true, 1000, 10, 60, 100);
        f.penalise(ip("2001:db8:1:2::5"), 50, true);
        f.apply(&Event::Penalty {
            client: ip("2001:db8:1:2::"),
            until: 40,
            trapped: false,
        });
        // Same /64.
        assert_eq!(f.penalty(ip("2001:db8:1:2:ffff::1"), 45), Some(true));
        assert_eq!(f.penalty(ip("2001:db8:1:2::9"), 50), None);
        let b = f.take_batch();
        assert_eq!(b.events.len(), 1, "a remote event is not sent again");
    }

    #[test]
    fn counts_merge_the_fleet_totals_with_unsent_ones() {
        let f = Fleet::with_limits(true, 1000, 10, 60, 100);
        let c = ip("198.51.100.9");
        for _ in 0..3 {
            f.count(c, 120, Some(RequestKind::Image), false);
        }
        let b = f.take_batch();
        assert_eq!(b.counts.len(), 1);
        assert_eq!(b.counts[0].delta.images, 3);
        assert_eq!(b.counts[0].window, 2);
        // The store answers that the fleet has seen 10 (7 elsewhere).
        f.set_totals(&[CountTotals {
            client: c,
            window: 2,
            totals: Counts {
                requests: 10,
                images: 10,
                ..Counts::default()
            },
        }]);
        let t = f
            .count(c, 121, Some(RequestKind::Image), false)
            .unwrap()
            .counts;
        assert_eq!((t.requests, t.images), (11, 11));
        // A batch that could not be sent comes back whole.
        let b = f.take_batch();
        assert_eq!(b.counts[0].delta.images, 1);
        f.requeue(b);
        let b = f.take_batch();
        assert_eq!(b.counts[0].delta.images, 1);
        // A new window starts from zero and remembers the previous one.
        let t = f.count(c, 180, Some(RequestKind::Page), false).unwrap();
        assert_eq!(
            (t.counts.requests, t.counts.pages, t.counts.images),
            (1, 1, 0)
        );
        assert_eq!((t.previous_requests, t.recent_requests()), (11, 12));
        let t = f.count(c, 300, Some(RequestKind::Page), false).unwrap();
        assert_eq!(t.previous_requests, 0, "two windows later");
        // Deferred admissions are taken once.
        f.defer(42);
        f.defer(42);
        assert_eq!((f.take_deferred(42), f.take_deferred(42)), (2, 0));
    }

    #[test]
    fn the_outbox_is_bounded() {
        let f = Fleet::with_limits(true, 100, 10, 60, 100);
        for i in 0..(OUTBOX_EVENTS as u32 + 50) {
            f.penalise(IpAddr::from(i.to_be_bytes()), 100, true);
        }
        assert_eq!(f.take_batch().events.len(), OUTBOX_EVENTS);
        assert_eq!(f.dropped(), 50);
        // Tallies are capped by the tracked-client bound.
        for i in 0..10_000u32 {
            f.count(
                IpAddr::from(i.to_be_bytes()),
                1,
                Some(RequestKind::Page),
                false,
            );
        }
        assert!(f.take_batch().counts.len() <= 10_000);
        let tracked: usize = f.tallies.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(tracked <= 112, "{tracked}");
    }

    #[test]
    fn revocations_expire() {
        let f = Fleet::with_limits(true, 100, 10, 60, 2);
        let id = pass_id("token");
        assert_eq!(id, pass_id("token"));
        assert!(!f.revoked(id, 0));
        f.publish(Event::Revoke { id, until: 10 });
        assert!(f.revoked(id, 5));
        assert!(!f.revoked(id, 10));
        f.sweep(11);
        assert!(!f.revoked(id, 0));
    }
}
