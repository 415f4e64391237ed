//! Keys: the fields that identify a row of each dataset, and finding the
//! rows of one file that repeat the key of an earlier row (which would
//! overwrite each other): 64-bit key hashes sorted in bounded runs,
//! spilled to unlinked temporary files beyond one run and merged, so
//! memory stays flat however big the file. Touches only its own unlinked
//! temporary files.

use super::row::Parsed;
use crate::config::{Dataset, DatasetConfig};
use crate::model::dates::date_text;

/// The fields that identify a row of `dataset`: two rows of one file with
/// the same values there would overwrite each other.
pub(super) fn key_fields(dataset: Dataset, ds: &DatasetConfig) -> Vec<String> {
    match dataset {
        Dataset::Orders | Dataset::Visits => ds.key_fields(dataset),
        Dataset::Accounts => vec!["id".into()],
        Dataset::Receivables => vec!["account_id".into(), "invoice".into()],
        Dataset::Inventory => vec!["sku".into(), "account_id".into()],
    }
}

/// A 64-bit hash of byte strings (SipHash with fixed keys: the same in
/// every run), each ended by a byte no UTF-8 text holds.
pub(super) fn hash_of(parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    for p in parts {
        h.write(p);
        h.write_u8(0xFF);
    }
    h.finish()
}

/// The hash of the key `fields` of a parsed row.
pub(super) fn key_hash(p: &Parsed, fields: &[String]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    let mut text = |s: &str| {
        h.write(s.as_bytes());
        h.write_u8(0xFF);
    };
    for f in fields {
        match (p, f.as_str()) {
            (Parsed::Order(r), "order_id") => text(&r.order_id),
            (Parsed::Order(r), "line") => text(&r.line),
            (Parsed::Order(r), "account_id") => text(&r.account_id),
            (Parsed::Order(r), "date") => text(&date_text(r.date)),
            (Parsed::Order(r), "sku") => text(r.sku.as_deref().unwrap_or("")),
            (Parsed::Order(r), "qty") => text(&r.qty.map(f64::to_bits).unwrap_or(0).to_string()),
            (Parsed::Order(r), "revenue") => text(&r.revenue.to_bits().to_string()),
            (Parsed::Order(r), "cost") => text(&r.cost.to_bits().to_string()),
            (Parsed::Visit(r), "account_id") => text(&r.account_id),
            (Parsed::Visit(r), "date") => text(&date_text(r.date)),
            (Parsed::Visit(r), "visitor") => text(&r.visitor),
            (Parsed::Visit(r), "role") => text(r.role.as_deref().unwrap_or("")),
            (Parsed::Account(r, _), "id") => text(&r.id),
            (Parsed::Receivable(r), "account_id") => text(&r.account_id),
            (Parsed::Receivable(r), "invoice") => text(&r.invoice),
            (Parsed::Stock(r), "sku") => text(&r.sku),
            (Parsed::Stock(r), "account_id") => text(&r.account_id),
            _ => text(""),
        }
    }
    h.finish()
}

/// Key hashes held in memory before a sorted run is spilled: 4 MiB.
const KEY_RUN: usize = 1 << 18;

/// The keys of a file's good rows, to find two rows with the same key:
/// (64-bit hash, line) pairs, sorted in runs of [`KEY_RUN`] and spilled to
/// unlinked temporary files beyond, merged at the end. Memory stays at one
/// run however big the file.
#[derive(Default)]
pub(super) struct KeySeen {
    run: Vec<(u64, u64)>,
    spilled: Vec<std::fs::File>,
}

/// Rows of the file whose key an earlier row already had (rows minus
/// distinct keys), and the first few (earlier line, line) pairs.
#[derive(Debug, Default)]
pub(super) struct Duplicates {
    pub(super) rows: u64,
    pub(super) pairs: Vec<(u64, u64)>,
}

impl KeySeen {
    pub(super) fn push(&mut self, hash: u64, line: u64) -> std::io::Result<()> {
        if self.run.capacity() == 0 {
            self.run.reserve_exact(KEY_RUN);
        }
        self.run.push((hash, line));
        if self.run.len() == KEY_RUN {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        self.run.sort_unstable();
        let mut f = tempfile_unlinked()?;
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 16, &mut f);
            for (h, l) in self.run.drain(..) {
                w.write_all(&h.to_le_bytes())?;
                w.write_all(&l.to_le_bytes())?;
            }
            w.flush()?;
        }
        f.seek(std::io::SeekFrom::Start(0))?;
        self.spilled.push(f);
        Ok(())
    }

    pub(super) fn duplicates(mut self, listed: usize) -> std::io::Result<Duplicates> {
        use std::io::Read;
        let mut d = Duplicates::default();
        let mut note = |prev: &mut Option<(u64, u64)>, (h, l): (u64, u64)| match prev {
            Some((ph, first)) if *ph == h => {
                d.rows += 1;
                if d.pairs.len() < listed {
                    d.pairs.push((*first, l));
                }
            }
            _ => *prev = Some((h, l)),
        };
        let mut prev = None;
        if self.spilled.is_empty() {
            self.run.sort_unstable();
            for e in self.run.drain(..) {
                note(&mut prev, e);
            }
        } else {
            if !self.run.is_empty() {
                self.spill()?;
            }
            // A k-way merge of the sorted runs, read through small buffers.
            use std::cmp::Reverse;
            let mut readers: Vec<_> = self
                .spilled
                .drain(..)
                .map(|f| std::io::BufReader::with_capacity(1 << 16, f))
                .collect();
            let next =
                |r: &mut std::io::BufReader<std::fs::File>| -> std::io::Result<Option<(u64, u64)>> {
                    let mut b = [0u8; 16];
                    match r.read_exact(&mut b) {
                        Ok(()) => {
                            let (h, l) = b.split_at(8);
                            let h = u64::from_le_bytes(h.try_into().unwrap_or_default());
                            let l = u64::from_le_bytes(l.try_into().unwrap_or_default());
                            Ok(Some((h, l)))
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
                        Err(e) => Err(e),
                    }
                };
            let mut heap = std::collections::BinaryHeap::new();
            for (i, r) in readers.iter_mut().enumerate() {
                if let Some(e) = next(r)? {
                    heap.push(Reverse((e, i)));
                }
            }
            while let Some(Reverse((e, i))) = heap.pop() {
                note(&mut prev, e);
                if let Some(e) = next(&mut readers[i])? {
                    heap.push(Reverse((e, i)));
                }
            }
        }
        Ok(d)
    }
}

/// A new temporary file, already unlinked: it goes when it is closed.
fn tempfile_unlinked() -> std::io::Result<std::fs::File> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir();
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("kamwatch-keys-{}-{seq}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past one in-memory run the keys are spilled and merged: a repeated
    /// key is found wherever it is, with both its lines.
    #[test]
    fn repeated_keys_are_found_across_spilled_runs() {
        let mut k = KeySeen::default();
        let n = KEY_RUN as u64 * 2 + 123;
        for i in 0..n {
            k.push(hash_of(&[format!("SO{i}").as_bytes()]), i + 2)
                .unwrap();
        }
        k.push(hash_of(&[b"SO7"]), n + 2).unwrap();
        let d = k.duplicates(10).unwrap();
        assert_eq!(d.rows, 1);
        assert_eq!(d.pairs, vec![(9, n + 2)]);
        let mut none = KeySeen::default();
        for i in 0..1000u64 {
            none.push(hash_of(&[&i.to_le_bytes()]), i).unwrap();
        }
        assert_eq!(none.duplicates(10).unwrap().rows, 0);
    }
}
