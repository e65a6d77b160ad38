//! Reads: by id, author, person and channel, and the one segment scan
//! behind every bulk read.

use super::*;

impl<B: Backend> Log<B> {
    /// The event of `author` at `seq`, if held.
    pub fn event_at(&self, author: Locality, seq: u64) -> Result<Option<StoredEvent>> {
        event_at(&self.shared.backend, author.as_u32(), seq)
    }

    /// The event with this id.
    pub fn get(&self, id: Uuid) -> Result<Option<StoredEvent>> {
        match id_entry(&self.shared.backend, id.as_bytes())? {
            Some((author, seq, _)) => event_at(&self.shared.backend, author, seq),
            None => Ok(None),
        }
    }

    /// Up to `limit` events of `author` from sequence `from_seq` on.
    pub fn read_author(&self, author: Locality, from_seq: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.read_author_where(author, from_seq, limit, |_| true)
    }

    /// Up to `limit` events of `author` from `from_seq` on that `matches` accepts
    /// (the limit counts matches, not events read).
    pub fn read_author_where(
        &self,
        author: Locality,
        from_seq: u64,
        limit: usize,
        matches: impl Fn(&StoredEvent) -> bool,
    ) -> Result<Vec<StoredEvent>> {
        let a = author.as_u32();
        let start = layout::segment_key(a, from_seq).to_vec();
        let end = layout::prefix_end(&layout::author_prefix(a));
        self.scan(&start, &end, |_, seq| seq >= from_seq, matches, limit)
    }

    /// Up to `limit` events of any author, in (author, seq) order, after `after`.
    pub fn read_all(&self, after: Option<(Locality, u64)>, limit: usize) -> Result<Vec<StoredEvent>> {
        self.read_all_where(after, limit, |_| true)
    }

    /// Up to `limit` events after `after` that `matches` accepts (the limit
    /// counts matches, not events read).
    pub fn read_all_where(
        &self,
        after: Option<(Locality, u64)>,
        limit: usize,
        matches: impl Fn(&StoredEvent) -> bool,
    ) -> Result<Vec<StoredEvent>> {
        let (start, skip) = match after {
            Some((a, s)) => (layout::segment_key(a.as_u32(), s.saturating_add(1)).to_vec(), Some((a.as_u32(), s))),
            None => (vec![layout::SEGMENT], None),
        };
        let keep = move |author: u32, seq: u64| match skip {
            Some((a, s)) => author > a || (author == a && seq > s),
            None => true,
        };
        self.scan(&start, &[layout::SEGMENT + 1], keep, matches, limit)
    }

