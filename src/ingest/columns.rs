//! Columns: where each canonical field sits in a file's header (the
//! export's own column names, mapped per dataset in the config), and the
//! other columns, kept as attributes (for orders their values, a JSON
//! array, the names once per header; elsewhere a JSON object). A header
//! that lacks a required column or names a mapped one twice is refused
//! (`HeaderError`). Touches nothing but the header and rows it is given.

use std::fmt::Write as _;

use csv::StringRecord;

use super::read::column_name;
use super::values;
use crate::config::{Dataset, DatasetConfig};

/// Why a header cannot be mapped to the dataset's fields: the file is
/// refused with this reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeaderError {
    /// A mapped column's name is in the header more than once.
    #[error(
        "the header has the column {column:?} {count} times (columns {places}), so it is unclear which is {field}; keep one, rename the others, and drop the file in again"
    )]
    Repeated {
        column: String,
        count: usize,
        /// The 1-based places, comma-separated.
        places: String,
        field: &'static str,
    },
    /// Required columns are not in the header.
    #[error(
        "the header lacks the required column(s) {missing}. The header found is: {found}. Either this is not an export of {dataset}, or its columns are named differently: map them under `datasets.{dataset}.columns` in the config"
    )]
    Missing {
        missing: String,
        found: String,
        dataset: Dataset,
    },
}

/// Where each canonical field sits in the file's header, and the other
/// columns, kept as attributes.
pub struct ColumnMap {
    /// (field, column header, index) for every mapped field.
    pub(super) fields: Vec<(&'static str, String, Option<usize>)>,
    /// (attribute name, index) of every other column with a header.
    pub(super) extra: Vec<(String, usize)>,
}

impl ColumnMap {
    pub fn idx(&self, field: &str) -> Option<usize> {
        self.fields
            .iter()
            .find(|(f, _, _)| *f == field)
            .and_then(|(_, _, i)| *i)
    }
    pub(super) fn header(&self, field: &str) -> String {
        self.fields
            .iter()
            .find(|(f, _, _)| *f == field)
            .map(|(_, h, _)| format!("{h} ({field})"))
            .unwrap_or_else(|| field.to_string())
    }
    /// The attribute names, in header order.
    pub fn extra_names(&self) -> Vec<&str> {
        self.extra.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The other columns of `rec` for `dataset`: for orders the values only,
    /// a JSON array in the order of [`ColumnMap::extra_names`] with null for
    /// an empty cell (the store keeps the names once per file); for the
    /// other datasets a JSON object. `None` if all are empty.
    pub(super) fn attrs_for(
        &self,
        dataset: Dataset,
        rec: &StringRecord,
        buf: String,
    ) -> Option<String> {
        if dataset == Dataset::Orders {
            self.attr_values(rec, buf)
        } else {
            self.attrs(rec)
        }
    }

    /// The other columns of `rec` as a JSON array of values (null for an
    /// empty one), written into `buf` (emptied first); `None` if all are
    /// empty.
    fn attr_values(&self, rec: &StringRecord, buf: String) -> Option<String> {
        let mut out = buf;
        out.clear();
        let mut any = false;
        for (_, i) in &self.extra {
            out.push(if out.is_empty() { '[' } else { ',' });
            match rec.get(*i).map(str::trim).filter(|v| !v.is_empty()) {
                Some(v) => {
                    any = true;
                    json_string(&mut out, v);
                }
                None => out.push_str("null"),
            }
        }
        any.then(|| {
            out.push(']');
            out
        })
    }

    /// The other columns of `rec` as a JSON object; `None` if all are empty.
    fn attrs(&self, rec: &StringRecord) -> Option<String> {
        let mut out = String::new();
        for (name, i) in &self.extra {
            let Some(v) = rec.get(*i).map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            out.push(if out.is_empty() { '{' } else { ',' });
            json_string(&mut out, name);
            out.push(':');
            json_string(&mut out, v);
        }
        if out.is_empty() {
            None
        } else {
            out.push('}');
            Some(out)
        }
    }
}

/// Appends `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Maps the header to the dataset's fields. Refuses a header that lacks a
/// required column or names a mapped column twice.
pub fn map_columns(
    dataset: Dataset,
    ds: &DatasetConfig,
    headers: &StringRecord,
) -> Result<ColumnMap, HeaderError> {
    // Names as a person reads them: an invisible character copied into a
    // header cell (a zero-width space) would otherwise make `金额` another
    // column than `金额`, and the value read from the wrong one.
    let names: Vec<String> = headers.iter().map(values::header_name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut fields = Vec::new();
    let mut missing = Vec::new();
    let mut used = vec![false; names.len()];
    for (field, required) in dataset.fields() {
        let Some(col) = ds.columns.get(*field) else {
            continue;
        };
        let hits: Vec<usize> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == values::header_name(col))
            .map(|(i, _)| i)
            .collect();
        if hits.len() > 1 {
            return Err(HeaderError::Repeated {
                column: col.clone(),
                count: hits.len(),
                places: hits
                    .iter()
                    .map(|i| (i + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                field,
            });
        }
        if hits.is_empty() && *required {
            missing.push(format!("{col:?} ({field})"));
        }
        if let Some(i) = hits.first() {
            used[*i] = true;
        }
        fields.push((*field, col.clone(), hits.first().copied()));
    }
    if !missing.is_empty() {
        return Err(HeaderError::Missing {
            missing: missing.join(", "),
            found: names
                .iter()
                .take(40)
                .map(values::bounded)
                .collect::<Vec<_>>()
                .join(", "),
            dataset,
        });
    }
    // Other columns become attributes; a repeated name gets "#2", "#3" …
    // A column without a name is named by its place ("column F"), so what
    // it holds is kept (its empty cells cost nothing: they are left out).
    let mut extra: Vec<(String, usize)> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if used[i] {
            continue;
        }
        let n = if n.trim().is_empty() {
            format!("column {}", column_name(i as u32))
        } else {
            (*n).to_string()
        };
        let n = n.as_str();
        let mut name = n.to_string();
        let mut k = 1;
        while extra.iter().any(|(e, _)| *e == name) {
            k += 1;
            name = format!("{n}#{k}");
        }
        extra.push((name, i));
    }
    Ok(ColumnMap { fields, extra })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn orders_config() -> DatasetConfig {
        let text = include_str!("../../config/kamwatch.yaml");
        crate::config::parse(text).unwrap().datasets.orders
    }

    #[test]
    fn attrs_are_a_json_object_of_the_other_columns() {
        let ds = orders_config();
        let h = StringRecord::from(vec![
            "订单编号",
            "客户编号",
            "订单日期",
            "金额",
            "成本",
            "备注",
            "备注",
            "",
        ]);
        let map = map_columns(Dataset::Orders, &ds, &h).unwrap();
        // A column without a name is kept, named by its place.
        assert_eq!(map.extra_names(), vec!["备注", "备注#2", "column H"]);
        let rec = StringRecord::from(vec![
            "1",
            "K",
            "2026-01-01",
            "1",
            "1",
            "say \"hi\"\n",
            "",
            "x",
        ]);
        let a = map.attrs(&rec).unwrap();
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"备注": "say \"hi\"", "column H": "x"})
        );
        // Orders keep the values only, in the order of the names.
        let a = map.attrs_for(Dataset::Orders, &rec, String::new()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v, serde_json::json!(["say \"hi\"", null, "x"]));
        let empty = StringRecord::from(vec!["1", "K", "2026-01-01", "1", "1", " ", "", ""]);
        assert_eq!(map.attrs_for(Dataset::Orders, &empty, "junk".into()), None);
        assert_eq!(map.attrs(&empty), None);
    }

