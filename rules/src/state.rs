//! Per-client state: rate limiters and behaviour, bounded in memory.
//!
//! Time is passed in by the caller (`now`, time since an arbitrary epoch),
//! so the proxy uses a monotonic clock and `fixative replay` the log's own
//! timestamps.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use fixative_config::{Quota, QuotaKey};
use governor::clock::Clock;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{Quota as GQuota, RateLimiter};
use lru::LruCache;

/// A clock whose time the caller sets before each decision.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(std::sync::Arc<AtomicU64>);

impl ManualClock {
    /// Moves the clock forward to `now` (never backwards).
    pub fn set(&self, now: Duration) {
        let n = now.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.0.fetch_max(n, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.0.load(Ordering::Relaxed))
    }
}

/// A limiter key: no allocation, bounded size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// A client address or network.
    Ip(IpAddr),
    /// An autonomous system.
    Asn(u32),
    /// A crawler, by hash of its name.
    Crawler(u64),
}

/// A keyed store shared with its [`QuotaLimiter`], which decides where a
/// key goes before the limiter sees it (the cap is enforced there).
#[derive(Debug, Clone, Default)]
pub struct SharedStore {
    inner: std::sync::Arc<DashMapStateStore<LimitKey>>,
}

impl StateStore for SharedStore {
    type Key = LimitKey;
    fn measure_and_replace<T, F, E>(&self, key: &LimitKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.inner.measure_and_replace(key, f)
    }
}

type Limiter = RateLimiter<LimitKey, SharedStore, ManualClock, StateInformationMiddleware>;

/// Outcome of a quota check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitOutcome {
    /// Within quota.
    pub allowed: bool,
    /// Requests left in the current burst.
    pub remaining: u32,
    /// Seconds until a request would be allowed (0 when allowed).
    pub retry_after: u64,
    /// Seconds until the bucket is full again.
    pub reset: u64,
}

/// One limiter per rule with a quota.
///
/// Memory is capped at `cap` keys per client key plus `cap / 4` network
/// aggregates. When the table is full, idle keys are swept at once (at
/// most once a second); if it is still full, a new client is counted in
/// the bucket of its wider network (IPv4 /24, IPv6 /48) with 64 times the
/// quota, and when that table is full too the request is allowed and
/// counted as `failed_open`. An attacker who fills the table with fresh
/// addresses thus gets its own networks limited and never puts other
/// people's first requests into a shared 429.
pub struct QuotaLimiter {
    limiter: Limiter,
    store: SharedStore,
    cap: usize,
    /// Limiter and store for network aggregates.
    wide: Limiter,
    wide_store: SharedStore,
    wide_cap: usize,
    quota: Quota,
    clock: ManualClock,
    /// Limiter time (ns) of the last sweep forced by a full table.
    last_forced_sweep: AtomicU64,
    aggregated: AtomicU64,
    failed_open: AtomicU64,
    /// Checks that may still pass [`Self::has_room`] without looking at
    /// the table: the room it had when last counted (each check adds at
    /// most one key, so the table cannot pass its cap before the next
    /// count). Saves a table lookup per request while the table is not
    /// nearly full, which is the common case.
    known_room: AtomicUsize,
}

/// How many times the quota a network aggregate gets.
pub const AGGREGATE_FACTOR: u32 = 64;

/// Counts of decisions taken while a limiter table was full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverflowCounts {
    /// Requests counted in a network aggregate.
    pub aggregated: u64,
    /// Requests allowed because both tables were full.
    pub failed_open: u64,
}

/// The wider network a client key falls back to: IPv4 /24, IPv6 /48.
pub fn aggregate_of(key: &LimitKey) -> Option<LimitKey> {
    match key {
        LimitKey::Ip(IpAddr::V4(v4)) => {
            let o = v4.octets();
            Some(LimitKey::Ip(IpAddr::from([o[0], o[1], o[2], 0])))
        }
        LimitKey::Ip(IpAddr::V6(v6)) => {
            let s = v6.segments();
            Some(LimitKey::Ip(IpAddr::from([
                s[0], s[1], s[2], 0, 0, 0, 0, 0,
            ])))
        }
        _ => None,
    }
}

