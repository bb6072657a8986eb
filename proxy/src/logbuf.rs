//! A batching writer for the access log: request threads append lines to
//! a shared buffer (no system call, no thread wake-up per request); one
//! thread writes the buffer out every 50 ms, or at once when it passes
//! 64 KiB. Bounded: past 8 MiB waiting (a stalled disk), lines are dropped
//! and counted, never queued without limit and never blocking a request.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Written out at once past this.
const FLUSH_AT: usize = 64 * 1024;
/// Dropped past this.
const CAP: usize = 8 * 1024 * 1024;
/// Longest a line waits.
const INTERVAL: Duration = Duration::from_millis(50);

struct Inner {
    buf: Mutex<Vec<u8>>,
    wake: Condvar,
    stop: AtomicBool,
    dropped: AtomicU64,
}

/// The shared buffer; clone handles freely.
#[derive(Clone)]
pub struct BatchWriter {
    inner: Arc<Inner>,
}

/// Stops the writer thread and writes what is left when dropped.
pub struct BatchGuard {
    inner: Arc<Inner>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BatchWriter {
    /// Starts the writer thread over `sink`.
    pub fn new(mut sink: Box<dyn Write + Send>) -> (BatchWriter, BatchGuard) {
        let inner = Arc::new(Inner {
            buf: Mutex::new(Vec::with_capacity(FLUSH_AT * 2)),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let me = inner.clone();
        let thread = std::thread::Builder::new()
            .name("fixative-log".into())
            .spawn(move || {
                let mut out = Vec::with_capacity(FLUSH_AT * 2);
                loop {
                    let stop = {
                        let Ok(guard) = me.buf.lock() else { return };
                        let (mut buf, _) = match me.wake.wait_timeout(guard, INTERVAL) {
                            Ok(x) => x,
                            Err(_) => return,
                        };
                        std::mem::swap(&mut *buf, &mut out);
                        me.stop.load(Ordering::Relaxed)
                    };
                    if !out.is_empty() {
                        let _ = sink.write_all(&out);
                        let _ = sink.flush();
                        out.clear();
                    }
                    let lost = me.dropped.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        tracing::warn!(
                            "access log: {lost} line(s) dropped (the destination is not keeping up)"
                        );
                    }
                    if stop {
                        return;
                    }
                }
            })
            .ok();
        (
            BatchWriter {
                inner: inner.clone(),
            },
            BatchGuard { inner, thread },
        )
    }

    /// Appends one line (or drops it when the buffer is full).
    pub fn append(&self, line: &[u8]) {
        let Ok(mut buf) = self.inner.buf.lock() else {
            return;
        };
        if buf.len() + line.len() > CAP {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = buf.len();
        buf.extend_from_slice(line);
        if before < FLUSH_AT && buf.len() >= FLUSH_AT {
            self.inner.wake.notify_one();
        }
    }

    /// Lines dropped since the last write-out.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for BatchGuard {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.inner.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Write for BatchWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.append(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An in-memory destination whose bytes a test reads back.
    #[derive(Clone, Default)]
    pub(crate) struct Sink(pub(crate) Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_within_the_interval_and_on_drop() {
        let sink = Sink::default();
        let (w, guard) = BatchWriter::new(Box::new(sink.clone()));
        for i in 0..1000 {
            w.append(format!("line {i}\n").as_bytes());
        }
        std::thread::sleep(INTERVAL * 4);
        let got = String::from_utf8(sink.0.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(got.lines().count(), 1000);
        assert!(
            got.lines()
                .enumerate()
                .all(|(i, l)| l == format!("line {i}"))
        );
        w.append(b"last\n");
        drop(guard);
        let got = sink.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert!(got.ends_with(b"last\n"));
    }

    /// A sink that never returns: the buffer stops at its cap and counts.
    #[test]
    fn a_stalled_destination_drops_lines_instead_of_growing() {
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (w, guard) = BatchWriter::new(Box::new(Stuck));
        let line = vec![b'x'; 1024];
        for _ in 0..(3 * CAP / 1024) {
            w.append(&line);
        }
        let held = w.inner.buf.lock().map(|b| b.len()).unwrap_or(0);
        assert!(held <= CAP, "{held}");
        assert!(w.dropped() > 0);
        // The thread is stuck in the sink: do not join it.
        std::mem::forget(guard);
    }
}