    #[test]
    fn a_mapped_column_twice_is_refused() {
        let ds = orders_config();
        let h = StringRecord::from(vec![
            "订单编号",
            "客户编号",
            "订单日期",
            "金额",
            "成本",
            "金额",
        ]);
        let e = map_columns(Dataset::Orders, &ds, &h)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"金额\" 2 times (columns 4, 6)"), "{e}");
    }

    proptest! {
        /// Whatever the order of the columns and whatever others are
        /// around them, each field finds its column and the rest become
        /// attributes.
        #[test]
        fn columns_map_in_any_order(
            extra in proptest::collection::vec("[a-z]{1,6}", 0..6),
            seed in any::<u64>(),
            drop_optional in any::<bool>(),
        ) {
            let ds = orders_config();
            let mut cols: Vec<String> = ds
                .columns
                .iter()
                .filter(|(f, _)| {
                    !drop_optional
                        || Dataset::Orders.fields().iter().any(|(k, req)| k == f && *req)
                })
                .map(|(_, c)| c.clone())
                .collect();
            let mut extra_unique: Vec<String> = Vec::new();
            for e in extra {
                if !extra_unique.contains(&e) {
                    extra_unique.push(e);
                }
            }
            cols.extend(extra_unique.iter().cloned());
            // A deterministic shuffle from the seed.
            let mut s = seed;
            for i in (1..cols.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                cols.swap(i, (s >> 33) as usize % (i + 1));
            }
            let header = StringRecord::from(cols.clone());
            let map = map_columns(Dataset::Orders, &ds, &header).unwrap();
            for (field, col) in &ds.columns {
                let want = cols.iter().position(|c| c == col);
                prop_assert_eq!(map.idx(field), want, "{}", field);
            }
            let mut got: Vec<&str> = map.extra_names();
            got.sort();
            let mut want: Vec<&str> = extra_unique.iter().map(String::as_str).collect();
            want.sort();
            prop_assert_eq!(got, want);
        }

        /// Dropping any required column is refused, naming that column.
        #[test]
        fn a_missing_required_column_is_named(which in 0usize..5) {
            let ds = orders_config();
            let required: Vec<&str> = Dataset::Orders
                .fields()
                .iter()
                .filter(|(_, r)| *r)
                .map(|(f, _)| *f)
                .collect();
            let gone = required[which % required.len()];
            let cols: Vec<&str> = required
                .iter()
                .filter(|f| **f != gone)
                .map(|f| ds.columns[*f].as_str())
                .collect();
            let e = map_columns(Dataset::Orders, &ds, &StringRecord::from(cols)).err().unwrap().to_string();
            let want = format!("{:?} ({gone})", ds.columns[gone]);
            prop_assert!(e.contains(&want), "{}", e);
        }
    }
}
