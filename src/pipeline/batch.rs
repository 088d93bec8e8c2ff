//! One table's batch: the changes received since its last flush, collapsed per key.
//!
//! StarRocks applies a load's rows in order, last row per key wins, so the batch only needs each
//! key's final state (invariant 4). Collapsing is also where unchanged-TOAST columns get their
//! values: an update that did not touch a TOASTed column carries no value for it (`u`), so the
//! row is completed from the key's earlier image in this batch or from a REPLICA IDENTITY FULL old
//! tuple. When neither has it the row stays a partial update (only the columns it carries are
//! written, the stored row keeps the rest) — unless the key itself changed: the new key has no
//! stored row to keep anything from, so the entry is flagged and the pipeline fetches the
//! missing values from the source as the change is taken in ([`TableBatch::needing_fetch`]). A
//! moved row the source no longer has is not written at all ([`TableBatch::absent`]): its columns
//! would create the row with NULLs, and the stream holds the later change that deleted or moved
//! it (a later update of such a row is fetched again, never written as a partial update).
//! Values read from the source are the source *now*, which may be later than the change: the
//! key may since have been moved away and taken by another row. Such values are right only as
//! the key's final state, so a row moving on from that key never takes them: it is fetched
//! under its own new key.
//!
//! Rows are kept in allocations of their own (see `TupleData::detached`) and encoded
//! only when the batch is sealed, grouped by the exact set of columns they carry: one load per
//! set.
//!
//! Memory (invariant 8): [`TableBatch::bytes`] is what the batch really holds — its rows' and
//! keys' allocations, the entry vector's and key map's capacity — plus an estimate of the bodies
//! sealing will write, because those exist next to the rows while the batch is sealed. Counting
//! both up front keeps the seal's peak inside the buffer cap. A moved row's fetched values count
//! the moment they arrive — in its completed row, its body estimate and the record of what was
//! fetched ([`TableBatch::record_moved`]) — so the size trigger and a full buffer see them: a
//! key change of many rows with large unchanged values is never read all at once.

use std::collections::HashMap;
use std::mem::size_of;
use std::time::Instant;

use bytes::Bytes;

use crate::postgres::catalog::RowLookup;
use crate::postgres::checkpoint::MovedRow;
use crate::postgres::pgoutput::{OldTuple, TupleData, TupleValueRef};
use crate::postgres::value::PgTimestamp;
use crate::postgres::{ChangePosition, Lsn};
use crate::schema::TableSchema;
use crate::sink::starrocks::config::Compression;
use crate::sink::starrocks::encoding::{
    Audit, BodyFormat, BodyWriter, ChangeRow, ColumnSet, EncodeError, SourceOp, SyncedAt,
    TableEncoder, Written,
};
use crate::sink::starrocks::label::Label;
use crate::sink::LoadBatch;
use crate::state::OpCounts;

mod key;
use key::BatchKey;

/// A row image to write.
#[derive(Debug, Clone)]
enum Image {
    New(TupleData),
    DeletedKey(TupleData),
    DeletedRow(TupleData),
    /// A moved row the source no longer had when its values were fetched: nothing to write (the
    /// row as received is kept only until the batch is sealed).
    Absent(TupleData),
}

impl Image {
    fn tuple(&self) -> &TupleData {
        match self {
            Image::New(tuple)
            | Image::DeletedKey(tuple)
            | Image::DeletedRow(tuple)
            | Image::Absent(tuple) => tuple,
        }
    }

    /// The row to write; `None` for an absent one.
    fn row(&self) -> Option<ChangeRow<'_>> {
        match self {
            Image::New(tuple) => Some(ChangeRow::New(tuple)),
            Image::DeletedKey(tuple) => Some(ChangeRow::DeletedKey(tuple)),
            Image::DeletedRow(tuple) => Some(ChangeRow::DeletedRow(tuple)),
            Image::Absent(_) => None,
        }
    }
}

#[derive(Debug)]
struct Entry {
    image: Image,
    op: SourceOp,
    /// The commit LSN of the change that produced this state (`_starwal_lsn`).
    commit: Lsn,
    /// A moved row (new key) that still lacks unchanged-TOAST values.
    needs_fetch: bool,
    /// Some values of this image were read from the source (a fetch, or carried from an image
    /// that had one). A read sees the source *now*, possibly after the key's row was moved away
    /// and another row took the key: right for this key's final state (a later change in the
    /// stream replaces a wrong one), never to be carried to another key.
    read_from_source: bool,
}

/// A sealed batch: the loads to send, in order, and what they cover.
impl Entry {
    /// Written as a partial update when sealed: unchanged TOAST the batch could not fill, in a
    /// row that is not waiting for its moved-row fetch.
    fn is_partial(&self) -> bool {
        matches!(&self.image, Image::New(row) if has_unchanged_toast(row)) && !self.needs_fetch
    }
}

#[derive(Debug)]
pub struct SealedBatch {
    pub first: ChangePosition,
    pub last: ChangePosition,
    /// One load per column set; the first is labelled `..._p0`-less (part 0).
    pub loads: Vec<LoadBatch>,
    /// Changes received (before collapsing).
    pub changes: u64,
    pub ops: OpCounts,
    /// Buffer bytes the loads hold until they commit: their encoded bodies.
    pub buffered_bytes: u64,
    /// The `_starwal_synced_at` every row carries.
    pub synced_at: PgTimestamp,
    /// How the moved rows were completed (set by the pipeline, which fetched them): recorded
    /// with the load in flight, so a re-formed batch is completed the same way.
    pub moved: Vec<MovedRow>,
}

/// A row that must be completed from the source: the position of its entry and its key values.
#[derive(Debug)]
pub struct FetchRequest {
    pub entry: usize,
    /// The new row as received (with `u` where values are missing).
    pub row: TupleData,
}

