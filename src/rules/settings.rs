//! Per-rule settings as the rules stage reads and applies them: a script's
//! `const SETTINGS = #{...}` read once after compiling (never run), checked
//! with the same keys and rules as the config's `rule_settings:`, and the
//! `enabled`, `tiers`, `needs` and `book_needs` keys turned into the bit
//! masks the runner tests per account; a compile error at a keyword used
//! as a map key (`#{ for: 2 }`) gets what to write instead. Touches nothing.

use rhai::{AST, Dynamic, Map};

use super::error::Error;
use crate::metrics::AccountMetrics;

/// Per-rule settings: one type for the rule's `const SETTINGS = #{ ... };`
/// and the config's `rule_settings:` (which wins, key by key). The alerts
/// stage applies the lifecycle keys (`for_evaluations`, repeat, recipients,
/// ...); the rules stage applies `enabled`, `tiers`, `needs` and `severity`
/// as the default of `alert()`.
pub use crate::config::RuleSettings;

/// Which of the `RuleSettings::NEEDS` the account has, as bits (bit i for
/// `NEEDS[i]`, the same order as `metrics::DATA_KINDS`).
pub(super) fn has_bits(m: &AccountMetrics) -> u8 {
    m.data_bits()
}

/// A rule's `needs` as bits (see [`has_bits`]).
pub(super) fn needs_mask(s: &RuleSettings) -> u8 {
    needs_bits(s.needs.as_deref())
}

/// A rule's `book_needs` as bits (see [`has_bits`]).
pub(super) fn book_needs_mask(s: &RuleSettings) -> u8 {
    needs_bits(s.book_needs.as_deref())
}

fn needs_bits(names: Option<&[String]>) -> u8 {
    names
        .into_iter()
        .flatten()
        .filter_map(|n| RuleSettings::NEEDS.iter().position(|x| x == n))
        .fold(0, |b, i| b | 1 << i)
}

/// Bit per tier (A=1, B=2, C=4) of the accounts the rule runs for.
pub(super) fn tier_mask(s: &RuleSettings) -> u8 {
    if s.enabled == Some(false) {
        return 0;
    }
    match &s.tiers {
        None => 0b111,
        Some(ts) => ts.iter().map(|t| tier_bit(t)).fold(0, |a, b| a | b),
    }
}

/// Reads a script's `SETTINGS` map into the one settings type, with the
/// same keys (older names included) and checks as the config's
/// `rule_settings:`; errors say which key is wrong and why.
pub fn settings_from_map(map: &Map) -> Result<RuleSettings, Error> {
    let mut s = RuleSettings::default();
    for (k, v) in map {
        set(&mut s, k.as_str(), v)?;
    }
    s.settle().map_err(|e| Error::Settings(e.to_string()))?;
    s.validate().map_err(|e| {
        Error::Settings(match e {
            crate::config::SettingError::Value { key, why } => format!("`{key}`: {why}"),
            other => other.to_string(),
        })
    })?;
    Ok(s)
}

