//! Own appends: validation in the caller's thread, then the sequencer
//! (idempotency, sequence numbers, channel positions, chain, batch
//! signatures) and the writer (group commit: one atomic batch and one flush
//! per group, then indexes and replies).

use super::*;

impl<B: Backend> Log<B> {
    pub(super) fn prepare(&self, drafts: Vec<EventDraft>, rotation: bool) -> Result<Vec<Prepared>> {
        let single = drafts.len() == 1;
        for (index, d) in drafts.iter().enumerate() {
            let is_rotation = matches!(
                d.body.as_ref().and_then(|b| b.kind.as_ref()),
                Some(yipan_proto::v1::event_body::Kind::KeyRotated(_))
            );
            if is_rotation != rotation {
                let source = yipan_core::Error::field(
                    "kind",
                    "KeyRotated is appended only by `yipan key rotate` (docs/trust.md), never through the event API",
                );
                return Err(if single { Error::Invalid(source) } else { Error::InvalidInBatch { index, source } });
            }
        }
        let limit = self.max_event_bytes();
        for (index, d) in drafts.iter().enumerate() {
            let size = d.encoded_len() + d.recipients.len() * 16 + ENVELOPE_OVERHEAD;
            if size > limit {
                let field = if single { "event".to_string() } else { format!("[{index}]") };
                return Err(Error::TooLarge { field, size, limit });
            }
        }
        let mut prepared: Vec<Prepared> = Vec::with_capacity(drafts.len());
        let mut earlier = crate::semantic::BatchIndex::default();
        for (index, draft) in drafts.into_iter().enumerate() {
            let p = {
                let checked =
                    validate_draft(self.shared.locality, &draft)
                        .and_then(|c| {
                            let bounds = *read(&self.shared.occurred_bounds);
                            yipan_core::validate::check_occurred_within(
                                draft.occurred_at.as_ref(),
                                chrono::Utc::now(),
                                &bounds,
                            )
                            .map(|_| c)
                        })
                        .and_then(|c| {
                            let before = crate::semantic::Earlier::new(&prepared, &earlier);
                            crate::semantic::check(self, self.shared.locality, &draft, &c, &before)
                                .and_then(|_| crate::semantic::divisions(self, &draft, &c, &before))
                                .and_then(|_| crate::semantic::with_workplace(self, &draft, c, &before))
                        })
                        .map_err(|source| {
                            if single {
                                Error::Invalid(source)
                            } else {
                                Error::InvalidInBatch { index, source }
                            }
                        })?;
                let digest: [u8; 32] = Sha256::digest(draft.encode_to_vec()).into();
                let id = if draft.event_id.is_empty() {
                    Uuid::now_v7()
                } else {
                    Uuid::from_slice(&draft.event_id)
                        .map_err(|_| Error::Invalid(yipan_core::Error::field("id", "is not a UUID")))?
                };
                Prepared { draft, checked, id, digest }
            };
            earlier.add(prepared.len(), &p.draft);
            prepared.push(p);
        }
        Ok(prepared)
    }

    /// Sets the plausible range of `occurred_at` for own events (`[validation]`
    /// in node.toml); received events are judged by the wider
    /// [`yipan_core::validate::OccurredBounds::RECEIVED`].
    pub fn set_occurred_bounds(&self, bounds: yipan_core::validate::OccurredBounds) {
        *write(&self.shared.occurred_bounds) = bounds;
    }

    /// Sets the largest encoded event accepted (the deployment's NATS
    /// `max_payload` less room for headers): larger events are refused at
    /// append, so nothing enters the log that could never be published.
    pub fn set_max_event_bytes(&self, limit: usize) {
        self.shared.max_event_bytes.store(limit.max(ENVELOPE_OVERHEAD * 2), Ordering::Relaxed);
    }

    /// The largest encoded event accepted.
    pub fn max_event_bytes(&self) -> usize {
        self.shared.max_event_bytes.load(Ordering::Relaxed)
    }

    /// Queues drafts for sequencing. `wait`: block while the queue is full
    /// (CLI, imports); otherwise refuse with [`Error::Busy`] (the API answers 503).
    pub(super) fn submit(
        &self,
        drafts: Vec<EventDraft>,
        wait: bool,
    ) -> Result<oneshot::Receiver<Result<Vec<Appended>>>> {
        self.submit_job(drafts, wait, None)
    }

