//! Ingest of foreign events: classify (decode, author, key, signature,
//! schema, recipient) in parallel, plan by channel position under one lock,
//! write in one batch; and the quarantine of what was refused.

use super::*;
use crate::check::{place, Place};

impl<B: Backend> Log<B> {
    /// Sets bytes aside in quarantine with `reason` (e.g. an event whose
    /// author's key never arrived), within the quarantine's bounds.
    pub fn set_aside(&self, bytes: &[u8], author: Option<String>, code: Code, reason: String) -> Result<()> {
        let mut ops = Vec::new();
        quarantine_op(&mut ops, bytes, author, code, reason)?;
        let mut bounds = lock(&self.shared.ingest_lock);
        let mut next = bounds.clone();
        next.admit(&mut ops, &meta_key(crate::quarantine::EVICTED));
        self.shared.commit(ops)?;
        *bounds = next;
        Ok(())
    }

    /// Ingests one foreign signed event (see [`Log::ingest_batch`]).
    pub fn ingest(&self, bytes: &[u8]) -> Result<Ingested> {
        let mut v = self.ingest_batch(&[bytes])?;
        v.pop().ok_or(Error::Closed)
    }

    /// Ingests foreign signed events with one flush. Each is verified
    /// (decoding, author, roster signature, schema, recipient) in parallel,
    /// then placed by channel position: the next position is stored, a known
    /// one is a duplicate, a later one is a gap (not stored), and a different
    /// event at a known position is a fork. Rejects go to quarantine with
    /// their bytes and reason; nothing that failed verification is stored.
    pub fn ingest_batch(&self, items: &[&[u8]]) -> Result<Vec<Ingested>> {
        let checked = self.check_foreign_batch(items);
        let mut bounds = lock(&self.shared.ingest_lock);
        let me = self.shared.locality.as_u32();
        let mut outcomes: Vec<Option<Ingested>> = vec![None; items.len()];
        let mut ops: Vec<Op> = Vec::new();
        let quarantine = |ops: &mut Vec<Op>, bytes: &[u8], author: Option<String>, code: Code, reason: String| {
            quarantine_op(ops, bytes, author, code, reason.clone())?;
            Ok::<_, Error>(Ingested::Quarantined { code, reason })
        };
        // Order by (author, channel position) so a batch that arrives out of order still applies.
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| match &checked[i] {
            Ok((ev, ch)) => (0, ev.author().map(|a| a.as_u32()).unwrap_or(0), *ch),
            Err(_) => (1, 0, 0),
        });
        // Channel heads and highest sequences as this batch advances them.
        let mut heads: HashMap<u32, (u64, u64)> = HashMap::new();
        let mut batch_ids: HashMap<[u8; 16], [u8; 32]> = HashMap::new();
        let mut stored: Vec<(u32, usize)> = Vec::new();
        {
            let index = read(&self.shared.index);
            for i in order {
                let outcome = match &checked[i] {
                    Err(Reject::Bad(author, code, reason)) => {
                        quarantine(&mut ops, items[i], author.clone(), *code, reason.clone())?
                    }
                    // Later channel positions of its author in this batch become gaps.
                    Err(Reject::Later(author, reason)) => Ingested::Pending { author: *author, reason: reason.clone() },
                    Ok((ev, ch)) => {
                        let author = ev.author().map(|a| a.as_u32()).unwrap_or(0);
                        let id: [u8; 16] = ev.envelope.event_id.as_slice().try_into().unwrap_or_default();
                        let uuid = Uuid::from_bytes(id);
                        let (head, max_seq) = *heads
                            .entry(author)
                            .or_insert_with(|| (index.channel_head(author, me), index.max_seq(author)));
                        let known = match batch_ids.get(&id) {
                            Some(h) => Some(*h),
                            None => match id_entry(&self.shared.backend, &id)? {
                                Some((a, s, _)) => event_at(&self.shared.backend, a, s)?.map(|x| x.hash),
                                None => None,
                            },
                        };
                        let author_text = Some(ev.envelope.author.clone());
                        match known {
                            Some(h) if h == ev.hash => Ingested::Duplicate { id: uuid },
                            Some(_) => quarantine(
                                &mut ops,
                                items[i],
                                author_text,
                                Code::IdConflict,
                                format!("event id {uuid} is already held with different content"),
                            )?,
                            None => match (place(head, *ch), place(max_seq, ev.seq())) {
                                (Place::Held, _) => quarantine(
                                    &mut ops,
                                    items[i],
                                    author_text,
                                    Code::ForkChannel,
                                    format!(
                                        "fork: channel position {ch} from {} to {} already holds another event",
                                        ev.envelope.author, self.shared.locality
                                    ),
                                )?,
                                (Place::Beyond, _) => Ingested::Gap {
                                    author: ev.author().unwrap_or(self.shared.locality),
                                    expected: head + 1,
                                    got: *ch,
                                },
                                // A foreign chain is partial here: any sequence after
                                // the highest held is fine, one at or below it is not.
                                (Place::Next, Place::Held) => quarantine(
                                    &mut ops,
                                    items[i],
                                    author_text,
                                    Code::ForkSequence,
                                    format!(
                                        "fork: author sequence {} is not after {max_seq}, already held from {}",
                                        ev.seq(),
                                        ev.envelope.author
                                    ),
                                )?,
                                (Place::Next, _) => {
                                    heads.insert(author, (*ch, ev.seq()));
                                    batch_ids.insert(id, ev.hash);
                                    stored.push((author, i));
                                    Ingested::Stored {
                                        id: uuid,
                                        author: ev.author().unwrap_or(self.shared.locality),
                                        seq: ev.seq(),
                                        channel_seq: *ch,
                                        recorded_at_us: ev
                                            .envelope
                                            .recorded_at
                                            // Signed by the author but unchecked: saturate, never overflow.
                                            .map(|t| {
                                                t.seconds
                                                    .saturating_mul(1_000_000)
                                                    .saturating_add(i64::from(t.nanos / 1_000))
                                            })
                                            .unwrap_or(0),
                                    }
                                }
                            },
                        }
                    }
                };
                outcomes[i] = Some(outcome);
            }
        }
        // One run of segments per author, in sequence order (the batch order above),
        // and each stored event's id key in the same batch.
        let zero = [0u8; 32];
        for (author, i) in &stored {
            if let Ok((ev, _)) = &checked[*i] {
                if let Ok(id) = <[u8; 16]>::try_from(ev.envelope.event_id.as_slice()) {
                    ops.push((layout::id_key(&id).to_vec(), Some(layout::id_value(*author, ev.seq(), &zero).to_vec())));
                }
            }
        }
        ops.extend(
            read(&self.shared.index).keys(
                stored.iter().filter_map(|(author, i)| {
                    checked[*i].as_ref().ok().map(|(ev, _)| (*author, ev.seq(), &ev.envelope))
                }),
            ),
        );
        for run in stored.chunk_by(|a, b| a.0 == b.0) {
            for chunk in run.chunks(segment::MAX_ENTRIES) {
                let entries: Vec<Entry<'_>> = chunk
                    .iter()
                    .filter_map(|(_, i)| checked[*i].as_ref().ok().map(|(ev, _)| (ev.seq(), *i)))
                    .map(|(seq, i)| Entry { seq, digest: zero, bytes: items[i] })
                    .collect();
                if let Some(last) = entries.last() {
                    ops.push((layout::segment_key(chunk[0].0, last.seq).to_vec(), Some(segment::encode(&entries))));
                }
            }
        }
        // Evictions are computed on a copy, so a failed commit changes nothing
        // (and only when this batch quarantined something: not on the hot path).
        let quarantined = ops.iter().any(|(k, v)| k.first() == Some(&layout::QUARANTINE) && v.is_some());
        let next = quarantined.then(|| {
            let mut next = bounds.clone();
            next.admit(&mut ops, &meta_key(crate::quarantine::EVICTED));
            next
        });
        if !ops.is_empty() {
            self.shared.commit(ops)?;
        }
        if let Some(next) = next {
            *bounds = next;
        }
        if !stored.is_empty() {
            let mut index = write(&self.shared.index);
            for (author, i) in &stored {
                if let Ok((ev, _)) = &checked[*i] {
                    index.add(*author, ev.seq(), &ev.envelope);
                }
            }
            drop(index);
            if self.shared.events_tx.receiver_count() > 0 {
                for (_, i) in &stored {
                    if let Ok((ev, _)) = &checked[*i] {
                        let _ = self.shared.events_tx.send(Arc::new(ev.envelope.clone()));
                    }
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Ingested::Quarantined { code: Code::Malformed, reason: "not processed".into() }))
            .collect())
    }

    /// Verifies foreign events: decoding, author and the author's key for
    /// that sequence, then the signatures (in batches of 64 on all cores
    /// when there are many, falling back to one by one to name the bad
    /// ones), then schema and recipient.
    pub(super) fn check_foreign_batch(&self, items: &[&[u8]]) -> Vec<std::result::Result<(StoredEvent, u64), Reject>> {
        let parallel = items.len() >= PARALLEL_SIGN_FROM;
        let decode = |b: &&[u8]| {
            StoredEvent::decode(b).map_err(|p| Reject::Bad(None, Code::Malformed, format!("malformed: {p}")))
        };
        let decoded: Vec<std::result::Result<StoredEvent, Reject>> =
            if parallel { items.par_iter().map(decode).collect() } else { items.iter().map(decode).collect() };
        // Key handovers (`KeyRotated` events) first, so that later events of the same
        // author in this batch verify with the new key. A handover is authentic on its
        // own (signed by the old key, naming a certificate that verifies up to the
        // anchor), whether or not its event is then stored; if refused here, the event
        // itself is judged (and quarantined) below.
        for (bytes, ev) in items.iter().zip(&decoded) {
            let Ok(ev) = ev else { continue };
            let Some(at) = rotation_time(ev) else { continue };
            if ev.author() != Some(self.shared.locality) {
                if let Err(e) = self.keep_handover(bytes, ev, at) {
                    tracing::debug!(error = %e, "key handover in a received event not applied");
                }
            }
        }
        let trust = read(&self.shared.trust);
        let heads: Vec<std::result::Result<(StoredEvent, VerifyingKey), Reject>> = if parallel {
            decoded.into_par_iter().map(|r| r.and_then(|ev| self.foreign_head(&trust, ev))).collect()
        } else {
            decoded.into_iter().map(|r| r.and_then(|ev| self.foreign_head(&trust, ev))).collect()
        };
        let forged = |ev: &StoredEvent, _: &(), p: String| {
            // Signed by the author's certified next key before its handover reached us: wait for it.
            if let Some(a) = ev.author() {
                if trust.pending_key(a).is_some_and(|k| ev.verify_signature(&k).is_ok()) {
                    return Reject::Later(
                        a,
                        format!("signed by {a}'s certified next key; its key handover has not arrived yet"),
                    );
                }
            }
            Reject::Bad(
                Some(ev.envelope.author.clone()),
                Code::Forged,
                format!("forged or altered: {p} with the certified key of {} for #{}", ev.envelope.author, ev.seq()),
            )
        };
        let heads = heads.into_iter().map(|r| r.map(|(ev, key)| (ev, key, ()))).collect();
        let signed: Vec<std::result::Result<StoredEvent, Reject>> =
            crate::event::verify_signatures(heads, forged).into_iter().map(|r| r.map(|(ev, ())| ev)).collect();
        drop(trust);
        let finish = |r: std::result::Result<StoredEvent, Reject>| {
            let ev = r?;
            let ch = self.foreign_body(&ev).map_err(|(a, code, reason)| Reject::Bad(a, code, reason))?;
            Ok((ev, ch))
        };
        if parallel {
            signed.into_par_iter().map(finish).collect()
        } else {
            signed.into_iter().map(finish).collect()
        }
    }

    /// First checks of a foreign event: decoding, author, the key for its sequence.
    pub(super) fn foreign_head(
        &self,
        trust: &TrustState,
        ev: StoredEvent,
    ) -> std::result::Result<(StoredEvent, VerifyingKey), Reject> {
        let claimed = Some(ev.envelope.author.clone());
        let fail = |code: Code, reason: String| Reject::Bad(claimed.clone(), code, reason);
        let author = Locality::parse(&ev.envelope.author).map_err(|p| fail(Code::Author, format!("author {p}")))?;
        if author == self.shared.locality {
            return Err(fail(
                Code::Author,
                "names this node as its author; a node ingests only other localities' events".into(),
            ));
        }
        let recorded = ev.envelope.recorded_at.as_ref().and_then(yipan_core::time::from_ts);
        match trust.key_for(author, ev.seq(), recorded) {
            Ok(key) => Ok((ev, key)),
            Err(e @ KeyFault::Unknown { .. }) => Err(Reject::Later(author, e.to_string())),
            Err(e) => Err(fail(Code::Trust(e.code()), format!("{}: {e}", e.code()))),
        }
    }

    /// Checks after the signature: schema, domain validation, recipient.
    /// Ok gives this node's channel position.
    pub(super) fn foreign_body(&self, ev: &StoredEvent) -> std::result::Result<u64, (Option<String>, Code, String)> {
        let claimed = Some(ev.envelope.author.clone());
        let fail = |reason: String| (claimed.clone(), Code::Schema, reason);
        let author =
            Locality::parse(&ev.envelope.author).map_err(|p| (claimed.clone(), Code::Author, format!("author {p}")))?;
        if ev.envelope.schema_version == 0 || ev.envelope.schema_version > yipan_proto::SCHEMA_VERSION {
            return Err(fail(format!(
                "schema version {} is not supported (this node reads 1..={})",
                ev.envelope.schema_version,
                yipan_proto::SCHEMA_VERSION
            )));
        }
        if ev.envelope.author_seq == 0 {
            return Err(fail("author_seq is 0; sequences start at 1".into()));
        }
        if ev.envelope.prev_hash.len() != 32 {
            return Err(fail("prev_hash is not 32 bytes".into()));
        }
        ev.id().filter(|u| u.get_version_num() == 7).ok_or_else(|| fail("event id is not a UUIDv7".into()))?;
        ev.verify_tiers(false).map_err(|p| fail(format!("schema: {p}")))?;
        if !ev.signed.sealed.is_empty() {
            return Err(fail("schema: sealed tiers must be opened before the event is stored".into()));
        }
        let draft = EventDraft {
            event_id: ev.envelope.event_id.clone(),
            occurred_at: ev.envelope.occurred_at,
            person_key: ev.envelope.person_key.clone(),
            origin: ev.envelope.origin.clone(),
            residence: ev.envelope.residence.clone(),
            recipients: ev.envelope.recipients.iter().map(|r| r.locality.clone()).collect(),
            causation_id: ev.envelope.causation_id.clone(),
            body: ev.envelope.body.clone(),
            ..Default::default()
        };
        let checked = validate_draft(author, &draft).map_err(|e| fail(format!("schema: {e}")))?;
        let recorded = ev.envelope.recorded_at.as_ref().and_then(yipan_core::time::from_ts);
        let recorded = recorded.ok_or_else(|| fail("schema: recorded_at is missing or not a valid instant".into()))?;
        let bounds = yipan_core::validate::OccurredBounds::RECEIVED;
        yipan_core::validate::check_occurred_within(ev.envelope.occurred_at.as_ref(), recorded, &bounds)
            .map_err(|e| fail(format!("schema: {e}")))?;
        for d in &ev.envelope.tier_digests {
            if !checked.kind.tiers().iter().any(|t| *t as i32 == d.tier) {
                return Err(fail(format!("schema: a {} event may not carry tier {}", checked.kind, d.tier)));
            }
        }
        let me = self.shared.locality.to_string();
        let ch = ev.envelope.recipients.iter().find(|r| r.locality == me).map(|r| r.channel_seq).ok_or_else(|| {
            (claimed.clone(), Code::WrongRecipient, format!("wrong recipient: not addressed to {me}"))
        })?;
        if ch == 0 {
            return Err((claimed.clone(), Code::WrongRecipient, "channel position 0; positions start at 1".into()));
        }
        Ok(ch)
    }

    /// Every quarantined event held, oldest first.
    pub fn quarantine(&self) -> Result<Vec<QuarantineEntry>> {
        self.quarantine_page(None, usize::MAX)
    }

    /// Up to `limit` quarantined events after the entry `after`, oldest first.
    pub fn quarantine_page(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<QuarantineEntry>> {
        let start = match after {
            Some(id) => {
                let mut k = layout::quarantine_key(id.as_bytes()).to_vec();
                k.push(0);
                k
            }
            None => vec![layout::QUARANTINE],
        };
        self.shared
            .backend
            .range(&start, &[layout::QUARANTINE + 1], limit)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("quarantine record unreadable: {e}")))
            })
            .collect()
    }

    /// Records held in quarantine, and what its bounds have evicted.
    pub fn quarantine_summary(&self) -> (usize, crate::quarantine::Evicted) {
        let b = lock(&self.shared.ingest_lock);
        (b.len(), b.evicted().clone())
    }
}

