//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `POST /-/reload`.

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

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match (method, path.as_str()) {
            (Method::GET, "/metrics") => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.shared.metrics.render(),
            ),
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
            (_, "/metrics" | "/healthz" | "/readyz" | "/-/reload") => text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n",
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /metrics, /healthz, /readyz or POST /-/reload\n",
            ),
        }
    }
}