/// One table's open batch.
#[derive(Debug, Default)]
pub struct TableBatch {
    entries: Vec<Entry>,
    /// foldhash: keys are short byte strings hashed once per change; SipHash showed in profiles.
    /// Short keys are held in the map's slots ([`BatchKey`]).
    by_key: HashMap<BatchKey, usize, foldhash::fast::RandomState>,
    first: Option<ChangePosition>,
    last: ChangePosition,
    changes: u64,
    /// Allocations of the entries' rows and of the map's keys.
    held: u64,
    /// What the bodies of the entries will take when sealed (see [`TableBatch::bytes`]).
    body_estimate: u64,
    /// Per row, the body bytes beyond the row's values (see [`body_row_overhead`]).
    row_overhead: u64,
    ops: OpCounts,
    opened_at: Option<Instant>,
    key_scratch: Vec<u8>,
    /// The `_starwal_synced_at` to seal with, when not the time of sealing.
    synced_at: Option<PgTimestamp>,
    /// Entries flagged `needs_fetch` since [`TableBatch::needing_fetch`] last ran.
    pending_fetch: Vec<usize>,
    /// How the moved rows were completed, in the order they were fetched (counted in `held`):
    /// recorded with the load in flight, so a re-formed batch is completed the same way.
    moved: Vec<MovedRow>,
    /// The source read for moved rows, prepared at the batch's first one (`Some(None)`: it
    /// cannot be prepared, a column is gone). Per batch: a schema change seals the batch first.
    lookup: Option<Option<RowLookup>>,
}

/// Bytes a moved row's record takes (invariant 8): each string's allocation and the vectors'
/// slots.
pub(crate) fn moved_row_bytes(row: &MovedRow) -> u64 {
    let slot = size_of::<Option<String>>() as u64;
    let strings = |values: &[Option<String>]| -> u64 {
        values
            .iter()
            .map(|v| slot + v.as_ref().map_or(0, |text| allocation(text.len())))
            .sum()
    };
    size_of::<MovedRow>() as u64 + strings(&row.key) + row.values.as_deref().map_or(0, strings)
}

/// Bytes the allocator takes for a request of `len` bytes: glibc's malloc rounds to 16-byte
/// granules after an 8-byte header, 32 at least.
pub(crate) fn allocation(len: usize) -> u64 {
    if len == 0 {
        return 0;
    }
    ((len + 8).next_multiple_of(16).max(32)) as u64
}

/// Bytes a row of `schema` takes in a JSON body beyond its values: `"name":` and a comma per
/// column, the braces, and the audit columns and `__op` (about 125 bytes with soft-delete
/// columns). A value's own wire bytes (4-byte length and a kind byte) cover its quotes.
pub fn body_row_overhead(schema: &TableSchema) -> u64 {
    const AUDIT_AND_OP: u64 = 128;
    schema
        .columns
        .iter()
        .map(|column| column.name.len() as u64 + 4)
        .sum::<u64>()
        + AUDIT_AND_OP
}

