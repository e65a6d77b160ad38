//! The publish budget of a hosting process: how many JetStream publishes
//! all of its tenants together keep waiting for an acknowledgement.
//!
//! Each tenant's outbox has its own window ([`crate::SyncConfig::publish_window`]),
//! which bounds one node. A host runs thousands of outboxes: with a window
//! each, a load that outruns publishing puts hundreds of thousands of
//! publishes in flight at once. The servers then answer later than the ack
//! timeout, every timed-out chunk is published again from its cursor, and the
//! re-sends add to the overload (measured at 1 M persons: docs/scale.md).
//!
//! The budget bounds the sum: every publish of the outboxes, of the re-sends
//! answering repair requests and of the data-key messages of sealed tiers.
//! It is a semaphore of permits, one per publish,
//! taken before the publish and given back when its acknowledgement arrives
//! (or its window is dropped). Its size adapts: halved when an
//! acknowledgement times out (at most once per `hold_off`, so one overload
//! episode counts once, however many tenants saw it), grown by one permit per
//! [`GROW_EVERY`] acknowledgements up to its maximum.
//!
//! A tenant never waits for permits while it holds some: if none are free it
//! first settles its own oldest publish, giving its permits back. A tenant
//! with nothing in flight holds no permits, so waiting cannot deadlock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use tokio::sync::Semaphore;

use crate::{Error, Result};

/// Acknowledgements per permit the budget grows by.
pub const GROW_EVERY: u64 = 16;

/// Publishes in flight for all tenants of a host (module docs).
#[derive(Debug)]
pub struct PublishBudget {
    sem: Semaphore,
    state: Mutex<State>,
    min: usize,
    max: usize,
    hold_off: Duration,
    in_flight: AtomicU64,
    peak: AtomicU64,
    shrunk: AtomicU64,
    waited: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// Permits the budget stands at (free + taken − debt).
    limit: usize,
    /// Taken permits to be destroyed instead of given back (after a shrink).
    debt: usize,
    /// Acknowledgements since the last growth.
    acked: u64,
    last_shrink: Option<Instant>,
}

/// What `GET /host/tenants` shows of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BudgetStatus {
    /// Permits now (between the minimum and the maximum).
    pub limit: u64,
    /// The maximum.
    pub max: u64,
    /// Publishes waiting for their acknowledgement.
    pub in_flight: u64,
    /// The most that ever were.
    pub peak_in_flight: u64,
    /// Times the budget was halved after an acknowledgement timed out.
    pub shrunk: u64,
    /// Times a tenant with nothing in flight waited for permits.
    pub waited: u64,
}

impl PublishBudget {
    /// A budget of `max` permits that shrinks to no fewer than `min`,
    /// at most once per `hold_off`.
    pub fn new(max: usize, min: usize, hold_off: Duration) -> Arc<Self> {
        let max = max.max(1);
        let min = min.clamp(1, max);
        Arc::new(PublishBudget {
            sem: Semaphore::new(max),
            state: Mutex::new(State { limit: max, debt: 0, acked: 0, last_shrink: None }),
            min,
            max,
            hold_off,
            in_flight: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            shrunk: AtomicU64::new(0),
            waited: AtomicU64::new(0),
        })
    }

    /// The budget's figures now.
    pub fn status(&self) -> BudgetStatus {
        BudgetStatus {
            limit: self.lock().limit as u64,
            max: self.max as u64,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            peak_in_flight: self.peak.load(Ordering::Relaxed),
            shrunk: self.shrunk.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `n` permits, if free now (never more than the minimum: an event with
    /// more recipients than that must still fit a shrunk budget).
    fn try_take(self: &Arc<Self>, n: usize) -> Option<Permit> {
        let n = n.clamp(1, self.min);
        let p = self.sem.try_acquire_many(n as u32).ok()?;
        p.forget();
        Some(self.taken(n))
    }

    /// `n` permits, waiting until they are free.
    async fn take(self: &Arc<Self>, n: usize) -> Permit {
        let n = n.clamp(1, self.min);
        self.waited.fetch_add(1, Ordering::Relaxed);
        // Never closed; were it, nothing would bound the tenant.
        if let Ok(p) = self.sem.acquire_many(n as u32).await {
            p.forget();
        }
        self.taken(n)
    }

    fn taken(self: &Arc<Self>, n: usize) -> Permit {
        let now = self.in_flight.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Permit { budget: self.clone(), n }
    }

    fn give_back(&self, n: usize) {
        self.in_flight.fetch_sub(n as u64, Ordering::Relaxed);
        let mut s = self.lock();
        let destroyed = s.debt.min(n);
        s.debt -= destroyed;
        drop(s);
        self.sem.add_permits(n - destroyed);
    }

    /// Records `n` acknowledgements: one permit more per [`GROW_EVERY`].
    fn acked(&self, n: u64) {
        let mut s = self.lock();
        s.acked += n;
        while s.acked >= GROW_EVERY && s.limit < self.max {
            s.acked -= GROW_EVERY;
            s.limit += 1;
            if s.debt > 0 {
                s.debt -= 1;
            } else {
                self.sem.add_permits(1);
            }
        }
        if s.limit >= self.max {
            s.acked = 0;
        }
    }

    /// Records an acknowledgement that timed out: halves the budget, unless
    /// it was halved less than `hold_off` ago.
    fn timed_out(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        if s.last_shrink.is_some_and(|t| now.duration_since(t) < self.hold_off) || s.limit <= self.min {
            return;
        }
        s.last_shrink = Some(now);
        let to = (s.limit / 2).max(self.min);
        let cut = s.limit - to;
        s.limit = to;
        s.acked = 0;
        // Free permits go at once, taken ones as they come back.
        let forgotten = self.sem.forget_permits(cut);
        s.debt += cut - forgotten;
        drop(s);
        self.shrunk.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            limit = to,
            in_flight = self.in_flight.load(Ordering::Relaxed),
            "publish acknowledgements time out: the host's publish budget is halved"
        );
    }
}

/// Permits taken from a [`PublishBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    budget: Arc<PublishBudget>,
    n: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.give_back(self.n);
    }
}

