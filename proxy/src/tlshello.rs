//! The client's TLS ClientHello, read before the handshake.
//!
//! Pingora calls [`HelloReader`] on every accepted TLS connection before
//! the handshake (its pre-TLS hook). It reads the first TLS record (the
//! ClientHello, at most 16 KiB), puts the bytes back for the handshake,
//! and keeps the parsed facts and JA4 fingerprint in a bounded table by
//! the client's socket address, where the connection's requests find them
//! ([`HelloTable::get`]). Nothing is read when the first byte is not a TLS
//! handshake record; the handshake then fails as it would have.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fixative_rules::tls::{ClientHello, record_len};
use lru::LruCache;
use pingora::protocols::GetSocketDigest;
use pingora::protocols::l4::stream::Stream as L4Stream;
use tokio::io::AsyncReadExt;

/// Largest first record read (a TLS record is at most 16 KiB + header).
const MAX_RECORD: usize = 16 * 1024 + 5;
/// Entries kept: connections whose ClientHello was read recently.
const CAPACITY: usize = 65_536;

/// ClientHello facts by client socket address, LRU-bounded.
pub struct HelloTable {
    map: Mutex<LruCache<SocketAddr, Arc<ClientHello>>>,
}

impl Default for HelloTable {
    fn default() -> Self {
        HelloTable {
            map: Mutex::new(LruCache::new(
                NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }
}

impl HelloTable {
    /// The ClientHello of the connection from `peer`.
    pub fn get(&self, peer: &SocketAddr) -> Option<Arc<ClientHello>> {
        self.map.lock().ok()?.peek(peer).cloned()
    }

    fn put(&self, peer: SocketAddr, h: ClientHello) {
        if let Ok(mut m) = self.map.lock() {
            m.put(peer, Arc::new(h));
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Pingora's pre-TLS hook: reads and records the ClientHello.
pub struct HelloReader {
    table: Arc<HelloTable>,
}

impl HelloReader {
    /// A reader recording into `table`.
    pub fn new(table: Arc<HelloTable>) -> HelloReader {
        HelloReader { table }
    }
}

#[async_trait]
impl pingora::listeners::PreTlsProcess for HelloReader {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let mut buf = vec![0u8; 5];
        let read = async {
            stream.read_exact(&mut buf).await?;
            if let Some(total) = record_len(&buf).filter(|t| *t <= MAX_RECORD) {
                let mut rest = vec![0u8; total - 5];
                stream.read_exact(&mut rest).await?;
                buf.extend_from_slice(&rest);
            }
            Ok::<_, std::io::Error>(())
        };
        // Pingora bounds the whole handshake (60 s); a client this slow
        // only loses its fingerprint.
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(10), read).await,
            Ok(Ok(()))
        );
        if ok
            && let Some(peer) = peer
            && let Some(h) = ClientHello::parse(&buf)
        {
            self.table.put(peer, h);
        }
        if ok {
            stream.rewind(&buf);
        }
        Ok(())
    }
}
