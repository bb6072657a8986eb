//! Raw serde structs, as written in the file.
//!
//! Values that need checking (addresses, durations, CIDRs) stay strings here
//! so that validation can report every bad one with its key path and line.

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub site: Vec<RawSite>,
    pub demo: Option<RawDemo>,
    #[serde(default)]
    pub policy: std::collections::BTreeMap<String, RawPolicy>,
    #[serde(default)]
    pub detection: RawDetection,
    #[serde(default)]
    pub protector: RawProtector,
    #[serde(default)]
    pub challenge: RawChallenge,
    #[serde(default)]
    pub tarpit: RawTarpit,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub evidence: RawEvidence,
    #[serde(default)]
    pub profile: std::collections::BTreeMap<String, RawProfile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    #[serde(default)]
    pub variant: bool,
    pub max_side: Option<i64>,
    #[serde(default)]
    pub visible_mark: bool,
    #[serde(default = "default_true")]
    pub watermark: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProtector {
    #[serde(default = "default_preview_side")]
    pub preview_max_side: i64,
    #[serde(default)]
    pub visible_mark: bool,
    #[serde(default = "default_workers")]
    pub workers: i64,
    #[serde(default = "default_queue")]
    pub queue: i64,
    #[serde(default = "default_max_input")]
    pub max_input_bytes: i64,
    #[serde(default = "default_cache_bytes")]
    pub cache_bytes: i64,
    #[serde(default = "default_fallback")]
    pub fallback: String,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    #[serde(default = "default_variant_suffix")]
    pub variant_suffix: String,
    #[serde(default = "default_jpeg_quality")]
    pub jpeg_quality: i64,
    #[serde(default = "default_transform_timeout")]
    pub transform_timeout: String,
    #[serde(default = "default_cloak_profile")]
    pub profile: String,
    pub c2pa_cert: Option<String>,
    pub c2pa_key: Option<String>,
    #[serde(default = "default_c2pa_alg")]
    pub c2pa_alg: String,
}

fn default_c2pa_alg() -> String {
    "ed25519".into()
}

fn default_cloak_profile() -> String {
    "cloak".into()
}

impl Default for RawProtector {
    fn default() -> Self {
        RawProtector {
            preview_max_side: default_preview_side(),
            visible_mark: false,
            workers: default_workers(),
            queue: default_queue(),
            max_input_bytes: default_max_input(),
            cache_bytes: default_cache_bytes(),
            fallback: default_fallback(),
            secret: None,
            secret_file: None,
            variant_suffix: default_variant_suffix(),
            jpeg_quality: default_jpeg_quality(),
            transform_timeout: default_transform_timeout(),
            c2pa_cert: None,
            c2pa_key: None,
            c2pa_alg: default_c2pa_alg(),
            profile: default_cloak_profile(),
        }
    }
}

fn default_preview_side() -> i64 {
    512
}
fn default_workers() -> i64 {
    2
}
fn default_queue() -> i64 {
    8
}
fn default_max_input() -> i64 {
    32 * 1024 * 1024
}
fn default_cache_bytes() -> i64 {
    64 * 1024 * 1024
}
fn default_fallback() -> String {
    "503".into()
}
fn default_variant_suffix() -> String {
    ".cloaked".into()
}
fn default_jpeg_quality() -> i64 {
    90
}
fn default_transform_timeout() -> String {
    "10s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    pub tls: Option<RawTls>,
    #[serde(default = "default_admin")]
    pub admin: String,
    #[serde(default = "default_threads")]
    pub threads: i64,
    #[serde(default = "default_grace")]
    pub grace_period: String,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default = "default_connect_timeout")]
    pub upstream_connect_timeout: String,
    #[serde(default = "default_read_timeout")]
    pub upstream_read_timeout: String,
    #[serde(default = "default_health_interval")]
    pub health_check_interval: String,
    #[serde(default)]
    pub debug_headers: bool,
    #[serde(default)]
    pub limits: RawLimits,
}

/// `[server.limits]`: connection and message limits.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default = "default_max_connections")]
    pub max_connections: i64,
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: i64,
    #[serde(default = "default_header_timeout")]
    pub header_timeout: String,
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout: String,
    #[serde(default = "default_max_request_header_bytes")]
    pub max_request_header_bytes: i64,
    #[serde(default = "default_max_response_header_bytes")]
    pub max_response_header_bytes: i64,
    #[serde(default = "default_send_timeout")]
    pub send_timeout: String,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_connections: default_max_connections(),
            max_connections_per_client: default_max_connections_per_client(),
            header_timeout: default_header_timeout(),
            keepalive_timeout: default_keepalive_timeout(),
            max_request_header_bytes: default_max_request_header_bytes(),
            max_response_header_bytes: default_max_response_header_bytes(),
            send_timeout: default_send_timeout(),
        }
    }
}

