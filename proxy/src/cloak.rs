//! Protected image variants for `cloak` verdicts.
//!
//! Fixative fetches the image itself (Pingora's HTTP client, size-capped),
//! prefers a variant the artist prepared (`x.jpg` → `x.cloaked.jpg` on the
//! origin, e.g. Glaze output), and otherwise runs the `preview` profile
//! (degrade + watermark + metadata) on a bounded worker pool off the async
//! reactor. Results are cached (LRU bounded in bytes); concurrent requests
//! for the same variant wait for one transform. When the queue is full or
//! the image cannot be transformed, the configured fallback answers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use fixative_config::Protector as ProtectorConfig;
use fixative_protector::c2pa::{Signer as C2paSigner, TrainingMining};
use fixative_protector::pipeline::{self, Job, Limits, Transform};
use fixative_protector::watermark::{self, Payload};
use pingora::prelude::HttpPeer;
use tokio::sync::{OnceCell, Semaphore};

/// A variant ready to send.
#[derive(Clone, Debug)]
pub struct Variant {
    /// The file.
    pub bytes: Bytes,
    /// Its MIME type.
    pub content_type: String,
    /// `prepared` (artist's file) or the profile name.
    pub source: &'static str,
    /// The preference the origin named for this file (its preference
    /// header), when it named one the site has.
    pub pref: Option<usize>,
}

/// What a served file says about its use: the XMP term and, on sites that
/// sign, the C2PA assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// The PLUS `DataMining` term.
    pub data_mining: String,
    /// The C2PA assertion (`None`: not signed).
    pub c2pa: Option<TrainingMining>,
}

impl Terms {
    /// The terms of a site's directives (one preference's).
    pub fn of(d: &fixative_config::Directives) -> Terms {
        Terms {
            data_mining: d.data_mining.clone(),
            c2pa: d.c2pa.then(|| training_mining(&d.usage)),
        }
    }
}

/// How the protector learns a file's terms: the path's, unless the origin
/// names one of the site's preferences in its preference header.
pub struct Prefs<'a> {
    /// The path's terms.
    pub path: Terms,
    /// The site's preference header (lower-case), if it has one.
    pub header: Option<&'a str>,
    /// A preference name → its index and terms.
    pub named: &'a (dyn Fn(&str) -> Option<(usize, Terms)> + Sync),
}

impl Prefs<'_> {
    fn resolve(&self, named: Option<&str>) -> (Option<usize>, Terms) {
        match named.and_then(|n| (self.named)(n)) {
            Some((i, t)) => (Some(i), t),
            None => (None, self.path.clone()),
        }
    }
}

/// What the origin answered to one of the protector's fetches.
pub struct Fetched {
    /// Status.
    pub status: u16,
    /// Content type.
    pub ctype: Option<String>,
    /// `ETag`, else `Last-Modified`.
    pub validator: Option<String>,
    /// The body, `None` when over the cap.
    pub body: Option<Vec<u8>>,
    /// The value of the site's preference header, if sent.
    pub named: Option<String>,
}

/// Why the fallback answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// The worker queue was full.
    QueueFull,
    /// The original is larger than `max_input_bytes`.
    TooLarge,
    /// Decode failed (malformed, bomb, unsupported).
    Undecodable,
    /// The transform took too long.
    Timeout,
    /// The origin could not be reached.
    Origin,
}

impl FallbackReason {
    /// Every reason.
    pub const ALL: [FallbackReason; 5] = [
        FallbackReason::QueueFull,
        FallbackReason::TooLarge,
        FallbackReason::Undecodable,
        FallbackReason::Timeout,
        FallbackReason::Origin,
    ];

    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::QueueFull => "queue_full",
            FallbackReason::TooLarge => "too_large",
            FallbackReason::Undecodable => "undecodable",
            FallbackReason::Timeout => "timeout",
            FallbackReason::Origin => "origin",
        }
    }
}

