//! Header values built without a `String`: written into an inline
//! buffer, then copied once into the `HeaderValue` (one allocation per
//! header; a `String` converted into a `HeaderValue` costs two when its
//! capacity is not its length), or several written into one buffer and
//! shared ([`Values`]: one allocation for all of them).

use smallvec::SmallVec;

/// A header value being built: inline up to 256 bytes (a forwarding or
/// rate-limit header, or all of a request's, almost always fits), then on
/// the heap.
#[derive(Default)]
pub struct ValueBuf(SmallVec<[u8; 256]>);

impl AsRef<[u8]> for ValueBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Header values written one after another into one inline buffer, then
/// shared ([`Values::share`]): each value is a slice of one heap
/// allocation, where a `HeaderValue` built on its own costs one
/// allocation each. For the values a hook writes together: a request's
/// forwarding headers and id, a response's rate-limit pair.
#[derive(Default)]
pub struct Values {
    buf: ValueBuf,
    ends: SmallVec<[usize; 8]>,
}

impl Values {
    /// No values yet.
    pub fn new() -> Values {
        Values::default()
    }

    /// The buffer, to write the next value at its end.
    pub fn buf(&mut self) -> &mut ValueBuf {
        &mut self.buf
    }

    /// Ends the value written since the previous one; returns its index
    /// for [`SharedValues::get`].
    pub fn end(&mut self) -> usize {
        self.ends.push(self.buf.0.len());
        self.ends.len() - 1
    }

    /// The values, moved into one shared allocation.
    pub fn share(self) -> SharedValues {
        SharedValues {
            bytes: bytes::Bytes::from_owner(self.buf),
            ends: self.ends,
        }
    }
}

/// The values of a [`Values`], in one shared allocation.
pub struct SharedValues {
    bytes: bytes::Bytes,
    ends: SmallVec<[usize; 8]>,
}

impl SharedValues {
    /// Value `i` as a header value (a slice of the shared allocation, no
    /// copy); Pingora's invalid-header error for a byte a header value
    /// cannot hold, or for an index no value has.
    pub fn get(&self, i: usize) -> pingora::Result<http::HeaderValue> {
        let start = match i.checked_sub(1) {
            Some(j) => self.ends.get(j).copied(),
            None => Some(0),
        };
        let range = start.zip(self.ends.get(i).copied());
        let Some((start, end)) = range.filter(|(s, e)| s <= e && *e <= self.bytes.len()) else {
            return Err(pingora::Error::explain(
                pingora::ErrorType::InternalError,
                "no such header value",
            ));
        };
        http::HeaderValue::from_maybe_shared(self.bytes.slice(start..end)).map_err(|_| refused())
    }
}

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
}

/// `bytes` copied into a header value (one allocation), or Pingora's
/// invalid-header error for a byte a header cannot hold.
pub fn header_value(bytes: impl AsRef<[u8]>) -> pingora::Result<http::HeaderValue> {
    http::HeaderValue::from_bytes(bytes.as_ref()).map_err(|_| refused())
}

/// Pingora's error for a byte a header value cannot hold (a control
/// character from a client).
fn refused() -> pingora::BError {
    pingora::Error::explain(
        pingora::ErrorType::InvalidHTTPHeader,
        "header value with a byte a header cannot hold",
    )
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

    proptest! {
        /// Shared values are the bytes written, each as `header_value`
        /// would make it (the same value, or the same refusal).
        #[test]
        fn shared_values_are_what_was_written(parts in proptest::collection::vec(any::<Vec<u8>>(), 0..12)) {
            let mut vs = Values::new();
            let idx: Vec<usize> = parts
                .iter()
                .map(|p| {
                    for &b in p {
                        vs.buf().push_byte(b);
                    }
                    vs.end()
                })
                .collect();
            let shared = vs.share();
            for (i, p) in idx.into_iter().zip(&parts) {
                let got = shared.get(i).ok();
                let want = header_value(p).ok();
                prop_assert_eq!(got, want);
            }
            prop_assert!(shared.get(parts.len()).is_err());
        }
    }

    /// Every value handed out is a slice of the one shared buffer (the
    /// allocations themselves are counted by `tests/allocations.rs`), and
    /// outlives the set it came from.
    #[test]
    fn shared_values_are_slices_of_one_buffer() {
        let mut vs = Values::new();
        for s in [
            "10.0.0.1, 127.0.0.1",
            "for=127.0.0.1;host=\"a.test\";proto=http",
            "10.0.0.1",
            "a.test",
            "3f2a9c1e0b7d4e5f",
        ] {
            vs.buf().push_str(s);
            vs.end();
        }
        let shared = vs.share();
        let a = shared.get(0).unwrap();
        let b = shared.get(3).unwrap();
        assert_eq!(a, "10.0.0.1, 127.0.0.1");
        assert_eq!(b, "a.test");
        // Slices of one buffer.
        let base = shared.bytes.as_ptr() as usize;
        for v in [&a, &b] {
            let p = v.as_bytes().as_ptr() as usize;
            assert!(p >= base && p + v.len() <= base + shared.bytes.len());
        }
        drop(shared);
        assert_eq!(a, "10.0.0.1, 127.0.0.1");
        assert_eq!(b, "a.test");
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
