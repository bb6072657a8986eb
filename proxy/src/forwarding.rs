//! Client address resolution and forwarding headers.
//!
//! `X-Forwarded-For` is believed only when the TCP peer is a trusted proxy;
//! then the chain is walked from the right, skipping trusted hops, and the
//! first untrusted address is the client.

use std::net::IpAddr;

use ipnet::IpNet;

pub use crate::value::ValueBuf;

/// Whether `ip` is inside one of the trusted networks.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|n| n.contains(&ip))
}

/// IPv4-mapped IPv6 addresses as IPv4, so that lists written in IPv4 match.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Parses one `X-Forwarded-For` element: `1.2.3.4`, `1.2.3.4:5678`,
/// `2001:db8::1` or `[2001:db8::1]:5678`.
pub fn parse_xff_element(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let inner = rest.split(']').next()?;
        return inner.parse::<IpAddr>().ok().map(canonical);
    }
    None
}

/// The client's real address.
///
/// `xff` is every `X-Forwarded-For` header value, in order.
pub fn client_ip(peer: IpAddr, xff: &[&str], trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    // Right to left, without collecting the elements.
    for el in xff.iter().rev().flat_map(|h| h.rsplit(',')) {
        match parse_xff_element(el) {
            Some(ip) => {
                client = ip;
                if !is_trusted(ip, trusted) {
                    return ip;
                }
            }
            // Garbage in the chain: stop at the last hop we could vouch for.
            None => return client,
        }
    }
    client
}

/// The `X-Forwarded-For` value to send upstream (the tests' view of
/// [`write_forwarded_for`]).
#[cfg(test)]
pub fn forwarded_for(peer: IpAddr, xff: &[&str], trusted: &[IpNet]) -> String {
    let mut out = ValueBuf::new();
    write_forwarded_for(&mut out, peer, xff, trusted);
    out.as_str().to_string()
}

/// Writes the `X-Forwarded-For` value to send upstream: the trusted chain
/// so far (only when `peer` is a trusted proxy), then this hop.
pub fn write_forwarded_for(out: &mut ValueBuf, peer: IpAddr, xff: &[&str], trusted: &[IpNet]) {
    let peer = canonical(peer);
    if is_trusted(peer, trusted) {
        for el in xff
            .iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            out.push_str(el);
            out.push_str(", ");
        }
    }
    out.push_ip(peer);
}

/// One RFC 7239 `Forwarded` element for this hop (the tests' view of
/// [`write_forwarded_element`]).
#[cfg(test)]
pub fn forwarded_element(peer: IpAddr, host: &str, proto: &str) -> String {
    let mut out = ValueBuf::new();
    write_forwarded_element(&mut out, peer, host, proto);
    out.as_str().to_string()
}

/// Writes one RFC 7239 `Forwarded` element for this hop.
pub fn write_forwarded_element(out: &mut ValueBuf, peer: IpAddr, host: &str, proto: &str) {
    match canonical(peer) {
        ip @ IpAddr::V4(_) => {
            out.push_str("for=");
            out.push_ip(ip);
        }
        ip @ IpAddr::V6(_) => {
            out.push_str("for=\"[");
            out.push_ip(ip);
            out.push_str("]\"");
        }
    }
    out.push_str(";host=\"");
    for c in host
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
    {
        out.push_byte(c as u8);
    }
    out.push_str("\";proto=");
    out.push_str(proto);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::header_value;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_xff_is_ignored() {
        let t = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(peer, &["1.1.1.1"], &t), peer);
        assert_eq!(forwarded_for(peer, &["1.1.1.1"], &t), "203.0.113.9");
    }

    #[test]
    fn trusted_chain_is_walked_from_the_right() {
        let t = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let xff = ["198.51.100.7, 203.0.113.5", "10.1.1.1"];
        assert_eq!(
            client_ip(peer, &xff, &t),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            forwarded_for(peer, &xff, &t),
            "198.51.100.7, 203.0.113.5, 10.1.1.1, 10.0.0.2"
        );
    }

    #[test]
    fn garbage_stops_the_walk_and_ports_are_accepted() {
        let t = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(peer, &["evil, 10.0.0.3"], &t),
            "10.0.0.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, &["[2001:db8::1]:443"], &t),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, &["192.0.2.1:5555"], &t),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn mapped_ipv4_is_canonical_and_forwarded_quotes_v6() {
        let t = nets(&["127.0.0.0/8"]);
        let peer: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(is_trusted(peer, &t));
        assert_eq!(
            forwarded_element("2001:db8::1".parse().unwrap(), "a.example", "https"),
            "for=\"[2001:db8::1]\";host=\"a.example\";proto=https"
        );
    }

    /// A chain longer than the inline buffer (256 bytes) spills to the
    /// heap whole, and its header value is the same text.
    #[test]
    fn a_long_chain_is_written_whole() {
        let t = nets(&["10.0.0.0/8"]);
        let hops: Vec<String> = (0..40).map(|i| format!("192.0.2.{i}")).collect();
        let joined = hops.join(", ");
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let want = format!("{joined}, 10.0.0.2");
        assert!(want.len() > 256);
        assert_eq!(forwarded_for(peer, &[joined.as_str()], &t), want);
        let mut buf = ValueBuf::new();
        write_forwarded_for(&mut buf, peer, &[joined.as_str()], &t);
        assert_eq!(
            header_value(buf.as_bytes()).unwrap().to_str().unwrap(),
            want
        );
        // A byte a header value cannot hold is an error, not a panic.
        buf.clear();
        buf.push_str("a\nb");
        assert!(header_value(buf.as_bytes()).is_err());
    }

    mod fuzz {
        //! Property tests over hostile forwarding headers.
        use super::super::*;
        use proptest::prelude::*;

        fn element() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string()),
                any::<std::net::Ipv6Addr>().prop_map(|a| a.to_string()),
                (any::<std::net::Ipv6Addr>(), any::<u16>()).prop_map(|(a, p)| format!("[{a}]:{p}")),
                (any::<std::net::Ipv4Addr>(), any::<u16>()).prop_map(|(a, p)| format!("{a}:{p}")),
                "[ -~]{0,40}",
                "\\PC{0,20}",
            ]
        }

        proptest! {
            #[test]
            fn the_client_is_the_peer_or_an_address_of_the_chain(
                peer in any::<IpAddr>(),
                headers in proptest::collection::vec(
                    proptest::collection::vec(element(), 0..6).prop_map(|v| v.join(", ")),
                    0..3,
                ),
                trust_peer in any::<bool>(),
            ) {
                let trusted: Vec<IpNet> = if trust_peer {
                    vec![IpNet::from(canonical(peer))]
                } else {
                    Vec::new()
                };
                let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
                let ip = client_ip(peer, &refs, &trusted);
                if trust_peer {
                    let listed: Vec<IpAddr> = headers
                        .iter()
                        .flat_map(|h| h.split(','))
                        .filter_map(|e| parse_xff_element(e.trim()))
                        .map(canonical)
                        .collect();
                    prop_assert!(ip == canonical(peer) || ip == peer || listed.contains(&canonical(ip)));
                } else {
                    prop_assert!(ip == peer || ip == canonical(peer));
                }
                // The header sent upstream ends with this hop's peer, which
                // parses back; what a trusted proxy sent before is kept as is.
                let out = forwarded_for(peer, &refs, &trusted);
                let last = out.rsplit(',').next().map(str::trim).and_then(parse_xff_element);
                prop_assert_eq!(last, Some(canonical(peer)), "{}", out);
                let _ = forwarded_element(peer, "h\u{0}st", "https");
            }
        }
    }
}
