//! Ordered byte-key backends: sled on disk and a `BTreeMap` in memory.
//!
//! A backend offers point reads, ordered range scans and one atomic, durable
//! batch write; the log builds everything else on those.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::error::{Error, Result};

/// One write of a batch: `Some` puts, `None` deletes.
pub type Op = (Vec<u8>, Option<Vec<u8>>);
/// A key/value pair read back.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Ordered key-value storage under the log.
pub trait Backend: Send + Sync + 'static {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Up to `limit` entries with `start <= key < end`, in key order.
    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>>;
    /// The last entry with `start <= key < end`.
    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Entry>>;
    /// Applies all of `ops` atomically and returns once they are durable.
    fn commit(&self, ops: Vec<Op>) -> Result<()>;
    /// Applies all of `ops` atomically; durable with the next `commit` (or
    /// sled's own periodic flush). For records that may be lost in a crash
    /// without harm (e.g. that a key message was sent: it is sent again).
    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        self.commit(ops)
    }
    /// Returns once everything applied before the call is durable (a backend
    /// whose `apply` is already durable has nothing to do).
    fn sync(&self) -> Result<()> {
        Ok(())
    }
    /// Backends answering with the same number share their durability: one
    /// `sync` of any of them makes all of their applied writes durable.
    fn sync_group(&self) -> usize {
        self as *const Self as *const () as usize
    }
    /// Calls `f` on every entry with `start <= key < end` in key order, without
    /// collecting them; stops early when `f` returns false.
    fn for_each(&self, start: &[u8], end: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>;
    /// Slots of the log's live event feed (what projections follow; one that
    /// falls further behind rebuilds from the log). Allocated when the log
    /// opens: a node's 65,536 cost ~2.6 MB, nothing for one node but 7 GB
    /// for a host of 2,800 localities, whose tenants take 2,048 — or one per
    /// 16 events held, up to 65,536, so that a large tenant's rebuild does
    /// not overflow the feed it catches up from.
    fn event_feed_capacity(&self) -> usize {
        1 << 16
    }
}

/// sled on disk: one tree of one database; a batch is one `apply_batch` plus
/// one `flush` of the database. A node has a database of its own
/// ([`SledBackend::open`]); a host of many localities opens one database and
/// gives each tenant a tree of it ([`SharedSled::tenant`]), so its cache,
/// files and flusher are shared and one fsync makes every tenant's pending
/// group commit durable.
pub struct SledBackend {
    db: sled::Db,
    tree: sled::Tree,
    event_feed: usize,
    /// Shared by every tree of one database: concurrent commits share fsyncs.
    flusher: Arc<Flusher>,
}

/// Group commit across the trees of one database: a sled flush makes every
/// write applied before it durable, so a commit waits for a flush that
/// started after its write instead of running one of its own. Hundreds of
/// tenants committing at once then cost a few fsyncs, not hundreds in a row.
#[derive(Default)]
struct Flusher {
    state: Mutex<FlushState>,
    done: Condvar,
}

#[derive(Default)]
struct FlushState {
    /// Tickets handed out (one per commit, after its write was applied).
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A flush is running.
    flushing: bool,
    /// The last flush failed with this (its waiters fail too).
    failed: Option<(u64, String)>,
}

impl Flusher {
    fn flush(&self, db: &sled::Db) -> Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.issued += 1;
        let ticket = s.issued;
        loop {
            if s.durable >= ticket {
                return Ok(());
            }
            if let Some((upto, why)) = &s.failed {
                if *upto >= ticket {
                    return Err(Error::Storage(why.clone()));
                }
            }
            if !s.flushing {
                s.flushing = true;
                let target = s.issued;
                drop(s);
                // Should sled panic, the waiters are told it failed (not left waiting forever).
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.flush()))
                    .unwrap_or_else(|_| Err(sled::Error::ReportableBug("flush panicked".into())));
                s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                s.flushing = false;
                match outcome {
                    Ok(_) => s.durable = s.durable.max(target),
                    Err(e) => s.failed = Some((target, e.to_string())),
                }
                self.done.notify_all();
                continue;
            }
            s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Opens a sled database, turning sled's panics on some on-disk damage into
/// [`Error::Damaged`].
fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db> {
    let path = dir.display().to_string();
    let config = sled::Config::new().path(dir).cache_capacity(cache_bytes).flush_every_ms(None);
    // sled 0.34 can panic on some on-disk damage; a damaged store must be
    // an error the operator can act on.
    // The default hook would print the panic as if the program crashed;
    // hold it back while opening so only the error below reaches the user.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open()));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(Error::Damaged { path, problem: e.to_string() }),
        Err(panic) => {
            let problem = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the storage engine failed while recovering".into());
            Err(Error::Damaged { path, problem })
        }
    }
}

