//! A rule set: the `.rhai` files of the rules folder, each compiled once
//! into a [`Rule`] with its settings read, every call checked against the
//! rule API (a misspelt function is a compile error with file, line and
//! column, not a failure for every account), and the config's
//! `rule_settings` and alert caps laid over them. A broken edit keeps the
//! last good version ([`RuleSet::merge_last_good`]). Reads the rules folder;
//! writes nothing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{AST, Engine, Position};

use super::api::{self, DEFAULT_MAX_ALERTS_PER_ACCOUNT, DEFAULT_MAX_ALERTS_PER_RULE};
use super::error::Error;
use super::rhai_internals::{Constant, constants, drop_folded_constants};
use super::sandbox::{engine, undefined_variable};
use super::settings::{
    RuleSettings, blank_settings, book_needs_mask, keyword_key_hint, needs_mask, read_settings,
    tier_bit, tier_mask,
};
use crate::model::Severity;

/// A compiled rule.
#[derive(Clone)]
pub struct Rule {
    pub name: Arc<str>,
    pub path: PathBuf,
    pub(crate) ast: AST,
    pub(super) settings: RuleSettings,
    /// The severity of an `alert()` that names none, from the settings.
    pub(super) severity: Option<Severity>,
    /// Tiers the rule runs for, as bits (0: disabled).
    pub(super) mask: u8,
    /// The data it needs, as bits (see `NEEDS`).
    pub(super) needs: u8,
    /// The data the book must have, as bits.
    pub(super) book_needs: u8,
    /// Whether its script mentions `main_skus` or `stock_cover` (anywhere,
    /// comments included: Rhai has no other way to reach them).
    reads_skus: bool,
    /// Its top-level `const`s, read before the leading ones are dropped
    /// from the AST (`declared`).
    constants: std::collections::BTreeMap<String, Constant>,
}

impl Rule {
    /// The rule's settings (script `SETTINGS`, then config overrides).
    pub fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    /// Replaces the settings (config overrides are applied through this).
    pub fn set_settings(&mut self, s: RuleSettings) {
        self.mask = tier_mask(&s);
        self.needs = needs_mask(&s);
        self.book_needs = book_needs_mask(&s);
        self.severity = s.severity.as_deref().and_then(Severity::parse);
        self.settings = s;
    }

    /// Whether the rule runs (`enabled`, default true).
    pub fn enabled(&self) -> bool {
        self.settings.enabled != Some(false)
    }

    /// The script's top-level `const NAME = ...;` of that name.
    pub fn constant(&self, name: &str) -> Option<&Constant> {
        self.constants.get(name)
    }
}

/// A rule file that does not compile, located for a person to fix.
#[derive(Debug, Clone)]
pub struct CompileError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending source line and a caret under the column.
    pub excerpt: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}\n{}",
            self.path.display(),
            self.line,
            self.column,
            self.message,
            self.excerpt
        )
    }
}

/// The compiled rules and the engine that runs them.
pub struct RuleSet {
    pub(crate) engine: Engine,
    pub rules: Vec<Rule>,
    pub caps: AlertCaps,
    /// The locale rules pick their texts in, and how `${money(x)}` in a
    /// title is written (`mail.locale`, `mail.currency`).
    pub style: crate::format::Style,
    /// The seasons `season()`, `seasons_within()` and `days_until_peak()`
    /// resolve (the config's `seasons:`).
    pub seasons: Arc<crate::model::seasons::Seasons>,
}

/// The most alerts a rule may raise, for one account in one run and in one
/// evaluation (`alerts.max_per_account`, `alerts.max_per_rule`). Past them
/// the rule has failed for the accounts concerned: their alerts are left as
/// they were, and the admin is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertCaps {
    pub per_account: usize,
    pub per_rule: usize,
}

impl Default for AlertCaps {
    fn default() -> Self {
        AlertCaps {
            per_account: DEFAULT_MAX_ALERTS_PER_ACCOUNT,
            per_rule: DEFAULT_MAX_ALERTS_PER_RULE,
        }
    }
}

