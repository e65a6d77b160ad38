//! Trust in the log: the roster, trust records, key handovers (own and
//! received) and the trust state rebuilt at open.

use super::*;

impl<B: Backend> Log<B> {
    /// Whether a key of `locality` is known (certified or hand-added).
    pub fn trusts(&self, locality: Locality) -> bool {
        read(&self.shared.trust).knows(locality)
    }

    /// Every known locality with the key that signs its next events.
    pub fn roster(&self) -> Vec<(Locality, VerifyingKey)> {
        read(&self.shared.trust).current_keys()
    }

    /// Every trust record kept, in arrival order, with the instant it was
    /// judged at (for audits that rebuild trust with their own anchor).
    pub fn trust_records(&self) -> Result<Vec<(chrono::DateTime<chrono::Utc>, Vec<u8>)>> {
        Ok(self
            .shared
            .backend
            .range(&[layout::TRUST], &[layout::TRUST + 1], usize::MAX)?
            .into_iter()
            .filter(|(_, v)| v.len() >= 8)
            .map(|(_, v)| {
                let micros = i64::from_be_bytes(v[..8].try_into().unwrap_or_default());
                (chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default(), v[8..].to_vec())
            })
            .collect())
    }

    /// Author sequences of this node's own key handovers (`KeyRotated` events).
    pub fn own_handovers(&self) -> Vec<u64> {
        read(&self.shared.trust).handovers(self.shared.locality)
    }

    /// A copy of the verified trust state (views, audits).
    pub fn trust(&self) -> TrustState {
        read(&self.shared.trust).clone()
    }

    /// Adds a hand-copied locality key (`yipan roster add`: the air-gapped
    /// exception to certificates); returns false if it was already there.
    /// A different key for a known locality is refused.
    pub fn roster_add(&self, locality: Locality, key: VerifyingKey) -> Result<bool> {
        let mut t = write(&self.shared.trust);
        let mut probe = t.clone();
        match probe.add_bootstrap(locality, key) {
            Ok(false) => Ok(false),
            Ok(true) => {
                self.shared
                    .backend
                    .commit(vec![(layout::roster_key(locality.as_u32()).to_vec(), Some(key.to_bytes().to_vec()))])?;
                *t = probe;
                Ok(true)
            }
            Err(_) => Err(Error::RosterConflict { locality: locality.to_string() }),
        }
    }

