//! The admin listener: the dashboard (`/`, `/dashboard`) and its API
//! (`/api/v1/dashboard`), `/metrics`, `/healthz`, `/readyz`,
//! `POST /-/reload`, and the bans API (`GET`, `POST`, `DELETE /-/bans`),
//! shared by a fleet.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::state::{ReloadOutcome, Shared};

/// The admin application.
pub struct Admin {
    shared: Arc<Shared>,
}

impl Admin {
    /// Creates the admin application.
    pub fn new(shared: Arc<Shared>) -> Admin {
        Admin { shared }
    }
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = r.body().len();
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// A dashboard file, under the page's Content-Security-Policy.
fn asset(content_type: &str, body: &str) -> Response<Vec<u8>> {
    let mut r = text(StatusCode::OK, content_type, body.as_bytes().to_vec());
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(crate::dashboard::CSP),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    r
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match (method, path.as_str()) {
            (Method::GET, "/" | "/dashboard") => {
                asset("text/html; charset=utf-8", crate::dashboard::HTML)
            }
            (Method::GET, "/dashboard.js") => {
                asset("text/javascript; charset=utf-8", crate::dashboard::JS)
            }
            (Method::GET, "/dashboard.css") => {
                asset("text/css; charset=utf-8", crate::dashboard::CSS)
            }
            (Method::GET, "/api/v1/dashboard") => {
                let q = session.req_header().uri.query().unwrap_or("");
                json(StatusCode::OK, &crate::dashboard::api(&self.shared, q))
            }
            (Method::GET, "/metrics") => {
                let mut body = self.shared.metrics.render();
                crate::dashboard::evidence_metrics(&self.shared, &mut body);
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                )
            }
            (Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n"),
            (Method::GET, "/readyz") => {
                if self.shared.ready.load(Ordering::Acquire) {
                    text(StatusCode::OK, "text/plain", "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n")
                }
            }
            (Method::POST, "/-/reload") => {
                let shared = self.shared.clone();
                let outcome = tokio::task::spawn_blocking(move || shared.reload()).await;
                match outcome {
                    Ok(ReloadOutcome::Applied(msg)) => {
                        text(StatusCode::OK, "text/plain; charset=utf-8", msg + "\n")
                    }
                    Ok(ReloadOutcome::Rejected(msg)) => text(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "text/plain; charset=utf-8",
                        format!(
                            "reload rejected; the previous configuration keeps serving\n{msg}\n"
                        ),
                    ),
                    Err(e) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        format!("reload failed: {e}\n"),
                    ),
                }
            }
            (Method::GET, "/-/bans") => self.list_bans(),
            (Method::POST, "/-/bans") => match read_body(session).await {
                Ok(body) => self.add_ban(&body),
                Err(r) => r,
            },
            (Method::DELETE, "/-/bans") => {
                let q = session.req_header().uri.query().unwrap_or("").to_string();
                self.remove_ban(&q)
            }
            (
                _,
                "/" | "/dashboard" | "/dashboard.js" | "/dashboard.css" | "/api/v1/dashboard"
                | "/metrics" | "/healthz" | "/readyz" | "/-/reload" | "/-/bans",
            ) => text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n",
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /dashboard, /api/v1/dashboard, /metrics, /healthz, /readyz, POST /-/reload or /-/bans\n",
            ),
        }
    }
}

/// Largest body the admin API reads.
const MAX_ADMIN_BODY: usize = 64 * 1024;
/// Longest ban.
const MAX_BAN: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);

async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ADMIN_BODY {
                    return Err(json(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &serde_json::json!({"error": "body over 64 KiB"}),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"error": format!("cannot read the body: {e}")}),
                ));
            }
        }
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    text(status, "application/json", body)
}

/// A network or a single address.
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{s:?} is neither an address nor a network (CIDR)"))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BanRequest {
    net: String,
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

impl Admin {
    fn ban_json(b: &fixative_rules::fleet::Ban, now: u64) -> serde_json::Value {
        serde_json::json!({
            "net": b.net.to_string(),
            "until": b.until,
            "expires_in": b.until.saturating_sub(now),
            "reason": b.reason,
        })
    }

    fn list_bans(&self) -> Response<Vec<u8>> {
        let now = crate::challenge::unix_now();
        let link = &self.shared.fleet;
        let bans: Vec<serde_json::Value> = link
            .fleet
            .bans(now)
            .iter()
            .map(|b| Admin::ban_json(b, now))
            .collect();
        json(
            StatusCode::OK,
            &serde_json::json!({
                "backend": if link.shared() { "redis" } else { "memory" },
                "backend_up": link.up(),
                "bans": bans,
            }),
        )
    }

    fn add_ban(&self, body: &[u8]) -> Response<Vec<u8>> {
        let bad = |m: String| json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": m }));
        let req: BanRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return bad(format!(
                    "expected {{\"net\": \"203.0.113.0/24\", \"ttl\": \"1h\", \"reason\": \"…\"}}: {e}"
                ));
            }
        };
        let net = match parse_net(&req.net) {
            Ok(n) => n,
            Err(e) => return bad(e),
        };
        let ttl = match req.ttl.as_deref().map(humantime::parse_duration) {
            None => std::time::Duration::from_secs(3600),
            Some(Ok(d)) if !d.is_zero() && d <= MAX_BAN => d,
            Some(Ok(_)) => return bad("ttl must be between 1s and 366d".into()),
            Some(Err(e)) => return bad(format!("ttl: {e}")),
        };
        let reason: String = req
            .reason
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let now = crate::challenge::unix_now();
        let ban = fixative_rules::fleet::Ban {
            net,
            until: now.saturating_add(ttl.as_secs().max(1)),
            reason,
        };
        tracing::info!(
            "ban {} for {}s: {}",
            ban.net,
            ban.until.saturating_sub(now),
            ban.reason
        );
        let body = Admin::ban_json(&ban, now);
        self.shared.fleet.ban(ban);
        json(StatusCode::OK, &body)
    }

    fn remove_ban(&self, query: &str) -> Response<Vec<u8>> {
        let net = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "net")
            .map(|(_, v)| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            });
        let Some(net) = net else {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "give the ban as ?net=203.0.113.0/24"}),
            );
        };
        let net = match parse_net(&net) {
            Ok(n) => n,
            Err(e) => return json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e })),
        };
        let now = crate::challenge::unix_now();
        if !self
            .shared
            .fleet
            .fleet
            .bans(now)
            .iter()
            .any(|b| b.net == net)
        {
            return json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": format!("no ban on {net}")}),
            );
        }
        self.shared.fleet.unban(net);
        tracing::info!("ban on {net} lifted");
        json(
            StatusCode::OK,
            &serde_json::json!({"lifted": net.to_string()}),
        )
    }
}
