//! The `datasets:` section: which files hold each dataset (glob patterns
//! on the file name), how their columns map to the canonical fields, how
//! the export writes text, dates and delimiters, the upsert key and what a
//! bad row or a repeated key does; and the datasets kamwatch knows, with
//! their fields. Reads nothing itself.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::error::{Problem, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datasets {
    pub accounts: DatasetConfig,
    pub orders: DatasetConfig,
    pub visits: DatasetConfig,
    /// Optional: without it no file is routed to receivables.
    #[serde(default)]
    pub receivables: Option<DatasetConfig>,
    /// Optional: without it no file is routed to inventory.
    #[serde(default)]
    pub inventory: Option<DatasetConfig>,
}

/// One dataset: which files hold it, how their columns are named and how
/// the export writes its text and values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Glob patterns (`*` and `?`) matched against the file name.
    pub files: Vec<String>,
    /// Canonical field -> the export's own column name (a field named
    /// twice is refused).
    #[serde(deserialize_with = "super::schema::unique_map")]
    pub columns: BTreeMap<String, String>,
    /// Text encoding of CSV and JSON Lines files.
    #[serde(default)]
    pub encoding: TextEncoding,
    /// CSV field delimiter: one character (`,` `;` `|`, or `tab`); by default
    /// the one the header line uses most of `,` `;` and tab.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Worksheet of XLSX/XLS workbooks; by default the first.
    #[serde(default)]
    pub sheet: Option<String>,
    /// How dates that do not start with a 4-digit year are read.
    #[serde(default)]
    pub date_order: DateOrder,
    /// Event datasets (orders, visits): the canonical fields that identify a
    /// row, so a re-exported row replaces the one stored before. Default:
    /// orders `[order_id, line]`, visits `[account_id, date, visitor]`.
    #[serde(default)]
    pub key: Option<Vec<String>>,
    /// What a row that does not validate does to its file.
    #[serde(default)]
    pub on_error: OnError,
    /// Two rows of one file with the same key: `reject` the file (default,
    /// naming both lines) or `keep_last`.
    #[serde(default)]
    pub duplicate_keys: DuplicateKeys,
}

/// A dataset that is not configured: no file matches it.
static UNCONFIGURED: DatasetConfig = DatasetConfig {
    files: Vec::new(),
    columns: BTreeMap::new(),
    encoding: TextEncoding::Auto,
    delimiter: None,
    sheet: None,
    date_order: DateOrder::Ymd,
    key: None,
    on_error: OnError::RejectFile,
    duplicate_keys: DuplicateKeys::Reject,
};

impl DatasetConfig {
    /// The delimiter byte set in config, if any (validated at load).
    pub fn delimiter_byte(&self) -> Option<u8> {
        self.delimiter.as_deref().and_then(parse_delimiter)
    }

    /// The upsert key of an event dataset: from config or the default.
    pub fn key_fields(&self, d: Dataset) -> Vec<String> {
        match &self.key {
            Some(k) => k.clone(),
            None => d.default_key().iter().map(|f| (*f).to_string()).collect(),
        }
    }
}

fn parse_delimiter(s: &str) -> Option<u8> {
    match s {
        "tab" | "\\t" | "\t" => Some(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" && s != "\r" => {
            Some(s.as_bytes()[0])
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TextEncoding {
    /// A BOM or valid UTF-8 means UTF-8, anything else GB18030.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// Read as GB18030, its superset.
    #[serde(rename = "gbk")]
    Gbk,
    #[serde(rename = "gb18030")]
    Gb18030,
}

/// The order of day, month and year in dates like 01/02/2026.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateOrder {
    #[default]
    Ymd,
    Dmy,
    Mdy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Any bad row rejects the whole file; nothing of it is stored.
    #[default]
    RejectFile,
    /// Good rows are stored; bad rows are listed in `<name>.errors.txt`
    /// beside the archived file.
    SkipRows,
}

/// What two rows of one file with the same key do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateKeys {
    /// The file is rejected, naming both lines: a silent merge loses rows.
    #[default]
    Reject,
    /// The last row of the file with the key is stored.
    KeepLast,
}

/// The datasets kamwatch knows, with their canonical fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
    Accounts,
    Orders,
    Visits,
    Receivables,
    Inventory,
}

