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
