//! The writer: a thread behind a bounded queue, so that recording a visit
//! never waits for the disk.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use crate::record::{Body, Line, Visit};

/// The writer's settings.
#[derive(Clone)]
pub struct LedgerConfig {
    /// The directory of the ledger's files (created if missing).
    pub dir: PathBuf,
    /// The key seals are signed with.
    pub key: SigningKey,
    /// Seal after this many lines.
    pub seal_every: u64,
    /// Seal unsealed lines at least this often.
    pub seal_interval: Duration,
    /// Start a new file past this size (and at each UTC day).
    pub max_file_bytes: u64,
    /// Remove the oldest files beyond this total.
    pub max_total_bytes: u64,
    /// Visits waiting for the writer at most; more are dropped and counted.
    pub queue: usize,
    /// This node's name, in `start` lines.
    pub node: String,
}

/// Counters the proxy exports as metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Visits written.
    pub records: AtomicU64,
    /// Visits dropped because the queue was full (since start).
    pub dropped: AtomicU64,
    /// Dropped visits not yet noted by a `gap` line.
    gap: AtomicU64,
    /// Failed writes (disk full, permissions).
    pub write_errors: AtomicU64,
    /// Seals written.
    pub seals: AtomicU64,
    /// Bytes of the ledger's files on disk.
    pub bytes: AtomicU64,
    /// Files removed to stay within the disk budget.
    pub removed_files: AtomicU64,
}

/// A running ledger.
pub struct Ledger {
    tx: Option<SyncSender<Visit>>,
    stats: Arc<Stats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ledger {
    /// Opens the ledger in `cfg.dir`, continuing its chain (an unfinished
    /// last line is cut off and the cut noted), and starts the writer.
    pub fn open(cfg: LedgerConfig) -> Result<Ledger, String> {
        let state = State::open(&cfg)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue.max(1));
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("fixative-evidence".into())
            .spawn(move || run(cfg, state, rx, st))
            .map_err(|e| format!("cannot start the evidence writer: {e}"))?;
        Ok(Ledger {
            tx: Some(tx),
            stats,
            thread: Some(thread),
        })
    }

    /// Queues a visit; never blocks. `false` when the queue was full (the
    /// visit is counted as dropped and the next line notes the gap).
    pub fn record(&self, v: Visit) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(v) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.gap.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Writes what is queued, seals it and stops the writer.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The chain's position and the open file.
struct State {
    next_n: u64,
    prev: String,
    file: BufWriter<File>,
    path: PathBuf,
    size: u64,
    day: String,
    seq: u64,
    since_seal: u64,
    last_seal: Instant,
}

fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

fn file_name(day: &str, seq: u64) -> String {
    format!("evidence-{day}-{seq:06}.jsonl")
}

/// The sequence number in a ledger file name.
fn seq_of(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.rsplit('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The last complete line of a file (read from its tail), and the length
/// of an unfinished line after it.
fn last_line(path: &Path) -> std::io::Result<(Option<Vec<u8>>, u64)> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        let unfinished = buf
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| buf.len() - i - 1)
            .unwrap_or(buf.len());
        let complete = buf.get(..buf.len() - unfinished).unwrap_or(&[]);
        let body = complete.strip_suffix(b"\n").unwrap_or(complete);
        match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => return Ok((body.get(i + 1..).map(<[u8]>::to_vec), unfinished as u64)),
            None if start == 0 => {
                let line = (!body.is_empty()).then(|| body.to_vec());
                return Ok((line, unfinished as u64));
            }
            None => window = window.saturating_mul(4),
        }
    }
}

