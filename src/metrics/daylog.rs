//! Day logs: an account's entries in day order (visits, SKU lines),
//! packed in columns (`compact::Table`) and shared between the snapshots
//! of different days as views ending at their day. Touches nothing but
//! the memory it is given.

use super::compact::{Column, Table};

/// The columns a [`Logged`] entry is read from (a SKU line has four).
pub const LOGGED: usize = 4;
use super::series::seek_by;
use crate::model::dates::Day;

/// Something that happened on one day (a visit, a SKU ordered), held in
/// a [`DayLog`]'s packed columns, its day first.
pub trait Logged: Copy {
    /// The day it happened.
    fn on_day(&self) -> Day;
    /// The table holding `items` (column 0: their days).
    #[doc(hidden)]
    fn pack(items: &[Self]) -> Table;
    /// Entry `k` of a table [`Logged::pack`] made, from its first
    /// [`LOGGED`] columns.
    #[doc(hidden)]
    fn unpack(columns: &[Column<'_>; LOGGED], k: usize) -> Self;
    /// The day of entry `k`, from the table's first column.
    #[doc(hidden)]
    #[inline]
    fn day_in(days: &Column<'_>, k: usize) -> Day {
        days.int(k) as Day
    }
}

/// Entries in day order, packed (`compact::Table`), shared between the
/// snapshots of different days: `iter`, `len`, `get` and `is_empty` see
/// the entries up to its day and never later ones. `as_of` makes an
/// earlier view without copying.
#[derive(Debug, Clone)]
pub struct DayLog<T> {
    table: Table,
    /// How many of the table's entries this view sees.
    n: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T> Default for DayLog<T> {
    fn default() -> Self {
        DayLog {
            table: Table::default(),
            n: 0,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: Logged> From<Vec<T>> for DayLog<T> {
    fn from(items: Vec<T>) -> Self {
        DayLog {
            table: T::pack(&items),
            n: items.len(),
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: Logged> DayLog<T> {
    /// Entries this view sees.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The `k`th entry (`k < len()`).
    #[inline]
    pub fn get(&self, k: usize) -> T {
        debug_assert!(k < self.n);
        T::unpack(&self.columns(), k)
    }

    /// The table's columns, each spec read once.
    #[inline]
    fn columns(&self) -> [Column<'_>; LOGGED] {
        std::array::from_fn(|c| self.table.column(c))
    }

    /// The day of the `k`th entry.
    #[inline]
    pub fn day(&self, k: usize) -> Day {
        T::day_in(&self.table.column(0), k)
    }

    /// The entries this view sees, in day order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = T> + ExactSizeIterator + '_ {
        let columns = self.columns();
        (0..self.n).map(move |k| T::unpack(&columns, k))
    }

    /// The entries of `range` (places), in day order.
    pub fn range(&self, range: std::ops::Range<usize>) -> impl DoubleEndedIterator<Item = T> + '_ {
        let columns = self.columns();
        range.map(move |k| T::unpack(&columns, k))
    }

    /// How many of the entries this view sees are on or before `end`,
    /// searched back from `hint`.
    #[inline]
    pub fn upto_from(&self, hint: usize, end: Day) -> usize {
        let days = self.table.column(0);
        seek_by(self.n, hint, |k| T::day_in(&days, k) <= end)
    }

    /// How many of the entries this view sees are on or before `end`.
    pub fn upto(&self, end: Day) -> usize {
        self.upto_from(self.n, end)
    }

    /// The entries on or before `end`.
    pub fn as_of(&self, end: Day) -> DayLog<T> {
        DayLog {
            table: self.table.clone(),
            n: self.upto(end),
            _t: std::marker::PhantomData,
        }
    }

    /// [`DayLog::as_of`], searched from `near`, a view of the same entries
    /// at a nearby day (see [`Series::as_of_near`](super::series::Series::as_of_near)).
    pub fn as_of_near(&self, end: Day, near: &DayLog<T>) -> DayLog<T> {
        if !self.table.same(&near.table) {
            return self.as_of(end);
        }
        DayLog {
            table: near.table.clone(),
            n: self.upto_from(near.n, end),
            _t: std::marker::PhantomData,
        }
    }

    /// Appends an entry; entries must come in day order. Copies the log:
    /// for tests and synthetic books; a read makes each log at once
    /// (`From<Vec<T>>`).
    pub fn push(&mut self, item: T) {
        let mut items: Vec<T> = self.iter().collect();
        items.push(item);
        *self = DayLog::from(items);
    }

    /// The bytes its table takes on the heap.
    pub(super) fn heap_bytes(&self) -> usize {
        self.table.heap_bytes()
    }

    /// Its columns' widths in bytes, for tests.
    #[cfg(test)]
    pub(super) fn widths(&self) -> Vec<u8> {
        self.table.widths()
    }
}