    pub(super) fn submit_job(
        &self,
        drafts: Vec<EventDraft>,
        wait: bool,
        rotate: Option<SigningKey>,
    ) -> Result<oneshot::Receiver<Result<Vec<Appended>>>> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        let next = lock(&self.shared.head).0 + 1;
        match read(&self.shared.trust).key_for(self.shared.locality, next, None) {
            Ok(k) if k != *read(&self.shared.public) && rotate.is_none() => {
                return Err(Error::OwnKey {
                    seq: next,
                    problem: format!(
                        "the key certified for it is {}…, not this node's key; restart the node so that it \
                         opens with the certified key waiting in keys/ed25519.next.secret (docs/trust.md)",
                        hex::encode(&k.to_bytes()[..6])
                    ),
                })
            }
            Err(e) if !matches!(e, KeyFault::Unknown { .. }) => {
                return Err(Error::OwnKey { seq: next, problem: e.to_string() })
            }
            _ => {}
        }
        let drafts = self.prepare(drafts, rotate.is_some())?;
        let (reply, rx) = oneshot::channel();
        let job = Box::new(Job { drafts, reply, rotate });
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        match self.shared.jobs.push(job, wait) {
            Ok(idle) => {
                self.shared.schedule_sequencer(idle);
                Ok(rx)
            }
            Err(refused) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match refused {
                    pool::Refused::Full(_) => Error::Busy { queued: JOB_QUEUE },
                    pool::Refused::Closed(_) => Error::Closed,
                })
            }
        }
    }

    /// Submits without waiting (the benchmark's open-loop load generator).
    #[doc(hidden)]
    pub fn submit_for_bench(&self, draft: EventDraft) -> Result<oneshot::Receiver<Result<Vec<Appended>>>> {
        self.submit(vec![draft], true)
    }

    /// Appends drafts atomically (all or none), blocking until durable.
    /// Must not be called from inside an async runtime; use
    /// [`Log::append_batch_async`] there.
    pub fn append_batch(&self, drafts: Vec<EventDraft>) -> Result<Vec<Appended>> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(drafts, true)?.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// Appends one draft, blocking until durable.
    pub fn append(&self, draft: EventDraft) -> Result<Appended> {
        let mut v = self.append_batch(vec![draft])?;
        v.pop().ok_or(Error::Closed)
    }

    /// Appends drafts atomically, resolving once durable.
    pub async fn append_batch_async(&self, drafts: Vec<EventDraft>) -> Result<Vec<Appended>> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(drafts, false)?.await.map_err(|_| Error::Closed)?
    }

    /// Appends one draft, resolving once durable.
    pub async fn append_async(&self, draft: EventDraft) -> Result<Appended> {
        let mut v = self.append_batch_async(vec![draft]).await?;
        v.pop().ok_or(Error::Closed)
    }
}

/// Looks up an id among durable and in-flight events.
pub(super) enum Existing {
    None,
    Same(Appended),
    Different,
}

/// Where the event with this id is (author, seq, short draft digest), from the on-disk id index.
pub(super) fn id_entry<B: Backend>(backend: &B, id: &[u8; 16]) -> Result<Option<(u32, u64, [u8; 16])>> {
    Ok(backend.get(&layout::id_key(id))?.and_then(|v| layout::parse_id_value(&v)))
}

pub(super) fn existing<B: Backend>(shared: &Shared<B>, id: &Uuid, digest: &[u8; 32]) -> Result<Existing> {
    if let Some((d, a)) = lock(&shared.in_flight).get(id.as_bytes()) {
        return Ok(if d == digest {
            Existing::Same(Appended { duplicate: true, warnings: Vec::new(), ..a.clone() })
        } else {
            Existing::Different
        });
    }
    let Some((author, seq, short)) = id_entry(&shared.backend, id.as_bytes())? else {
        return Ok(Existing::None);
    };
    if author != shared.locality.as_u32() || short != digest[..16] {
        return Ok(Existing::Different);
    }
    let ev = event_at(&shared.backend, author, seq)?.ok_or_else(|| Error::Corrupt {
        author: shared.locality.to_string(),
        seq,
        problem: "indexed by id but missing".into(),
    })?;
    Ok(Existing::Same(Appended {
        id: *id,
        seq,
        hash: ev.hash,
        recipients: ev
            .envelope
            .recipients
            .iter()
            .filter_map(|r| Locality::parse(&r.locality).ok().map(|l| (l, r.channel_seq)))
            .collect(),
        duplicate: true,
        warnings: Vec::new(),
    }))
}

