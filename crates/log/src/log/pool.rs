//! The threads that sequence and write every open log of a process.
//!
//! A log is two strands: its jobs (drafts waiting for the sequencer) and its
//! writes (groups waiting for the writer). A strand is a bounded queue with a
//! "scheduled" mark; whoever puts work into an idle strand hands it to a pool,
//! and one pool thread at a time runs it, so a log's jobs are sequenced and
//! its groups written strictly in order, as by threads of its own.
//!
//! Two small pools serve every log of the process: sequencers (CPU: chain,
//! signatures) and writers (storage). A writer thread takes every strand
//! waiting, applies each one's group, makes them durable with one sync per
//! database, then answers them all — the group commit across logs that a
//! host of many localities relies on.
//!
//! Why not threads of their own: a host of 2,854 localities ran 5,700 of them,
//! and sled reclaims memory by epochs, walking one entry per thread that ever
//! touched it on every flush — 31 % of a hosting process's CPU (docs/scale.md).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use crate::error::Result;

use super::lock;

/// Why a push was refused; the message is handed back.
pub(super) enum Refused<M> {
    /// The queue holds its capacity and the caller would not wait.
    Full(M),
    /// The strand was closed (its log is closing).
    Closed(M),
}

/// A bounded queue of one log's work, run by at most one pool thread at a time.
pub(super) struct Inbox<M> {
    state: Mutex<InboxState<M>>,
    /// Signalled when items are taken, when the inbox closes and when it finishes.
    changed: Condvar,
    cap: usize,
}

struct InboxState<M> {
    items: VecDeque<M>,
    /// Handed to a pool (queued there or running): nobody else may hand it again.
    scheduled: bool,
    /// No more pushes; the runner drains what is left.
    closed: bool,
    /// Closed and drained: its log may finish closing.
    finished: bool,
}

impl<M> Inbox<M> {
    pub(super) fn new(cap: usize) -> Self {
        Inbox {
            state: Mutex::new(InboxState { items: VecDeque::new(), scheduled: false, closed: false, finished: false }),
            changed: Condvar::new(),
            cap,
        }
    }

