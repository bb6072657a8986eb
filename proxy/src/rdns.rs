//! Forward-confirmed reverse DNS for crawlers that verify that way.
//!
//! The PTR names of the client address are looked up; one under a crawler
//! suffix from the catalog must resolve back to the same address. Lookups
//! run in the background, bounded in number and time, and never on the
//! request path: a request whose result is not cached yet is evaluated as
//! unverified. Results are cached (bounded LRU) with a TTL, negative ones
//! for less time.

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lru::LruCache;
use tokio::sync::Semaphore;

/// DNS as the verifier needs it; tests use a stub.
#[async_trait]
pub trait Resolver: Send + Sync {
    /// PTR names of an address.
    async fn reverse(&self, ip: IpAddr) -> std::io::Result<Vec<String>>;
    /// Addresses of a name.
    async fn forward(&self, name: &str) -> std::io::Result<Vec<IpAddr>>;
}

type ReverseFn = dyn Fn(IpAddr) -> std::io::Result<Vec<String>> + Send + Sync;
type ForwardFn = dyn Fn(&str) -> std::io::Result<Vec<IpAddr>> + Send + Sync;

/// A resolver over blocking lookup functions, run on blocking threads.
///
/// At most `max_blocking` lookups run at once, counted until the blocking
/// call really returns: a caller's timeout abandons the wait, not the
/// thread, so the cap holds however many lookups time out.
pub struct BlockingResolver {
    reverse: Arc<ReverseFn>,
    forward: Arc<ForwardFn>,
    permits: Arc<Semaphore>,
}

impl BlockingResolver {
    /// A resolver over two blocking functions.
    pub fn new(reverse: Arc<ReverseFn>, forward: Arc<ForwardFn>, max_blocking: usize) -> Self {
        BlockingResolver {
            reverse,
            forward,
            permits: Arc::new(Semaphore::new(max_blocking)),
        }
    }

    /// The system resolver (getnameinfo / getaddrinfo).
    pub fn system() -> Self {
        Self::new(
            Arc::new(|ip| {
                dns_lookup::lookup_addr(&ip)
                    .map(|n| vec![n])
                    .map_err(std::io::Error::other)
            }),
            Arc::new(|name| {
                dns_lookup::lookup_host(name)
                    .map(|it| it.collect())
                    .map_err(std::io::Error::other)
            }),
            MAX_INFLIGHT,
        )
    }

    /// Lookups running on blocking threads now.
    pub fn running(&self, max_blocking: usize) -> usize {
        max_blocking.saturating_sub(self.permits.available_permits())
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| std::io::Error::other("too many lookups running"))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[async_trait]
impl Resolver for BlockingResolver {
    async fn reverse(&self, ip: IpAddr) -> std::io::Result<Vec<String>> {
        let f = Arc::clone(&self.reverse);
        self.run(move || f(ip)).await
    }
    async fn forward(&self, name: &str) -> std::io::Result<Vec<IpAddr>> {
        let f = Arc::clone(&self.forward);
        let name = name.to_string();
        self.run(move || f(&name)).await
    }
}

#[derive(Clone)]
struct Entry {
    name: Option<Arc<str>>,
    expires: Instant,
}

/// Cached state for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// Not looked up, or expired.
    Unknown,
    /// Looked up; nothing confirmed.
    Failed,
    /// This name was confirmed.
    Confirmed(Arc<str>),
}

/// The verifier: cache, in-flight set, concurrency bound.
pub struct RdnsVerifier {
    resolver: Arc<dyn Resolver>,
    cache: Mutex<LruCache<IpAddr, Entry>>,
    inflight: Mutex<HashSet<IpAddr>>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    positive_ttl: Duration,
    negative_ttl: Duration,
}

/// Cap on cached addresses.
pub const CACHE_CAP: usize = 50_000;
/// Cap on lookups running at once; beyond it, lookups are skipped (the
/// client stays unverified and is retried on a later request).
pub const MAX_INFLIGHT: usize = 32;

