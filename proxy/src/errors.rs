//! Mapping a failed request to the status the client gets, and Fixative's
//! own error page for it.

use pingora::ErrorType;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, Session};

use crate::pages;
use crate::responses::respond_html;
use crate::service::Ctx;

/// The status for an error: the one it carries, 504 for timeouts, 502 for
/// the origin's other failures, 400 for the client's, nothing (0) when the
/// client went away.
pub(crate) fn status_for(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(c) => *c,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &pingora::ErrorSource::Upstream =>
        {
            504
        }
        ErrorType::ConnectTimedout => 504,
        _ => match e.esource() {
            pingora::ErrorSource::Upstream => 502,
            pingora::ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            _ => {
                if matches!(
                    e.etype(),
                    ErrorType::ConnectRefused
                        | ErrorType::ConnectNoRoute
                        | ErrorType::ConnectError
                        | ErrorType::TLSHandshakeFailure
                ) {
                    502
                } else {
                    500
                }
            }
        },
    }
}

/// Pingora's `fail_to_proxy` phase: Fixative's page for the status (with
/// the request id and the no-train headers), unless a response has begun.
pub(crate) async fn fail_to_proxy(session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
    let code = status_for(e);
    if code == 502 || code == 504 {
        ctx.upstream_failed = true;
    }
    if code > 0 && session.response_written().is_none() {
        let html = match code {
            504 => pages::gateway_timeout(&ctx.request_id),
            502 => pages::bad_gateway(&ctx.request_id),
            _ => {
                let (title, text) = pages::status_text(code);
                pages::page(code, title, text, &ctx.request_id)
            }
        };
        if let Err(err) = respond_html(session, code, html, ctx).await {
            tracing::debug!("cannot send the error page: {err}");
        }
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_status_the_client_gets() {
        let explained = Error::explain(ErrorType::HTTPStatus(413), "too large");
        assert_eq!(status_for(&explained), 413);
        assert_eq!(status_for(&Error::new_up(ErrorType::ConnectTimedout)), 504);
        assert_eq!(status_for(&Error::new_up(ErrorType::ReadTimedout)), 504);
        assert_eq!(status_for(&Error::new_up(ErrorType::ConnectRefused)), 502);
        assert_eq!(status_for(&Error::new_down(ErrorType::ConnectionClosed)), 0);
        assert_eq!(
            status_for(&Error::new_down(ErrorType::InvalidHTTPHeader)),
            400
        );
        assert_eq!(status_for(&Error::new(ErrorType::ConnectRefused)), 502);
        assert_eq!(status_for(&Error::new(ErrorType::InternalError)), 500);
    }
}
