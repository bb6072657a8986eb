//! Fixative's own requests to origins (well-known files, images to
//! protect), through Pingora's HTTP client.

use std::time::Duration;

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::http::client::HttpSession;

/// Sends `GET path` (identity encoding, extra headers) and reads the
/// response header; the caller reads the body from the returned session.
pub async fn get(
    connector: &Connector,
    peer: &HttpPeer,
    host: &str,
    path: &str,
    user_agent: &str,
    extra: &[(&str, &str)],
) -> pingora::Result<HttpSession> {
    let (mut http, _) = connector.get_http_session(peer).await?;
    http.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = RequestHeader::build("GET", path.as_bytes(), None)?;
    req.insert_header("host", host)?;
    req.insert_header("accept-encoding", "identity")?;
    req.insert_header("user-agent", user_agent)?;
    for (k, v) in extra {
        req.insert_header(k.to_string(), *v)?;
    }
    http.write_request_header(Box::new(req)).await?;
    http.finish_request_body().await?;
    http.read_response_header().await?;
    Ok(http)
}

/// A response header value as text.
pub fn header(http: &HttpSession, name: &str) -> Option<String> {
    http.response_header()?
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
