//! Header values built without a `String`: written into an inline
//! buffer, then copied once into the `HeaderValue` (one allocation per
//! header; a `String` converted into a `HeaderValue` costs two when its
//! capacity is not its length).

use smallvec::SmallVec;

/// A header value being built: inline up to 128 bytes (a forwarding or
/// rate-limit header almost always fits), then on the heap.
#[derive(Default)]
pub struct ValueBuf(SmallVec<[u8; 128]>);

impl ValueBuf {
    /// An empty buffer.
    pub fn new() -> ValueBuf {
        ValueBuf(SmallVec::new())
    }

    /// Empties it, keeping its room.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Appends text.
    pub fn push_str(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// Appends one byte.
    pub fn push_byte(&mut self, b: u8) {
        self.0.push(b);
    }

    /// Appends `v` as its `Display` shows it.
    pub fn push_display(&mut self, v: impl std::fmt::Display) {
        use std::fmt::Write;
        let _ = write!(self, "{v}");
    }

    /// Appends `n` in decimal (what `push_display` writes, without the
    /// formatting machinery: rate-limit values are on every limited
    /// response).
    pub fn push_u64(&mut self, n: u64) {
        self.push_str(itoa::Buffer::new().format(n));
    }

    /// Appends an address as `Display` shows it; IPv4, by far the most
    /// common, without the formatting machinery.
    pub fn push_ip(&mut self, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push_byte(b'.');
                    }
                    self.push_u64(u64::from(octet));
                }
            }
            std::net::IpAddr::V6(v6) => self.push_display(v6),
        }
    }

    /// What has been written, as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// What has been written.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The contents as a header value (one copy); an error for bytes a
    /// header value cannot hold (a control character from a client).
    pub fn header_value(&self) -> pingora::Result<http::HeaderValue> {
        header_value(&self.0)
    }
}

/// `bytes` copied into a header value (one allocation), or Pingora's
/// invalid-header error for a byte a header cannot hold.
pub fn header_value(bytes: impl AsRef<[u8]>) -> pingora::Result<http::HeaderValue> {
    http::HeaderValue::from_bytes(bytes.as_ref()).map_err(|_| {
        pingora::Error::explain(
            pingora::ErrorType::InvalidHTTPHeader,
            "header value with a byte a header cannot hold",
        )
    })
}

impl std::fmt::Write for ValueBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Decimal digits as `Display` writes them.
        #[test]
        fn push_u64_writes_what_display_writes(n in any::<u64>()) {
            let mut b = ValueBuf::new();
            b.push_str("q=");
            b.push_u64(n);
            prop_assert_eq!(b.as_str(), format!("q={n}"));
        }
    }

    proptest! {
        /// Addresses as `Display` writes them.
        #[test]
        fn push_ip_writes_what_display_writes(v4 in any::<[u8; 4]>(), v6 in any::<[u16; 8]>()) {
            for ip in [std::net::IpAddr::from(v4), std::net::IpAddr::from(v6)] {
                let mut b = ValueBuf::new();
                b.push_ip(ip);
                prop_assert_eq!(b.as_str(), ip.to_string());
            }
        }
    }

    #[test]
    fn push_u64_edges() {
        for n in [0, 9, 10, 99, 100, u64::MAX] {
            let mut b = ValueBuf::new();
            b.push_u64(n);
            assert_eq!(b.as_str(), n.to_string());
        }
    }
}
