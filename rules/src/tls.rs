//! TLS ClientHello facts and the JA4 fingerprint (FoxIO's JA4, BSD
//! 3-Clause; none of the other JA4+ methods).
//!
//! The proxy reads the ClientHello record before the handshake (see
//! `proxy/src/tlshello.rs`) and hands it here. Besides the JA4 string, the
//! facts that tell a browser's TLS stack from a library's are kept, so
//! that the check generalises beyond a list of known fingerprints:
//!
//! - every current browser offers ALPN (`h2`, `http/1.1`); many libraries
//!   offer none;
//! - Chromium browsers and Safari put GREASE values in their cipher and
//!   extension lists; OpenSSL, Go, rustls and Java do not (Firefox does
//!   not either, so the rule applies to Chromium and Safari claims only);
//! - browsers offer at most about 20 cipher suites; OpenSSL's default list
//!   (curl, Python, PHP, Ruby) offers 30 or more.
//!
//! Tools that impersonate a browser's ClientHello (curl-impersonate,
//! curl_cffi, uTLS) pass these checks: a signal, not proof.

use sha2::{Digest, Sha256};

/// What a ClientHello says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The JA4 fingerprint, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
    pub ja4: String,
    /// Cipher suites offered (GREASE excluded); `None` when only the JA4
    /// string is known and it was cut.
    pub ciphers: u16,
    /// ALPN offered at all.
    pub alpn: bool,
    /// GREASE values present; `None` when unknown (from a JA4 string,
    /// which drops them).
    pub grease: Option<bool>,
}

fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// A byte reader that never panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }
    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(
            (usize::from(*b.first()?) << 16)
                | (usize::from(*b.get(1)?) << 8)
                | usize::from(*b.get(2)?),
        )
    }
    fn u16s(mut self) -> Vec<u16> {
        let mut v = Vec::new();
        while let Some(x) = self.u16() {
            v.push(x);
        }
        v
    }
}

/// How many bytes of a TLS record start (`buf`) make the whole first
/// record, or `None` when `buf` is not a handshake record.
pub fn record_len(buf: &[u8]) -> Option<usize> {
    if buf.first() != Some(&0x16) || buf.get(1) != Some(&0x03) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*buf.get(3)?, *buf.get(4)?]));
    Some(5 + len)
}