fn governor_limiter(quota: &Quota, factor: u32, store: SharedStore, clock: ManualClock) -> Limiter {
    let burst = std::num::NonZeroU32::new(quota.burst.max(1).saturating_mul(factor))
        .unwrap_or(std::num::NonZeroU32::MIN);
    let rate = quota.rate.max(1).saturating_mul(factor);
    let replenish = quota.period / rate;
    let gq = GQuota::with_period(replenish.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| GQuota::per_second(std::num::NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::<LimitKey, SharedStore, ManualClock, NoOpMiddleware<Nanos>>::new(gq, store, clock)
        .with_middleware::<StateInformationMiddleware>()
}

impl std::fmt::Debug for QuotaLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaLimiter")
            .field("quota", &self.quota)
            .finish()
    }
}

/// Masks an address to its /24 (IPv4) or /64 (IPv6) network.
pub fn prefix_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::from([o[0], o[1], o[2], 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
    }
}

/// IPv6 clients are tracked per /64 (one subscriber); IPv4 per address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => prefix_of(ip),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl QuotaLimiter {
    /// A limiter for `quota` with at most `cap` live keys.
    pub fn new(quota: Quota, cap: usize, clock: ManualClock) -> QuotaLimiter {
        let store = SharedStore::default();
        let wide_store = SharedStore::default();
        QuotaLimiter {
            limiter: governor_limiter(&quota, 1, store.clone(), clock.clone()),
            store,
            cap: cap.max(1),
            wide: governor_limiter(&quota, AGGREGATE_FACTOR, wide_store.clone(), clock.clone()),
            wide_store,
            wide_cap: (cap / 4).max(1),
            quota,
            clock,
            last_forced_sweep: AtomicU64::new(0),
            aggregated: AtomicU64::new(0),
            failed_open: AtomicU64::new(0),
            known_room: AtomicUsize::new(0),
        }
    }

    /// Whether `key` has (or may take) a place in the per-client table.
    fn has_room(&self, key: &LimitKey) -> bool {
        let spent = self
            .known_room
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1));
        if spent.is_ok() {
            return true;
        }
        // `contains_key` first: one shard; `len` visits every shard.
        if self.store.inner.contains_key(key) {
            return true;
        }
        let len = self.store.inner.len();
        // Counted: this check may take one place, the next ones half of
        // the rest (checks counting at the same time each take one too,
        // as before this shortcut; the last count stored wins).
        self.known_room.store(
            self.cap.saturating_sub(len).saturating_sub(1) / 2,
            Ordering::Release,
        );
        len < self.cap
    }

    /// Sweeps idle keys now when the table is full, at most once a second.
    fn sweep_when_full(&self) {
        let now = self.clock.now().as_u64();
        let last = self.last_forced_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1_000_000_000 && last != 0 {
            return;
        }
        if self
            .last_forced_sweep
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.limiter.retain_recent();
            self.wide.retain_recent();
        }
    }

    /// The key for a request.
    pub fn key(&self, ip: IpAddr, asn: Option<u32>, crawler: Option<&str>) -> LimitKey {
        match self.quota.key {
            QuotaKey::Ip => LimitKey::Ip(client_key(ip)),
            QuotaKey::IpPrefix => LimitKey::Ip(prefix_of(client_key(ip))),
            QuotaKey::Asn => match asn {
                Some(a) => LimitKey::Asn(a),
                None => LimitKey::Ip(prefix_of(client_key(ip))),
            },
            QuotaKey::Crawler => match crawler {
                Some(c) => {
                    let mut h = DefaultHasher::new();
                    c.hash(&mut h);
                    LimitKey::Crawler(h.finish())
                }
                None => LimitKey::Ip(client_key(ip)),
            },
        }
    }

    /// Counts one request against `key` (or, when the table is full, its
    /// network aggregate; see the type's documentation).
    pub fn check(&self, key: &LimitKey) -> LimitOutcome {
        if !self.has_room(key) {
            self.sweep_when_full();
        }
        if self.has_room(key) {
            return self.check_in(&self.limiter, key, 1);
        }
        if let Some(wide) = aggregate_of(key)
            && (self.wide_store.inner.contains_key(&wide)
                || self.wide_store.inner.len() < self.wide_cap)
        {
            self.aggregated.fetch_add(1, Ordering::Relaxed);
            return self.check_in(&self.wide, &wide, AGGREGATE_FACTOR);
        }
        self.failed_open.fetch_add(1, Ordering::Relaxed);
        LimitOutcome {
            allowed: true,
            remaining: self.quota.burst,
            retry_after: 0,
            reset: 0,
        }
    }

    /// Decisions taken while the table was full.
    pub fn overflow(&self) -> OverflowCounts {
        OverflowCounts {
            aggregated: self.aggregated.load(Ordering::Relaxed),
            failed_open: self.failed_open.load(Ordering::Relaxed),
        }
    }

    fn check_in(&self, limiter: &Limiter, key: &LimitKey, factor: u32) -> LimitOutcome {
        let burst = self.quota.burst.max(1).saturating_mul(factor);
        let rate = self.quota.rate.max(1).saturating_mul(factor);
        let per_cell = self.quota.period.as_secs_f64() / f64::from(rate);
        match limiter.check_key(key) {
            Ok(snap) => {
                let remaining = snap.remaining_burst_capacity();
                let missing = burst.saturating_sub(remaining);
                LimitOutcome {
                    allowed: true,
                    remaining,
                    retry_after: 0,
                    reset: (f64::from(missing) * per_cell).ceil() as u64,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                LimitOutcome {
                    allowed: false,
                    remaining: 0,
                    retry_after: secs,
                    reset: (f64::from(burst) * per_cell).ceil() as u64,
                }
            }
        }
    }

    /// The quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Live keys (per-client and aggregates).
    pub fn len(&self) -> usize {
        self.store.inner.len() + self.wide_store.inner.len()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops keys whose bucket is full again, and frees memory.
    pub fn sweep(&self) {
        for l in [&self.limiter, &self.wide] {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

// `retain_recent` needs the store to be shrinkable.
impl ShrinkableKeyedStateStore<LimitKey> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.inner.retain_recent(drop_below)
    }
    fn shrink_to_fit(&self) {
        self.inner.shrink_to_fit()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// What a client did recently.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientStats {
    window_start: u64,
    /// Requests in the window.
    pub requests: u32,
    /// HTML page requests in the window.
    pub pages: u32,
    /// Image requests in the window.
    pub images: u32,
    /// 404 answers in the window.
    pub not_found: u32,
    /// Penalised (trap hit or burst) until this time (ns).
    pub penalty_until: u64,
    /// Whether the penalty came from the robots.txt trap.
    pub trapped: bool,
}

const SHARDS: usize = 16;

/// Behaviour per client key, LRU-bounded.
pub struct Behaviour {
    shards: Vec<Mutex<LruCache<IpAddr, ClientStats>>>,
    window: u64,
    penalty: u64,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour")
            .field("clients", &self.len())
            .finish()
    }
}

/// Kind of request, for behaviour statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// An HTML page.
    Page,
    /// An image.
    Image,
    /// Anything else.
    Other,
}

impl Behaviour {
    /// Tracks at most `cap` clients.
    pub fn new(cap: usize, window: Duration, penalty: Duration) -> Behaviour {
        let per = NonZeroUsize::new(cap.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        Behaviour {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per)))
                .collect(),
            window: window.as_nanos().min(u128::from(u64::MAX)) as u64,
            penalty: penalty.as_nanos().min(u128::from(u64::MAX)) as u64,
        }
    }

    fn shard(&self, key: &IpAddr) -> Option<&Mutex<LruCache<IpAddr, ClientStats>>> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        self.shards.get((h.finish() as usize) % SHARDS)
    }

    fn update<R>(
        &self,
        ip: IpAddr,
        now: Duration,
        f: impl FnOnce(&mut ClientStats, u64) -> R,
    ) -> Option<R> {
        let key = client_key(ip);
        let now = now.as_nanos().min(u128::from(u64::MAX)) as u64;
        let shard = self.shard(&key)?;
        let mut guard = shard.lock().ok()?;
        let stats = guard.get_or_insert_mut(key, ClientStats::default);
        if now.saturating_sub(stats.window_start) > self.window {
            let keep = (stats.penalty_until, stats.trapped);
            *stats = ClientStats {
                window_start: now,
                penalty_until: keep.0,
                trapped: keep.1,
                ..ClientStats::default()
            };
        }
        Some(f(stats, now))
    }

    /// Counts a request and returns the client's statistics including it.
    pub fn record(
        &self,
        ip: IpAddr,
        now: Duration,
        kind: RequestKind,
        trap_hit: bool,
    ) -> ClientStats {
        let penalty = self.penalty;
        self.update(ip, now, |s, now| {
            s.requests = s.requests.saturating_add(1);
            match kind {
                RequestKind::Page => s.pages = s.pages.saturating_add(1),
                RequestKind::Image => s.images = s.images.saturating_add(1),
                RequestKind::Other => {}
            }
            if trap_hit {
                s.penalty_until = now.saturating_add(penalty);
                s.trapped = true;
            }
            *s
        })
        .unwrap_or_default()
    }

    /// Records a response status (404 bursts); returns whether it started
    /// a penalty.
    pub fn record_status(&self, ip: IpAddr, now: Duration, status: u16) -> bool {
        if status != 404 {
            return false;
        }
        let penalty = self.penalty;
        self.update(ip, now, |s, now| {
            s.not_found = s.not_found.saturating_add(1);
            if s.not_found >= NOT_FOUND_BURST {
                let started = s.penalty_until <= now;
                s.penalty_until = s.penalty_until.max(now.saturating_add(penalty));
                return started;
            }
            false
        })
        .unwrap_or(false)
    }

    /// Clients tracked.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|g| g.len()).unwrap_or(0))
            .sum()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a penalty is active at `now`.
    pub fn penalised(stats: &ClientStats, now: Duration) -> bool {
        (now.as_nanos().min(u128::from(u64::MAX)) as u64) < stats.penalty_until
    }
}