/// One tenant's publishes in flight: at most `cap`, and within the host's
/// budget when it has one. Dropping it gives every permit back.
pub(crate) struct Window {
    budget: Option<Arc<PublishBudget>>,
    cap: usize,
    in_flight: VecDeque<(PublishAckFuture, Option<Permit>)>,
    acked: u64,
}

impl Window {
    pub(crate) fn new(budget: Option<Arc<PublishBudget>>, cap: usize) -> Self {
        Window { budget, cap: cap.max(1), in_flight: VecDeque::new(), acked: 0 }
    }

    /// Makes room for `n` more publishes (one event's): settles the oldest
    /// until the window has room, then takes `n` permits from the budget,
    /// settling its own oldest while none are free.
    pub(crate) async fn room(&mut self, n: usize) -> Result<Option<Permit>> {
        while !self.in_flight.is_empty() && self.in_flight.len() + n > self.cap {
            self.settle_oldest().await?;
        }
        let Some(budget) = self.budget.clone() else { return Ok(None) };
        loop {
            if let Some(p) = budget.try_take(n) {
                return Ok(Some(p));
            }
            if self.in_flight.is_empty() {
                return Ok(Some(budget.take(n).await));
            }
            self.settle_oldest().await?;
        }
    }

    /// Adds one event's publishes; its permit is given back with the last
    /// of them (acknowledgements are settled in order).
    pub(crate) fn push(&mut self, acks: Vec<PublishAckFuture>, mut permit: Option<Permit>) {
        let last = acks.len().saturating_sub(1);
        for (i, ack) in acks.into_iter().enumerate() {
            self.in_flight.push_back((ack, if i == last { permit.take() } else { None }));
        }
    }

    async fn settle_oldest(&mut self) -> Result<()> {
        let Some((ack, permit)) = self.in_flight.pop_front() else { return Ok(()) };
        let settled = ack.await;
        drop(permit);
        match settled {
            Ok(_) => {
                self.acked += 1;
                if let Some(b) = &self.budget {
                    b.acked(1);
                }
                Ok(())
            }
            Err(e) => {
                if e.kind() == PublishErrorKind::TimedOut {
                    if let Some(b) = &self.budget {
                        b.timed_out();
                    }
                }
                Err(Error::nats(e))
            }
        }
    }

    /// Waits for every publish in flight; the number acknowledged so far.
    pub(crate) async fn settle(&mut self) -> Result<u64> {
        while !self.in_flight.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(self.acked)
    }

    /// Publishes acknowledged so far.
    pub(crate) fn acked(&self) -> u64 {
        self.acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shrink_destroys_free_permits_at_once_and_taken_ones_as_they_come_back() {
        let b = PublishBudget::new(8, 2, Duration::from_secs(60));
        let taken: Vec<Permit> = (0..6).map(|_| b.try_take(1).expect("free")).collect();
        assert_eq!(b.status().in_flight, 6);
        b.timed_out();
        // 8 → 4: the 2 free permits go now, 2 of the 6 taken when they return.
        assert_eq!(b.status().limit, 4);
        assert!(b.try_take(1).is_none(), "no permit may be free while 6 > 4 are taken");
        drop(taken);
        assert_eq!(b.status().in_flight, 0);
        assert_eq!(b.sem.available_permits(), 4);
        // A second timeout inside the hold-off does not halve again.
        b.timed_out();
        assert_eq!(b.status().limit, 4);
        assert_eq!(b.status().shrunk, 1);
    }

    #[test]
    fn the_budget_grows_back_by_one_permit_per_sixteen_acks_up_to_its_maximum() {
        let b = PublishBudget::new(8, 2, Duration::ZERO);
        b.timed_out();
        b.timed_out();
        assert_eq!(b.status().limit, 2);
        assert_eq!(b.sem.available_permits(), 2);
        b.acked(GROW_EVERY * 3 + 5);
        assert_eq!(b.status().limit, 5);
        assert_eq!(b.sem.available_permits(), 5);
        b.acked(GROW_EVERY * 100);
        assert_eq!(b.status().limit, 8);
        assert_eq!(b.sem.available_permits(), 8);
        // Never below the minimum.
        for _ in 0..10 {
            b.timed_out();
        }
        assert_eq!(b.status().limit, 2);
    }

    #[test]
    fn growth_pays_a_debt_before_it_frees_a_permit() {
        let b = PublishBudget::new(4, 1, Duration::ZERO);
        let taken: Vec<Permit> = (0..4).map(|_| b.try_take(1).expect("free")).collect();
        b.timed_out(); // 4 → 2, debt 2
        b.acked(GROW_EVERY); // 2 → 3, debt 1
        assert_eq!(b.sem.available_permits(), 0);
        drop(taken);
        assert_eq!(b.sem.available_permits(), 3);
        assert_eq!(b.status().limit, 3);
    }

    #[tokio::test]
    async fn an_event_with_more_recipients_than_a_shrunk_budget_still_gets_through() {
        let b = PublishBudget::new(4, 2, Duration::ZERO);
        b.timed_out();
        assert_eq!(b.status().limit, 2);
        let p = tokio::time::timeout(Duration::from_secs(5), b.take(7)).await.expect("takes at most the minimum");
        assert_eq!(p.n, 2);
    }
}