/// Appends the key columns' values of `tuple` (length-prefixed, NULL distinct from empty) to
/// `out`.
fn key_bytes(tuple: &TupleData, key_columns: &[usize], out: &mut Vec<u8>) {
    out.clear();
    let mut keys = key_columns.iter().peekable();
    for (index, value) in tuple.raw_values().enumerate() {
        match keys.peek() {
            Some(&&key) if key == index => {}
            Some(_) => continue,
            // The columns after the last key column are not read (the key is usually first).
            None => break,
        }
        keys.next();
        match value {
            TupleValueRef::Text(bytes) | TupleValueRef::Binary(bytes) => {
                out.push(1);
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            TupleValueRef::Null | TupleValueRef::UnchangedToast => out.push(0),
        }
    }
}

fn has_unchanged_toast(tuple: &TupleData) -> bool {
    tuple
        .raw_values()
        .any(|value| matches!(value, TupleValueRef::UnchangedToast))
}

fn is_unchanged(tuple: &TupleData, column: usize) -> bool {
    matches!(
        tuple.raw_values().nth(column),
        Some(TupleValueRef::UnchangedToast)
    )
}

/// `new` with the unchanged-TOAST values of `columns` taken from `source`.
fn fill_columns(new: &TupleData, source: &TupleData, columns: &[usize]) -> TupleData {
    if new.column_count() != source.column_count() {
        return new.clone();
    }
    TupleData::from_values(new.raw_values().zip(source.raw_values()).enumerate().map(
        |(index, (value, earlier))| match value {
            TupleValueRef::UnchangedToast if columns.contains(&index) => earlier,
            value => value,
        },
    ))
}

/// `new` with each unchanged-TOAST value taken from `source` where it has one.
fn fill_unchanged(new: &TupleData, source: &TupleData) -> TupleData {
    if new.column_count() != source.column_count() {
        return new.clone();
    }
    TupleData::from_values(
        new.raw_values()
            .zip(source.raw_values())
            .map(|(value, earlier)| match value {
                TupleValueRef::UnchangedToast => earlier,
                value => value,
            }),
    )
}

impl TableBatch {
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Changes added since the batch opened.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Sets the per-row body overhead of the table (see [`body_row_overhead`]); kept across
    /// seals.
    pub fn set_row_overhead(&mut self, row_overhead: u64) {
        self.row_overhead = row_overhead;
    }

    /// Buffer bytes of the batch: the memory it holds (allocations and capacity, not payload)
    /// plus the estimated size of the bodies sealing it will write.
    pub fn bytes(&self) -> u64 {
        // The entry vector and the key map double when full: counted as if already doubled once
        // they are half full, so the count grows with the rows and a doubling never takes the
        // buffer past its cap in one step (the cap is checked before each message).
        let rows = self.entries.len() * 2;
        // hashbrown: a power-of-two number of buckets of which 7/8 are usable, each a
        // `(key, index)` slot and a control byte.
        let buckets = match self.by_key.capacity().max(rows) {
            0 => 0,
            capacity => (capacity * 8 / 7).next_power_of_two(),
        };
        let map = buckets * (size_of::<(BatchKey, usize)>() + 1);
        let entries = self.entries.capacity().max(rows) * size_of::<Entry>();
        self.held + self.body_estimate + (map + entries + self.key_scratch.capacity()) as u64
    }

    fn count(&mut self, entry: &Entry) {
        let len = entry.image.tuple().wire_bytes().len();
        self.held += allocation(len);
        self.body_estimate += len as u64 + self.row_overhead;
    }

    fn uncount(&mut self, entry: &Entry) {
        let len = entry.image.tuple().wire_bytes().len();
        self.held = self.held.saturating_sub(allocation(len));
        self.body_estimate = self
            .body_estimate
            .saturating_sub(len as u64 + self.row_overhead);
    }

    pub fn first(&self) -> Option<ChangePosition> {
        self.first
    }

    pub fn last(&self) -> ChangePosition {
        self.last
    }

    /// When the oldest change arrived.
    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at
    }

    fn note(&mut self, position: ChangePosition) {
        if self.first.is_none() {
            self.first = Some(position);
            self.opened_at = Some(Instant::now());
        }
        self.last = position;
        self.changes += 1;
    }

    /// Makes `entry` the state of `key`; returns its index. One probe of the key map.
    fn put(&mut self, key: &[u8], entry: Entry) -> usize {
        let key = BatchKey::new(key);
        let heap_len = key.heap_len();
        let next = self.entries.len();
        match self.by_key.entry(key) {
            std::collections::hash_map::Entry::Occupied(slot) => {
                let index = *slot.get();
                self.replace(index, entry);
                index
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(next);
                self.held += heap_len.map_or(0, allocation);
                self.count(&entry);
                self.entries.push(entry);
                next
            }
        }
    }

    /// [`TableBatch::put`] for a caller that looked `key` up since the map last changed:
    /// `existing` is what it found (no second probe).
    fn put_at(&mut self, key: &[u8], existing: Option<usize>, entry: Entry) -> usize {
        match existing {
            Some(index) => {
                self.replace(index, entry);
                index
            }
            None => self.put(key, entry),
        }
    }

    fn replace(&mut self, index: usize, entry: Entry) {
        self.count(&entry);
        let old = std::mem::replace(&mut self.entries[index], entry);
        self.uncount(&old);
    }

    /// The row image entry `index` holds, to complete a later change of its key from.
    fn image_at(&self, index: usize) -> Option<&TupleData> {
        match &self.entries.get(index)?.image {
            Image::New(tuple) | Image::DeletedRow(tuple) => Some(tuple),
            Image::DeletedKey(_) | Image::Absent(_) => None,
        }
    }

    fn earlier_image(&self, key: &[u8]) -> Option<&TupleData> {
        self.image_at(*self.by_key.get(key)?)
    }

    pub fn insert(&mut self, position: ChangePosition, key_columns: &[usize], row: TupleData) {
        self.note(position);
        self.ops.inserted += 1;
        let mut key = std::mem::take(&mut self.key_scratch);
        key_bytes(&row, key_columns, &mut key);
        self.put(
            &key,
            Entry {
                image: Image::New(row.detached()),
                op: SourceOp::Insert,
                commit: position.commit,
                needs_fetch: false,
                read_from_source: false,
            },
        );
        self.key_scratch = key;
    }

    pub fn update(
        &mut self,
        position: ChangePosition,
        key_columns: &[usize],
        old: Option<&OldTuple>,
        new: TupleData,
    ) {
        self.note(position);
        self.ops.updated += 1;
        // A key column stored out of line and not changed arrives as `u` (Postgres then logs the
        // old key): take it from the old tuple, or the row would look moved to a NULL key.
        let new = match old {
            Some(old) if key_columns.iter().any(|&k| is_unchanged(&new, k)) => {
                fill_columns(&new, old.tuple(), key_columns)
            }
            _ => new,
        };
        let mut new_key = std::mem::take(&mut self.key_scratch);
        key_bytes(&new, key_columns, &mut new_key);
        let old_key = old.map(|old| {
            let mut key = Vec::new();
            key_bytes(old.tuple(), key_columns, &mut key);
            key
        });
        let moved = old_key.as_ref().is_some_and(|old_key| *old_key != new_key);
        let mut row = new;
        // The row's previous state in this batch: its image under the (old) key.
        let earlier_key = old_key.as_deref().filter(|_| moved).unwrap_or(&new_key);
        // An earlier image the source did not have any more counts as still missing: a later
        // update of that row is fetched again, never sent as a partial update.
        let earlier_index = self.by_key.get(earlier_key).copied();
        let earlier = earlier_index.and_then(|index| self.entries.get(index));
        let earlier_needs_fetch = earlier
            .is_some_and(|entry| entry.needs_fetch || matches!(entry.image, Image::Absent(_)));
        let earlier_read = earlier.is_some_and(|entry| entry.read_from_source);
        let mut read_from_source = false;
        if has_unchanged_toast(&row) {
            // Fill from a FULL old tuple (the stream's own values) or the batch's own image,
            // the image first unless a source read made it: a moved row never takes such values
            // (they may be a later row's under the old key) and fetches its own.
            let full = match old {
                Some(OldTuple::Full(full)) => Some(full),
                _ => None,
            };
            if let (true, Some(full)) = (earlier_read, full) {
                row = fill_unchanged(&row, full);
            }
            if !(moved && earlier_read) && has_unchanged_toast(&row) {
                if let Some(earlier) = self.earlier_image(earlier_key) {
                    row = fill_unchanged(&row, earlier);
                    read_from_source = earlier_read;
                }
            }
            if let (true, Some(full)) = (has_unchanged_toast(&row), full) {
                row = fill_unchanged(&row, full);
            }
        }
        if let (true, Some(old), Some(old_key)) = (moved, old, &old_key) {
            // A primary-key change: the old key is gone.
            let image = match old {
                OldTuple::Key(tuple) => Image::DeletedKey(tuple.detached()),
                OldTuple::Full(tuple) => Image::DeletedRow(tuple.detached()),
            };
            self.put(
                old_key,
                Entry {
                    image,
                    op: SourceOp::Delete,
                    commit: position.commit,
                    needs_fetch: false,
                    read_from_source: false,
                },
            );
        }
        // A partial update is only right when the target has a row under this key: not for a
        // moved row, nor for a later update of one still waiting for its values.
        let needs_fetch = (moved || earlier_needs_fetch) && has_unchanged_toast(&row);
        let entry = Entry {
            image: Image::New(row.detached()),
            op: SourceOp::Update,
            commit: position.commit,
            needs_fetch,
            read_from_source,
        };
        // Unmoved, the key is the one looked up above, and the map has not changed since.
        let index = if moved {
            self.put(&new_key, entry)
        } else {
            self.put_at(&new_key, earlier_index, entry)
        };
        if needs_fetch {
            self.pending_fetch.push(index);
        }
        self.key_scratch = new_key;
    }

    pub fn delete(&mut self, position: ChangePosition, key_columns: &[usize], old: &OldTuple) {
        self.note(position);
        self.ops.deleted += 1;
        let mut key = std::mem::take(&mut self.key_scratch);
        key_bytes(old.tuple(), key_columns, &mut key);
        let mut read_from_source = false;
        let existing = self.by_key.get(key.as_slice()).copied();
        let image = match old {
            // The batch has the row's last image: a soft delete keeps its values, exactly as if
            // the delete had come in a later batch (a hard delete writes only the key anyway).
            OldTuple::Key(tuple) => match existing.and_then(|index| self.image_at(index)) {
                Some(earlier) => {
                    read_from_source = existing
                        .and_then(|index| self.entries.get(index))
                        .is_some_and(|entry| entry.read_from_source);
                    Image::DeletedRow(earlier.clone())
                }
                // A moved row the source no longer had when read: the columns the stream
                // carried are its values; its unchanged TOAST values are known nowhere and stay
                // missing (a soft delete writes the rest).
                None => match existing.and_then(|index| self.entries.get(index)) {
                    Some(Entry {
                        image: Image::Absent(received),
                        ..
                    }) => Image::DeletedRow(received.clone()),
                    _ => Image::DeletedKey(tuple.detached()),
                },
            },
            OldTuple::Full(tuple) => Image::DeletedRow(tuple.detached()),
        };
        self.put_at(
            &key,
            existing,
            Entry {
                image,
                op: SourceOp::Delete,
                commit: position.commit,
                needs_fetch: false,
                read_from_source,
            },
        );
        self.key_scratch = key;
    }

    /// Moved rows that came to miss unchanged-TOAST values since the last call, in the order
    /// they did (see the module docs). A row asked for once and not completed (its source read
    /// could not be prepared) is not asked for again.
    pub fn needing_fetch(&mut self) -> Vec<FetchRequest> {
        let mut pending = std::mem::take(&mut self.pending_fetch);
        // Updated twice before a fetch (only when no fetch could be made): asked once.
        let mut seen = std::collections::HashSet::new();
        pending.retain(|index| seen.insert(*index));
        pending
            .into_iter()
            .filter_map(|index| {
                let entry = self.entries.get(index).filter(|entry| entry.needs_fetch)?;
                match &entry.image {
                    Image::New(row) => Some(FetchRequest {
                        entry: index,
                        row: row.clone(),
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    /// Rows written as partial updates when sealed (unchanged TOAST without an earlier image,
    /// not a moved row), in entry order: for a batch going into a StarRocks transaction, which
    /// takes only full rows (`toast.rs`). Completed like moved rows ([`TableBatch::complete`],
    /// [`TableBatch::absent`]).
    pub fn partial_rows(&self) -> Vec<FetchRequest> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.is_partial())
            .filter_map(|(index, entry)| match &entry.image {
                Image::New(row) => Some(FetchRequest {
                    entry: index,
                    row: row.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Whether entry `entry` is still written as a partial update (its completion could not be
    /// read).
    pub fn is_partial(&self, entry: usize) -> bool {
        self.entries.get(entry).is_some_and(Entry::is_partial)
    }

    /// Whether the batch holds key-only delete images: with soft deletes they are a column set
    /// of their own, so the batch cannot go into a StarRocks transaction whatever is completed.
    pub fn has_key_only_rows(&self) -> bool {
        self.entries
            .iter()
            .any(|entry| matches!(entry.image, Image::DeletedKey(_)))
    }

    /// Moves the rows still partial ([`TableBatch::partial_rows`]) into a batch of their own,
    /// returned, so the completed rest can be sealed now and they completed next (`toast.rs`:
    /// completing a whole batch at once could exceed the buffer cap). The returned batch
    /// starts and ends at this batch's last change (its rows come from this batch's range,
    /// which the part sealed from this one covers) and counts no changes; the memory moves
    /// with the rows.
    pub fn split_partial(&mut self) -> TableBatch {
        let mut rest = TableBatch {
            row_overhead: self.row_overhead,
            ..TableBatch::default()
        };
        // Nothing to split, or nothing would be left to write (a part of no rows cannot go
        // into a StarRocks transaction).
        let keeps_rows = self
            .entries
            .iter()
            .any(|entry| !entry.is_partial() && entry.image.row().is_some());
        if !keeps_rows || !self.entries.iter().any(Entry::is_partial) {
            return rest;
        }
        let entries = std::mem::take(&mut self.entries);
        let mut keys: Vec<Option<BatchKey>> = Vec::new();
        keys.resize_with(entries.len(), || None);
        for (key, index) in self.by_key.drain() {
            if let Some(slot) = keys.get_mut(index) {
                *slot = Some(key);
            }
        }
        for (entry, key) in entries.into_iter().zip(keys) {
            let Some(key) = key else { continue };
            if entry.is_partial() {
                self.uncount(&entry);
                let key_bytes = key.heap_len().map_or(0, allocation);
                self.held = self.held.saturating_sub(key_bytes);
                rest.put(key.as_slice(), entry);
            } else {
                self.by_key.insert(key, self.entries.len());
                self.entries.push(entry);
            }
        }
        // Indices changed; the moved rows are completed before sealing, so none is pending.
        self.pending_fetch.clear();
        rest.first = Some(self.last);
        rest.last = self.last;
        rest.opened_at = self.opened_at;
        rest.synced_at = self.synced_at;
        // The prepared source read serves the rest too.
        rest.lookup = self.lookup.take();
        rest
    }

    /// Keeps `row`, how a moved row was completed, for the load's in-flight record, and counts
    /// it.
    pub fn record_moved(&mut self, row: MovedRow) {
        self.held += moved_row_bytes(&row);
        if self.moved.len() == self.moved.capacity() {
            // The vector doubles next: its new slots are counted as they come (as rows).
            self.held += (self.moved.capacity().max(4) * size_of::<MovedRow>()) as u64;
        }
        self.moved.push(row);
    }

    /// Moved rows recorded so far: the number the next one gets.
    pub fn moved_rows(&self) -> usize {
        self.moved.len()
    }

    /// Takes the moved rows' record, to go with the sealed batch (which counts it from then).
    pub fn take_moved(&mut self) -> Vec<MovedRow> {
        let moved = std::mem::take(&mut self.moved);
        let bytes: u64 = moved.iter().map(moved_row_bytes).sum();
        let slots = (moved.capacity() * size_of::<MovedRow>()) as u64;
        self.held = self.held.saturating_sub(bytes + slots);
        moved
    }

    /// The batch's prepared source read for moved rows, taken out (`None`: not prepared yet);
    /// give it back with [`TableBatch::keep_lookup`].
    pub fn take_lookup(&mut self) -> Option<Option<RowLookup>> {
        self.lookup.take()
    }

    pub fn keep_lookup(&mut self, lookup: Option<RowLookup>) {
        self.lookup = Some(lookup);
    }

    /// Completes entry `entry` with `source` (the source row as text values, `None` where
    /// NULL).
    pub fn complete(&mut self, entry: usize, source: &TupleData) {
        self.resolve(entry, |row| Image::New(fill_unchanged(row, source)));
    }

    /// Entry `entry` is a moved row the source no longer has: it is not written (see the module
    /// docs).
    pub fn absent(&mut self, entry: usize) {
        self.resolve(entry, |row| Image::Absent(row.clone()));
    }

    /// Replaces the new row of entry `entry`, waiting for its fetch, with `resolved(row)`: what
    /// the source read found.
    fn resolve(&mut self, entry: usize, resolved: impl FnOnce(&TupleData) -> Image) {
        let Some(current) = self.entries.get(entry) else {
            return;
        };
        let completed = match &current.image {
            Image::New(row) => resolved(row),
            other => other.clone(),
        };
        let completed = Entry {
            image: completed,
            op: current.op,
            commit: current.commit,
            needs_fetch: false,
            read_from_source: true,
        };
        self.count(&completed);
        let old = std::mem::replace(&mut self.entries[entry], completed);
        self.uncount(&old);
    }

    /// Seals the batch with `at` as its rows' `_starwal_synced_at` instead of the time of
    /// sealing: a re-formed batch carries the time it was first sealed with.
    pub fn keep_synced_at(&mut self, at: PgTimestamp) {
        self.synced_at = Some(at);
    }

    /// The batch's rows in `format`, one body per column set; `None` when a row cannot be
    /// written in `format` (a CSV field it cannot carry exactly), for the caller to try JSON.
    fn encode_groups(
        &self,
        encoder: &TableEncoder,
        format: BodyFormat,
        synced_at: SyncedAt,
        target: &str,
    ) -> Result<Option<Vec<(ColumnSet, BodyWriter)>>, EncodeError> {
        let mut groups: Vec<(ColumnSet, BodyWriter)> = Vec::new();
        let mut present = ColumnSet::default();
        for entry in &self.entries {
            let Some(row) = entry.image.row() else {
                continue;
            };
            encoder.load_columns(row, &mut present);
            let audit = Audit {
                op: entry.op,
                lsn: entry.commit,
                synced_at,
            };
            let group = match groups.iter().position(|(set, _)| *set == present) {
                Some(group) => group,
                None => {
                    groups.push((present.clone(), BodyWriter::with_format(format)));
                    groups.len() - 1
                }
            };
            let (_, writer) = &mut groups[group];
            if encoder.write_change(writer, row, &audit, &mut present)? == Written::NeedsJson {
                if format == BodyFormat::Csv {
                    return Ok(None);
                }
                // A JSON body carries every value; should it ever refuse one, stop rather than
                // seal the batch without its row.
                return Err(EncodeError::Io {
                    table: target.to_owned(),
                    message: "a row could not be written into a JSON body".into(),
                });
            }
        }
        Ok(Some(groups))
    }

    /// Encodes the batch into its loads and resets it. `None` when empty.
    pub fn seal(
        &mut self,
        encoder: &TableEncoder,
        slot: &str,
        target: &str,
        compression: Compression,
    ) -> Result<Option<SealedBatch>, EncodeError> {
        self.seal_as(encoder, encoder.format(), slot, target, compression)
    }

    /// [`TableBatch::seal`] into `format` rather than the table's (JSON for a part of a
    /// StarRocks transaction, `txn.rs`: every load of one transaction must have the same body
    /// format, and only JSON carries every value).
    pub fn seal_as(
        &mut self,
        encoder: &TableEncoder,
        format: BodyFormat,
        slot: &str,
        target: &str,
        compression: Compression,
    ) -> Result<Option<SealedBatch>, EncodeError> {
        let Some(first) = self.first else {
            return Ok(None);
        };
        let last = self.last;
        let synced_at_time = self.synced_at.unwrap_or_else(PgTimestamp::now);
        let synced_at = SyncedAt::new(synced_at_time);
        // One load per column set, all in one body format: the table's CSV, or JSON for the
        // whole batch when a row holds a value CSV cannot carry. Splitting such rows off into
        // JSON loads of their own would make the batch's source transactions visible in two
        // steps (a CSV load commits before the JSON one) and a large transaction split its
        // StarRocks transaction (txn.rs), for nothing but a value's bytes.
        let mut groups = match self.encode_groups(encoder, format, synced_at, target)? {
            Some(groups) => groups,
            None => self
                .encode_groups(encoder, BodyFormat::Json, synced_at, target)?
                .unwrap_or_default(),
        };
        // Part numbers follow the column sets, not the order rows arrived in: full rows first,
        // then partial sets in a fixed order, so a re-formed batch numbers its parts the same.
        groups.sort_by(|(a, _), (b, _)| b.is_full().cmp(&a.is_full()).then_with(|| a.cmp(b)));
        let mut loads = Vec::with_capacity(groups.len());
        for (part, (set, mut writer)) in groups.into_iter().enumerate() {
            let csv = writer.format() == BodyFormat::Csv;
            let rows = writer.rows();
            // The writer is dropped next: hand its buffer over rather than copy it.
            let body: Bytes = writer
                .take_body(compression)
                .map_err(|err| EncodeError::Io {
                    table: target.to_owned(),
                    message: err.to_string(),
                })?;
            loads.push(LoadBatch {
                table: target.to_owned(),
                label: Label::for_changes(slot, target, first, last, part),
                first_lsn: first.commit,
                last_lsn: last.commit,
                rows,
                partial_columns: (!set.is_full()).then(|| encoder.partial_columns(&set)),
                csv_columns: csv.then(|| encoder.partial_columns(&set)),
                body,
            });
        }
        let sealed = SealedBatch {
            first,
            last,
            changes: self.changes,
            ops: self.ops,
            buffered_bytes: loads.iter().map(|load| load.body.len() as u64).sum(),
            loads,
            synced_at: synced_at_time,
            moved: Vec::new(),
        };
        // The emptied batch keeps no capacity: it grows again from empty (a few doublings,
        // amortised over the batch). Capacity kept for a next batch that may never come was
        // counted in the buffer by every table that went idle after a burst (50 tables: ~6 MiB),
        // which kept the buffer above the level where memory is given back (`flush.rs`) and, with
        // enough tables, at the cap itself.
        *self = TableBatch {
            key_scratch: std::mem::take(&mut self.key_scratch),
            row_overhead: self.row_overhead,
            ..TableBatch::default()
        };
        Ok(Some(sealed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::Oid;
    use crate::schema::{ColumnSchema, TableSchema};
    use crate::sink::starrocks::config::DeleteMode;
    use crate::sink::starrocks::mapping::TypeMapping;

    fn schema() -> TableSchema {
        schema_with_key_type(23)
    }

    /// `docs (id <key_type> key, big text, small int)`.
    pub(super) fn schema_with_key_type(key_type: u32) -> TableSchema {
        let column = |name: &str, type_oid: u32, key: Option<u16>| ColumnSchema {
            name: name.into(),
            type_oid: Oid(type_oid),
            type_modifier: -1,
            type_name: "x".into(),
            nullable: key.is_none(),
            key_position: key,
        };
        TableSchema {
            schema: "public".into(),
            name: "docs".into(),
            columns: vec![
                column("id", key_type, Some(0)),
                column("big", 25, None),
                column("small", 23, None),
            ],
        }
    }

    pub(super) fn row(values: &[Option<&str>]) -> TupleData {
        TupleData::from_values(values.iter().map(|v| match v {
            Some("<u>") => TupleValueRef::UnchangedToast,
            Some(text) => TupleValueRef::Text(text.as_bytes()),
            None => TupleValueRef::Null,
        }))
    }

    pub(super) fn at(seq: u32) -> ChangePosition {
        ChangePosition {
            commit: Lsn(0x100),
            seq,
        }
    }

    fn body(load: &LoadBatch) -> String {
        String::from_utf8(load.body.to_vec()).unwrap()
    }

    const KEY: &[usize] = &[0];

    #[test]
    fn csv_loads_name_their_fields() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default());
        let mut batch = TableBatch::default();
        batch.insert(at(1), KEY, row(&[Some("1"), Some("a,\"b\"\n"), Some("1")]));
        batch.insert(at(2), KEY, row(&[Some("2"), Some("N"), Some("2")]));
        batch.delete(at(3), KEY, &OldTuple::Key(row(&[Some("3"), None, None])));
        batch.update(at(4), KEY, None, row(&[Some("4"), Some("<u>"), Some("4")]));
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        let parts: Vec<_> = sealed
            .loads
            .iter()
            .map(|load| {
                (
                    load.csv_columns.clone(),
                    load.partial_columns.is_some(),
                    load.rows,
                )
            })
            .collect();
        let full = encoder.full_columns();
        assert_eq!(
            parts,
            [
                (Some(full), false, 3),
                (
                    Some(vec![
                        "id".into(),
                        "small".into(),
                        "_starwal_op".into(),
                        "_starwal_deleted".into(),
                        "_starwal_synced_at".into(),
                        "_starwal_lsn".into(),
                        "__op".into()
                    ]),
                    true,
                    1
                )
            ]
        );
        let csv = body(&sealed.loads[0]).replace('\u{1f}', "|");
        assert!(csv.starts_with("1|a,\"b\"\n|1|insert|"), "{csv}");
        assert!(
            csv.contains("\u{1e}3|\\N|\\N|\\N|\\N|\\N|\\N|1\u{1e}"),
            "{csv}"
        );
        let labels: Vec<_> = sealed.loads.iter().map(|l| l.label.to_string()).collect();
        assert!(labels[1].ends_with("_p1"), "{labels:?}");
    }

    #[test]
    fn inv4_changes_to_one_key_collapse_and_fill_unchanged_toast_from_the_earlier_image() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let mut batch = TableBatch::default();
        batch.insert(at(1), KEY, row(&[Some("1"), Some("long"), Some("1")]));
        batch.update(at(2), KEY, None, row(&[Some("1"), Some("<u>"), Some("2")]));
        batch.insert(at(3), KEY, row(&[Some("2"), Some("other"), Some("5")]));
        batch.delete(at(4), KEY, &OldTuple::Key(row(&[Some("2"), None, None])));
        assert_eq!(batch.changes(), 4);
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        assert_eq!((sealed.first, sealed.last), (at(1), at(4)));
        assert_eq!(
            sealed.loads.len(),
            1,
            "full rows and hard deletes share a load"
        );
        let text = body(&sealed.loads[0]);
        assert_eq!(sealed.loads[0].rows, 2, "{text}");
        assert!(text.contains(r#""big":"long","small":2"#), "{text}");
        assert!(text.contains(r#""__op":1"#), "{text}");
        assert!(batch.is_empty(), "sealing resets the batch");
    }

    #[test]
    fn inv11_partial_rows_split_off_keep_their_memory_and_seal_full_once_completed() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let mut batch = TableBatch::default();
        batch.insert(at(1), KEY, row(&[Some("1"), Some("long"), Some("1")]));
        // Unchanged `big` with no earlier image: partial.
        batch.update(at(2), KEY, None, row(&[Some("2"), Some("<u>"), Some("2")]));
        batch.update(at(3), KEY, None, row(&[Some("3"), Some("<u>"), Some("3")]));
        // Filled from the batch's own image: not partial.
        batch.update(at(4), KEY, None, row(&[Some("1"), Some("<u>"), Some("4")]));
        let partial = batch.partial_rows();
        assert_eq!(partial.len(), 2);
        // One completed; the other split off to be completed next.
        batch.complete(
            partial[0].entry,
            &row(&[Some("2"), Some("fetched"), Some("2")]),
        );
        let before = batch.bytes();
        let mut rest = batch.split_partial();
        assert!(batch.partial_rows().is_empty());
        assert!(
            batch.bytes() < before,
            "the split-off row's memory left the batch"
        );
        assert_eq!(rest.first(), Some(at(4)));
        assert_eq!(rest.last(), at(4));
        assert_eq!(rest.changes(), 0, "no change is counted twice");
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        assert_eq!(sealed.loads.len(), 1, "full rows only");
        assert_eq!(sealed.changes, 4);
        let text = body(&sealed.loads[0]);
        assert!(text.contains(r#""id":2,"big":"fetched""#), "{text}");
        assert!(!text.contains(r#""id":3"#), "{text}");
        // Nothing left to keep once every row is partial: no split.
        assert!(rest.split_partial().is_empty());
        let left = rest.partial_rows();
        assert_eq!(left.len(), 1);
        rest.complete(left[0].entry, &row(&[Some("3"), Some("x"), Some("3")]));
        let sealed = rest
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        assert_eq!(sealed.loads.len(), 1);
        assert!(sealed.loads[0].partial_columns.is_none());
        let text = body(&sealed.loads[0]);
        assert!(text.contains(r#""id":3,"big":"x","small":3"#), "{text}");
    }

    #[test]
    fn inv4_a_key_change_deletes_the_old_key_and_a_moved_row_missing_values_waits_for_a_fetch() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let mut batch = TableBatch::default();
        // Moved with `big` unchanged and no earlier image: must be fetched, never partial.
        batch.update(
            at(1),
            KEY,
            Some(&OldTuple::Key(row(&[Some("1"), None, None]))),
            row(&[Some("10"), Some("<u>"), Some("1")]),
        );
        // A later update of the moved row keeps waiting for the value.
        batch.update(at(2), KEY, None, row(&[Some("10"), Some("<u>"), Some("3")]));
        let fetch = batch.needing_fetch();
        assert_eq!(fetch.len(), 1);
        batch.complete(
            fetch[0].entry,
            &row(&[Some("10"), Some("fetched"), Some("3")]),
        );
        assert!(batch.needing_fetch().is_empty());
        // A plain update of a row the target has stays a partial update, in its own load.
        batch.update(at(3), KEY, None, row(&[Some("20"), Some("<u>"), Some("4")]));
        assert!(batch.needing_fetch().is_empty());
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        assert_eq!(sealed.loads.len(), 2);
        let full = body(&sealed.loads[0]);
        assert!(
            full.contains(r#""id":1,"__op":1"#),
            "old key deleted: {full}"
        );
        assert!(
            full.contains(r#""id":10,"big":"fetched","small":3"#),
            "{full}"
        );
        let partial = &sealed.loads[1];
        assert!(partial.label.as_str().ends_with("_p1"), "{}", partial.label);
        let columns = partial.partial_columns.as_ref().expect("partial update");
        assert!(columns.contains(&"small".to_string()) && !columns.contains(&"big".to_string()));
    }

    #[test]
    fn inv4_a_row_moving_on_from_a_key_completed_by_a_source_read_is_fetched_again() {
        // Source history: row A moves 5 → 40 and then 40 → 37, `big` ("A") unchanged; then a
        // row B is inserted at 40 with big "B". The agent lags: when it completes the first
        // move, the source's key 40 already holds B.
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let mut batch = TableBatch::default();
        let moved = |batch: &mut TableBatch, at_: ChangePosition, from: &str, to: &str| {
            batch.update(
                at_,
                KEY,
                Some(&OldTuple::Key(row(&[Some(from), None, None]))),
                row(&[Some(to), Some("<u>"), Some("1")]),
            )
        };
        moved(&mut batch, at(1), "5", "40");
        let fetch = batch.needing_fetch();
        assert_eq!(fetch.len(), 1);
        batch.complete(fetch[0].entry, &row(&[Some("40"), Some("B"), Some("9")]));
        // A plain update of key 40 keeps the read value: it is still key 40's.
        batch.update(at(2), KEY, None, row(&[Some("40"), Some("<u>"), Some("2")]));
        assert!(batch.needing_fetch().is_empty());
        moved(&mut batch, at(3), "40", "37");
        let fetch = batch.needing_fetch();
        assert_eq!(
            fetch.len(),
            1,
            "key 37 is read, not filled from key 40's read"
        );
        assert_eq!(
            fetch[0].row.raw_values().nth(1),
            Some(TupleValueRef::UnchangedToast)
        );
        batch.complete(fetch[0].entry, &row(&[Some("37"), Some("A"), Some("1")]));
        batch.insert(at(4), KEY, row(&[Some("40"), Some("B"), Some("9")]));
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        let text = body(&sealed.loads[0]);
        assert!(text.contains(r#""id":37,"big":"A""#), "{text}");
        assert!(text.contains(r#""id":40,"big":"B""#), "{text}");
        assert!(!text.contains(r#""id":37,"big":"B""#), "{text}");
    }

    #[test]
    fn inv4_a_full_old_tuple_fills_a_row_moving_on_from_a_key_completed_by_a_source_read() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let mut batch = TableBatch::default();
        batch.update(
            at(1),
            KEY,
            Some(&OldTuple::Key(row(&[Some("5"), None, None]))),
            row(&[Some("40"), Some("<u>"), Some("1")]),
        );
        let fetch = batch.needing_fetch();
        batch.complete(fetch[0].entry, &row(&[Some("40"), Some("B"), Some("9")]));
        // REPLICA IDENTITY FULL: the stream's old tuple has the moved row's own value.
        batch.update(
            at(2),
            KEY,
            Some(&OldTuple::Full(row(&[Some("40"), Some("A"), Some("1")]))),
            row(&[Some("37"), Some("<u>"), Some("1")]),
        );
        assert!(batch.needing_fetch().is_empty(), "nothing to read");
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        let text = body(&sealed.loads[0]);
        assert!(text.contains(r#""id":37,"big":"A""#), "{text}");
    }

    #[test]
    fn inv4_a_moved_row_gone_from_the_source_is_not_written_but_its_old_key_is_deleted() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let mut batch = TableBatch::default();
        batch.update(
            at(1),
            KEY,
            Some(&OldTuple::Key(row(&[Some("1"), None, None]))),
            row(&[Some("10"), Some("<u>"), Some("1")]),
        );
        let fetch = batch.needing_fetch();
        assert_eq!(fetch.len(), 1);
        batch.absent(fetch[0].entry);
        assert!(batch.needing_fetch().is_empty());
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        assert_eq!(sealed.loads.len(), 1, "no partial load for the new key");
        let text = body(&sealed.loads[0]);
        assert_eq!(sealed.loads[0].rows, 1, "{text}");
        assert!(
            text.contains(r#""id":1,"__op":1"#),
            "old key deleted: {text}"
        );
        assert!(!text.contains(r#""id":10"#), "new key not written: {text}");
    }

    #[test]
    fn inv5_a_batch_sealed_with_a_kept_sync_time_is_the_same_bytes() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let fill = |batch: &mut TableBatch| {
            batch.insert(at(1), KEY, row(&[Some("1"), Some("a"), Some("1")]));
            batch.update(at(2), KEY, None, row(&[Some("2"), Some("<u>"), Some("2")]));
        };
        let mut first = TableBatch::default();
        fill(&mut first);
        let first = first
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut again = TableBatch::default();
        fill(&mut again);
        again.keep_synced_at(first.synced_at);
        let again = again
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        assert_eq!(again.synced_at, first.synced_at);
        assert_eq!(first.loads.len(), again.loads.len());
        for (a, b) in first.loads.iter().zip(&again.loads) {
            assert_eq!((&a.label, &a.body), (&b.label, &b.body));
        }
        // The kept time goes with the sealed batch; the next one takes the time of sealing.
        let mut next = TableBatch::default();
        fill(&mut next);
        let next = next
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        assert_ne!(next.synced_at, first.synced_at);
    }

    #[test]
    fn inv4_a_full_old_tuple_fills_what_the_new_row_lacks() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let mut batch = TableBatch::default();
        batch.update(
            at(1),
            KEY,
            Some(&OldTuple::Full(row(&[
                Some("1"),
                Some("old big"),
                Some("1"),
            ]))),
            row(&[Some("1"), Some("<u>"), Some("2")]),
        );
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        assert_eq!(sealed.loads.len(), 1);
        assert!(body(&sealed.loads[0]).contains(r#""big":"old big","small":2"#));
        assert!(sealed.loads[0].partial_columns.is_none());
    }

    #[test]
    fn inv4_an_unchanged_toasted_key_is_not_a_key_change() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Hard, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let mut batch = TableBatch::default();
        // The key column was stored out of line: the new tuple says `u`, the old key is logged.
        batch.update(
            at(1),
            KEY,
            Some(&OldTuple::Key(row(&[Some("7"), None, None]))),
            row(&[Some("<u>"), Some("b"), Some("1")]),
        );
        assert!(batch.needing_fetch().is_empty());
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        let text = body(&sealed.loads[0]);
        assert_eq!(sealed.loads.len(), 1, "{text}");
        assert_eq!(sealed.loads[0].rows, 1, "no delete of the key: {text}");
        assert!(text.contains(r#""id":7,"big":"b","small":1"#), "{text}");
    }

    #[test]
    fn a_soft_delete_keeps_the_values_the_batch_has_for_the_row() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Soft, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let mut batch = TableBatch::default();
        batch.insert(at(1), KEY, row(&[Some("1"), Some("kept"), Some("5")]));
        batch.delete(at(2), KEY, &OldTuple::Key(row(&[Some("1"), None, None])));
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        let text = body(&sealed.loads[0]);
        assert!(
            sealed.loads[0].partial_columns.is_none(),
            "a whole row: {text}"
        );
        assert!(text.contains(r#""big":"kept","small":5"#), "{text}");
        assert!(text.contains(r#""_starwal_deleted":true"#), "{text}");
    }

    #[test]
    fn a_soft_delete_of_a_moved_row_gone_from_the_source_keeps_the_columns_it_carried() {
        let encoder = TableEncoder::new(&schema(), DeleteMode::Soft, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let mut batch = TableBatch::default();
        batch.update(
            at(1),
            KEY,
            Some(&OldTuple::Key(row(&[Some("5"), None, None]))),
            row(&[Some("40"), Some("<u>"), Some("2")]),
        );
        let fetch = batch.needing_fetch();
        batch.absent(fetch[0].entry);
        batch.delete(at(2), KEY, &OldTuple::Key(row(&[Some("40"), None, None])));
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        let deleted = sealed
            .loads
            .iter()
            .map(body)
            .find(|text| text.contains(r#""id":40"#))
            .expect("key 40 written");
        assert!(deleted.contains(r#""small":2"#), "{deleted}");
        assert!(!deleted.contains(r#""big""#), "nothing known: {deleted}");
        assert!(deleted.contains(r#""_starwal_deleted":true"#), "{deleted}");
    }

    #[test]
    fn bytes_count_what_the_batch_holds_and_the_bodies_it_will_write() {
        let schema = schema();
        let encoder = TableEncoder::new(&schema, DeleteMode::Hard, TypeMapping::default())
            .with_format(BodyFormat::Json);
        let mut batch = TableBatch::default();
        batch.set_row_overhead(body_row_overhead(&schema));
        let empty = batch.bytes();
        let rows = 2_000u32;
        let mut wire = 0;
        for n in 0..rows {
            let id = n.to_string();
            let tuple = row(&[Some(&id), Some("some text of a row"), Some("7")]);
            wire += tuple.wire_bytes().len() as u64;
            batch.insert(at(n + 1), KEY, tuple);
        }
        let full = batch.bytes();
        // Far more than the payload: per row an entry, a map slot, two allocations.
        assert!(full - empty > 3 * wire, "{full} vs payload {wire}");
        // The same key changed again and again holds one row.
        for n in 0..rows {
            let small = n.to_string();
            batch.update(
                at(rows + n + 1),
                KEY,
                None,
                row(&[Some("1"), Some("some text of a row"), Some(&small)]),
            );
        }
        let after_updates = batch.bytes();
        assert!(
            after_updates < full + full / 10,
            "{after_updates} vs {full}: replaced rows are not counted twice"
        );
        let sealed = batch
            .seal(&encoder, "slot", "docs", Compression::None)
            .unwrap()
            .unwrap();
        let body: u64 = sealed.loads.iter().map(|l| l.body.len() as u64).sum();
        assert_eq!(sealed.buffered_bytes, body);
        // The estimate reserved for the bodies covers them (within a tenth).
        assert!(
            after_updates - empty >= body + body / 10,
            "counted {after_updates}, body {body}"
        );
        // A sealed batch keeps no capacity but its key scratch (one key): an idle table holds
        // next to nothing in the buffer, so the buffer can empty after a burst.
        let fresh = batch.bytes();
        assert_eq!(fresh, batch.key_scratch.capacity() as u64, "vs {full}");
        assert!(fresh < 64, "{fresh}");
    }

    #[test]
    fn allocation_sizes_follow_the_allocator() {
        assert_eq!(allocation(0), 0);
        assert_eq!(allocation(1), 32);
        assert_eq!(allocation(24), 32);
        assert_eq!(allocation(25), 48);
        assert_eq!(allocation(1000), 1008);
    }
}

// Adversarial review of the CSV bodies (a batch never splits over body formats).
#[cfg(test)]
mod csv_review;
