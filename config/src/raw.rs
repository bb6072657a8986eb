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