/// Outcome of a cloak request.
pub enum Outcome {
    /// Send this variant.
    Variant(Variant, bool),
    /// The origin answered something other than an image: relay it.
    Relay(u16, Option<String>, Bytes),
    /// Use the fallback.
    Fallback(FallbackReason),
}

/// An LRU cache of variants bounded in bytes.
pub struct VariantCache {
    map: lru::LruCache<String, Variant>,
    bytes: usize,
    cap: usize,
}

impl VariantCache {
    /// A cache holding at most `cap` bytes.
    pub fn new(cap: usize) -> VariantCache {
        VariantCache {
            map: lru::LruCache::unbounded(),
            bytes: 0,
            cap,
        }
    }

    /// A cached variant (marked as recently used).
    pub fn get(&mut self, k: &str) -> Option<Variant> {
        self.map.get(k).cloned()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stores a variant, evicting the least recently used beyond the cap.
    pub fn put(&mut self, k: String, v: Variant) {
        let size = v.bytes.len() + k.len();
        if size > self.cap {
            return;
        }
        if let Some(old) = self.map.put(k.clone(), v) {
            self.bytes -= old.bytes.len() + k.len();
        }
        self.bytes += size;
        while self.bytes > self.cap {
            match self.map.pop_lru() {
                Some((k, v)) => self.bytes -= v.bytes.len() + k.len(),
                None => break,
            }
        }
    }
}

type Inflight = Arc<OnceCell<Result<(Variant, Option<Variant>), FallbackReason>>>;

/// The protector of one configuration generation.
pub struct Cloaker {
    cfg: ProtectorConfig,
    key: u64,
    workers: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    cache: Mutex<VariantCache>,
    /// Small unmarked copies for the `degraded` fallback, by site, URL and validator.
    thumbs: Mutex<VariantCache>,
    inflight: Mutex<HashMap<String, Inflight>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// The C2PA signer (`protector.c2pa_cert`), for sites with
    /// `directives.c2pa`.
    signer: Option<Arc<C2paSigner>>,
}

/// The C2PA assertion of a usage: training and generative training follow
/// `train_ai`, inference `ai_input`, data mining `train_ai`.
pub fn training_mining(u: &fixative_config::Usage) -> TrainingMining {
    TrainingMining {
        ai_training: u.train_ai,
        ai_generative_training: u.train_ai,
        ai_inference: u.ai_input,
        data_mining: u.train_ai,
    }
}

fn mime_of(ctype: &str) -> &'static str {
    let c = ctype.trim_start().to_ascii_lowercase();
    if c.starts_with("image/png") {
        "image/png"
    } else if c.starts_with("image/webp") {
        "image/webp"
    } else {
        "image/jpeg"
    }
}

/// Fetches `path` from the origin: status, content type, validator, body
/// (`None` when over `cap`) and the value of `pref_header`.
pub async fn fetch(
    connector: &pingora::connectors::http::Connector,
    peer: &HttpPeer,
    host: &str,
    path: &str,
    cap: usize,
    pref_header: Option<&str>,
) -> pingora::Result<Fetched> {
    let mut http =
        crate::origin::get(connector, peer, host, path, "Fixative (protector)", &[]).await?;
    let status = http
        .response_header()
        .map(|h| h.status.as_u16())
        .unwrap_or(502);
    let mut f = Fetched {
        status,
        ctype: crate::origin::header(&http, "content-type"),
        validator: crate::origin::header(&http, "etag")
            .or_else(|| crate::origin::header(&http, "last-modified")),
        body: None,
        named: pref_header.and_then(|h| crate::origin::header(&http, h)),
    };
    let length =
        crate::origin::header(&http, "content-length").and_then(|v| v.parse::<usize>().ok());
    if length.is_some_and(|l| l > cap) {
        return Ok(f);
    }
    let mut body = Vec::with_capacity(length.unwrap_or(0).min(cap));
    while let Some(chunk) = http.read_response_body().await? {
        if body.len() + chunk.len() > cap {
            return Ok(f);
        }
        body.extend_from_slice(&chunk);
    }
    f.body = Some(body);
    Ok(f)
}

