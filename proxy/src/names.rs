//! Header names Fixative writes on every proxied request, parsed once.
//!
//! Pingora's `insert_header` parses the name it is given on every call; a
//! name outside the standard set is copied on the way, and the copy cloned
//! into the header's case map (two heap allocations per header). These
//! names are parsed at compile time and inserted with
//! `insert_header_prepared`, which clones them without allocating (the
//! method comes from the patched `pingora-http` in `vendor/`).

use pingora::http::PreparedHeaderName;

/// Declares each name as a static parsed at compile time, written in
/// lowercase or as given after `as`.
macro_rules! names {
    ($($(#[$doc:meta])* $id:ident = $name:literal $(as $written:literal)?;)*) => {
        $($(#[$doc])* pub static $id: PreparedHeaderName = names!(@make $name $(, $written)?);)*
        /// Every name above, for the tests.
        #[cfg(test)]
        pub(crate) static ALL: &[&PreparedHeaderName] = &[$(&$id),*];
    };
    (@make $name:literal) => { PreparedHeaderName::from_static($name) };
    (@make $name:literal, $written:literal) => {
        PreparedHeaderName::from_static_written_as($name, $written)
    };
}

names! {
    /// The client chain for the origin.
    X_FORWARDED_FOR = "x-forwarded-for";
    /// The client's scheme for the origin.
    X_FORWARDED_PROTO = "x-forwarded-proto";
    /// The client's host for the origin.
    X_FORWARDED_HOST = "x-forwarded-host";
    /// RFC 7239 `Forwarded`.
    FORWARDED = "forwarded";
    /// The client address for the origin.
    X_REAL_IP = "x-real-ip";
    /// The request id, both ways.
    X_REQUEST_ID = "x-request-id";
    /// The no-train robots directives.
    X_ROBOTS_TAG = "x-robots-tag";
    /// TDMRep's reservation.
    TDM_RESERVATION = "tdm-reservation";
    /// TDMRep's policy link.
    TDM_POLICY = "tdm-policy";
    /// IETF AI preferences.
    CONTENT_USAGE = "content-usage";
    /// The verdict, with debug headers on.
    X_FIXATIVE_VERDICT = "x-fixative-verdict";
    /// The rate-limit policy (draft-ietf-httpapi-ratelimit-headers).
    RATELIMIT_POLICY = "ratelimit-policy";
    /// The rate-limit state.
    RATELIMIT = "ratelimit";
    /// The licence link (RSL); not in Pingora's list of names it writes
    /// title-cased, so it would be copied as `link`.
    LINK = "link" as "Link";
    /// Identity encoding for pages to rewrite (likewise).
    ACCEPT_ENCODING = "accept-encoding" as "Accept-Encoding";
}

/// The most headers `upstream_request_filter` adds to a request (the six
/// above, `Accept-Encoding` and `Host`): room is reserved for them at once,
/// so the header maps grow at most once.
pub const ADDED_TO_REQUESTS: usize = 8;
/// The most headers `response_filter` adds to a proxied response (request
/// id, four directives, `Link`, verdict, two rate-limit headers and
/// `Transfer-Encoding`).
pub const ADDED_TO_RESPONSES: usize = 10;

/// Makes Pingora build the header maps of what it reads (requests from
/// clients, responses from origins) with room for the headers Fixative adds
/// to them, so that adding them does not regrow the maps (a regrowth
/// reallocates and rehashes both the value map and the case map). Called
/// once at start. The request Pingora sends upstream is a copy of the
/// client's, whose value lists are copied at their length: those still
/// grow once, by one reallocation each.
pub fn reserve_headroom() {
    pingora::http::set_header_headroom(ADDED_TO_REQUESTS.max(ADDED_TO_RESPONSES));
}

#[cfg(test)]
mod tests {
    /// With the headroom, a header built as Pingora builds what it reads
    /// (sized by the count of headers read) takes every header Fixative
    /// adds without its map growing; without it, the map grows.
    #[test]
    fn headroom_means_added_headers_never_regrow_a_read_header() {
        let added: Vec<&PreparedHeaderName> = vec![
            &X_REQUEST_ID,
            &X_ROBOTS_TAG,
            &TDM_RESERVATION,
            &TDM_POLICY,
            &CONTENT_USAGE,
            &LINK,
            &X_FIXATIVE_VERDICT,
            &RATELIMIT_POLICY,
            &RATELIMIT,
        ];
        let read = [
            "date",
            "content-type",
            "content-length",
            "etag",
            "server",
            "x-origin",
        ];
        let grows = |headroom: usize| {
            pingora::http::set_header_headroom(headroom);
            let mut resp = ResponseHeader::build(200, Some(read.len())).unwrap();
            for h in read {
                resp.append_header(h, "v").unwrap();
            }
            let before = resp.headers.capacity();
            resp.reserve_headers(ADDED_TO_RESPONSES).unwrap();
            for n in &added {
                resp.insert_header_prepared(n, http::HeaderValue::from_static("v"))
                    .unwrap();
            }
            resp.insert_header("transfer-encoding", "chunked").unwrap();
            let resp_grew = resp.headers.capacity() != before;

            let mut req = RequestHeader::build("GET", b"/", Some(read.len())).unwrap();
            for h in read {
                req.append_header(h, "v").unwrap();
            }
            let before = req.headers.capacity();
            req.reserve_headers(ADDED_TO_REQUESTS).unwrap();
            for n in [
                &X_FORWARDED_FOR,
                &X_FORWARDED_PROTO,
                &FORWARDED,
                &X_REAL_IP,
                &X_FORWARDED_HOST,
                &X_REQUEST_ID,
                &ACCEPT_ENCODING,
            ] {
                req.insert_header_prepared(n, http::HeaderValue::from_static("v"))
                    .unwrap();
            }
            req.insert_header("host", "a.test").unwrap();
            (resp_grew, req.headers.capacity() != before)
        };
        // Process-wide: this test alone sets it among these unit tests
        // (others neither set nor depend on it), and it leaves the value
        // Fixative runs with.
        assert_eq!(grows(0), (true, true));
        reserve_headroom();
        assert_eq!(
            grows(ADDED_TO_REQUESTS.max(ADDED_TO_RESPONSES)),
            (false, false)
        );
    }

    use super::*;
    use pingora::http::{RequestHeader, ResponseHeader};

    /// A prepared name goes on the wire exactly as the parsed one would,
    /// and replaces or joins values the same way.
    #[test]
    fn prepared_names_behave_as_parsed_names() {
        for n in ALL {
            let name = n.name().as_str();
            let written = String::from_utf8(n.as_written().to_vec()).unwrap();
            assert!(written.eq_ignore_ascii_case(name), "{written} / {name}");
            let mut parsed = ResponseHeader::build(200, None).unwrap();
            let mut prepared = ResponseHeader::build(200, None).unwrap();
            for r in [&mut parsed, &mut prepared] {
                r.append_header("Server", "origin").unwrap();
            }
            parsed.insert_header(written.clone(), "a").unwrap();
            parsed.append_header(written.clone(), "b").unwrap();
            parsed.insert_header(written.clone(), "c").unwrap();
            parsed.append_header(written.clone(), "d").unwrap();
            prepared.reserve_headers(ADDED_TO_RESPONSES).unwrap();
            for (insert, v) in [(true, "a"), (false, "b"), (true, "c"), (false, "d")] {
                let v = http::HeaderValue::from_static(v);
                if insert {
                    prepared.insert_header_prepared(n, v).unwrap();
                } else {
                    prepared.append_header_prepared(n, v).unwrap();
                }
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            parsed.header_to_h1_wire(&mut a);
            prepared.header_to_h1_wire(&mut b);
            assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
            assert_eq!(
                String::from_utf8_lossy(&b),
                format!("Server: origin\r\n{written}: c\r\n{written}: d\r\n")
            );
            assert_eq!(prepared.headers.get_all(name).iter().count(), 2);

            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.append_header("X-Forwarded-For", "10.0.0.1").unwrap();
            req.reserve_headers(ADDED_TO_REQUESTS).unwrap();
            req.insert_header_prepared(n, http::HeaderValue::from_static("v"))
                .unwrap();
            assert_eq!(req.headers.get(name).unwrap(), "v");
        }
    }

    /// A name written in another case must be the same name.
    #[test]
    #[should_panic(expected = "not the same header name")]
    fn a_written_case_of_another_name_is_refused() {
        let _ = PreparedHeaderName::from_static_written_as("link", "Lynk");
    }

    /// Replacing a header the client sent in another case writes ours in
    /// our case, once (what `insert_header` does with a parsed name).
    #[test]
    fn a_prepared_insert_replaces_the_clients_header_whatever_its_case() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Forwarded-For", "1.2.3.4").unwrap();
        req.append_header("x-FORWARDED-for", "5.6.7.8").unwrap();
        req.insert_header_prepared(&X_FORWARDED_FOR, http::HeaderValue::from_static("9.9.9.9"))
            .unwrap();
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        assert_eq!(
            String::from_utf8_lossy(&wire),
            "x-forwarded-for: 9.9.9.9\r\n"
        );
    }
}