/// An event sequenced and encoded, waiting for its signature.
pub(super) struct Unsigned {
    envelope: Envelope,
    envelope_bytes: Vec<u8>,
    tiers: Vec<yipan_proto::v1::TierPayload>,
    digest: [u8; 32],
    seq: u64,
    key: Arc<SigningKey>,
}

impl<B: Backend> pool::SeqStrand for Shared<B> {
    fn run(&self) -> bool {
        let (jobs, closed) = self.jobs.take(MAX_GROUP, |j| j.drafts.len());
        if jobs.is_empty() {
            if closed {
                // Every job is sequenced and handed on: the writer may finish.
                let idle = self.writes.close();
                self.schedule_writer(idle);
                self.jobs.finish();
            }
            return self.jobs.settle();
        }
        self.queued.fetch_sub(jobs.len(), Ordering::Relaxed);
        if self.poisoned.load(Ordering::Acquire) {
            for j in jobs {
                let _ = j.reply.send(Err(Error::Poisoned));
            }
            return self.jobs.settle();
        }
        let count = jobs.iter().map(|j| j.drafts.len()).sum();
        let now = yipan_core::time::to_ts(chrono::Utc::now());
        let mut unsigned: Vec<Unsigned> = Vec::with_capacity(count);
        let mut replies = Vec::with_capacity(jobs.len());
        let mut state = lock(&self.seq);
        for job in jobs {
            let result = sequence_job(self, &mut state, job.drafts, &now, &mut unsigned);
            if let (Ok(_), Some(next)) = (&result, job.rotate) {
                // Everything sequenced after the handover event is signed with the new key.
                *write(&self.public) = next.verifying_key();
                state.signing = Arc::new(next);
            }
            replies.push((job.reply, result));
        }
        let head = (state.seq, state.hash);
        drop(state);
        let events = sign_batches(&self.locality.to_string(), unsigned);
        match self.writes.push(Write::Own(WriteGroup { events, head, replies }), true) {
            Ok(idle) => self.schedule_writer(idle),
            // Only the sequencer closes the writes, after its last job: unreachable,
            // but answered rather than lost.
            Err(pool::Refused::Closed(Write::Own(g)) | pool::Refused::Full(Write::Own(g))) => {
                for (reply, _) in g.replies {
                    let _ = reply.send(Err(Error::Closed));
                }
            }
            Err(_) => {}
        }
        self.jobs.settle()
    }

    fn panicked(&self) {
        self.poisoned.store(true, Ordering::Release);
        tracing::error!(locality = %self.locality, "the sequencer panicked; log poisoned until reopened");
    }
}

/// Signs sequenced events: each run of consecutive events under one key, in
/// trees of at most [`yipan_trust::batch::MAX_LEAVES`], gets one signed
/// batch head; every event carries the head and its inclusion proof.
pub(super) fn sign_batches(author: &str, unsigned: Vec<Unsigned>) -> Vec<Signed> {
    let mut batches: Vec<Vec<Unsigned>> = Vec::new();
    for u in unsigned {
        match batches.last_mut() {
            Some(b)
                if b.len() < yipan_trust::batch::MAX_LEAVES
                    && Arc::ptr_eq(&b[0].key, &u.key)
                    && b[b.len() - 1].seq + 1 == u.seq =>
            {
                b.push(u)
            }
            _ => batches.push(vec![u]),
        }
    }
    let sign = |batch: Vec<Unsigned>| -> Vec<Signed> {
        let envelopes: Vec<&[u8]> = batch.iter().map(|u| u.envelope_bytes.as_slice()).collect();
        let proofs = yipan_trust::batch::sign(&batch[0].key, author, batch[0].seq, &envelopes);
        batch
            .into_iter()
            .zip(proofs)
            .map(|(u, proof)| {
                let bytes = SignedEvent {
                    envelope: u.envelope_bytes,
                    signature: Vec::new(),
                    tiers: u.tiers,
                    sealed: vec![],
                    batch: Some(proof),
                }
                .encode_to_vec();
                Signed { seq: u.seq, digest: u.digest, bytes, envelope: u.envelope }
            })
            .collect()
    };
    if batches.len() > 1 {
        batches.into_par_iter().flat_map_iter(sign).collect()
    } else {
        batches.into_iter().flat_map(sign).collect()
    }
}