/// 404s in one window that count as a burst.
pub const NOT_FOUND_BURST: u32 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(rate: u32, burst: u32) -> Quota {
        Quota {
            rate,
            period: Duration::from_secs(60),
            burst,
            key: QuotaKey::Ip,
        }
    }

    #[test]
    fn limiter_allows_burst_then_refuses_then_recovers() {
        let clock = ManualClock::default();
        let l = QuotaLimiter::new(quota(60, 3), 100, clock.clone());
        let k = l.key("192.0.2.1".parse().unwrap(), None, None);
        clock.set(Duration::from_secs(10));
        for _ in 0..3 {
            assert!(l.check(&k).allowed);
        }
        let o = l.check(&k);
        assert!(!o.allowed);
        assert_eq!(o.retry_after, 1);
        clock.set(Duration::from_secs(11));
        assert!(l.check(&k).allowed);
    }

    #[test]
    fn keys_are_capped_and_swept() {
        let clock = ManualClock::default();
        let l = QuotaLimiter::new(quota(60, 1), 100, clock.clone());
        clock.set(Duration::from_secs(1));
        for i in 0..10_000u32 {
            let ip = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            l.check(&l.key(ip, None, None));
        }
        // 100 client keys + at most 25 network aggregates.
        assert!(l.len() <= 125, "{}", l.len());
        clock.set(Duration::from_secs(600));
        l.sweep();
        assert_eq!(l.len(), 0);
    }

    /// The room counted once is spent check by check: the per-client
    /// table fills exactly to its cap, never past it, and keys already
    /// in it keep being checked once it is full.
    #[test]
    fn counted_room_never_takes_the_table_past_its_cap() {
        let clock = ManualClock::default();
        let l = QuotaLimiter::new(quota(60, 5), 1000, clock.clone());
        clock.set(Duration::from_secs(1));
        let key = |i: u32| l.key(IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()), None, None);
        for i in 0..5_000u32 {
            l.check(&key(i));
            assert!(l.store.inner.len() <= 1000, "{i}: {}", l.store.inner.len());
        }
        assert_eq!(l.store.inner.len(), 1000);
        // The first clients are in the table: their own quota, not the
        // aggregate's (burst 5: the sixth request is refused).
        let first = key(0);
        for _ in 0..4 {
            assert!(l.check(&first).allowed);
        }
        assert!(!l.check(&first).allowed);
    }

    /// An attacker filling the table with 200k IPv6 /64s (from a few /48s)
    /// neither locks out new visitors nor escapes its own limit.
    #[test]
    fn a_full_table_fails_open_for_new_visitors() {
        let clock = ManualClock::default();
        // 10 requests a minute, burst 2; a small table to keep the test fast.
        let l = QuotaLimiter::new(quota(10, 2), 10_000, clock.clone());
        clock.set(Duration::from_secs(5));
        let mut attacker_refused = 0;
        for i in 0..200_000u32 {
            let s2 = (i >> 16) as u16; // four /48s
            let s3 = (i & 0xffff) as u16;
            let ip = IpAddr::from([0x2001, 0x0db8, s2, s3, 1, 2, 3, 4]);
            for _ in 0..2 {
                if !l.check(&l.key(ip, None, None)).allowed {
                    attacker_refused += 1;
                }
            }
        }
        assert!(l.len() <= 10_000 + 2_500, "{}", l.len());
        // The attacker's networks are aggregated and end up limited.
        assert!(l.overflow().aggregated > 0);
        assert!(attacker_refused > 100_000, "{attacker_refused}");
        // New visitors from elsewhere get their first requests through.
        for i in 0..1000u32 {
            let v4 = IpAddr::from((0xc633_6400u32 + i * 256).to_be_bytes()); // distinct /24s
            assert!(l.check(&l.key(v4, None, None)).allowed, "{v4}");
            let v6 = IpAddr::from([0x2a02, 0x1000 + (i as u16), 7, 7, 0, 0, 0, 1]);
            assert!(l.check(&l.key(v6, None, None)).allowed, "{v6}");
        }
    }

    #[test]
    fn behaviour_is_bounded_and_penalties_expire() {
        let b = Behaviour::new(1000, Duration::from_secs(60), Duration::from_secs(600));
        for i in 0..50_000u32 {
            let ip = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            b.record(ip, Duration::from_secs(1), RequestKind::Page, false);
        }
        assert!(b.len() <= 1008, "{}", b.len());
        let ip: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let s = b.record(ip, Duration::from_secs(5), RequestKind::Other, true);
        assert!(Behaviour::penalised(&s, Duration::from_secs(6)));
        // Same /64, another address: same client.
        let s = b.record(
            "2001:db8:1:2::9".parse().unwrap(),
            Duration::from_secs(100),
            RequestKind::Image,
            false,
        );
        assert!(s.trapped && Behaviour::penalised(&s, Duration::from_secs(100)));
        assert!(!Behaviour::penalised(&s, Duration::from_secs(700)));
    }
}