/// The names of the rules in `dir` (each `*.rhai` file's stem), sorted,
/// without compiling them; none when the folder cannot be read.
pub fn rule_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
                .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl RuleSet {
    /// Compiles every `*.rhai` in `dir` (sorted by name). Files that do not
    /// compile are returned as errors; the rest load.
    pub fn load_dir(dir: &Path) -> Result<(RuleSet, Vec<CompileError>), Error> {
        let entries = std::fs::read_dir(dir).map_err(|error| Error::Folder {
            folder: dir.to_path_buf(),
            error,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
            .collect();
        paths.sort();
        let engine = engine();
        let known = api::Known::of(&engine);
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            let source = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(CompileError {
                        path: path.clone(),
                        line: 0,
                        column: 0,
                        message: format!("cannot read the file: {e}"),
                        excerpt: String::new(),
                    });
                    continue;
                }
            };
            match compile(&engine, &path, &source) {
                Ok(rule) => {
                    let unknown = unknown_calls(&known, &rule, &source);
                    if unknown.is_empty() {
                        rules.push(rule);
                    } else {
                        errors.extend(unknown);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        Ok((
            RuleSet {
                engine,
                rules,
                caps: AlertCaps::default(),
                style: Default::default(),
                seasons: Arc::new(crate::model::seasons::Seasons::shipped()),
            },
            errors,
        ))
    }

    /// A set with no rules.
    pub fn empty() -> RuleSet {
        RuleSet {
            engine: engine(),
            rules: Vec::new(),
            caps: AlertCaps::default(),
            style: Default::default(),
            seasons: Arc::new(crate::model::seasons::Seasons::shipped()),
        }
    }

    /// Keeps, for every file in `broken`, the version of it in `old` that
    /// compiled: a bad edit must not switch a working rule off.
    pub fn merge_last_good(mut self, old: RuleSet, broken: &[&CompileError]) -> RuleSet {
        for rule in old.rules {
            if broken.iter().any(|b| b.path == rule.path)
                && !self.rules.iter().any(|r| r.path == rule.path)
            {
                self.rules.push(rule);
            }
        }
        self.rules.sort_by(|a, b| a.path.cmp(&b.path));
        self
    }

    /// Compiles one rule from source (tests and `check` use this too).
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<RuleSet, CompileError> {
        let engine = engine();
        let known = api::Known::of(&engine);
        let mut rules = Vec::new();
        for (name, src) in sources {
            let rule = compile(&engine, Path::new(&format!("{name}.rhai")), src)?;
            if let Some(e) = unknown_calls(&known, &rule, src).into_iter().next() {
                return Err(e);
            }
            rules.push(rule);
        }
        Ok(RuleSet {
            engine,
            rules,
            caps: AlertCaps::default(),
            style: Default::default(),
            seasons: Arc::new(crate::model::seasons::Seasons::shipped()),
        })
    }

    /// Loads the rules folder of the config and applies its `rule_settings`.
    /// Overrides naming no loaded rule are returned as messages.
    pub fn load_config(
        cfg: &crate::config::Loaded,
    ) -> Result<(RuleSet, Vec<CompileError>, Vec<String>), Error> {
        let (mut set, errors) = RuleSet::load_dir(&cfg.rules())?;
        set.caps = AlertCaps {
            per_account: cfg.cfg.alerts.max_per_account,
            per_rule: cfg.cfg.alerts.max_per_rule,
        };
        set.style = cfg.style();
        // Every season was read when the config was loaded.
        set.seasons = Arc::new(cfg.cfg.seasons.clone());
        let unknown = set.apply_overrides(&cfg.cfg.rule_settings);
        // A broken file's name is not unknown: its last good version may run.
        let unknown = unknown
            .into_iter()
            .filter(|n| {
                !errors.iter().any(|e| {
                    e.path
                        .file_stem()
                        .is_some_and(|s| s.to_string_lossy() == *n)
                })
            })
            .map(|n| {
                format!(
                    "rule_settings.{n}: there is no rule {n}.rhai in {}",
                    cfg.rules().display()
                )
            })
            .collect();
        Ok((set, errors, unknown))
    }

    /// Applies config overrides by rule name; returns the names that match no rule.
    pub fn apply_overrides(
        &mut self,
        overrides: &std::collections::BTreeMap<String, RuleSettings>,
    ) -> Vec<String> {
        let mut unknown = Vec::new();
        for (name, o) in overrides {
            match self.rules.iter_mut().find(|r| &*r.name == name) {
                Some(r) => {
                    let mut s = r.settings.clone();
                    s.overlay(o);
                    r.set_settings(s);
                }
                None => unknown.push(name.clone()),
            }
        }
        unknown
    }

    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| &*r.name == name)
    }

    /// The tiers whose accounts some enabled rule may read the main SKUs
    /// or stock cover of, or needs stock for (`needs: ["stock"]`): the
    /// backtest derives main SKUs for those tiers only.
    pub fn tiers_reading_skus(&self) -> Vec<&'static str> {
        let mask = self
            .rules
            .iter()
            .filter(|r| r.reads_skus || r.needs & 16 != 0)
            .fold(0, |m, r| m | r.mask);
        ["A", "B", "C"]
            .into_iter()
            .filter(|t| mask & tier_bit(t) != 0)
            .collect()
    }
}