/// Sequences one job's drafts onto the chain, or none of them.
pub(super) fn sequence_job<B: Backend>(
    shared: &Shared<B>,
    state: &mut SeqState,
    drafts: Vec<Prepared>,
    now: &yipan_proto::Timestamp,
    out: &mut Vec<Unsigned>,
) -> Result<Vec<Appended>> {
    // Phase 1: everything that can fail, before any state changes.
    let mut seen: HashMap<Uuid, [u8; 32]> = HashMap::new();
    let mut plan: Vec<(Prepared, Option<Appended>)> = Vec::with_capacity(drafts.len());
    for p in drafts {
        if let Some(d) = seen.get(&p.id) {
            if *d != p.digest {
                return Err(Error::IdConflict { id: p.id });
            }
        }
        let dup = match existing(shared, &p.id, &p.digest)? {
            Existing::None => None,
            Existing::Same(a) => Some(a),
            Existing::Different => return Err(Error::IdConflict { id: p.id }),
        };
        seen.insert(p.id, p.digest);
        plan.push((p, dup));
    }
    // Phase 2: sequence; cannot fail.
    let me = shared.locality.as_u32();
    let mut appended = Vec::with_capacity(plan.len());
    let mut job_ids: HashMap<Uuid, Appended> = HashMap::new();
    for (p, dup) in plan {
        if let Some(a) =
            dup.or_else(|| job_ids.get(&p.id).map(|a| Appended { duplicate: true, warnings: Vec::new(), ..a.clone() }))
        {
            appended.push(a);
            continue;
        }
        let Prepared { draft, checked, id, digest } = p;
        let tiers = yipan_core::json::draft_tiers(&draft);
        let recipients: Vec<(Locality, u64)> = checked
            .recipients
            .iter()
            .map(|r| {
                let ch = state
                    .channels
                    .entry(r.as_u32())
                    .or_insert_with(|| read(&shared.index).channel_head(me, r.as_u32()));
                *ch += 1;
                (*r, *ch)
            })
            .collect();
        let seq = state.seq + 1;
        let envelope = Envelope {
            schema_version: yipan_proto::SCHEMA_VERSION,
            event_id: id.as_bytes().to_vec(),
            author: shared.locality.to_string(),
            author_seq: seq,
            prev_hash: state.hash.to_vec(),
            recorded_at: Some(*now),
            occurred_at: Some(draft.occurred_at.unwrap_or(*now)),
            person_key: draft.person_key,
            origin: draft.origin,
            residence: draft.residence,
            recipients: recipients
                .iter()
                .map(|(l, ch)| Recipient { locality: l.to_string(), channel_seq: *ch })
                .collect(),
            causation_id: draft.causation_id,
            tier_digests: tiers
                .iter()
                .map(|t| TierDigest { tier: t.tier, sha256: Sha256::digest(&t.content).to_vec() })
                .collect(),
            body: draft.body,
        };
        let envelope_bytes = envelope.encode_to_vec();
        let hash = hash_envelope(&envelope_bytes);
        state.seq = seq;
        state.hash = hash;
        let a = Appended { id, seq, hash, recipients, duplicate: false, warnings: checked.warnings };
        lock(&shared.in_flight).insert(*id.as_bytes(), (digest, a.clone()));
        job_ids.insert(id, a.clone());
        out.push(Unsigned { envelope, envelope_bytes, tiers, digest, seq, key: state.signing.clone() });
        appended.push(a);
    }
    Ok(appended)
}