/// `x.jpg` → `x{suffix}.jpg` (query dropped); `None` without an extension.
pub fn variant_path(path: &str, suffix: &str) -> Option<String> {
    let p = path.split(['?', '#']).next().unwrap_or(path);
    let (dir, file) = p.rsplit_once('/')?;
    let (stem, ext) = file.rsplit_once('.')?;
    if stem.is_empty() || stem.ends_with(suffix) {
        return None;
    }
    Some(format!("{dir}/{stem}{suffix}.{ext}"))
}

fn is_image(ctype: Option<&str>) -> bool {
    ctype.is_some_and(|c| {
        let c = c.trim_start().to_ascii_lowercase();
        ["image/jpeg", "image/pjpeg", "image/png", "image/webp"]
            .iter()
            .any(|t| c.starts_with(t))
    })
}

/// The client bucket: its /24 (IPv4) or /64 (IPv6).
pub fn client_bucket(ip: IpAddr) -> String {
    fixative_rules::state::prefix_of(fixative_rules::state::client_key(ip)).to_string()
}

/// Hours since 2025-01-01 UTC.
pub fn hour_now() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (secs.saturating_sub(1_735_689_600) / 3600) as u32
}

impl Cloaker {
    /// A protector for one configuration generation.
    pub fn new(
        cfg: ProtectorConfig,
        metrics: Arc<crate::metrics::Metrics>,
        signer: Option<Arc<C2paSigner>>,
    ) -> Cloaker {
        Cloaker {
            signer,
            key: watermark::key_from_secret(&cfg.secret),
            workers: Arc::new(Semaphore::new(cfg.workers)),
            slots: Arc::new(Semaphore::new(cfg.workers + cfg.queue)),
            cache: Mutex::new(VariantCache::new(cfg.cache_bytes)),
            thumbs: Mutex::new(VariantCache::new(cfg.cache_bytes / 8)),
            inflight: Mutex::new(HashMap::new()),
            metrics,
            cfg,
        }
    }

    /// The payload for a request.
    pub fn payload(site: &str, client: IpAddr, class: &str) -> Payload {
        Payload {
            site: watermark::hash_bits(site, 12) as u16,
            client: watermark::hash_bits(&client_bucket(client), 20),
            class: watermark::hash_bits(class, 8) as u8,
            hour: hour_now(),
        }
    }

