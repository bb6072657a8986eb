//! Request framing and size checks that Pingora does not make itself.
//!
//! Pingora accepts a request carrying both `Content-Length` and
//! `Transfer-Encoding` (it drops the length before any hook runs), where
//! nginx and RFC 9112 §6.1 say to refuse it: an intermediary that frames
//! it the other way would see another request in the body. The original
//! header bytes of an HTTP/1 request are still there, so the check reads
//! them. Header size is checked here for HTTP/2 as well (HTTP/1 headers
//! are capped while they arrive, in [`crate::conn`]).

use fixative_config::Limits;
use pingora::proxy::Session;

/// Whether the raw HTTP/1 header section has a `Content-Length` line.
pub fn raw_has_content_length(raw: &[u8]) -> bool {
    fixative_rules::fingerprint::header_names(raw)
        .any(|n| n.eq_ignore_ascii_case(b"content-length"))
}

/// The size of a header section as it was sent: request line, names,
/// values and separators.
pub fn header_section_size(req: &pingora::http::RequestHeader) -> usize {
    let uri = &req.uri;
    let uri_len = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method.as_str().len() + uri_len + 12;
    req.headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// The status and reason to refuse this request with, if any.
pub fn refuse(session: &Session, limits: &Limits) -> Option<(u16, &'static str)> {
    let req = session.req_header();
    let h = &req.headers;
    if !session.is_http2() {
        if h.contains_key(http::header::TRANSFER_ENCODING)
            && let Some(s) = session.downstream_session.as_http1()
            && raw_has_content_length(&s.get_headers_raw_bytes())
        {
            return Some((
                400,
                "The request has both Content-Length and Transfer-Encoding.",
            ));
        }
        let mut cls = h.get_all(http::header::CONTENT_LENGTH).iter();
        if let Some(first) = cls.next()
            && cls.any(|v| v != first)
        {
            return Some((400, "The request's Content-Length headers differ."));
        }
    }
    if header_section_size(req) > limits.max_request_header_bytes {
        return Some((
            431,
            "The request's headers are larger than this site accepts.",
        ));
    }
    None
}

/// The size of a response header section.
pub fn response_header_size(resp: &pingora::http::ResponseHeader) -> usize {
    resp.headers
        .iter()
        .fold(16, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_lines_in_raw_headers() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
        assert!(raw_has_content_length(raw));
        assert!(raw_has_content_length(
            b"POST / HTTP/1.1\ncontent-LENGTH :5\n\n"
        ));
        assert!(!raw_has_content_length(
            b"POST /content-length: HTTP/1.1\r\nX-Content-Length: 5\r\n\r\n"
        ));
    }
}