    /// Decodes events of the segments in `start..end` that `keep` accepts by
    /// position, keeping those `matches` accepts, until `limit` are kept.
    pub(super) fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        keep: impl Fn(u32, u64) -> bool,
        matches: impl Fn(&StoredEvent) -> bool,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        let mut failure = None;
        each_stored(&self.shared.backend, start, end, Damaged::Fail, |author, e| {
            if out.len() >= limit {
                return false;
            }
            if keep(author, e.seq) {
                match decode_at(author, e.seq, e.bytes) {
                    Ok(ev) if matches(&ev) => out.push(ev),
                    Ok(_) => {}
                    Err(err) => {
                        failure = Some(err);
                        return false;
                    }
                }
            }
            out.len() < limit
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Decodes the envelope of every stored event, in (author, seq) order, in
    /// chunks decoded in parallel on all cores, calling `f` per chunk. For
    /// rebuilding views: it skips the canonical-form and hash checks of
    /// [`StoredEvent::decode`] (that is `verify`'s job) and fails on a
    /// segment or envelope it cannot decode.
    pub fn scan_envelopes(&self, mut f: impl FnMut(Vec<Envelope>)) -> Result<()> {
        const CHUNK: usize = 8192;
        let mut pending: Vec<(u32, u64, Vec<u8>)> = Vec::with_capacity(CHUNK);
        let mut failure = None;
        let decode = |batch: &mut Vec<(u32, u64, Vec<u8>)>| -> Result<Vec<Envelope>> {
            let out = batch
                .par_iter()
                .map(|(a, s, b)| {
                    SignedEvent::decode(b.as_slice())
                        .and_then(|signed| Envelope::decode(signed.envelope.as_slice()))
                        .map_err(|e| Error::Corrupt { author: a.to_string(), seq: *s, problem: e.to_string() })
                })
                .collect();
            batch.clear();
            out
        };
        each_stored(&self.shared.backend, &[layout::SEGMENT], &[layout::SEGMENT + 1], Damaged::Fail, |author, e| {
            pending.push((author, e.seq, e.bytes.to_vec()));
            if pending.len() >= CHUNK {
                match decode(&mut pending) {
                    Ok(envs) => f(envs),
                    Err(e) => {
                        failure = Some(e);
                        return false;
                    }
                }
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if !pending.is_empty() {
            f(decode(&mut pending)?);
        }
        Ok(())
    }

    /// Calls `f(author, seq, bytes)` with the stored bytes of every event, in
    /// (author, seq) order, after `after` if given, for at most `limit` events
    /// (for audits and for serving raw events; nothing is decoded here).
    pub fn for_each_raw(
        &self,
        after: Option<(Locality, u64)>,
        limit: usize,
        mut f: impl FnMut(Locality, u64, &[u8]),
    ) -> Result<()> {
        let start = match after {
            Some((a, s)) => layout::segment_key(a.as_u32(), s.saturating_add(1)).to_vec(),
            None => vec![layout::SEGMENT],
        };
        let mut n = 0usize;
        each_stored(&self.shared.backend, &start, &[layout::SEGMENT + 1], Damaged::Fail, |author, e| {
            let Ok(a) = Locality::from_u32(author) else { return true };
            if after.is_some_and(|(aa, ss)| aa == a && e.seq <= ss) {
                return true;
            }
            if n >= limit {
                return false;
            }
            f(a, e.seq, e.bytes);
            n += 1;
            true
        })
    }

    /// Every person with events held here.
    pub fn persons(&self) -> Result<Vec<PersonKey>> {
        crate::index::persons(&self.shared.backend)
    }

    /// Every event about `person`, by author and sequence.
    pub fn read_person(&self, person: PersonKey) -> Result<Vec<StoredEvent>> {
        let positions = crate::index::person(&self.shared.backend, &person)?;
        self.at_positions(positions)
    }

    pub(super) fn at_positions(&self, positions: Vec<(u32, u64)>) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::with_capacity(positions.len());
        for (a, s) in positions {
            if let Some(ev) = event_at(&self.shared.backend, a, s)? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// Up to `limit` events of the author→recipient channel from position `from` on.
    pub fn read_channel(
        &self,
        author: Locality,
        recipient: Locality,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let seqs = crate::index::channel(&self.shared.backend, author.as_u32(), recipient.as_u32(), from, limit)?;
        self.at_positions(seqs.into_iter().map(|(_, s)| (author.as_u32(), s)).collect())
    }

    /// The last stored position of the author→recipient channel (0 if none).
    pub fn channel_head(&self, author: Locality, recipient: Locality) -> Result<u64> {
        Ok(read(&self.shared.index).channel_head(author.as_u32(), recipient.as_u32()))
    }

    /// The own chain's durable head: (seq, hash); (0, zeros) when empty.
    pub fn head(&self) -> Result<(u64, [u8; 32])> {
        Ok(*lock(&self.shared.head))
    }

    /// Every event stored from now on, own or received, after it is durable.
    /// A subscriber that falls more than 65,536 events behind gets
    /// `RecvError::Lagged` and must re-read the log.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<Arc<Envelope>> {
        self.shared.events_tx.subscribe()
    }

    /// Watches the durable own head seq: changes after every group commit.
    pub fn subscribe_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.head_tx.subscribe()
    }

    /// For every outbound channel: the recipient and the last position whose
    /// event has a sequence ≤ `max_seq`.
    pub fn outbound_heads(&self, max_seq: u64) -> Result<Vec<(Locality, u64)>> {
        let me = self.shared.locality.as_u32();
        let channels = read(&self.shared.index).channels_of(me);
        let mut out = Vec::with_capacity(channels.len());
        for (r, head, head_seq) in channels {
            let h = crate::index::last_position_through(&self.shared.backend, me, r, (head, head_seq), max_seq)?;
            if let (true, Ok(l)) = (h > 0, Locality::from_u32(r)) {
                out.push((l, h));
            }
        }
        Ok(out)
    }

    /// The channels whose whole content is published (head's sequence ≤
    /// `max_seq`), with their heads: from memory alone, so an async loop may
    /// ask it every tick (a channel still being published is left out until
    /// it is; [`Log::outbound_heads`] answers for it with reads from disk).
    pub fn settled_heads(&self, max_seq: u64) -> Vec<(Locality, u64)> {
        let me = self.shared.locality.as_u32();
        read(&self.shared.index)
            .channels_of(me)
            .into_iter()
            .filter(|(_, head, head_seq)| *head > 0 && *head_seq <= max_seq)
            .filter_map(|(r, head, _)| Some((Locality::from_u32(r).ok()?, head)))
            .collect()
    }

    /// Reads a named node setting (e.g. the outbox cursor) stored beside the log.
    pub fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.shared.backend.get(&meta_key(name))
    }

    /// Durably stores a named node setting.
    pub fn meta_put(&self, name: &str, value: &[u8]) -> Result<()> {
        self.shared.commit(vec![(meta_key(name), Some(value.to_vec()))])
    }

    /// Stores a named node setting, durable with the next flush of the log
    /// (for values that may go back to an earlier one in a crash without
    /// harm, such as the inbox cursor).
    pub fn meta_put_lazy(&self, name: &str, value: &[u8]) -> Result<()> {
        self.shared.backend.apply(vec![(meta_key(name), Some(value.to_vec()))])
    }
}

pub(super) fn decode_at(author: u32, seq: u64, bytes: &[u8]) -> Result<StoredEvent> {
    StoredEvent::decode(bytes).map_err(|problem| Error::Corrupt { author: author.to_string(), seq, problem })
}

/// Reads one event out of the segment that holds it.
pub(super) fn event_at<B: Backend>(backend: &B, author: u32, seq: u64) -> Result<Option<StoredEvent>> {
    let Some((key, value)) =
        backend.range(&layout::segment_key(author, seq), &layout::prefix_end(&layout::author_prefix(author)), 1)?.pop()
    else {
        return Ok(None);
    };
    let last = layout::parse_segment_key(&key).map(|(_, l)| l).unwrap_or(seq);
    let entries =
        segment::decode(&value).map_err(|problem| Error::Corrupt { author: author.to_string(), seq: last, problem })?;
    match entries.iter().find(|e| e.seq == seq) {
        Some(e) => decode_at(author, seq, e.bytes).map(Some),
        None => Ok(None),
    }
}

/// What a walk over the stored segments does with a segment whose framing is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damaged {
    /// Stop with [`Error::Corrupt`] naming its author and last sequence.
    Fail,
    /// Skip it (`verify` reports it).
    Skip,
}

/// The one walk over stored segments behind every scan (bulk reads, the
/// index rebuild at open, `verify`): calls `f(key, segment)` for each segment
/// keyed in `start..end`, in (author, seq) order, with its author and last
/// sequence (`None` for a key that is not a segment key) and its decoded
/// entries (or why they cannot be decoded), until `f` returns false.
pub(crate) fn each_segment<B: Backend>(
    backend: &B,
    start: &[u8],
    end: &[u8],
    mut f: impl FnMut(&[u8], Option<(u32, u64)>, std::result::Result<Vec<Entry<'_>>, String>) -> bool,
) -> Result<()> {
    backend.for_each(start, end, &mut |k, v| f(k, layout::parse_segment_key(k), segment::decode(v)))
}

/// Every stored event of the segments keyed in `start..end`: calls
/// `f(author, entry)` in (author, seq) order until `f` returns false.
pub(crate) fn each_stored<B: Backend>(
    backend: &B,
    start: &[u8],
    end: &[u8],
    damaged: Damaged,
    mut f: impl FnMut(u32, Entry<'_>) -> bool,
) -> Result<()> {
    let mut failure = None;
    each_segment(backend, start, end, |_, at, entries| {
        let Some((author, last)) = at else { return true };
        match entries {
            Ok(entries) => entries.into_iter().all(|e| f(author, e)),
            Err(_) if damaged == Damaged::Skip => true,
            Err(problem) => {
                failure = Some(Error::Corrupt { author: author.to_string(), seq: last, problem });
                false
            }
        }
    })?;
    failure.map_or(Ok(()), Err)
}