    /// Produces the variant for an image request.
    #[allow(clippy::too_many_arguments)]
    pub async fn cloak(
        &self,
        connector: &pingora::connectors::http::Connector,
        peer: &HttpPeer,
        host: &str,
        path: &str,
        site: &str,
        payload: Payload,
        prefs: &Prefs<'_>,
    ) -> Outcome {
        let cap = self.cfg.max_input_bytes;
        let profile = &self.cfg.profile;
        // 1. A variant the artist prepared.
        if profile.variant
            && let Some(vp) = variant_path(path, &self.cfg.variant_suffix)
            && let Ok(f) = fetch(connector, peer, host, &vp, cap, prefs.header).await
            && f.status == 200
            && is_image(f.ctype.as_deref())
            && let Some(body) = f.body
        {
            let (named, terms) = prefs.resolve(f.named.as_deref());
            let ctype = f.ctype.unwrap_or_default();
            if let Some(tm) = terms.c2pa.filter(|_| self.signer.is_some()) {
                return self
                    .signed(
                        site,
                        &vp,
                        f.validator,
                        body,
                        &ctype,
                        (named, &terms.data_mining),
                        tm,
                        "prepared",
                    )
                    .await;
            }
            let bytes = fixative_protector::xmp::insert(&body, &terms.data_mining).unwrap_or(body);
            return Outcome::Variant(
                Variant {
                    bytes: Bytes::from(bytes),
                    content_type: ctype,
                    source: "prepared",
                    pref: named,
                },
                false,
            );
        }
        // 2. The original.
        let f = match fetch(connector, peer, host, path, cap, prefs.header).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("protector: cannot fetch {path} from {site}'s origin: {e}");
                return Outcome::Fallback(FallbackReason::Origin);
            }
        };
        let Some(body) = f.body else {
            return Outcome::Fallback(FallbackReason::TooLarge);
        };
        if f.status != 200 || !is_image(f.ctype.as_deref()) {
            return Outcome::Relay(f.status, f.ctype, Bytes::from(body));
        }
        let (named, terms) = prefs.resolve(f.named.as_deref());
        let c2pa = terms.c2pa.filter(|_| self.signer.is_some());
        let data_mining = terms.data_mining.as_str();
        // 3. Cache, keyed by site, URL, validator, profile, payload class
        // and the file's terms.
        let validator = f
            .validator
            .unwrap_or_else(|| format!("len{}-{:08x}", body.len(), crc(&body)));
        let base = format!("{site}\u{1}{path}\u{1}{validator}");
        let key = format!(
            "{base}\u{1}preview{}\u{1}{:016x}\u{1}{named:?}\u{1}{data_mining}\u{1}{c2pa:?}",
            self.cfg.preview_max_side,
            payload.to_bits()
        );
        if let Some(v) = self.cached(&key) {
            return Outcome::Variant(v, true);
        }
        // 4. One transform per key; others wait for it.
        let cell = {
            let Ok(mut map) = self.inflight.lock() else {
                return Outcome::Fallback(FallbackReason::QueueFull);
            };
            map.entry(key.clone())
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let result = cell
            .get_or_init(|| self.transform(body, payload.to_bits(), data_mining.to_string(), c2pa))
            .await
            .clone();
        if let Ok(mut map) = self.inflight.lock() {
            map.remove(&key);
        }
        match result {
            Ok((mut v, thumb)) => {
                v.pref = named;
                if let Ok(mut c) = self.cache.lock() {
                    c.put(key, v.clone());
                }
                if let (Some(t), Ok(mut c)) = (thumb, self.thumbs.lock()) {
                    c.put(base, t);
                }
                Outcome::Variant(v, false)
            }
            Err(reason) => {
                // The degraded fallback: a small unmarked copy made earlier.
                if self.cfg.fallback == fixative_config::Fallback::Degraded
                    && matches!(reason, FallbackReason::QueueFull | FallbackReason::Timeout)
                    && let Some(t) = self.thumbs.lock().ok().and_then(|mut c| c.get(&base))
                {
                    self.metrics
                        .protector_fallbacks
                        .with_label_values(&[reason.as_str()])
                        .inc();
                    return Outcome::Variant(t, false);
                }
                Outcome::Fallback(reason)
            }
        }
    }

    async fn transform(
        &self,
        body: Vec<u8>,
        payload: u64,
        data_mining: String,
        c2pa: Option<TrainingMining>,
    ) -> Result<(Variant, Option<Variant>), FallbackReason> {
        let cfg = self.cfg.clone();
        let key = self.key;
        let signer = c2pa.and(self.signer.clone());
        let timer = self.metrics.protector_transform_seconds.clone();
        let out = self
            .on_pool(&timer, move || {
                let transform = Transform {
                    max_side: cfg.profile.max_side,
                    visible_mark: cfg.profile.visible_mark,
                    watermark: cfg.profile.watermark.then_some(watermark::DEFAULT_STRENGTH),
                };
                let mut out = pipeline::protect(&Job {
                    data: &body,
                    transform,
                    payload,
                    key,
                    data_mining: &data_mining,
                    jpeg_quality: cfg.jpeg_quality,
                    limits: Limits {
                        max_bytes: cfg.max_input_bytes,
                        ..Limits::default()
                    },
                })?;
                // The signed assertion covers the variant's final bytes.
                if let (Some(s), Some(tm)) = (&signer, c2pa) {
                    match s.sign(&out.bytes, out.content_type, tm) {
                        Ok(b) => out.bytes = b,
                        Err(e) => tracing::warn!("protector: C2PA signing failed: {e}"),
                    }
                }
                // For the degraded fallback: a 256 px unmarked copy of the variant.
                let thumb = if cfg.fallback == fixative_config::Fallback::Degraded {
                    pipeline::protect(&Job {
                        data: &out.bytes,
                        transform: Transform {
                            max_side: Some(256),
                            visible_mark: false,
                            watermark: None,
                        },
                        payload: 0,
                        key,
                        data_mining: &data_mining,
                        jpeg_quality: cfg.jpeg_quality,
                        limits: Limits::default(),
                    })
                    .ok()
                } else {
                    None
                };
                Ok::<_, pipeline::ProtectError>((out, thumb))
            })
            .await;
        match out? {
            Err(e) => {
                tracing::debug!("protector: {e}");
                Err(FallbackReason::Undecodable)
            }
            Ok((o, thumb)) => Ok((
                Variant {
                    bytes: Bytes::from(o.bytes),
                    content_type: o.content_type.to_string(),
                    source: "transformed",
                    pref: None,
                },
                thumb.map(|t| Variant {
                    bytes: Bytes::from(t.bytes),
                    content_type: t.content_type.to_string(),
                    source: "degraded-fallback",
                    pref: None,
                }),
            )),
        }
    }

    /// Runs `f` on the bounded worker pool: a queue slot now (else
    /// [`FallbackReason::QueueFull`] at once), then a worker, off the async
    /// reactor, within `transform_timeout`. The permits go with the work: a
    /// job that outlives its timeout keeps its worker and queue slot until
    /// it really ends, so `workers` and `queue` bound the CPU actually in
    /// use.
    /// `timer` observes the time from the worker's start to the end (or
    /// the timeout), queue wait excluded.
    async fn on_pool<T: Send + 'static>(
        &self,
        timer: &prometheus::Histogram,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, FallbackReason> {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return Err(FallbackReason::QueueFull);
        };
        self.metrics
            .protector_queue_depth
            .set((self.cfg.workers + self.cfg.queue - self.slots.available_permits()) as i64);
        let Ok(worker) = self.workers.clone().acquire_owned().await else {
            return Err(FallbackReason::QueueFull);
        };
        let started = Instant::now();
        let job = tokio::task::spawn_blocking(move || {
            let _permits = (slot, worker);
            f()
        });
        let out = tokio::time::timeout(self.cfg.transform_timeout, job).await;
        timer.observe(started.elapsed().as_secs_f64());
        match out {
            Err(_) => Err(FallbackReason::Timeout),
            Ok(Err(_)) => Err(FallbackReason::Undecodable),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Whether images can be signed (a C2PA credential is configured).
    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }

    /// The original image, XMP inserted and C2PA-signed, for a site with
    /// `directives.c2pa`: fetched whole (up to `max_input_bytes`), signed
    /// once per image version (cached like variants). Over the cap or on
    /// an origin error: [`Outcome::Fallback`], and the caller proxies the
    /// image as usual (unsigned).
    #[allow(clippy::too_many_arguments)]
    pub async fn original(
        &self,
        connector: &pingora::connectors::http::Connector,
        peer: &HttpPeer,
        host: &str,
        path: &str,
        site: &str,
        prefs: &Prefs<'_>,
    ) -> Outcome {
        let f = match fetch(
            connector,
            peer,
            host,
            path,
            self.cfg.max_input_bytes,
            prefs.header,
        )
        .await
        {
            Ok(r) => r,
            Err(_) => return Outcome::Fallback(FallbackReason::Origin),
        };
        let Some(body) = f.body else {
            return Outcome::Fallback(FallbackReason::TooLarge);
        };
        if f.status != 200 || !is_image(f.ctype.as_deref()) {
            return Outcome::Relay(f.status, f.ctype, Bytes::from(body));
        }
        let (named, terms) = prefs.resolve(f.named.as_deref());
        // The origin named a preference that does not sign: as usual.
        let Some(tm) = terms.c2pa else {
            return Outcome::Fallback(FallbackReason::Undecodable);
        };
        let ctype = f.ctype.unwrap_or_default();
        let (validator, data_mining) = (f.validator, terms.data_mining.as_str());
        self.signed(
            site,
            path,
            validator,
            body,
            &ctype,
            (named, data_mining),
            tm,
            "signed",
        )
        .await
    }

    /// XMP + C2PA over `body` on the worker pool, cached by site, path,
    /// validator and assertion.
    #[allow(clippy::too_many_arguments)]
    async fn signed(
        &self,
        site: &str,
        path: &str,
        validator: Option<String>,
        body: Vec<u8>,
        ctype: &str,
        (named, data_mining): (Option<usize>, &str),
        tm: TrainingMining,
        source: &'static str,
    ) -> Outcome {
        let Some(signer) = self.signer.clone() else {
            return Outcome::Fallback(FallbackReason::Undecodable);
        };
        let validator =
            validator.unwrap_or_else(|| format!("len{}-{:08x}", body.len(), crc(&body)));
        let key = format!(
            "{site}\u{1}{path}\u{1}{validator}\u{1}c2pa\u{1}{named:?}\u{1}{tm:?}\u{1}{data_mining}"
        );
        if let Some(v) = self.cached(&key) {
            return Outcome::Variant(v, true);
        }
        let mime = mime_of(ctype);
        let dm = data_mining.to_string();
        let timer = self.metrics.c2pa_sign_seconds.clone();
        let out = self
            .on_pool(&timer, move || {
                let with_xmp = fixative_protector::xmp::insert(&body, &dm).unwrap_or(body);
                signer.sign(&with_xmp, mime, tm)
            })
            .await;
        match out {
            Ok(Ok(bytes)) => {
                let v = Variant {
                    bytes: Bytes::from(bytes),
                    content_type: ctype.to_string(),
                    source,
                    pref: named,
                };
                if let Ok(mut c) = self.cache.lock() {
                    c.put(key, v.clone());
                }
                Outcome::Variant(v, false)
            }
            Ok(Err(e)) => {
                tracing::warn!("protector: C2PA signing of {path} failed: {e}");
                Outcome::Fallback(FallbackReason::Undecodable)
            }
            Err(reason) => Outcome::Fallback(reason),
        }
    }

    /// The cached variant under `key`, counted as a hit or a miss.
    fn cached(&self, key: &str) -> Option<Variant> {
        let v = self.cache.lock().ok().and_then(|mut c| c.get(key));
        let result = if v.is_some() { "hit" } else { "miss" };
        self.metrics
            .protector_cache
            .with_label_values(&[result])
            .inc();
        v
    }

    /// Bytes held by the cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.lock().map(|c| c.bytes()).unwrap_or(0)
    }
}

fn crc(b: &[u8]) -> u32 {
    // Cheap content fingerprint when the origin sends no validator.
    let mut h: u32 = 0x811c_9dc5;
    for x in b.iter().step_by(64) {
        h ^= u32::from(*x);
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^ b.len() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_paths() {
        assert_eq!(
            variant_path("/art/x.jpg", ".cloaked").as_deref(),
            Some("/art/x.cloaked.jpg")
        );
        assert_eq!(
            variant_path("/art/x.jpg?w=3", ".cloaked").as_deref(),
            Some("/art/x.cloaked.jpg")
        );
        assert_eq!(variant_path("/art/x.cloaked.jpg", ".cloaked"), None);
        assert_eq!(variant_path("/art/noext", ".cloaked"), None);
    }
}