impl Dataset {
    pub const ALL: [Dataset; 5] = [
        Dataset::Accounts,
        Dataset::Orders,
        Dataset::Visits,
        Dataset::Receivables,
        Dataset::Inventory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dataset::Accounts => "accounts",
            Dataset::Orders => "orders",
            Dataset::Visits => "visits",
            Dataset::Receivables => "receivables",
            Dataset::Inventory => "inventory",
        }
    }

    /// Snapshots replace what the previous file said; events accumulate.
    pub fn is_snapshot(self) -> bool {
        !matches!(self, Dataset::Orders | Dataset::Visits)
    }

    /// The fields that identify an event row by default (the table's key).
    pub fn default_key(self) -> &'static [&'static str] {
        match self {
            Dataset::Orders => &["order_id", "line"],
            Dataset::Visits => &["account_id", "date", "visitor"],
            Dataset::Accounts => &["id"],
            Dataset::Receivables => &["account_id", "invoice"],
            Dataset::Inventory => &["sku", "account_id"],
        }
    }

    /// Canonical fields: (name, required).
    pub fn fields(self) -> &'static [(&'static str, bool)] {
        match self {
            Dataset::Accounts => &[
                ("id", true),
                ("name", true),
                ("region", false),
                ("owner", false),
                ("owner_email", false),
                ("manager_email", false),
                ("manager", false),
                ("credit_limit", false),
                ("tier", false),
            ],
            Dataset::Orders => &[
                ("order_id", true),
                ("line", false),
                ("account_id", true),
                ("date", true),
                ("sku", false),
                ("qty", false),
                ("revenue", true),
                ("cost", true),
            ],
            Dataset::Visits => &[
                ("account_id", true),
                ("date", true),
                ("visitor", false),
                ("role", false),
            ],
            Dataset::Receivables => &[
                ("account_id", true),
                ("invoice", true),
                ("amount", true),
                ("due_date", true),
                ("invoice_date", false),
            ],
            Dataset::Inventory => &[("sku", true), ("on_hand", true), ("account_id", false)],
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Datasets {
    pub fn get(&self, d: Dataset) -> &DatasetConfig {
        match d {
            Dataset::Accounts => &self.accounts,
            Dataset::Orders => &self.orders,
            Dataset::Visits => &self.visits,
            Dataset::Receivables => self.receivables.as_ref().unwrap_or(&UNCONFIGURED),
            Dataset::Inventory => self.inventory.as_ref().unwrap_or(&UNCONFIGURED),
        }
    }

    /// The dataset whose file patterns match `file_name`, if any.
    pub fn route(&self, file_name: &str) -> Option<Dataset> {
        Dataset::ALL
            .into_iter()
            .find(|d| self.get(*d).files.iter().any(|p| glob_match(p, file_name)))
    }
}

/// `*` matches any run of characters, `?` one character; the rest literally.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Datasets {
    /// Checks each configured dataset: file patterns, known and required
    /// columns, and its options.
    pub(super) fn check(&self) -> Result<(), Problem> {
        for d in Dataset::ALL {
            let optional = matches!(d, Dataset::Receivables | Dataset::Inventory);
            let ds = match d {
                Dataset::Receivables => match &self.receivables {
                    Some(ds) => ds,
                    None => continue,
                },
                Dataset::Inventory => match &self.inventory {
                    Some(ds) => ds,
                    None => continue,
                },
                _ => self.get(d),
            };
            if ds.files.is_empty() && !optional {
                invalid!("datasets.{d}.files: give at least one file name pattern");
            }
            let known: Vec<&str> = d.fields().iter().map(|(f, _)| *f).collect();
            for key in ds.columns.keys() {
                if !known.contains(&key.as_str()) {
                    invalid!(
                        "datasets.{d}.columns: unknown field `{key}`; the fields of {d} are {}",
                        known.join(", ")
                    );
                }
            }
            for (field, required) in d.fields() {
                if *required && !ds.columns.contains_key(*field) {
                    invalid!(
                        "datasets.{d}.columns: the required field `{field}` has no column; add `{field}: <column name in the export>`"
                    );
                }
            }
            check_options(d, ds)?;
        }
        Ok(())
    }
}

/// The per-dataset options beyond files and columns.
fn check_options(d: Dataset, ds: &DatasetConfig) -> Result<(), Problem> {
    if let Some(delim) = &ds.delimiter
        && parse_delimiter(delim).is_none()
    {
        invalid!(
            "datasets.{d}.delimiter: {delim:?} is not one ASCII character; use e.g. \",\", \";\", \"|\" or tab"
        );
    }
    if let Some(key) = &ds.key {
        if d.is_snapshot() {
            invalid!(
                "datasets.{d}.key: {d} is a snapshot (each file replaces the last), so it has no upsert key; remove `key`"
            );
        }
        let known: Vec<&str> = d.fields().iter().map(|(f, _)| *f).collect();
        if key.is_empty() {
            invalid!(
                "datasets.{d}.key: give at least one field, e.g. [{}]",
                d.default_key().join(", ")
            );
        }
        for k in key {
            if !known.contains(&k.as_str()) {
                invalid!(
                    "datasets.{d}.key: unknown field `{k}`; the fields of {d} are {}",
                    known.join(", ")
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("orders_*.csv", "orders_2026.csv"));
        assert!(glob_match("销售明细*.csv", "销售明细_202609-10.csv"));
        assert!(!glob_match("orders_*.csv", "orders_2026.xlsx"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "abbc"));
        assert!(glob_match("*", ""));
    }
}