impl SledBackend {
    /// Opens (or creates) the database in `dir`. A damaged database gives
    /// [`Error::Damaged`], never a panic.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = open_db(dir, 256 << 20)?;
        let tree = (*db).clone();
        Ok(SledBackend { db, tree, event_feed: 1 << 16, flusher: Default::default() })
    }

    /// The sled database (for the raw baseline of the benchmark).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

/// One sled database holding the logs of many localities, one tree each
/// (`tenant/<name>`). Trees never see each other's keys: a tenant's log
/// reads and writes only its own.
#[derive(Clone)]
pub struct SharedSled {
    db: sled::Db,
    flusher: Arc<Flusher>,
}

impl SharedSled {
    /// Opens (or creates) the shared database in `dir` with a page cache of
    /// `cache_bytes` for all tenants together.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        Ok(SharedSled { db: open_db(dir, cache_bytes)?, flusher: Default::default() })
    }

    /// The backend of tenant `name` (created empty on first use).
    pub fn tenant(&self, name: &str) -> Result<SledBackend> {
        let tree = self.db.open_tree(format!("tenant/{name}"))?;
        Ok(SledBackend { db: self.db.clone(), tree, event_feed: 1 << 11, flusher: self.flusher.clone() })
    }

    /// The host's own tree (`host`): what belongs to no tenant, such as the
    /// cursors of the consumers it shares between its tenants.
    pub fn host(&self) -> Result<SledBackend> {
        let tree = self.db.open_tree("host")?;
        Ok(SledBackend { db: self.db.clone(), tree, event_feed: 1 << 11, flusher: self.flusher.clone() })
    }

    /// The tenants that have a tree.
    pub fn tenants(&self) -> Vec<String> {
        self.db
            .tree_names()
            .iter()
            .filter_map(|n| std::str::from_utf8(n).ok()?.strip_prefix("tenant/").map(String::from))
            .collect()
    }

    /// Makes every tenant's writes durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl Backend for SledBackend {
    fn event_feed_capacity(&self) -> usize {
        self.event_feed
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for item in self.tree.range(start..end).take(limit) {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Entry>> {
        match self.tree.range(start..end).next_back() {
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    fn commit(&self, ops: Vec<Op>) -> Result<()> {
        self.apply(ops)?;
        self.flusher.flush(&self.db)
    }

    fn sync(&self) -> Result<()> {
        self.flusher.flush(&self.db)
    }

    fn sync_group(&self) -> usize {
        Arc::as_ptr(&self.flusher) as usize
    }

    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in ops {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    fn for_each(&self, start: &[u8], end: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        for item in self.tree.range(start..end) {
            let (k, v) = item?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}

/// In memory; durable for the life of the process only.
#[derive(Default)]
pub struct MemBackend {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (commits apply under one guard), so a poisoned lock is still usable.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for MemBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.read().get(key).cloned())
    }

    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>> {
        Ok(self.read().range(start.to_vec()..end.to_vec()).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Entry>> {
        Ok(self.read().range(start.to_vec()..end.to_vec()).next_back().map(|(k, v)| (k.clone(), v.clone())))
    }

    fn commit(&self, ops: Vec<Op>) -> Result<()> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for (k, v) in ops {
            match v {
                Some(v) => {
                    map.insert(k, v);
                }
                None => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn for_each(&self, start: &[u8], end: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        // Copy out first: `f` may read the backend again, and holding the read
        // guard across that could deadlock behind a waiting writer.
        let entries = self.range(start, end, usize::MAX)?;
        for (k, v) in entries {
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod shared_tests {
    use super::*;

    #[test]
    fn tenants_of_one_database_see_only_their_own_keys_and_commits_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let shared = SharedSled::open(dir.path(), 16 << 20).unwrap();
            let tenants: Vec<SledBackend> = (0..8).map(|t| shared.tenant(&format!("61011{t}")).unwrap()).collect();
            std::thread::scope(|s| {
                for (t, b) in tenants.iter().enumerate() {
                    s.spawn(move || {
                        for i in 0..50u32 {
                            b.commit(vec![(i.to_be_bytes().to_vec(), Some(vec![t as u8; 8]))]).unwrap();
                        }
                    });
                }
            });
            let mut names = shared.tenants();
            names.sort();
            assert_eq!(names.len(), 8, "{names:?}");
            for (t, b) in tenants.iter().enumerate() {
                let all = b.range(&[], &[0xff; 8], usize::MAX).unwrap();
                assert_eq!(all.len(), 50);
                assert!(all.iter().all(|(_, v)| v == &vec![t as u8; 8]), "tenant {t} sees only its own values");
            }
        }
        // Every commit was durable when it returned: all there after reopening.
        let shared = SharedSled::open(dir.path(), 16 << 20).unwrap();
        for t in 0..8 {
            let b = shared.tenant(&format!("61011{t}")).unwrap();
            assert_eq!(b.range(&[], &[0xff; 8], usize::MAX).unwrap().len(), 50);
            assert_eq!(b.event_feed_capacity(), 1 << 11);
        }
    }
}
