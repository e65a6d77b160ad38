//! Fixed-size records sorted with bounded memory: kept in memory up to a
//! run, each full run sorted and written to a temporary file, and all runs
//! merged in order at the end. This is how the audit checks every event
//! against every other (forks, duplicates, chain links, channel gaps) while
//! holding a few runs' worth of records, whatever the number of events.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};

/// Records of `N` bytes, ordered by their bytes (keys are big-endian so that
/// byte order is numeric order).
pub struct Spill<const N: usize> {
    run: Vec<[u8; N]>,
    run_len: usize,
    files: Vec<File>,
    dir: Option<tempfile::TempDir>,
    total: u64,
}

impl<const N: usize> Spill<N> {
    /// Keeps at most `run_len` records in memory.
    pub fn new(run_len: usize) -> Self {
        Spill { run: Vec::new(), run_len: run_len.max(1), files: Vec::new(), dir: None, total: 0 }
    }

    /// Adds a record.
    pub fn push(&mut self, record: [u8; N]) -> std::io::Result<()> {
        self.run.push(record);
        self.total += 1;
        if self.run.len() >= self.run_len {
            self.write_run()?;
        }
        Ok(())
    }

    /// Records added.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Runs written to disk so far.
    pub fn runs_on_disk(&self) -> usize {
        self.files.len()
    }

    fn write_run(&mut self) -> std::io::Result<()> {
        self.run.sort_unstable();
        if self.dir.is_none() {
            self.dir = Some(tempfile::Builder::new().prefix("yipan-audit-").tempdir()?);
        }
        let dir = self.dir.as_ref().map(|d| d.path().to_path_buf()).unwrap_or_default();
        let mut f = tempfile::tempfile_in(dir)?;
        {
            let mut w = BufWriter::with_capacity(1 << 16, &mut f);
            for r in &self.run {
                w.write_all(r)?;
            }
            w.flush()?;
        }
        use std::io::Seek;
        f.rewind()?;
        self.files.push(f);
        self.run.clear();
        Ok(())
    }

    /// Every record in order (equal records all kept).
    pub fn sorted(mut self) -> std::io::Result<Sorted<N>> {
        self.run.sort_unstable();
        let readers: Vec<BufReader<File>> =
            self.files.drain(..).map(|f| BufReader::with_capacity(1 << 16, f)).collect();
        let mut s = Sorted {
            memory: std::mem::take(&mut self.run).into_iter().peekable(),
            readers,
            heap: BinaryHeap::new(),
            _dir: self.dir.take(),
        };
        for i in 0..s.readers.len() {
            s.refill(i)?;
        }
        Ok(s)
    }
}

/// The merge of a [`Spill`]'s runs.
pub struct Sorted<const N: usize> {
    memory: std::iter::Peekable<std::vec::IntoIter<[u8; N]>>,
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<([u8; N], usize)>>,
    _dir: Option<tempfile::TempDir>,
}

impl<const N: usize> Sorted<N> {
    fn refill(&mut self, i: usize) -> std::io::Result<()> {
        let mut r = [0u8; N];
        match self.readers[i].read_exact(&mut r) {
            Ok(()) => {
                self.heap.push(Reverse((r, i)));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The next record in order.
    pub fn next_record(&mut self) -> std::io::Result<Option<[u8; N]>> {
        let from_disk = self.heap.peek().map(|Reverse((r, _))| *r);
        let from_memory = self.memory.peek().copied();
        match (from_disk, from_memory) {
            (Some(d), Some(m)) if m <= d => Ok(self.memory.next()),
            (Some(_), _) => {
                let Reverse((r, i)) = self.heap.pop().expect("peeked");
                self.refill(i)?;
                Ok(Some(r))
            }
            (None, _) => Ok(self.memory.next()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_across_runs_on_disk() {
        let mut s = Spill::<8>::new(1000);
        let mut want = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = (x % 5000).to_be_bytes();
            want.push(r);
            s.push(r).unwrap();
        }
        assert_eq!(s.runs_on_disk(), 10);
        want.sort_unstable();
        let mut got = Vec::new();
        let mut sorted = s.sorted().unwrap();
        while let Some(r) = sorted.next_record().unwrap() {
            got.push(r);
        }
        assert_eq!(got, want);
    }
}