    /// Verifies one trust record (received at `at`, the stream's timestamp)
    /// up to the anchor and keeps it. A refused record goes to quarantine
    /// with its reason (`trust.*` codes) and is returned as `Ok(Err(fault))`;
    /// `Err` is a storage failure.
    pub fn apply_trust_record(
        &self,
        record: &[u8],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::result::Result<Applied, TrustFault>> {
        // A handover goes through the same checks as one met in a channel.
        if let Ok(yipan_trust::statement::Record::Rotation(ev_bytes)) = yipan_trust::statement::decode_record(record) {
            let outcome = match StoredEvent::decode(&ev_bytes) {
                Err(p) => Err(TrustFault::Malformed(format!("key rotation event: {p}"))),
                Ok(ev) => match self.keep_handover(&ev_bytes, &ev, at) {
                    Ok(applied) => Ok(applied),
                    Err(Error::Trust(f)) => Err(f),
                    Err(e) => return Err(e),
                },
            };
            return match outcome {
                Ok(applied) => Ok(Ok(applied)),
                Err(fault) => self.refuse_trust_record(record, fault),
            };
        }
        // Applied in place (a copy per record would cost O(localities) each: seconds for a
        // national trust stream at start). A refused record changes nothing that matters.
        let mut t = write(&self.shared.trust);
        match t.apply_record(record, at) {
            Ok(Applied::Duplicate) => Ok(Ok(Applied::Duplicate)),
            Ok(applied) => {
                self.keep_trust_record(record, at)?;
                drop(t);
                tracing::info!(?applied, "trust record applied");
                Ok(Ok(applied))
            }
            Err(fault) => {
                drop(t);
                self.refuse_trust_record(record, fault)
            }
        }
    }

    /// [`Log::apply_trust_record`] for records read together, in their order,
    /// with one durable write for all that are kept (a national trust stream
    /// holds a record per locality: one fsync each made a node's first start
    /// take minutes, and a host's thousands of tenants hours).
    pub fn apply_trust_records(
        &self,
        records: &[(Vec<u8>, chrono::DateTime<chrono::Utc>)],
    ) -> Result<Vec<std::result::Result<Applied, TrustFault>>> {
        let is_rotation = |r: &[u8]| {
            matches!(yipan_trust::statement::decode_record(r), Ok(yipan_trust::statement::Record::Rotation(_)))
        };
        let mut out = Vec::with_capacity(records.len());
        let mut i = 0;
        while i < records.len() {
            if is_rotation(&records[i].0) {
                // Handovers keep their own path (they touch the chain).
                out.push(self.apply_trust_record(&records[i].0, records[i].1)?);
                i += 1;
                continue;
            }
            // A run of statements applied under one write lock and written
            // before it is released: nothing (a handover met in a channel)
            // is kept between them, and no reader outlives an unwritten one
            // unless the write fails, which poisons the log.
            let mut t = write(&self.shared.trust);
            let mut kept: Vec<(&[u8], chrono::DateTime<chrono::Utc>)> = Vec::new();
            let mut refused = None;
            while i < records.len() && refused.is_none() && !is_rotation(&records[i].0) {
                let (record, at) = &records[i];
                match t.apply_record(record, *at) {
                    Ok(Applied::Duplicate) => out.push(Ok(Applied::Duplicate)),
                    Ok(applied) => {
                        kept.push((record, *at));
                        out.push(Ok(applied));
                    }
                    Err(fault) => refused = Some((record, fault)),
                }
                i += 1;
            }
            self.keep_trust_records(kept)?;
            drop(t);
            // Quarantined outside the trust lock (ingest takes its lock first, then trust).
            if let Some((record, fault)) = refused {
                out.push(self.refuse_trust_record(record, fault)?);
            }
        }
        Ok(out)
    }

    fn keep_trust_records(&self, records: Vec<(&[u8], chrono::DateTime<chrono::Utc>)>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let ops = records
            .into_iter()
            .map(|(record, at)| {
                let n = self.shared.trust_next.fetch_add(1, Ordering::Relaxed);
                let mut value = at.timestamp_micros().to_be_bytes().to_vec();
                value.extend_from_slice(record);
                (layout::trust_key(n).to_vec(), Some(value))
            })
            .collect();
        self.shared.commit(ops).inspect_err(|e| {
            self.shared.poisoned.store(true, Ordering::Release);
            tracing::error!(error = %e, "trust records failed to write; log poisoned until reopened");
        })
    }

    /// Quarantines a refused trust record with its code (and alerts when it
    /// may be a compromise).
    pub(super) fn refuse_trust_record(
        &self,
        record: &[u8],
        fault: TrustFault,
    ) -> Result<std::result::Result<Applied, TrustFault>> {
        let who = match yipan_trust::statement::decode_record(record) {
            Ok(yipan_trust::statement::Record::Rotation(_)) => "trust:rotation",
            _ => "trust",
        };
        self.set_aside(record, Some(who.into()), Code::Trust(fault.code()), format!("{}: {fault}", fault.code()))?;
        if fault.is_alert() {
            tracing::error!(alert = "trust", code = fault.code(), %fault, "trust record refused");
        } else {
            tracing::warn!(code = fault.code(), %fault, "trust record refused");
        }
        Ok(Err(fault))
    }

    /// Applies a key handover (an encoded `KeyRotated` event, `ev` decoded)
    /// and keeps it as a trust record, so that a restart replays it in the
    /// order it was learned. A handover at or below a sequence this node
    /// already holds of that author must be the very event held there (for
    /// its own locality: always), so a stolen old key cannot rewrite a chain
    /// by handing it over in the past, nor hand this node's own chain over.
    pub(super) fn keep_handover(
        &self,
        bytes: &[u8],
        ev: &StoredEvent,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Applied> {
        let author = ev.author().ok_or_else(|| TrustFault::BadRotation("author is not a division code".into()))?;
        // This node holds every event of its own chain: its own handovers must be among them.
        let own = author == self.shared.locality;
        if own || ev.seq() <= read(&self.shared.index).max_seq(author.as_u32()) {
            match self.event_at(author, ev.seq())? {
                Some(held) if held.hash == ev.hash => {}
                _ => {
                    return Err(TrustFault::BadRotation(format!(
                        "at {author}#{}: this node holds another event (or a later one) there",
                        ev.seq()
                    ))
                    .into())
                }
            }
        }
        let mut t = write(&self.shared.trust);
        match t.apply_rotation(bytes, at)? {
            Applied::Duplicate => Ok(Applied::Duplicate),
            applied => {
                self.keep_trust_record(&yipan_trust::statement::record_of_rotation(bytes.to_vec()), at)?;
                Ok(applied)
            }
        }
    }

    /// Stores an applied trust record after the others, with the instant it
    /// was judged at (call with the trust state's write lock held, so the
    /// stored order is the applied order). A failed write leaves memory ahead
    /// of the disk: like a failed append, the log stops until reopened (the
    /// stream cursor was not advanced, so the record is read again then).
    pub(super) fn keep_trust_record(&self, record: &[u8], at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        self.keep_trust_records(vec![(record, at)])
    }

    /// Hands this log's chain over to `next`: appends a `KeyRotated` event
    /// signed by the current key naming `certificate` (the province
    /// authority's `LocalityCertificate` for `next`, replacing the current
    /// key's serial), addressed to every locality this node has a channel
    /// to; every later event is signed by `next`. Blocks until durable.
    pub fn rotate_key(&self, next: SigningKey, certificate: Vec<u8>) -> Result<Appended> {
        let me = self.shared.locality;
        let decoded = yipan_trust::statement::decode(&certificate)?;
        let Some(yipan_proto::v1::statement::Kind::Locality(c)) = &decoded.statement.kind else {
            return Err(TrustFault::BadRotation("the certificate is not a locality certificate".into()).into());
        };
        if c.locality != me.to_string() || c.public_key != next.verifying_key().to_bytes() {
            return Err(TrustFault::BadRotation(format!(
                "the certificate is for {} key {}…, not this node ({me}) and the new key",
                c.locality,
                hex::encode(c.public_key.get(..6).unwrap_or_default())
            ))
            .into());
        }
        {
            // The certificate must verify and be this locality's certified next key.
            let mut probe = read(&self.shared.trust).clone();
            match probe.apply_statement(&certificate, chrono::Utc::now()) {
                Ok(_) => {}
                Err(f) => return Err(f.into()),
            }
            if probe.pending_key(me) != Some(next.verifying_key()) {
                return Err(TrustFault::BadRotation(format!(
                    "certificate {} does not replace {me}'s current key (replaces_serial must name it)",
                    c.serial
                ))
                .into());
            }
        }
        let recipients: Vec<String> = self.outbound_heads(u64::MAX)?.into_iter().map(|(l, _)| l.to_string()).collect();
        let draft = EventDraft {
            recipients,
            body: Some(yipan_proto::v1::EventBody {
                kind: Some(yipan_proto::v1::event_body::Kind::KeyRotated(yipan_proto::v1::KeyRotated { certificate })),
            }),
            ..Default::default()
        };
        let appended = self.submit_job(vec![draft], true, Some(next))?.blocking_recv().map_err(|_| Error::Closed)??;
        let a = appended.into_iter().next().ok_or(Error::Closed)?;
        let ev = self.event_at(me, a.seq)?.ok_or(Error::Closed)?;
        let at = rotation_time(&ev).unwrap_or_else(chrono::Utc::now);
        if let Err(e) = self.keep_handover(&ev.signed.encode_to_vec(), &ev, at) {
            // Durable in the chain but not in the trust state: the sequencer already
            // signs with the new key, so stop until a reopen rebuilds the state.
            self.shared.poisoned.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(a)
    }
}

/// The recorded-at of a `KeyRotated` event (`None` for any other event).
pub(super) fn rotation_time(ev: &StoredEvent) -> Option<chrono::DateTime<chrono::Utc>> {
    match ev.envelope.body.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(yipan_proto::v1::event_body::Kind::KeyRotated(_)) => {
            Some(ev.envelope.recorded_at.as_ref().and_then(yipan_core::time::from_ts).unwrap_or_default())
        }
        _ => None,
    }
}

/// Rebuilds the trust state: the anchor (given, or as recorded), hand-added
/// keys, stored trust records in arrival order, then the key handovers found
/// among stored events. Returns it with the next trust record number.
pub(super) fn load_trust<B: Backend>(
    backend: &B,
    anchor: Option<VerifyingKey>,
    rotations: Vec<(Vec<u8>, chrono::DateTime<chrono::Utc>)>,
) -> Result<(TrustState, u64)> {
    let stored = match backend.get(layout::META_ANCHOR)? {
        Some(v) => Some(
            <[u8; 32]>::try_from(v.as_slice())
                .ok()
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                .ok_or_else(|| Error::Storage("stored trust anchor is not a 32-byte ed25519 key".into()))?,
        ),
        None => None,
    };
    let anchor = match (anchor, stored) {
        (Some(a), Some(s)) if a == s => Some(a),
        (Some(a), s) => {
            let mut ops = vec![(layout::META_ANCHOR.to_vec(), Some(a.to_bytes().to_vec()))];
            if s.is_some() {
                // Records refused under the old anchor may verify now: read the stream again.
                tracing::warn!(
                    "trust anchor changed: stored trust records are verified again, the trust stream re-read"
                );
                ops.push((meta_key(TRUST_CURSOR), None));
            }
            backend.commit(ops)?;
            Some(a)
        }
        (None, s) => s,
    };
    let mut trust = TrustState::new(anchor);
    for (k, v) in backend.range(&[layout::ROSTER], &[layout::ROSTER + 1], usize::MAX)? {
        let code = u32::from_be_bytes(k[1..5].try_into().map_err(|_| Error::Storage("bad roster key".into()))?);
        let key: [u8; 32] =
            v.as_slice().try_into().map_err(|_| Error::Storage(format!("roster key of {code} is not 32 bytes")))?;
        let key =
            VerifyingKey::from_bytes(&key).map_err(|_| Error::Storage(format!("roster key of {code} is invalid")))?;
        let l = Locality::from_u32(code).map_err(|_| Error::Storage(format!("roster entry {code} is not a code")))?;
        if let Err(f) = trust.add_bootstrap(l, key) {
            tracing::warn!(%f, "hand-added key not loaded");
        }
    }
    let mut next = 0u64;
    for (k, v) in backend.range(&[layout::TRUST], &[layout::TRUST + 1], usize::MAX)? {
        let n = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
        next = next.max(n + 1);
        if v.len() < 8 {
            tracing::warn!(record = n, "stored trust record is truncated; skipped");
            continue;
        }
        let micros = i64::from_be_bytes(v[..8].try_into().unwrap_or_default());
        let at = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
        if let Err(f) = trust.apply_record(&v[8..], at) {
            tracing::warn!(record = n, code = f.code(), %f, "stored trust record no longer verifies; not applied");
        }
    }
    for (bytes, at) in rotations {
        if let Err(f) = trust.apply_rotation(&bytes, at) {
            tracing::warn!(code = f.code(), %f, "stored key handover not applied");
        }
    }
    Ok((trust, next))
}

/// Refuses to open with a key other than the one certified for the next own event.
pub(super) fn check_own_key(trust: &TrustState, me: Locality, next: u64, own: &VerifyingKey) -> Result<()> {
    let short = |k: &VerifyingKey| hex::encode(&k.to_bytes()[..6]);
    // A later key certified from beyond this node's next sequence (a recovery after a
    // revocation whose bound lies past this chain's end): the sequences between were
    // signed by someone else with the old key. Writing there would fork the chain.
    if let Some(later) = trust.span_starts(me).into_iter().find(|f| *f > next) {
        return Err(Error::OwnKey {
            seq: next,
            problem: format!(
                "this chain ends at #{} but the certified schedule continues from #{later} with another key: \
                 events #{next}..#{} are not this node's (written with a stolen key?); see docs/trust.md, recovery",
                next - 1,
                later - 1
            ),
        });
    }
    match trust.key_for(me, next, None) {
        Ok(k) if k == *own => Ok(()),
        Ok(k) => Err(Error::KeyMismatch {
            seq: next,
            expected: short(&k),
            given: short(own),
            hint: if trust.pending_key(me) == Some(*own) {
                "; it is the certified next key: hand over with `yipan key rotate` first".into()
            } else {
                "; restore the key file of this data directory (docs/trust.md)".into()
            },
        }),
        Err(e) => {
            tracing::warn!(%e, "this node's key cannot sign its next event; appends are refused");
            Ok(())
        }
    }
}