    /// Queues `m`; `wait`: block while the inbox is full. `Ok(true)`: the
    /// strand was idle and the caller must schedule it.
    pub(super) fn push(&self, m: M, wait: bool) -> std::result::Result<bool, Refused<M>> {
        let mut s = lock(&self.state);
        loop {
            if s.closed {
                return Err(Refused::Closed(m));
            }
            if s.items.len() < self.cap {
                break;
            }
            if !wait {
                return Err(Refused::Full(m));
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.items.push_back(m);
        Ok(!std::mem::replace(&mut s.scheduled, true))
    }

    /// Takes the first item and then more while the summed `weight` of those
    /// taken stays under `budget`. Empty: nothing is waiting; `closed` tells
    /// whether anything ever will.
    pub(super) fn take(&self, budget: usize, weight: impl Fn(&M) -> usize) -> (Vec<M>, bool) {
        let mut s = lock(&self.state);
        let mut taken = Vec::new();
        let mut used = 0;
        while used < budget || taken.is_empty() {
            let Some(m) = s.items.pop_front() else { break };
            used += weight(&m);
            taken.push(m);
        }
        if !taken.is_empty() {
            self.changed.notify_all();
        }
        (taken, s.closed)
    }

    /// After a run: `true` if more is waiting (the strand stays scheduled and
    /// the runner hands it back to its pool), else it becomes idle.
    pub(super) fn settle(&self) -> bool {
        let mut s = lock(&self.state);
        // Closed while it ran: once more, to see it drained and finish.
        if s.items.is_empty() && (!s.closed || s.finished) {
            s.scheduled = false;
            false
        } else {
            true
        }
    }

    /// Refuses further pushes. `true`: the strand was idle and the caller
    /// must schedule it once more, so that it drains and finishes.
    pub(super) fn close(&self) -> bool {
        let mut s = lock(&self.state);
        s.closed = true;
        self.changed.notify_all();
        !std::mem::replace(&mut s.scheduled, true)
    }

    /// Called by the runner once a closed inbox is drained (it then stays idle).
    pub(super) fn finish(&self) {
        lock(&self.state).finished = true;
        self.changed.notify_all();
    }

    /// Blocks until the runner drained the closed inbox.
    pub(super) fn wait_finished(&self) {
        let mut s = lock(&self.state);
        while !s.finished {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A log's jobs, as the sequencer pool runs them.
pub(super) trait SeqStrand: Send + Sync {
    /// Sequences one group of waiting jobs. `true`: more is waiting.
    fn run(&self) -> bool;
    /// `run` panicked: the log refuses further work.
    fn panicked(&self);
}

/// A log's writes, as the writer pool runs them.
pub(super) trait WriteStrand: Send + Sync {
    /// Takes every waiting write and applies it (not yet durable). `None`:
    /// nothing was waiting.
    fn stage(&self) -> Option<Staged>;
    /// Strands with the same group are made durable by one [`WriteStrand::sync`].
    fn sync_group(&self) -> usize;
    /// Makes everything applied so far durable.
    fn sync(&self) -> Result<()>;
    /// Updates indexes and answers the callers of a staged group.
    fn finish(&self, staged: Staged, synced: std::result::Result<(), String>);
    /// `true`: more is waiting (see [`Inbox::settle`]).
    fn settle(&self) -> bool;
    /// `stage`, `sync` or `finish` panicked: the log refuses further work.
    fn panicked(&self);
}

/// One log's writes applied and waiting for durability.
pub(super) struct Staged {
    pub(super) events: Vec<super::Signed>,
    pub(super) replies: Vec<(super::Reply, Result<Vec<super::Appended>>)>,
    pub(super) others: Vec<std::sync::mpsc::SyncSender<Result<()>>>,
    pub(super) head: (u64, [u8; 32]),
    /// The outcome of applying them.
    pub(super) applied: std::result::Result<(), String>,
}

/// Strands waiting for a thread, and the threads that run them.
pub(super) struct Pool<T: ?Sized> {
    queue: Mutex<VecDeque<Arc<T>>>,
    ready: Condvar,
}

impl<T: ?Sized + Send + Sync + 'static> Pool<T> {
    fn start(name: &str, threads: usize, run: fn(&'static Pool<T>)) -> &'static Pool<T> {
        let pool: &'static Pool<T> =
            Box::leak(Box::new(Pool { queue: Mutex::new(VecDeque::new()), ready: Condvar::new() }));
        for i in 0..threads {
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || run(pool))
                .unwrap_or_else(|e| panic!("cannot start the log thread {name}-{i}: {e}"));
        }
        pool
    }

    /// Hands a strand that has work to a thread.
    pub(super) fn schedule(&self, strand: Arc<T>) {
        lock(&self.queue).push_back(strand);
        self.ready.notify_one();
    }

    /// Waits for a strand, then takes up to `max`.
    fn next(&self, max: usize) -> Vec<Arc<T>> {
        let mut q = lock(&self.queue);
        while q.is_empty() {
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        let n = q.len().min(max);
        q.drain(..n).collect()
    }
}

/// Threads of each pool: the machine's cores (sequencing signs on them),
/// at least two so that one slow log never holds up the rest.
fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 8)
}

/// Strands a writer thread takes at once: their groups share one sync.
const WRITE_BATCH: usize = 256;

/// The process's sequencer pool.
pub(super) fn sequencers() -> &'static Pool<dyn SeqStrand> {
    static POOL: OnceLock<&'static Pool<dyn SeqStrand>> = OnceLock::new();
    POOL.get_or_init(|| Pool::start("yipan-seq", threads(), sequencer_thread))
}

/// The process's writer pool.
pub(super) fn writers() -> &'static Pool<dyn WriteStrand> {
    static POOL: OnceLock<&'static Pool<dyn WriteStrand>> = OnceLock::new();
    POOL.get_or_init(|| Pool::start("yipan-wr", threads(), writer_thread))
}

fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

fn sequencer_thread(pool: &'static Pool<dyn SeqStrand>) {
    loop {
        for strand in pool.next(1) {
            let more = guarded(|| strand.run()).unwrap_or_else(|| {
                strand.panicked();
                true
            });
            // Handed back to the end of the queue: logs with much to do take turns.
            if more {
                pool.schedule(strand);
            }
        }
    }
}

fn writer_thread(pool: &'static Pool<dyn WriteStrand>) {
    loop {
        let strands = pool.next(WRITE_BATCH);
        let mut staged = Vec::with_capacity(strands.len());
        let mut done = Vec::new();
        for strand in strands {
            match guarded(|| strand.stage()) {
                Some(Some(s)) => staged.push((strand, s)),
                // Let go at once: a closing log waits until nobody holds it.
                Some(None) => settle(pool, strand),
                None => {
                    strand.panicked();
                    settle(pool, strand);
                }
            }
        }
        // Every group is applied before the first sync, so one sync per
        // database covers all of them; later strands of a database reuse its outcome.
        let mut synced: Vec<(usize, std::result::Result<(), String>)> = Vec::new();
        for (strand, s) in staged {
            let group = strand.sync_group();
            let r = match synced.iter().find(|(g, _)| *g == group) {
                Some((_, r)) => r.clone(),
                None => {
                    let r = guarded(|| strand.sync())
                        .unwrap_or_else(|| Err(crate::error::Error::Storage("sync panicked".into())))
                        .map_err(|e| e.to_string());
                    synced.push((group, r.clone()));
                    r
                }
            };
            if guarded(|| strand.finish(s, r)).is_none() {
                strand.panicked();
            }
            done.push(strand);
        }
        for strand in done {
            settle(pool, strand);
        }
    }
}

fn settle(pool: &Pool<dyn WriteStrand>, strand: Arc<dyn WriteStrand>) {
    if strand.settle() {
        pool.schedule(strand);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_that_arrives_while_the_strand_runs_gets_it_run_once_more() {
        let inbox = Inbox::new(2);
        assert!(matches!(inbox.push(1, false), Ok(true)), "an idle strand is handed to its pool");
        assert!(matches!(inbox.push(2, false), Ok(false)), "a scheduled one is not handed again");
        assert!(matches!(inbox.push(3, false), Err(Refused::Full(3))));
        let (taken, closed) = inbox.take(usize::MAX, |_| 1);
        assert_eq!((taken, closed), (vec![1, 2], false));
        // The log closes while its strand runs: nobody schedules it again...
        assert!(!inbox.close(), "still scheduled: the closer must not hand it twice");
        assert!(matches!(inbox.push(4, true), Err(Refused::Closed(4))));
        // ...so the runner must keep it scheduled and run it once more.
        assert!(inbox.settle(), "closed and not finished: runs once more");
        let (taken, closed) = inbox.take(usize::MAX, |_| 1);
        assert!(taken.is_empty() && closed);
        inbox.finish();
        assert!(!inbox.settle(), "finished: idle for good");
        inbox.wait_finished();
    }
}