/// The writer: every write of an open log goes through here. What is
/// waiting when it runs — own events from the sequencer, received events,
/// quarantine, metadata, roster, disclosures, erasures — becomes one sled
/// batch, made durable by one flush shared with every other log the same
/// writer thread took (`pool.rs`).
impl<B: Backend> pool::WriteStrand for Shared<B> {
    fn stage(&self) -> Option<pool::Staged> {
        let (writes, closed) = self.writes.take(usize::MAX, |_| 1);
        if writes.is_empty() {
            if closed {
                self.writes.finish();
            }
            return None;
        }
        let me = self.locality.as_u32();
        let mut groups = Vec::new();
        let mut others: Vec<(Vec<Op>, mpsc::SyncSender<Result<()>>)> = Vec::new();
        for w in writes {
            match w {
                Write::Own(g) => groups.push(g),
                Write::Ops { ops, reply } => others.push((ops, reply)),
            }
        }
        let head = groups.last().map(|g| g.head).unwrap_or((0, [0u8; 32]));
        let mut events: Vec<Signed> = Vec::new();
        let mut replies = Vec::new();
        for g in groups {
            events.extend(g.events);
            replies.extend(g.replies);
        }
        let other_ops: Vec<Op> = others.iter_mut().flat_map(|(ops, _)| std::mem::take(ops)).collect();
        let applied = if self.poisoned.load(Ordering::Acquire) {
            Err(Error::Poisoned)
        } else if events.is_empty() {
            if other_ops.is_empty() {
                Ok(())
            } else {
                self.backend.apply(other_ops)
            }
        } else {
            let mut ops: Vec<Op> = Vec::with_capacity(events.len() / segment::MAX_ENTRIES + 2 + other_ops.len());
            for chunk in events.chunks(segment::MAX_ENTRIES) {
                let entries: Vec<Entry<'_>> =
                    chunk.iter().map(|e| Entry { seq: e.seq, digest: e.digest, bytes: &e.bytes }).collect();
                let last = chunk[chunk.len() - 1].seq;
                ops.push((layout::segment_key(me, last).to_vec(), Some(segment::encode(&entries))));
            }
            for e in &events {
                if let Ok(id) = <[u8; 16]>::try_from(e.envelope.event_id.as_slice()) {
                    ops.push((layout::id_key(&id).to_vec(), Some(layout::id_value(me, e.seq, &e.digest).to_vec())));
                }
            }
            ops.extend(read(&self.index).keys(events.iter().map(|e| (me, e.seq, &e.envelope))));
            let mut h = head.0.to_be_bytes().to_vec();
            h.extend_from_slice(&head.1);
            ops.push((layout::META_HEAD.to_vec(), Some(h)));
            ops.extend(other_ops);
            self.backend.apply(ops)
        };
        Some(pool::Staged {
            events,
            replies,
            others: others.into_iter().map(|(_, reply)| reply).collect(),
            head,
            applied: applied.map_err(|e| e.to_string()),
        })
    }

    fn sync_group(&self) -> usize {
        self.backend.sync_group()
    }

    fn sync(&self) -> Result<()> {
        self.backend.sync()
    }

    fn finish(&self, staged: pool::Staged, synced: std::result::Result<(), String>) {
        let me = self.locality.as_u32();
        let pool::Staged { events, replies, others, head, applied } = staged;
        match applied.and(synced) {
            Ok(()) => {
                if !events.is_empty() {
                    let mut index = write(&self.index);
                    for e in &events {
                        index.add(me, e.seq, &e.envelope);
                    }
                    drop(index);
                    *lock(&self.head) = head;
                    self.head_tx.send_replace(head.0);
                }
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.committed_events.fetch_add(events.len() as u64, Ordering::Relaxed);
                for (reply, r) in replies {
                    let _ = reply.send(r);
                }
                for reply in others {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(msg) => {
                self.poisoned.store(true, Ordering::Release);
                tracing::error!(error = %msg, "a group commit failed to write; log poisoned until reopened");
                for (reply, r) in replies {
                    let _ = reply.send(r.and(Err(Error::Storage(msg.clone()))));
                }
                for reply in others {
                    let _ = reply.send(Err(Error::Storage(msg.clone())));
                }
            }
        }
        let mut in_flight = lock(&self.in_flight);
        for e in &events {
            if let Ok(id) = <[u8; 16]>::try_from(e.envelope.event_id.as_slice()) {
                in_flight.remove(&id);
            }
        }
        drop(in_flight);
        if !self.poisoned.load(Ordering::Acquire) && self.events_tx.receiver_count() > 0 {
            for e in events {
                let _ = self.events_tx.send(Arc::new(e.envelope));
            }
        }
    }

    fn settle(&self) -> bool {
        self.writes.settle()
    }

    fn panicked(&self) {
        self.poisoned.store(true, Ordering::Release);
        tracing::error!(locality = %self.locality, "the writer panicked; log poisoned until reopened");
    }
}