fn default_max_connections() -> i64 {
    10_000
}
fn default_max_connections_per_client() -> i64 {
    128
}
fn default_header_timeout() -> String {
    "20s".into()
}
fn default_keepalive_timeout() -> String {
    "30s".into()
}
fn default_max_request_header_bytes() -> i64 {
    32 * 1024
}
fn default_max_response_header_bytes() -> i64 {
    64 * 1024
}
fn default_send_timeout() -> String {
    "60s".into()
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            tls: None,
            admin: default_admin(),
            threads: default_threads(),
            grace_period: default_grace(),
            trusted_proxies: Vec::new(),
            upstream_connect_timeout: default_connect_timeout(),
            upstream_read_timeout: default_read_timeout(),
            health_check_interval: default_health_interval(),
            debug_headers: false,
            limits: RawLimits::default(),
        }
    }
}

fn default_listen() -> Vec<String> {
    vec!["0.0.0.0:8080".to_string()]
}
fn default_admin() -> String {
    "127.0.0.1:9090".to_string()
}
fn default_threads() -> i64 {
    2
}
fn default_grace() -> String {
    "5s".to_string()
}
fn default_connect_timeout() -> String {
    "2s".to_string()
}
fn default_read_timeout() -> String {
    "30s".to_string()
}
fn default_health_interval() -> String {
    "5s".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub listen: String,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default = "default_access")]
    pub access: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            access: default_access(),
        }
    }
}