impl State {
    fn open(cfg: &LedgerConfig) -> Result<State, String> {
        let dir = &cfg.dir;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let files = crate::ledger_files(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let day = today();
        let (mut next_n, mut prev, mut seq, mut truncated) = (0, crate::GENESIS.to_string(), 1, 0);
        let mut reuse = None;
        if let Some(last) = files.last() {
            let (line, unfinished) =
                last_line(last).map_err(|e| format!("{}: {e}", last.display()))?;
            if unfinished > 0 {
                let f = OpenOptions::new()
                    .write(true)
                    .open(last)
                    .map_err(|e| format!("{}: {e}", last.display()))?;
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                f.set_len(len.saturating_sub(unfinished))
                    .map_err(|e| format!("{}: {e}", last.display()))?;
                truncated = unfinished;
            }
            seq = seq_of(last);
            if let Some(line) = line {
                prev = crate::line_hash(&line);
                next_n = serde_json::from_slice::<Line>(&line)
                    .map(|l| l.n + 1)
                    .map_err(|e| {
                        format!(
                            "{}: the last record is unreadable ({e}); move the ledger aside and check it with `fixative evidence verify`",
                            last.display()
                        )
                    })?;
            }
            let name = last.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let size = std::fs::metadata(last).map(|m| m.len()).unwrap_or(0);
            if name.contains(&format!("-{day}-")) && size < cfg.max_file_bytes {
                reuse = Some((last.clone(), size));
            } else {
                seq += 1;
            }
        }
        let (path, size) = reuse.unwrap_or_else(|| (dir.join(file_name(&day, seq)), 0));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut st = State {
            next_n,
            prev,
            file: BufWriter::with_capacity(64 * 1024, file),
            path,
            size,
            day,
            seq,
            since_seal: 0,
            last_seal: Instant::now(),
        };
        st.append(Body::Start {
            version: env!("CARGO_PKG_VERSION").to_string(),
            node: cfg.node.clone(),
            truncated_bytes: truncated,
        })
        .map_err(|e| format!("{}: {e}", st.path.display()))?;
        st.file
            .flush()
            .map_err(|e| format!("{}: {e}", st.path.display()))?;
        Ok(st)
    }

    /// Writes one line and advances the chain.
    fn append(&mut self, body: Body) -> std::io::Result<()> {
        self.append_at(crate::now_rfc3339(), body)
    }

    fn append_at(&mut self, time: String, body: Body) -> std::io::Result<()> {
        let line = Line {
            n: self.next_n,
            prev: std::mem::take(&mut self.prev),
            time,
            body,
        };
        let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        let hash = crate::line_hash(&bytes);
        bytes.push(b'\n');
        let written = self.file.write_all(&bytes);
        if written.is_err() {
            // The chain stays where it was: the next line retries.
            self.prev = line.prev;
            return written;
        }
        self.prev = hash;
        self.next_n += 1;
        self.size += bytes.len() as u64;
        self.since_seal += 1;
        Ok(())
    }

    fn seal(&mut self, key: &SigningKey) -> std::io::Result<()> {
        let time = crate::now_rfc3339();
        let (k, sig) = crate::sign(key, self.next_n, &self.prev, &time);
        self.append_at(time, Body::Seal { key: k, sig })?;
        self.since_seal = 0;
        self.last_seal = Instant::now();
        Ok(())
    }

    /// Seals and moves to a new file when this one is full or from
    /// another day; then keeps the ledger within its disk budget.
    fn rotate_if_due(
        &mut self,
        cfg: &LedgerConfig,
        stats: &Stats,
        day: String,
    ) -> std::io::Result<()> {
        if self.size < cfg.max_file_bytes && day == self.day {
            return Ok(());
        }
        if self.since_seal > 0 {
            self.seal(&cfg.key)?;
            stats.seals.fetch_add(1, Ordering::Relaxed);
        }
        self.file.flush()?;
        self.seq += 1;
        self.day = day;
        self.path = cfg.dir.join(file_name(&self.day, self.seq));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = BufWriter::with_capacity(64 * 1024, f);
        self.size = 0;
        self.enforce_budget(cfg, stats)
    }

    /// Removes the oldest files while the ledger is over its budget (never
    /// the open one), recording each removal in the chain.
    fn enforce_budget(&mut self, cfg: &LedgerConfig, stats: &Stats) -> std::io::Result<()> {
        let files = crate::ledger_files(&cfg.dir)?;
        let mut sizes: Vec<(PathBuf, u64)> = files
            .into_iter()
            .map(|p| {
                let s = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                (p, s)
            })
            .collect();
        let mut total: u64 = sizes.iter().map(|(_, s)| s).sum();
        total = total.max(self.size);
        let mut removed = 0;
        while total > cfg.max_total_bytes && sizes.len() > 1 {
            let (oldest, size) = sizes.remove(0);
            if oldest == self.path {
                break;
            }
            let (line, _) = last_line(&oldest)?;
            let (last_n, last_hash) = match line.as_deref() {
                Some(l) => (
                    serde_json::from_slice::<Line>(l).map(|x| x.n).unwrap_or(0),
                    crate::line_hash(l),
                ),
                None => (0, crate::GENESIS.to_string()),
            };
            std::fs::remove_file(&oldest)?;
            total = total.saturating_sub(size);
            removed += 1;
            stats.removed_files.fetch_add(1, Ordering::Relaxed);
            let name = oldest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.append(Body::Retention {
                removed: name,
                last_n,
                last_hash,
            })?;
        }
        if removed > 0 {
            self.file.flush()?;
        }
        stats.bytes.store(total, Ordering::Relaxed);
        Ok(())
    }
}

/// The writer thread: lines in batches, one flush per batch, seals by
/// count and by time, and a final seal when the queue closes.
fn run(cfg: LedgerConfig, mut st: State, rx: Receiver<Visit>, stats: Arc<Stats>) {
    let tick = cfg
        .seal_interval
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut failing = false;
    let _ = st.enforce_budget(&cfg, &stats);
    loop {
        let first = rx.recv_timeout(tick);
        let closed = matches!(first, Err(RecvTimeoutError::Disconnected));
        let mut batch: Vec<Visit> = first.into_iter().collect();
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(v) => batch.push(v),
                Err(_) => break,
            }
        }
        let queued = batch.len() as u64;
        let mut written = 0u64;
        let result = (|| -> std::io::Result<()> {
            for v in batch {
                st.rotate_if_due(&cfg, &stats, today())?;
                let gap = stats.gap.swap(0, Ordering::Relaxed);
                if gap > 0
                    && let Err(e) = st.append(Body::Gap { dropped: gap })
                {
                    stats.gap.fetch_add(gap, Ordering::Relaxed);
                    return Err(e);
                }
                st.append(Body::Visit(Box::new(v)))?;
                written += 1;
                stats.records.fetch_add(1, Ordering::Relaxed);
                if st.since_seal >= cfg.seal_every {
                    st.seal(&cfg.key)?;
                    stats.seals.fetch_add(1, Ordering::Relaxed);
                }
            }
            if st.since_seal > 0 && (closed || st.last_seal.elapsed() >= cfg.seal_interval) {
                st.seal(&cfg.key)?;
                stats.seals.fetch_add(1, Ordering::Relaxed);
            }
            st.file.flush()?;
            if st.size > 0 {
                let _ = st.file.get_ref().sync_data();
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                if failing {
                    tracing::info!("evidence ledger writes again to {}", st.path.display());
                    failing = false;
                }
            }
            Err(e) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                // The batch's unwritten visits are dropped: counted, and
                // noted by the next gap line.
                let lost = queued.saturating_sub(written);
                stats.dropped.fetch_add(lost, Ordering::Relaxed);
                stats.gap.fetch_add(lost, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(
                        "evidence ledger: cannot write {}: {e} (visits are counted as dropped until it can)",
                        st.path.display()
                    );
                    failing = true;
                }
            }
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_utc_day_starts_a_new_sealed_file() {
        let d = tempfile::tempdir().unwrap();
        let (pem, _, _) = crate::generate_key().unwrap();
        let cfg = LedgerConfig {
            dir: d.path().to_path_buf(),
            key: crate::private_key_from_pem(&pem).unwrap(),
            seal_every: 1000,
            seal_interval: Duration::from_secs(60),
            max_file_bytes: 1 << 30,
            max_total_bytes: 1 << 40,
            queue: 10,
            node: "t".into(),
        };
        let stats = Stats::default();
        let mut st = State::open(&cfg).unwrap();
        st.append(Body::Gap { dropped: 1 }).unwrap();
        let first = st.path.clone();
        // The same day: no rotation.
        st.rotate_if_due(&cfg, &stats, st.day.clone()).unwrap();
        assert_eq!(st.path, first);
        // Midnight UTC: the open file is sealed and the next one is named
        // by the new day, its sequence number one higher.
        st.rotate_if_due(&cfg, &stats, "29991231".into()).unwrap();
        assert_ne!(st.path, first);
        assert!(
            st.path
                .to_string_lossy()
                .ends_with("evidence-29991231-000002.jsonl"),
            "{}",
            st.path.display()
        );
        st.append(Body::Gap { dropped: 2 }).unwrap();
        st.seal(&cfg.key).unwrap();
        st.file.flush().unwrap();
        let last_of_first = std::fs::read_to_string(&first).unwrap();
        assert!(
            last_of_first
                .lines()
                .last()
                .unwrap()
                .contains("\"kind\":\"seal\"")
        );
        let r = crate::verify(d.path(), Some(&cfg.key.verifying_key())).unwrap();
        assert!(r.ok() && r.files == 2 && r.seals == 2, "{r}");
    }

    #[test]
    fn last_line_reads_the_tail_and_the_unfinished_rest() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"a\nbb\nccc").unwrap();
        assert_eq!(last_line(&p).unwrap(), (Some(b"bb".to_vec()), 3));
        std::fs::write(&p, b"a\nbb\n").unwrap();
        assert_eq!(last_line(&p).unwrap(), (Some(b"bb".to_vec()), 0));
        std::fs::write(&p, b"").unwrap();
        assert_eq!(last_line(&p).unwrap(), (None, 0));
        std::fs::write(&p, b"only").unwrap();
        assert_eq!(last_line(&p).unwrap(), (None, 4));
        let long = format!("{}\n{}\n", "x".repeat(10), "y".repeat(200_000));
        std::fs::write(&p, long).unwrap();
        assert_eq!(last_line(&p).unwrap().0.unwrap().len(), 200_000);
    }
}