fn hash12(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn hex_list(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl ClientHello {
    /// Parses the first TLS record (a ClientHello in one record, as every
    /// browser and library sends it). `None` for anything else.
    pub fn parse(record: &[u8]) -> Option<ClientHello> {
        let mut r = Reader(record);
        if r.u8()? != 0x16 {
            return None;
        }
        r.u16()?;
        let len = usize::from(r.u16()?);
        let mut h = Reader(r.take(len)?);
        if h.u8()? != 0x01 {
            return None;
        }
        let hlen = h.u24()?;
        let mut b = Reader(h.take(hlen)?);
        let legacy_version = b.u16()?;
        b.take(32)?;
        let sid = usize::from(b.u8()?);
        b.take(sid)?;
        let clen = usize::from(b.u16()?);
        let all_ciphers = Reader(b.take(clen)?).u16s();
        let comp = usize::from(b.u8()?);
        b.take(comp)?;
        let mut ext_types = Vec::new();
        let mut sni = false;
        let mut alpn_first: Option<Vec<u8>> = None;
        let mut versions: Vec<u16> = Vec::new();
        let mut sig_algs: Vec<u16> = Vec::new();
        let mut grease = all_ciphers.iter().any(|c| is_grease(*c));
        if let Some(elen) = b.u16() {
            let mut e = Reader(b.take(usize::from(elen))?);
            while let Some(t) = e.u16() {
                let l = usize::from(e.u16()?);
                let data = e.take(l)?;
                if is_grease(t) {
                    grease = true;
                    continue;
                }
                ext_types.push(t);
                let mut d = Reader(data);
                match t {
                    0x0000 => sni = true,
                    0x0010 => {
                        d.u16()?;
                        let n = usize::from(d.u8()?);
                        alpn_first = Some(d.take(n)?.to_vec());
                    }
                    0x002b => {
                        let n = usize::from(d.u8()?);
                        versions = Reader(d.take(n)?).u16s();
                    }
                    0x000d => {
                        let n = usize::from(d.u16()?);
                        sig_algs = Reader(d.take(n)?).u16s();
                    }
                    _ => {}
                }
            }
        }
        let ciphers: Vec<u16> = all_ciphers.into_iter().filter(|c| !is_grease(*c)).collect();
        let version = versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(legacy_version);
        let v = match version {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            0x0002 => "s2",
            _ => "00",
        };
        let alpn = match alpn_first.as_deref() {
            None | Some([]) => "00".to_string(),
            Some(a) => {
                let (f, l) = (*a.first()?, *a.last()?);
                if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                    format!("{}{}", f as char, l as char)
                } else {
                    let hex = format!("{f:02x}{l:02x}");
                    let hb = hex.as_bytes();
                    format!("{}{}", *hb.first()? as char, *hb.last()? as char)
                }
            }
        };
        let count = |n: usize| format!("{:02}", n.min(99));
        let a = format!(
            "t{v}{}{}{}{alpn}",
            if sni { 'd' } else { 'i' },
            count(ciphers.len()),
            count(ext_types.len())
        );
        let mut sorted_c = ciphers.clone();
        sorted_c.sort_unstable();
        let b_part = if sorted_c.is_empty() {
            "000000000000".to_string()
        } else {
            hash12(&hex_list(&sorted_c))
        };
        let mut sorted_e: Vec<u16> = ext_types
            .iter()
            .copied()
            .filter(|t| *t != 0x0000 && *t != 0x0010)
            .collect();
        sorted_e.sort_unstable();
        let sig: Vec<u16> = sig_algs.into_iter().filter(|s| !is_grease(*s)).collect();
        let c_part = if sorted_e.is_empty() {
            "000000000000".to_string()
        } else if sig.is_empty() {
            hash12(&hex_list(&sorted_e))
        } else {
            hash12(&format!("{}_{}", hex_list(&sorted_e), hex_list(&sig)))
        };
        Some(ClientHello {
            ja4: format!("{a}_{b_part}_{c_part}"),
            ciphers: u16::try_from(ciphers.len()).unwrap_or(u16::MAX),
            alpn: alpn_first.is_some(),
            grease: Some(grease),
        })
    }

    /// The facts a JA4 string carries (from a load balancer's header).
    pub fn from_ja4(ja4: &str) -> Option<ClientHello> {
        let a = ja4.split('_').next()?;
        if a.len() != 10 || !a.is_ascii() {
            return None;
        }
        let ciphers: u16 = a.get(4..6)?.parse().ok()?;
        let alpn = a.get(8..10)? != "00";
        Some(ClientHello {
            ja4: ja4.to_string(),
            ciphers,
            alpn,
            grease: None,
        })
    }

    /// Why this ClientHello is not the claimed browser's, or `None`.
    /// `chromium_or_safari`: the user agent claims a browser whose TLS
    /// stack sends GREASE.
    pub fn mismatch(&self, chromium_or_safari: bool) -> Option<&'static str> {
        if !self.alpn {
            return Some("TLS without ALPN, which every browser offers");
        }
        if self.ciphers > 24 {
            return Some("an OpenSSL-style list of 25+ cipher suites");
        }
        if chromium_or_safari && self.grease == Some(false) {
            return Some("TLS without GREASE, which Chromium and Safari always send");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello built from parts: GREASE first, like Chrome.
    fn hello(ciphers: &[u16], exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            body.extend_from_slice(&c.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]);
        let mut e = Vec::new();
        for (t, d) in exts {
            e.extend_from_slice(&t.to_be_bytes());
            e.extend_from_slice(&(d.len() as u16).to_be_bytes());
            e.extend_from_slice(d);
        }
        body.extend_from_slice(&(e.len() as u16).to_be_bytes());
        body.extend_from_slice(&e);
        let mut hs = vec![0x01];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    fn u16s(v: &[u16], len_bytes: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let n = v.len() * 2;
        if len_bytes == 1 {
            out.push(n as u8);
        } else {
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        for x in v {
            out.extend_from_slice(&x.to_be_bytes());
        }
        out
    }

    /// The published example: Chrome's `t13d1516h2_8daaf6152771_e5627efa2ab1`
    /// from its 15 ciphers, 16 extensions and 8 signature algorithms.
    #[test]
    fn the_published_chrome_example() {
        let ciphers = [
            0x1a1a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let sigs = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let mut alpn = vec![0, 12, 2, b'h', b'2'];
        alpn.extend_from_slice(&[8]);
        alpn.extend_from_slice(b"http/1.1");
        let exts: Vec<(u16, Vec<u8>)> = vec![
            (0x2a2a, vec![]),
            (0x0000, vec![0, 5, 0, 0, 2, b'a', b'b']),
            (0x0017, vec![]),
            (0xff01, vec![0]),
            (0x000a, vec![0, 2, 0, 0x1d]),
            (0x000b, vec![1, 0]),
            (0x0023, vec![]),
            (0x0010, alpn),
            (0x0005, vec![1, 0, 0, 0, 0]),
            (0x000d, u16s(&sigs, 2)),
            (0x0012, vec![]),
            (0x0033, vec![0, 0]),
            (0x002d, vec![1, 1]),
            (0x002b, u16s(&[0x3a3a, 0x0304, 0x0303], 1)),
            (0x001b, vec![2, 0, 2]),
            (0x4469, vec![0, 3, 2, b'h', b'2']),
            (0x0015, vec![0; 4]),
            (0x4a4a, vec![0]),
        ];
        let h = ClientHello::parse(&hello(&ciphers, &exts)).unwrap();
        assert_eq!(h.ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(h.grease, Some(true));
        assert_eq!(h.mismatch(true), None);
        // The same facts from the string a load balancer would send.
        let f = ClientHello::from_ja4(&h.ja4).unwrap();
        assert_eq!((f.ciphers, f.alpn, f.grease), (15, true, None));
    }

    #[test]
    fn library_shapes_and_garbage() {
        let no_alpn = hello(&[0x1301, 0xc02f], &[(0x0000, vec![0, 3, 0, 0, 0])]);
        let h = ClientHello::parse(&no_alpn).unwrap();
        assert!(h.ja4.starts_with("t12d0201"), "{}", h.ja4);
        assert!(h.mismatch(false).unwrap().contains("ALPN"));
        let alpn = vec![0, 3, 2, b'h', b'2'];
        let openssl: Vec<u16> = (0..31).map(|i| 0xc000 + i).collect();
        let h = ClientHello::parse(&hello(&openssl, &[(0x0010, alpn.clone())])).unwrap();
        assert!(h.mismatch(false).unwrap().contains("25+"));
        let h = ClientHello::parse(&hello(&[0x1301], &[(0x0010, alpn)])).unwrap();
        assert!(h.mismatch(true).unwrap().contains("GREASE"));
        assert_eq!(h.mismatch(false), None);
        for cut in 0..no_alpn.len() {
            let _ = ClientHello::parse(&no_alpn[..cut]);
        }
        assert_eq!(ClientHello::parse(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(ClientHello::from_ja4("nonsense"), None);
    }
}
