//! JSON Lines: one object a line, its keys the columns (the union of every
//! line's keys, in the order first seen), a repeated key refused, values
//! as text. Reads the file it is given.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};
use csv::StringRecord;

use super::encoding::{Encoding, binary_at};
use super::error::{OpenError, ReadError, TooLong, not_text};
use crate::config::IngestConfig;
use crate::ingest::values::{bounded, excerpt};

/// The most distinct keys a JSON Lines file may use (its columns).
const MAX_JSONL_KEYS: usize = 1024;

pub struct JsonlSource {
    reader: BufReader<std::fs::File>,
    keys: Vec<String>,
    line: u64,
    buf: Vec<u8>,
    max_line: u64,
}

pub(super) fn open_jsonl(
    path: &Path,
    head: &[u8],
    limits: &IngestConfig,
) -> Result<(JsonlSource, StringRecord), OpenError> {
    if let Some(at) = binary_at(head, Encoding::Utf8) {
        return Err(OpenError::Unusable(not_text(at)));
    }
    // First pass: the union of the keys, in the order first seen.
    let mut keys: Vec<String> = Vec::new();
    let mut scan = JsonlSource::new(path, limits.max_record_bytes)?;
    let mut seen = std::collections::HashSet::new();
    loop {
        match scan.next_object() {
            Ok(None) => break,
            Ok(Some((line, obj))) => {
                for k in obj.keys() {
                    if seen.insert(k.clone()) {
                        keys.push(k.clone());
                    }
                }
                // Every key is a column of every row: many distinct keys
                // would make each row cost as much as all of them.
                if keys.len() > MAX_JSONL_KEYS {
                    return Err(OpenError::Unusable(format!(
                        "line {line}: the file has more than {MAX_JSONL_KEYS} distinct keys by here, and each would be a column; this is no export of rows (objects with the same keys, one a line)"
                    )));
                }
            }
            Err(e) if e.fatal => {
                return Err(OpenError::Unusable(format!(
                    "line {}: {}",
                    e.line, e.message
                )));
            }
            Err(_) => {} // reported on the second pass
        }
    }
    if keys.is_empty() {
        return Err(OpenError::Unusable(
            "the file holds no JSON objects: nothing to ingest. Export it again".into(),
        ));
    }
    let mut src = JsonlSource::new(path, limits.max_record_bytes)?;
    src.keys = keys.clone();
    Ok((src, StringRecord::from(keys)))
}

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// A JSON object that refuses a repeated key.
struct UniqueObject(JsonObject);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<UniqueObject, A::Error> {
                let mut m = JsonObject::new();
                while let Some((k, v)) = a.next_entry::<String, serde_json::Value>()? {
                    if m.contains_key(&k) {
                        return Err(serde::de::Error::custom(RepeatedKey(k)));
                    }
                    m.insert(k, v);
                }
                Ok(UniqueObject(m))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The error a repeated key raises, told apart by its text.
struct RepeatedKey(String);

impl std::fmt::Display for RepeatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "\u{0}repeated key\u{0}{}", self.0)
    }
}

/// The key that makes `text` fail as a [`UniqueObject`], if that is why.
fn repeated_key(text: &[u8]) -> Option<String> {
    let e = serde_json::from_slice::<UniqueObject>(text)
        .err()?
        .to_string();
    let rest = e.split_once("\u{0}repeated key\u{0}")?.1;
    // serde_json appends " at line L column C".
    let key = rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k);
    Some(key.to_string())
}

impl JsonlSource {
    fn new(path: &Path, max_line: u64) -> Result<Self> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(JsonlSource {
            reader: BufReader::with_capacity(1 << 16, f),
            keys: Vec::new(),
            line: 0,
            buf: Vec::new(),
            max_line,
        })
    }

    /// The next non-blank line as an object, with its line number.
    fn next_object(&mut self) -> std::result::Result<Option<(u64, JsonObject)>, ReadError> {
        loop {
            self.buf.clear();
            let n = (&mut self.reader)
                .take(self.max_line + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| ReadError {
                    line: self.line + 1,
                    message: format!("cannot be read: {e}"),
                    fatal: true,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.len() as u64 > self.max_line && self.buf.last() != Some(&b'\n') {
                return Err(ReadError {
                    line: self.line,
                    message: TooLong::Line(self.line).message(self.max_line),
                    fatal: true,
                });
            }
            let mut text = &self.buf[..];
            if self.line == 1 {
                text = text.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(text);
            }
            if text.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            // One object whose keys are unique (serde_json keeps the last of
            // a repeated key without a word, where a CSV with a repeated
            // column is refused); anything else is parsed again to say what.
            if let Ok(UniqueObject(m)) = serde_json::from_slice::<UniqueObject>(text) {
                return Ok(Some((self.line, m)));
            }
            if let Some(key) = repeated_key(text) {
                return Err(ReadError {
                    line: self.line,
                    message: format!(
                        "has the key {} twice; which value counts is anyone's guess, so fix the export to write each key once",
                        excerpt(&key)
                    ),
                    fatal: false,
                });
            }
            return match serde_json::from_slice::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(m)) => Ok(Some((self.line, m))),
                Ok(other) => Err(ReadError {
                    line: self.line,
                    message: format!(
                        "is a JSON {} where each line must be one object {{\"column\": value, ...}}",
                        json_kind(&other)
                    ),
                    fatal: false,
                }),
                Err(e) => Err(ReadError {
                    line: self.line,
                    message: format!("is not valid JSON: {}", bounded(&e)),
                    fatal: false,
                }),
            };
        }
    }

    pub(super) fn read(
        &mut self,
        rec: &mut StringRecord,
    ) -> std::result::Result<Option<u64>, ReadError> {
        let Some((line, obj)) = self.next_object()? else {
            return Ok(None);
        };
        rec.clear();
        for k in &self.keys {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) => rec.push_field(""),
                Some(serde_json::Value::String(s)) => rec.push_field(s),
                Some(v) => rec.push_field(&v.to_string()),
            }
        }
        Ok(Some(line))
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}