/// A rejected foreign event or trust record as a quarantine write.
pub(super) fn quarantine_op(
    ops: &mut Vec<Op>,
    bytes: &[u8],
    author: Option<String>,
    code: Code,
    reason: String,
) -> Result<()> {
    let id = Uuid::now_v7();
    // The bytes kept for inspection (and fork proofs) without personal tier
    // payloads: the envelope and signature prove what was sent, and staff who
    // read the quarantine (monitors too) must not see a name in hex. The
    // SHA-256 is of what was received.
    let kept = yipan_proto::v1::SignedEvent::decode(bytes)
        .ok()
        .filter(|s| !s.tiers.is_empty() || !s.sealed.is_empty())
        .map(|mut s| {
            s.tiers.clear();
            s.sealed.clear();
            s.encode_to_vec()
        });
    let shown = kept.as_deref().unwrap_or(bytes);
    let entry = QuarantineEntry {
        id,
        received_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        author,
        code: code.as_str().into(),
        reason,
        bytes_hex: hex::encode(&shown[..shown.len().min(crate::quarantine::KEEP_BYTES)]),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    };
    let value = serde_json::to_vec(&entry).map_err(|e| Error::Storage(e.to_string()))?;
    ops.push((layout::quarantine_key(id.as_bytes()).to_vec(), Some(value)));
    tracing::warn!(author = entry.author.as_deref().unwrap_or("?"), code = %entry.code, reason = %entry.reason, "quarantined");
    Ok(())
}