fn compile(engine: &Engine, path: &Path, source: &str) -> Result<Rule, CompileError> {
    let name: Arc<str> = Arc::from(
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    match engine.compile(source) {
        Ok(_) if let Some(u) = undefined_variable(source) => Err(CompileError {
            path: path.to_path_buf(),
            line: u.at.line().unwrap_or(0),
            column: u.at.position().unwrap_or(0),
            message: if u.in_function {
                let name = &u.name;
                format!(
                    "`{name}` is read inside a function, which sees only its parameters: give it as one (`fn name({name}, ...)`, called as `name({name}, ...)`; a figures function as `Fn(\"name\").curry({name})`)"
                )
            } else {
                let name = &u.name;
                format!(
                    "`{name}` is read but never defined: declare it before this line (`const {name} = ...;` or `let {name} = ...;`), or fix the name; a rule is given only account, portfolio and as_of"
                )
            },
            excerpt: excerpt(source, u.at),
        }),
        Ok(ast) => {
            let constants = constants(&ast);
            let settings = read_settings(&ast, source).map_err(|(line, message)| CompileError {
                path: path.to_path_buf(),
                line,
                column: 1,
                message,
                excerpt: excerpt(source, Position::new(line.max(1) as u16, 1)),
            })?;
            // The settings were read; running them again for every account
            // would build the map each time. Blank the statement (keeping
            // every position) unless the script reads SETTINGS itself.
            let ast = match blank_settings(source) {
                Some(stripped) => engine.compile(&stripped).unwrap_or(ast),
                None => ast,
            };
            let ast = drop_folded_constants(ast);
            let mut rule = Rule {
                name,
                path: path.to_path_buf(),
                reads_skus: source.contains("main_skus") || source.contains("stock_cover"),
                constants,
                ast,
                severity: None,
                mask: 0,
                needs: 0,
                book_needs: 0,
                settings: RuleSettings::default(),
            };
            rule.set_settings(settings);
            Ok(rule)
        }
        Err(e) => {
            let pos = e.position();
            let mut message = e.err_type().to_string();
            if let Some(hint) = keyword_key_hint(source, pos) {
                message = format!("{message}: {hint}");
            }
            Err(CompileError {
                path: path.to_path_buf(),
                line: pos.line().unwrap_or(0),
                column: pos.position().unwrap_or(0),
                message,
                excerpt: excerpt(source, pos),
            })
        }
    }
}

/// For `check` with `mail.locale: en`: each `alert()` whose title, action
/// or figure labels are Chinese strings only, as "file:line:column: ...".
pub fn chinese_only_texts(rule: &Rule) -> Vec<String> {
    api::chinese_only_texts(&rule.ast)
        .into_iter()
        .map(|(pos, what)| {
            format!(
                "{}:{}:{}: this alert()'s texts ({what}) are in Chinese only, and English readers (mail.locale: en) get them as they are; give them per locale, #{{ \"zh-CN\": \"...\", en: \"...\" }}",
                rule.path.display(),
                pos.line().unwrap_or(0),
                pos.position().unwrap_or(0)
            )
        })
        .collect()
}

/// Every call in `rule` that no function answers, as compile errors with
/// the line, column and a caret: a misspelt function would otherwise fail
/// for every account at run time. Texts per locale with a key that is no
/// locale are reported the same way.
fn unknown_calls(known: &api::Known, rule: &Rule, source: &str) -> Vec<CompileError> {
    known
        .unknown_calls(&rule.ast)
        .into_iter()
        .map(|u| (u.pos, u.to_string()))
        .chain(api::bad_text_maps(&rule.ast))
        .map(|(pos, message)| CompileError {
            path: rule.path.clone(),
            line: pos.line().unwrap_or(0),
            column: pos.position().unwrap_or(0),
            message,
            excerpt: excerpt(source, pos),
        })
        .collect()
}

/// The source line at `pos` with a caret under the column.
fn excerpt(source: &str, pos: Position) -> String {
    let Some(line) = pos.line() else {
        return String::new();
    };
    let text = source.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let col = pos.position().unwrap_or(1).max(1);
    let gutter = format!("{line} | ");
    let pad: String = text
        .chars()
        .take(col - 1)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("{gutter}{text}\n{}{pad}^", " ".repeat(gutter.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_error_points_at_the_line() {
        let err = RuleSet::from_sources(&[("bad", "let x = 1;\nlet y = (2 + ;\n")])
            .err()
            .unwrap();
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with("bad.rhai:2:"), "{err}");
        assert!(err.excerpt.contains("let y = (2 + ;"), "{}", err.excerpt);
        assert!(err.excerpt.contains('^'));
    }

    /// A deleted `const` or a misspelt variable is a compile error with its
    /// line, not "Variable not found" for every account at run time; what
    /// a run provides, what the script defines and function parameters
    /// are defined.
    #[test]
    fn a_variable_never_defined_is_a_compile_error_with_its_line() {
        let src = "let days = account.days_since_visit;\nif days > CADENCE_A { return; }\n";
        let err = RuleSet::from_sources(&[("lapsed", src)]).err().unwrap();
        assert_eq!(err.line, 2, "{err}");
        assert!(
            err.to_string()
                .contains("`CADENCE_A` is read but never defined"),
            "{err}"
        );
        let ok = "const CADENCE_A = 14;\nfn twice(x) { x * 2 }\nlet d = account.days_since_visit;\nif d > twice(CADENCE_A) && as_of != \"\" && portfolio.accounts > 0 { return; }\nfor i in 0..2 { let j = i; }\n";
        assert!(RuleSet::from_sources(&[("ok", ok)]).is_ok());
    }

    /// A function sees only its parameters: one that reads what the run
    /// gives the body (a figures function reading `account` without being
    /// given it) would fail each time it is called, so it is a compile
    /// error at the read, saying how to give it; given as a parameter, or
    /// shadowed by the function's own, it loads.
    #[test]
    fn a_function_reading_what_only_the_body_is_given_is_a_compile_error() {
        let figs = "fn figs() {\n    [[\"Revenue\", account.revenue(90)]]\n}\nif account.revenue(90) > 0.0 {\n    alert(#{ title: \"x\", figures: Fn(\"figs\") });\n}\n";
        let err = RuleSet::from_sources(&[("figs", figs)]).err().expect(figs);
        assert_eq!((err.line, err.column), (2, 18), "{err}");
        assert!(
            err.message.contains("`account` is read inside a function")
                && err.message.contains("Fn(\"name\").curry(account)"),
            "{err}"
        );
        assert!(
            err.excerpt.contains("account.revenue(90)]]"),
            "{}",
            err.excerpt
        );
        // The first line and a closure count too; so do portfolio and as_of.
        for (src, name, line) in [
            (
                "fn f() { portfolio.accounts }\nlet x = f();",
                "portfolio",
                1,
            ),
            (
                "let x = 1;\nfn f(a) { a + as_of }\nlet y = f(x);",
                "as_of",
                2,
            ),
            (
                "let x = [1].map(|v| v + account.revenue(30));",
                "account",
                1,
            ),
        ] {
            let err = RuleSet::from_sources(&[("r", src)]).err().expect(src);
            assert_eq!(err.line, line, "{err}");
            assert!(
                err.message
                    .contains(&format!("`{name}` is read inside a function")),
                "{err}"
            );
        }
        // Given, or the function's own: loads.
        for ok in [
            "fn figs(account) { [[\"Revenue\", account.revenue(90)]] }\nalert(#{ title: \"x\", figures: Fn(\"figs\").curry(account) });",
            "fn f() { let portfolio = 1; portfolio }\nlet x = f() + portfolio.accounts;",
            // Called as a method, a function reads its object as `this`.
            "fn rev() { this.revenue(90) }\nif account.rev() > 0.0 { alert(#{ title: \"x\" }); }",
        ] {
            assert!(RuleSet::from_sources(&[("ok", ok)]).is_ok(), "{ok}");
        }
        // A name never defined anywhere is still told as such.
        let err = RuleSet::from_sources(&[("t", "fn f() { acount }\nlet x = f();")])
            .err()
            .unwrap();
        assert!(
            err.message.contains("`acount` is read but never defined"),
            "{err}"
        );
    }

    #[test]
    fn the_tiers_reading_skus_come_from_the_rules_that_can() {
        let tiers =
            |sources: &[(&str, &str)]| RuleSet::from_sources(sources).unwrap().tiers_reading_skus();
        let stock = r#"const SETTINGS = #{ tiers: ["A"], needs: ["stock"] };
            let c = account.stock_cover;"#;
        let plain = r#"const SETTINGS = #{ tiers: ["B"] }; let r = account.revenue(90);"#;
        assert_eq!(tiers(&[("s", stock), ("p", plain)]), ["A"]);
        // Stock needed without reading it, and main SKUs read by any tier.
        let needs = r#"const SETTINGS = #{ tiers: ["C"], needs: ["stock"] };"#;
        assert_eq!(tiers(&[("n", needs), ("p", plain)]), ["C"]);
        let any = "let m = account.main_skus;";
        assert_eq!(tiers(&[("m", any)]), ["A", "B", "C"]);
        assert!(tiers(&[("p", plain)]).is_empty());
    }

    #[test]
    fn check_finds_texts_for_unknown_locales_before_they_run() {
        for src in [
            "alert(#{ title: #{ zh: \"x\", en: \"y\" } });",
            "let t = \"y\";\nif account.tier == \"Z\" { alert(#{ title: #{ \"zh-CN\": t, \"en-GB\": t } }); }",
        ] {
            let e = RuleSet::from_sources(&[("l", src)]).err().expect(src);
            assert!(e.message.contains("not a locale"), "{e}");
            assert_eq!(e.line, src.lines().count(), "{e}");
        }
        // Other maps are not texts.
        RuleSet::from_sources(&[(
            "ok",
            "let m = #{ zh: 1, fr: 2 };\nalert(#{ title: tr(#{ en: \"a\" }) });",
        )])
        .unwrap();
    }

    #[test]
    fn a_broken_edit_keeps_the_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.rhai");
        std::fs::write(
            &f,
            "const SETTINGS = #{ severity: \"critical\" };\nalert(#{ title: \"v1\" });\n",
        )
        .unwrap();
        let (good, errors) = RuleSet::load_dir(dir.path()).unwrap();
        assert!(errors.is_empty());
        std::fs::write(&f, "alert(#{ title: \"v2\" );\n").unwrap();
        let (fresh, errors) = RuleSet::load_dir(dir.path()).unwrap();
        assert_eq!(errors.len(), 1);
        // The error a person reads (and the admin is mailed): file:line:col,
        // the source line and a caret.
        let text = errors[0].to_string();
        assert!(text.starts_with(&format!("{}:1:", f.display())), "{text}");
        assert!(text.contains("1 | alert(#{ title: \"v2\" );"), "{text}");
        assert!(text.contains('^'), "{text}");
        let broken: Vec<&CompileError> = errors.iter().collect();
        let merged = fresh.merge_last_good(good, &broken);
        let out = merged.evaluate(&crate::metrics::tests_support::snapshot_one());
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].title, "v1");
        assert_eq!(
            out.findings[0].severity,
            Severity::Critical,
            "settings kept too"
        );
        // Fixed again: the new version runs.
        std::fs::write(&f, "alert(#{ title: \"v3\" });\n").unwrap();
        let (fixed, errors) = RuleSet::load_dir(dir.path()).unwrap();
        let merged = fixed.merge_last_good(merged, &errors.iter().collect::<Vec<_>>());
        let out = merged.evaluate(&crate::metrics::tests_support::snapshot_one());
        assert_eq!(out.findings[0].title, "v3");
    }
}