fn default_access() -> String {
    "stdout".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub name: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub upstreams: Vec<String>,
    pub upstream_tls: Option<RawUpstreamTls>,
    #[serde(default = "default_policy")]
    pub policy: String,
    #[serde(default)]
    pub default: bool,
    pub max_body_bytes: Option<i64>,
    #[serde(default)]
    pub directives: RawDirectives,
    #[serde(default)]
    pub preference: Vec<RawPreference>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawPreference {
    pub name: Option<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    pub train_ai: Option<String>,
    pub search: Option<String>,
    pub ai_input: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawDirectives {
    pub train_ai: Option<String>,
    pub search: Option<String>,
    pub ai_input: Option<String>,
    pub preference_header: Option<String>,
    #[serde(default = "default_true")]
    pub rsl: bool,
    #[serde(default)]
    pub c2pa: bool,
    pub x_robots_tag: Option<Vec<String>>,
    #[serde(default = "default_true")]
    pub tdm_reservation: bool,
    pub tdm_policy: Option<String>,
    pub content_usage: Option<String>,
    #[serde(default = "default_true")]
    pub robots_txt: bool,
    #[serde(default = "default_robots_categories")]
    pub robots_categories: Vec<String>,
    pub content_signal: Option<String>,
    #[serde(default = "default_true")]
    pub tdmrep_json: bool,
    #[serde(default = "default_true")]
    pub ai_txt: bool,
    #[serde(default = "default_doc_ttl")]
    pub cache_ttl: String,
    #[serde(default = "default_true")]
    pub html_meta: bool,
    #[serde(default = "default_true")]
    pub trap_link: bool,
    #[serde(default = "default_image_metadata")]
    pub image_metadata: String,
    pub data_mining: Option<String>,
    #[serde(default = "default_image_metadata_max")]
    pub image_metadata_max_bytes: i64,
}

fn default_image_metadata() -> String {
    "all".into()
}
fn default_image_metadata_max() -> i64 {
    16 * 1024 * 1024
}

fn default_doc_ttl() -> String {
    "60s".into()
}

impl Default for RawDirectives {
    fn default() -> Self {
        RawDirectives {
            train_ai: None,
            search: None,
            ai_input: None,
            preference_header: None,
            rsl: true,
            c2pa: false,
            x_robots_tag: None,
            tdm_reservation: true,
            tdm_policy: None,
            content_usage: None,
            robots_txt: true,
            robots_categories: default_robots_categories(),
            content_signal: None,
            tdmrep_json: true,
            ai_txt: true,
            cache_ttl: default_doc_ttl(),
            html_meta: true,
            trap_link: true,
            image_metadata: default_image_metadata(),
            data_mining: None,
            image_metadata_max_bytes: default_image_metadata_max(),
        }
    }
}

fn default_robots_categories() -> Vec<String> {
    vec![
        "ai-training".into(),
        "ai-search".into(),
        "ai-assistant".into(),
    ]
}

fn default_policy() -> String {
    "default".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub sni: String,
    #[serde(default = "default_true")]
    pub verify: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDemo {
    #[serde(default = "default_demo_listen")]
    pub listen: String,
}

fn default_demo_listen() -> String {
    "127.0.0.1:8081".to_string()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub mode: Option<String>,
    #[serde(default)]
    pub rule: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matches: RawMatch,
    pub action: String,
    pub status: Option<i64>,
    pub mode: Option<String>,
    pub quota: Option<RawQuota>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub category: Vec<String>,
    #[serde(default)]
    pub crawler: Vec<String>,
    pub ua_regex: Option<String>,
    #[serde(default)]
    pub path: Vec<String>,
    #[serde(default)]
    pub method: Vec<String>,
    #[serde(default)]
    pub header_present: Vec<String>,
    #[serde(default)]
    pub header_regex: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub cidr: Vec<String>,
    #[serde(default)]
    pub asn: Vec<i64>,
    #[serde(default)]
    pub country: Vec<String>,
    pub score_at_least: Option<i64>,
    pub verified: Option<bool>,
    pub spoofed: Option<bool>,
    pub image: Option<bool>,
    pub pass: Option<bool>,
    pub automation: Option<bool>,
    #[serde(default)]
    pub signed_agent: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    pub rate: i64,
    pub per: String,
    pub burst: Option<i64>,
    #[serde(default = "default_quota_key")]
    pub key: String,
}

fn default_quota_key() -> String {
    "ip".to_string()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPolicies {
    #[serde(default)]
    pub policy: std::collections::BTreeMap<String, RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetection {
    #[serde(default = "default_trap")]
    pub trap_path: String,
    #[serde(default = "default_penalty")]
    pub penalty: String,
    #[serde(default = "default_window")]
    pub window: String,
    #[serde(default = "default_max_clients")]
    pub max_tracked_clients: i64,
    #[serde(default = "default_max_clients")]
    pub max_limiter_keys: i64,
    #[serde(default)]
    pub catalog_files: Vec<String>,
    pub ip_ranges_dir: Option<String>,
    pub asn_db: Option<String>,
    pub country_db: Option<String>,
    #[serde(default)]
    pub datacenter_asns: std::collections::BTreeMap<String, i64>,
    #[serde(default)]
    pub weights: std::collections::BTreeMap<String, i64>,
    pub browser_versions: Option<String>,
    pub ja4_header: Option<String>,
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    #[serde(default)]
    pub deny_cidrs: Vec<String>,
    #[serde(default)]
    pub web_bot_auth: RawWebBotAuth,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawWebBotAuth {
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub directories_dir: Option<String>,
    pub ca_file: Option<String>,
    #[serde(default = "default_true")]
    pub fetch: bool,
    #[serde(default = "default_wba_refresh")]
    pub refresh: String,
    #[serde(default = "default_wba_lifetime")]
    pub max_lifetime: String,
    #[serde(default = "default_wba_skew")]
    pub clock_skew: String,
    #[serde(default = "default_wba_agents")]
    pub max_agents: i64,
    #[serde(default = "default_wba_nonces")]
    pub max_nonces: i64,
}

impl Default for RawWebBotAuth {
    fn default() -> Self {
        RawWebBotAuth {
            enabled: true,
            directories_dir: None,
            ca_file: None,
            fetch: true,
            refresh: default_wba_refresh(),
            max_lifetime: default_wba_lifetime(),
            clock_skew: default_wba_skew(),
            max_agents: default_wba_agents(),
            max_nonces: default_wba_nonces(),
        }
    }
}

fn default_wba_refresh() -> String {
    "1h".into()
}
fn default_wba_lifetime() -> String {
    "1h".into()
}
fn default_wba_skew() -> String {
    "60s".into()
}
fn default_wba_agents() -> i64 {
    1024
}
fn default_wba_nonces() -> i64 {
    100_000
}

impl Default for RawDetection {
    fn default() -> Self {
        RawDetection {
            trap_path: default_trap(),
            penalty: default_penalty(),
            window: default_window(),
            max_tracked_clients: default_max_clients(),
            max_limiter_keys: default_max_clients(),
            catalog_files: Vec::new(),
            ip_ranges_dir: None,
            asn_db: None,
            country_db: None,
            datacenter_asns: Default::default(),
            weights: Default::default(),
            browser_versions: None,
            ja4_header: None,
            allow_cidrs: Vec::new(),
            deny_cidrs: Vec::new(),
            web_bot_auth: RawWebBotAuth::default(),
        }
    }
}

fn default_trap() -> String {
    "/gallery/archive/full-resolution/".to_string()
}
fn default_penalty() -> String {
    "10m".to_string()
}
fn default_window() -> String {
    "60s".to_string()
}
fn default_max_clients() -> i64 {
    100_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChallenge {
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    #[serde(default)]
    pub old_secrets: Vec<String>,
    #[serde(default = "default_pass_ttl")]
    pub pass_ttl: String,
    #[serde(default = "default_difficulty")]
    pub difficulty: i64,
    #[serde(default = "default_challenge_ttl")]
    pub challenge_ttl: String,
    #[serde(default = "default_grace_images")]
    pub grace_images: i64,
    #[serde(default = "default_grace_period")]
    pub grace_period: String,
    #[serde(default = "default_true")]
    pub inject: bool,
    #[serde(default = "default_nojs_delay")]
    pub nojs_delay: String,
    #[serde(default = "default_max_pending")]
    pub max_spent: i64,
}

impl Default for RawChallenge {
    fn default() -> Self {
        RawChallenge {
            secret: None,
            secret_file: None,
            old_secrets: Vec::new(),
            pass_ttl: default_pass_ttl(),
            difficulty: default_difficulty(),
            challenge_ttl: default_challenge_ttl(),
            grace_images: default_grace_images(),
            grace_period: default_grace_period(),
            inject: true,
            nojs_delay: default_nojs_delay(),
            max_spent: default_max_pending(),
        }
    }
}

fn default_pass_ttl() -> String {
    "24h".into()
}
fn default_difficulty() -> i64 {
    8
}
fn default_challenge_ttl() -> String {
    "5m".into()
}
fn default_grace_images() -> i64 {
    24
}
fn default_grace_period() -> String {
    "1h".into()
}
fn default_nojs_delay() -> String {
    "3s".into()
}
fn default_max_pending() -> i64 {
    100_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarpit {
    #[serde(default = "default_tarpit_connections")]
    pub max_connections: i64,
    #[serde(default = "default_tarpit_per_client")]
    pub max_per_client: i64,
    #[serde(default = "default_tarpit_bytes")]
    pub max_bytes: i64,
    #[serde(default = "default_tarpit_duration")]
    pub max_duration: String,
    #[serde(default = "default_tarpit_interval")]
    pub interval: String,
}

impl Default for RawTarpit {
    fn default() -> Self {
        RawTarpit {
            max_connections: default_tarpit_connections(),
            max_per_client: default_tarpit_per_client(),
            max_bytes: default_tarpit_bytes(),
            max_duration: default_tarpit_duration(),
            interval: default_tarpit_interval(),
        }
    }
}

fn default_tarpit_connections() -> i64 {
    1000
}
fn default_tarpit_per_client() -> i64 {
    8
}
fn default_tarpit_bytes() -> i64 {
    64 * 1024
}
fn default_tarpit_duration() -> String {
    "60s".into()
}
fn default_tarpit_interval() -> String {
    "1s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    #[serde(default = "default_state_backend")]
    pub backend: String,
    pub url: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    #[serde(default = "default_state_prefix")]
    pub prefix: String,
    #[serde(default = "default_state_pool")]
    pub pool_size: i64,
    #[serde(default = "default_state_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "default_state_timeout")]
    pub timeout: String,
    #[serde(default = "default_state_sync")]
    pub sync_interval: String,
    #[serde(default = "default_state_max_bans")]
    pub max_bans: i64,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            backend: default_state_backend(),
            url: None,
            password_file: None,
            ca_file: None,
            prefix: default_state_prefix(),
            pool_size: default_state_pool(),
            connect_timeout: default_state_connect_timeout(),
            timeout: default_state_timeout(),
            sync_interval: default_state_sync(),
            max_bans: default_state_max_bans(),
        }
    }
}

fn default_state_backend() -> String {
    "memory".into()
}
fn default_state_prefix() -> String {
    "fixative:".into()
}
fn default_state_pool() -> i64 {
    2
}
fn default_state_connect_timeout() -> String {
    "1s".into()
}
fn default_state_timeout() -> String {
    "5ms".into()
}
fn default_state_sync() -> String {
    "250ms".into()
}
fn default_state_max_bans() -> i64 {
    100_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvidence {
    pub dir: Option<String>,
    pub signing_key_file: Option<String>,
    #[serde(default = "default_seal_every")]
    pub seal_every: i64,
    #[serde(default = "default_seal_interval")]
    pub seal_interval: String,
    #[serde(default = "default_evidence_file_bytes")]
    pub max_file_bytes: i64,
    #[serde(default = "default_evidence_total_bytes")]
    pub max_total_bytes: i64,
    #[serde(default = "default_evidence_queue")]
    pub queue: i64,
    #[serde(default)]
    pub scrapers: bool,
}

impl Default for RawEvidence {
    fn default() -> Self {
        RawEvidence {
            dir: None,
            signing_key_file: None,
            seal_every: default_seal_every(),
            seal_interval: default_seal_interval(),
            max_file_bytes: default_evidence_file_bytes(),
            max_total_bytes: default_evidence_total_bytes(),
            queue: default_evidence_queue(),
            scrapers: false,
        }
    }
}

fn default_seal_every() -> i64 {
    1000
}
fn default_seal_interval() -> String {
    "60s".into()
}
fn default_evidence_file_bytes() -> i64 {
    64 << 20
}
fn default_evidence_total_bytes() -> i64 {
    1 << 30
}
fn default_evidence_queue() -> i64 {
    10_000
}