impl RdnsVerifier {
    /// A verifier over `resolver`.
    pub fn new(resolver: Arc<dyn Resolver>) -> RdnsVerifier {
        RdnsVerifier {
            resolver,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHE_CAP).unwrap_or(NonZeroUsize::MIN),
            )),
            inflight: Mutex::new(HashSet::new()),
            permits: Arc::new(Semaphore::new(MAX_INFLIGHT)),
            timeout: Duration::from_secs(2),
            positive_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(600),
        }
    }

    /// Overrides the lookup timeout and cache TTLs.
    pub fn with_times(mut self, timeout: Duration, positive: Duration, negative: Duration) -> Self {
        self.timeout = timeout;
        self.positive_ttl = positive;
        self.negative_ttl = negative;
        self
    }

    /// The cached state of an address.
    pub fn cached(&self, ip: IpAddr) -> Cached {
        let Ok(mut c) = self.cache.lock() else {
            return Cached::Unknown;
        };
        match c.get(&ip) {
            Some(e) if e.expires > Instant::now() => match &e.name {
                Some(n) => Cached::Confirmed(n.clone()),
                None => Cached::Failed,
            },
            _ => Cached::Unknown,
        }
    }

    /// Starts a background lookup unless one runs for this address or too
    /// many run already. Never blocks.
    pub fn spawn_verify(self: &Arc<Self>, ip: IpAddr, suffixes: Arc<Vec<String>>) {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            return;
        };
        {
            let Ok(mut f) = self.inflight.lock() else {
                return;
            };
            if !f.insert(ip) {
                return;
            }
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let _permit = permit;
            let name = this.verify(ip, &suffixes).await;
            let ttl = if name.is_some() {
                this.positive_ttl
            } else {
                this.negative_ttl
            };
            if let Ok(mut c) = this.cache.lock() {
                c.put(
                    ip,
                    Entry {
                        name: name.map(|n| Arc::from(n.as_str())),
                        expires: Instant::now() + ttl,
                    },
                );
            }
            if let Ok(mut f) = this.inflight.lock() {
                f.remove(&ip);
            }
        });
    }

    /// Forward-confirmed reverse DNS: a PTR name under one of `suffixes`
    /// whose addresses include `ip`. Bounded by the timeout.
    pub async fn verify(&self, ip: IpAddr, suffixes: &[String]) -> Option<String> {
        let work = async {
            let names = self.resolver.reverse(ip).await.ok()?;
            for name in names {
                let n = name.trim_end_matches('.');
                if !suffixes.iter().any(|s| fixative_rules::name_under(n, s)) {
                    continue;
                }
                if let Ok(addrs) = self.resolver.forward(n).await
                    && addrs.contains(&ip)
                {
                    return Some(n.to_string());
                }
            }
            None
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .ok()
            .flatten()
    }

    /// Addresses cached.
    pub fn len(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Stub {
        ptr: HashMap<IpAddr, Vec<String>>,
        a: HashMap<String, Vec<IpAddr>>,
        delay: Duration,
    }

    #[async_trait]
    impl Resolver for Stub {
        async fn reverse(&self, ip: IpAddr) -> std::io::Result<Vec<String>> {
            tokio::time::sleep(self.delay).await;
            self.ptr
                .get(&ip)
                .cloned()
                .ok_or_else(|| std::io::Error::other("NXDOMAIN"))
        }
        async fn forward(&self, name: &str) -> std::io::Result<Vec<IpAddr>> {
            self.a
                .get(name)
                .cloned()
                .ok_or_else(|| std::io::Error::other("NXDOMAIN"))
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn stub(delay: Duration) -> Arc<Stub> {
        let mut ptr = HashMap::new();
        let mut a = HashMap::new();
        // A real Googlebot: PTR and A agree.
        ptr.insert(
            ip("66.249.66.1"),
            vec!["crawl-66-249-66-1.googlebot.com.".to_string()],
        );
        a.insert(
            "crawl-66-249-66-1.googlebot.com".to_string(),
            vec![ip("66.249.66.1")],
        );
        // A spoofer who controls its PTR but not Google's A records.
        ptr.insert(
            ip("203.0.113.5"),
            vec!["crawl-1-2-3-4.googlebot.com".to_string()],
        );
        a.insert(
            "crawl-1-2-3-4.googlebot.com".to_string(),
            vec![ip("1.2.3.4")],
        );
        // A name outside every suffix.
        ptr.insert(ip("198.51.100.1"), vec!["host.example.net".to_string()]);
        a.insert("host.example.net".to_string(), vec![ip("198.51.100.1")]);
        Arc::new(Stub { ptr, a, delay })
    }

    fn suffixes() -> Arc<Vec<String>> {
        Arc::new(vec!["googlebot.com".into(), "google.com".into()])
    }

    async fn settle(v: &Arc<RdnsVerifier>, ip_: IpAddr) -> Cached {
        for _ in 0..100 {
            let c = v.cached(ip_);
            if c != Cached::Unknown {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Cached::Unknown
    }

    /// Lookups that outlive the verifier's timeout keep their place: at
    /// most `max_blocking` blocking calls run, however many time out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_blocking_cap_holds_when_lookups_time_out() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let slow: Arc<ReverseFn> = Arc::new(move |_ip| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(400));
            r.fetch_sub(1, Ordering::SeqCst);
            Err(std::io::Error::other("slow"))
        });
        let resolver = Arc::new(BlockingResolver::new(slow, Arc::new(|_| Ok(Vec::new())), 3));
        let v = Arc::new(RdnsVerifier::new(resolver.clone()).with_times(
            Duration::from_millis(20),
            Duration::from_secs(60),
            Duration::from_secs(60),
        ));
        // Waves of lookups, each abandoned by the verifier after 20 ms.
        for wave in 0..5u8 {
            for i in 0..20u8 {
                v.spawn_verify(IpAddr::from([10, wave, 0, i]), suffixes());
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
            assert!(resolver.running(3) <= 3);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "{}",
            peak.load(Ordering::SeqCst)
        );
        assert!(peak.load(Ordering::SeqCst) >= 1);
    }

    #[tokio::test]
    async fn forward_confirmation_is_required() {
        let v = Arc::new(RdnsVerifier::new(stub(Duration::ZERO)));
        for (addr, want) in [
            (
                "66.249.66.1",
                Cached::Confirmed(Arc::from("crawl-66-249-66-1.googlebot.com")),
            ),
            ("203.0.113.5", Cached::Failed),
            ("198.51.100.1", Cached::Failed),
            ("192.0.2.1", Cached::Failed),
        ] {
            assert_eq!(
                v.cached(ip(addr)),
                Cached::Unknown,
                "first request is unverified"
            );
            v.spawn_verify(ip(addr), suffixes());
            assert_eq!(settle(&v, ip(addr)).await, want, "{addr}");
        }
        assert_eq!(v.len(), 4);
    }

    #[tokio::test]
    async fn slow_dns_times_out_as_failed_and_never_blocks_the_caller() {
        let v = Arc::new(RdnsVerifier::new(stub(Duration::from_secs(30))).with_times(
            Duration::from_millis(50),
            Duration::from_secs(60),
            Duration::from_secs(60),
        ));
        let t = Instant::now();
        v.spawn_verify(ip("66.249.66.1"), suffixes());
        assert!(t.elapsed() < Duration::from_millis(20));
        assert_eq!(settle(&v, ip("66.249.66.1")).await, Cached::Failed);
    }

    #[tokio::test]
    async fn expired_entries_are_unknown_again() {
        let v = Arc::new(RdnsVerifier::new(stub(Duration::ZERO)).with_times(
            Duration::from_secs(1),
            Duration::from_millis(30),
            Duration::from_millis(30),
        ));
        v.spawn_verify(ip("66.249.66.1"), suffixes());
        assert!(matches!(
            settle(&v, ip("66.249.66.1")).await,
            Cached::Confirmed(_)
        ));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(v.cached(ip("66.249.66.1")), Cached::Unknown);
    }
}