/// Sets one key of a `SETTINGS` map.
fn set(s: &mut RuleSettings, key: &str, v: &Dynamic) -> Result<(), Error> {
    match key {
        "enabled" => s.enabled = Some(flag(v, "enabled")?),
        "tiers" => s.tiers = Some(strings(v, "tiers", "[\"A\", \"B\"]")?),
        "needs" => s.needs = Some(strings(v, "needs", "[\"receivables\"]")?),
        "book_needs" => s.book_needs = Some(strings(v, "book_needs", "[\"visits\"]")?),
        "severity" => {
            let t = v
                .clone()
                .into_immutable_string()
                .map_err(|_| Error::Settings("`severity` must be a string".to_string()))?;
            s.severity = Some(t.to_string());
        }
        "for_evaluations" => s.for_evaluations = Some(count(v, "for_evaluations", "evaluations")?),
        "for" => s.set_old_for(count(v, "for", "evaluations")?),
        "repeat_interval_days" => {
            s.repeat_interval_days = Some(count(v, "repeat_interval_days", "days")?)
        }
        "info_repeat_interval_days" => {
            s.info_repeat_interval_days = Some(count(v, "info_repeat_interval_days", "days")?)
        }
        "repeat_days" => s.set_old_repeat_days(count(v, "repeat_days", "days")?),
        "notify_resolved" => s.notify_resolved = Some(flag(v, "notify_resolved")?),
        "keep_firing_for_days" => {
            s.keep_firing_for_days = Some(count(v, "keep_firing_for_days", "days")?)
        }
        "escalate_after_days" => {
            s.escalate_after_days = Some(count(v, "escalate_after_days", "days")?)
        }
        "close_after_days" => s.close_after_days = Some(count(v, "close_after_days", "days")?),
        "one_open_per_account" => s.one_open_per_account = Some(flag(v, "one_open_per_account")?),
        "recipients" => s.recipients = Some(strings(v, "recipients", "[\"pricing@example.com\"]")?),
        "extra_recipients" => {
            s.set_old_extra_recipients(strings(v, "extra_recipients", "[\"pricing@example.com\"]")?)
        }
        other => {
            return Err(Error::Settings(format!(
                "unknown setting `{other}`; the settings are {}",
                RuleSettings::KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

/// A list of strings, e.g. `tiers`.
fn strings(v: &Dynamic, key: &str, example: &str) -> Result<Vec<String>, Error> {
    let arr = v
        .clone()
        .try_cast::<rhai::Array>()
        .ok_or_else(|| Error::Settings(format!("`{key}` must be an array like {example}")))?;
    arr.into_iter()
        .map(|t| {
            t.into_immutable_string()
                .map(|t| t.to_string())
                .map_err(|_| Error::Settings(format!("`{key}` must hold strings")))
        })
        .collect()
}

/// A count of evaluations or days.
fn count(v: &Dynamic, key: &str, what: &str) -> Result<u32, Error> {
    let n = v
        .as_int()
        .map_err(|_| Error::Settings(format!("`{key}` must be a whole number of {what}")))?;
    u32::try_from(n).map_err(|_| {
        Error::Settings(if n < 0 {
            format!("`{key}` must be 0 or more")
        } else {
            format!("`{key}` is too large: at most {}", u32::MAX)
        })
    })
}

/// A switch.
fn flag(v: &Dynamic, key: &str) -> Result<bool, Error> {
    v.as_bool()
        .map_err(|_| Error::Settings(format!("`{key}` must be true or false")))
}

/// A tier's bit (A=1, B=2, C=4; anything else 0).
pub(super) fn tier_bit(t: &str) -> u8 {
    match t {
        "A" => 1,
        "B" => 2,
        "C" => 4,
        _ => 0,
    }
}

/// The rule's `const SETTINGS = #{...}`, read without running the script.
/// Errors carry the line of the declaration.
pub(super) fn read_settings(ast: &AST, source: &str) -> Result<RuleSettings, (usize, String)> {
    let line = source
        .lines()
        .position(|l| l.contains("SETTINGS"))
        .map_or(1, |i| i + 1);
    for (name, constant, value) in ast.iter_literal_variables(true, true) {
        if name != "SETTINGS" {
            continue;
        }
        if !constant {
            return Err((
                line,
                "declare the settings with `const SETTINGS = #{ ... };`, not `let`".into(),
            ));
        }
        let map = value.try_cast::<Map>().ok_or((
            line,
            "SETTINGS must be a map, e.g. #{ tiers: [\"A\", \"B\"] }".to_string(),
        ))?;
        return settings_from_map(&map).map_err(|e| (line, format!("SETTINGS: {e}")));
    }
    if source.lines().any(|l| {
        let t = l.trim_start();
        (t.starts_with("const SETTINGS") || t.starts_with("let SETTINGS")) && !t.starts_with("//")
    }) {
        return Err((
            line,
            "SETTINGS must be a literal map at the top level of the rule (only constants inside, no variables or calls)".into(),
        ));
    }
    Ok(RuleSettings::default())
}

/// `source` with its `const SETTINGS = ...;` statement replaced by spaces
/// (newlines kept, so positions in errors stay true); None when there is
/// none or the script mentions SETTINGS elsewhere.
pub(super) fn blank_settings(source: &str) -> Option<String> {
    if source.matches("SETTINGS").count() != 1 {
        return None;
    }
    let start = source.find("const SETTINGS")?;
    if !source[..start].ends_with('\n') && start != 0 {
        return None;
    }
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in source[start..].char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '`' | '\'' => quote = Some(c),
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            ';' if depth == 0 => {
                end = Some(start + i + 1);
                break;
            }
            _ => {}
        }
    }
    let end = end?;
    let blank: String = source[start..end]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    Some(format!("{}{blank}{}", &source[..start], &source[end..]))
}

/// What to write instead when a compile error points at a word of the
/// Rhai language used as a map key (`#{ for: 2 }`): such a key does not
/// parse, and Rhai says only "Expecting name of a property".
pub(super) fn keyword_key_hint(source: &str, pos: rhai::Position) -> Option<String> {
    let line = source.lines().nth(pos.line()?.checked_sub(1)?)?;
    let rest: String = line.chars().skip(pos.position()?.checked_sub(1)?).collect();
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if word.is_empty() || !rest[word.len()..].trim_start().starts_with(':') {
        return None;
    }
    if !is_keyword(&word) {
        return None;
    }
    Some(if word == "for" {
        "`for` is a word of the Rhai language and cannot be a map key as it is; in SETTINGS write `for_evaluations: 2` (or quote the key, `\"for\": 2`)".to_string()
    } else {
        format!(
            "`{word}` is a word of the Rhai language and cannot be a map key as it is; quote it, `\"{word}\": ...`"
        )
    })
}

/// Whether `word` is one of Rhai's keywords (reserved, or used by the
/// language), which cannot be written as a bare map key.
fn is_keyword(word: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "true",
        "false",
        "let",
        "const",
        "if",
        "else",
        "switch",
        "do",
        "while",
        "until",
        "loop",
        "for",
        "in",
        "continue",
        "break",
        "return",
        "throw",
        "try",
        "catch",
        "import",
        "export",
        "as",
        "global",
        "private",
        "fn",
        "this",
        "Fn",
        "call",
        "curry",
        "is_shared",
        "is_def_fn",
        "is_def_var",
        "print",
        "debug",
        "type_of",
        "eval",
        "var",
        "static",
        "shared",
        "with",
        "goto",
        "exit",
        "match",
        "case",
        "public",
        "protected",
        "new",
        "use",
        "module",
        "package",
        "super",
        "spawn",
        "thread",
        "go",
        "sync",
        "async",
        "await",
        "yield",
        "default",
        "void",
        "null",
        "nil",
    ];
    KEYWORDS.contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use crate::rules::RuleSet;

    #[test]
    fn settings_are_read_and_filter_tiers() {
        let src = "const SETTINGS = #{ tiers: [\"B\"], severity: \"critical\", for_evaluations: 2, repeat_days: 7, recipients: [\"x@example.com\"] };\nalert(#{ title: \"t\" });";
        let rs = RuleSet::from_sources(&[("s", src)]).unwrap();
        let s = rs.rules[0].settings();
        assert_eq!(s.tiers, Some(vec!["B".to_string()]));
        assert_eq!(s.severity.as_deref(), Some("critical"));
        assert_eq!(
            (s.for_evaluations, s.repeat_interval_days),
            (Some(2), Some(7))
        );
        assert_eq!(s.recipients, Some(vec!["x@example.com".to_string()]));
        // The only account is tier A: skipped, but counted as decided; no
        // script ran.
        let snap = crate::metrics::tests_support::snapshot_one();
        let out = rs.evaluate(&snap);
        assert!(out.findings.is_empty());
        assert_eq!((out.runs, out.scripts), (1, 0));
        // A rule for every tier runs its script.
        let all = RuleSet::from_sources(&[("s", "alert(#{ title: \"t\" });")]).unwrap();
        let out = all.evaluate(&snap);
        assert_eq!((out.runs, out.scripts, out.findings.len()), (1, 1, 1));
        let ex = rs.explain(&snap, "s", "KH1").unwrap();
        assert!(
            ex.skipped.as_deref().unwrap_or("").contains("tier A"),
            "{ex}"
        );

        let mut rs = RuleSet::from_sources(&[("s", src)]).unwrap();
        let mut o = RuleSettings::default();
        o.tiers = Some(vec!["A".into()]);
        let unknown = rs.apply_overrides(
            &[("s".to_string(), o.clone()), ("nope".to_string(), o)]
                .into_iter()
                .collect(),
        );
        assert_eq!(unknown, vec!["nope".to_string()]);
        let out = rs.evaluate(&snap);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].severity, Severity::Critical);
    }

    #[test]
    fn bad_settings_are_compile_errors_with_the_line() {
        for (src, want) in [
            (
                "// x\nconst SETTINGS = #{ tiers: [\"D\"] };",
                "\"D\" is not a tier",
            ),
            ("const SETTINGS = #{ fro: 2 };", "unknown setting `fro`"),
            (
                "let n = 2;\nconst SETTINGS = #{ for_evaluations: n };",
                "literal map",
            ),
            ("const SETTINGS = #{ \"for\": 0 };", "at least 1"),
            (
                "const SETTINGS = #{ tiers: [] };",
                "an empty list would leave the rule no account",
            ),
            (
                "const SETTINGS = #{ tiers: [\"A\", \"A\"] };",
                "\"A\" is listed twice",
            ),
            (
                "const SETTINGS = #{ repeat_interval_days: -1 };",
                "must be 0 or more",
            ),
            (
                "const SETTINGS = #{ repeat_interval_days: 5000000000 };",
                "too large: at most 4294967295",
            ),
            (
                "const SETTINGS = #{ close_after_days: -180 };",
                "`close_after_days` must be 0 or more",
            ),
            (
                "const SETTINGS = #{ close_after_days: 1.5 };",
                "`close_after_days` must be a whole number of days",
            ),
            (
                "const SETTINGS = #{ one_open_per_account: 1 };",
                "`one_open_per_account` must be true or false",
            ),
            (
                "const SETTINGS = #{ one_open_per_acount: true };",
                "unknown setting `one_open_per_acount`",
            ),
            (
                "const SETTINGS = #{ close_after_day: 180 };",
                "unknown setting `close_after_day`; the settings are enabled, tiers, needs, book_needs, severity, for_evaluations, repeat_interval_days, info_repeat_interval_days, notify_resolved, keep_firing_for_days, escalate_after_days, close_after_days, one_open_per_account, recipients",
            ),
        ] {
            let e = RuleSet::from_sources(&[("b", src)]).err().unwrap();
            assert!(e.message.contains(want), "{src}: {e}");
            assert_eq!(
                e.line,
                src.lines().position(|l| l.contains("SETTINGS")).unwrap() + 1
            );
        }
    }

    #[test]
    fn settings_statement_is_blanked_keeping_positions() {
        let src =
            "// x\nconst SETTINGS = #{ tiers: [\"A\"], recipients: [\"a;b@x.com\"] };\nlet y = 1;";
        let out = blank_settings(src).unwrap();
        assert_eq!(out.lines().count(), src.lines().count());
        assert!(!out.contains("SETTINGS"));
        assert!(out.ends_with("\nlet y = 1;"), "{out}");
        assert_eq!(out.chars().count(), src.chars().count());
        // Read elsewhere: left alone.
        assert!(blank_settings("const SETTINGS = #{};\nprint(SETTINGS);").is_none());
        // An error after the settings still points at the right line.
        let e = RuleSet::from_sources(&[(
            "p",
            "const SETTINGS = #{ tiers: [\"A\"] };\nlet x = (1 + ;",
        )])
        .err()
        .unwrap();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn needs_skip_accounts_without_the_data() {
        let rs = RuleSet::from_sources(&[(
            "n",
            "const SETTINGS = #{ needs: [\"receivables\"] };\nalert(#{ title: \"t\" });",
        )])
        .unwrap();
        assert_eq!(
            rs.rules[0].settings().needs,
            Some(vec!["receivables".to_string()])
        );
        let snap = crate::metrics::tests_support::snapshot_one();
        let out = rs.evaluate(&snap);
        assert!(out.findings.is_empty());
        assert_eq!(out.runs, 1);
        let ex = rs.explain(&snap, "n", "KH1").unwrap();
        assert!(ex.to_string().contains("needs receivables"), "{ex}");
        let e = RuleSet::from_sources(&[("b", "const SETTINGS = #{ needs: [\"money\"] };")])
            .err()
            .unwrap();
        assert!(e.message.contains("\"money\""), "{e}");
    }

    /// `book_needs` looks at the book, not at the account: a book without
    /// any visit skips the script for every account (and `explain` says
    /// so), while a book where another account has a visit runs it for an
    /// account with none (where `needs: ["visits"]` would skip it).
    #[test]
    fn book_needs_skip_every_account_only_when_the_book_lacks_the_data() {
        let rs = RuleSet::from_sources(&[(
            "b",
            "const SETTINGS = #{ book_needs: [\"visits\"] };\nalert(#{ title: \"t\" });",
        )])
        .unwrap();
        assert_eq!(
            rs.rules[0].settings().book_needs,
            Some(vec!["visits".to_string()])
        );
        assert_eq!(rs.rules[0].settings().needs, None);
        // KH1 has no visit, and no account of the book has one.
        let mut snap = crate::metrics::tests_support::snapshot_one();
        let out = rs.evaluate(&snap);
        assert!(out.findings.is_empty(), "{:?}", out.findings);
        assert_eq!(out.runs, 1);
        let ex = rs.explain(&snap, "b", "KH1").unwrap();
        assert!(
            ex.to_string()
                .contains("needs visits in the book (book_needs)"),
            "{ex}"
        );
        // Another account of the book has a visit: the script runs for KH1,
        // which still has none.
        let mut with_data = [0; 5];
        with_data[1] = 1;
        snap.portfolio = std::sync::Arc::new(crate::metrics::Portfolio {
            with_data,
            ..Default::default()
        });
        assert_eq!(snap.portfolio.data_bits(), 2);
        let out = rs.evaluate(&snap);
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        assert_eq!(&*out.findings[0].account.id, "KH1");
        let ex = rs.explain(&snap, "b", "KH1").unwrap();
        assert!(!ex.to_string().contains("book_needs"), "{ex}");
        // Checked like `needs`: an unknown kind is a compile error.
        let e = RuleSet::from_sources(&[("x", "const SETTINGS = #{ book_needs: [\"visit\"] };")])
            .err()
            .unwrap();
        assert!(e.message.contains("\"visit\""), "{e}");
    }

    /// `for` cannot be a bare map key in Rhai: the error says what to
    /// write; both spellings it names work.
    #[test]
    fn settings_with_the_keyword_for_say_what_to_write() {
        let e = crate::rules::RuleSet::from_sources(&[(
            "f",
            "const SETTINGS = #{ tiers: [\"A\"], for: 2 };\n",
        )])
        .err()
        .unwrap();
        assert_eq!((e.line, e.column), (1, 35), "{e}");
        assert!(
            e.message.contains("`for` is a word of the Rhai language")
                && e.message.contains("write `for_evaluations: 2`"),
            "{e}"
        );
        let e = crate::rules::RuleSet::from_sources(&[("k", "let m = #{ if: 1 };")])
            .err()
            .unwrap();
        assert!(e.message.contains("quote it, `\"if\": ...`"), "{e}");
        // Other errors get no such hint.
        let e = crate::rules::RuleSet::from_sources(&[("o", "let m = #{ a: };")])
            .err()
            .unwrap();
        assert!(!e.message.contains("Rhai language"), "{e}");
        for src in [
            "const SETTINGS = #{ for_evaluations: 2 };",
            "const SETTINGS = #{ \"for\": 2 };",
        ] {
            let rs = crate::rules::RuleSet::from_sources(&[("ok", src)]).unwrap();
            assert_eq!(rs.rules[0].settings().for_evaluations, Some(2), "{src}");
        }
    }
}
