//! Loading the config: reading the file (a regular file of at most 1 MiB,
//! UTF-8, whose YAML aliases expand to at most 100,000 values, all checked
//! before it is parsed), parsing and validating it, resolving its paths
//! against `root`, and the checks that look at the disk: folders that must
//! not be inside the inbox, the SMTP password file, the rules folder
//! (`findings`). Touches only the config file, the password file and the
//! folders it names, and those only to look.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::{ConfigError, Problem, invalid};
use super::schema::Config;
use super::validate::{check_log, settle_rule_settings, validate};

/// A loaded config with every path made absolute.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: PathBuf,
    pub cfg: Config,
}

impl Loaded {
    /// "Today": the date in `schedule.timezone` now. A command computes it
    /// once when it starts and passes it down; the daemon asks again for
    /// each evaluation and each archived file.
    pub fn today(&self) -> chrono::NaiveDate {
        self.cfg.schedule.zone.today()
    }
    pub fn inbox(&self) -> PathBuf {
        self.resolve(&self.cfg.inbox)
    }
    pub fn archive(&self) -> PathBuf {
        self.resolve(&self.cfg.archive)
    }
    pub fn rejected(&self) -> PathBuf {
        self.resolve(&self.cfg.rejected)
    }
    pub fn database(&self) -> PathBuf {
        self.resolve(&self.cfg.database)
    }
    pub fn rules(&self) -> PathBuf {
        self.resolve(&self.cfg.rules)
    }
    pub fn mail_dir(&self) -> PathBuf {
        self.resolve(&self.cfg.mail.dir)
    }
    /// How figures are written: `mail.locale` and `mail.currency`.
    pub fn style(&self) -> crate::format::Style {
        crate::format::Style::new(
            crate::format::Locale::parse(&self.cfg.mail.locale).unwrap_or_default(),
            &self.cfg.mail.currency,
        )
    }
    /// The folder of user-edited mail templates.
    pub fn templates_dir(&self) -> PathBuf {
        match &self.cfg.mail.templates {
            Some(p) => self.resolve(p),
            None => self
                .file
                .parent()
                .unwrap_or(Path::new("."))
                .join("templates"),
        }
    }
    /// A path from the config (e.g. mail.smtp.ca_file), resolved like the others.
    pub fn path(&self, p: &Path) -> PathBuf {
        self.resolve(p)
    }

    fn root(&self) -> PathBuf {
        let dir = self.file.parent().unwrap_or(Path::new("."));
        dir.join(&self.cfg.root)
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            normalize(&self.root().join(p))
        }
    }
}

/// Drops `.` and folds `dir/..` so paths in messages read well.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Reads and validates the config at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let err = |problem: Problem| ConfigError {
        path: path.to_path_buf(),
        problem,
    };
    let text = read_bounded(path).map_err(err)?;
    let cfg = parse(&text).map_err(err)?;
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let loaded = Loaded { file, cfg };
    check_folders(&loaded).map_err(err)?;
    Ok(loaded)
}

/// Every file in the inbox is taken as an export: a folder kamwatch writes
/// (archive, rejected, mail, the database's) inside it would feed kamwatch
/// its own output, a rejected file's reason rejected again without end.
fn check_folders(cfg: &Loaded) -> Result<(), Problem> {
    let inbox = cfg.inbox();
    let real = |p: &Path| normalize(&std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
    let database_dir = cfg
        .database()
        .parent()
        .map_or_else(|| cfg.database(), Path::to_path_buf);
    for (key, dir) in [
        ("archive", cfg.archive()),
        ("rejected", cfg.rejected()),
        ("mail.dir", cfg.mail_dir()),
        ("database", database_dir),
    ] {
        if dir.starts_with(&inbox) || real(&dir).starts_with(real(&inbox)) {
            invalid!(
                "`{key}` ({}) is the inbox ({}) or inside it: kamwatch would take what it writes there as new exports. Point `{key}` outside the inbox",
                dir.display(),
                inbox.display()
            );
        }
    }
    Ok(())
}

/// The largest config file read: the shipped one is about 10 KiB.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The most values (scalars, sequences, mappings) a config may hold once
/// its YAML aliases are expanded; the shipped one holds a few hundred.
pub const MAX_CONFIG_VALUES: usize = 100_000;

/// The file's text, refused if larger than [`MAX_CONFIG_BYTES`] (read with a
/// limit, so a FIFO or a growing file cannot make it larger) or not UTF-8.
fn read_bounded(path: &Path) -> Result<String, Problem> {
    use std::io::Read as _;
    // Not a FIFO or a device: opening one would wait for a writer.
    let meta = std::fs::metadata(path).map_err(Problem::Unreadable)?;
    if !meta.is_file() {
        return Err(Problem::NotAFile);
    }
    let file = std::fs::File::open(path).map_err(Problem::Unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Problem::Unreadable)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Problem::TooLarge {
            limit_kib: MAX_CONFIG_BYTES / 1024,
        });
    }
    String::from_utf8(bytes).map_err(|e| Problem::NotUtf8(e.utf8_error().valid_up_to()))
}

/// Counts the values a YAML document holds, aliases expanded, storing
/// none: [`check_expansion`] stops it past [`MAX_CONFIG_VALUES`].
struct Count<'a>(&'a std::cell::Cell<usize>);

impl Count<'_> {
    fn one<E: serde::de::Error>(&self) -> Result<(), E> {
        let n = self.0.get() + 1;
        self.0.set(n);
        if n > MAX_CONFIG_VALUES {
            Err(E::custom(TOO_MANY))
        } else {
            Ok(())
        }
    }
}

const TOO_MANY: &str = "too many values";

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.one()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.one()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.one()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.one()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.one()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.one()
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.one()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, a: A) -> Result<(), A::Error> {
        use serde::de::VariantAccess as _;
        self.one()?;
        let ((), v) = a.variant_seed(Count(self.0))?;
        v.newtype_variant_seed(Count(self.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        self.one()?;
        while a.next_element_seed(Count(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        self.one()?;
        while a.next_key_seed(Count(self.0))?.is_some() {
            a.next_value_seed(Count(self.0))?;
        }
        Ok(())
    }
}

/// Walks the YAML as the deserializer will, aliases expanded, counting
/// values and storing none: refuses text that expands past
/// [`MAX_CONFIG_VALUES`] ("billion laughs") before anything is built from it.
fn check_expansion(text: &str) -> Result<(), Problem> {
    let n = std::cell::Cell::new(0);
    match Count(&n).deserialize(serde_yaml::Deserializer::from_str(text)) {
        Err(_) if n.get() > MAX_CONFIG_VALUES => Err(Problem::TooManyValues {
            limit: MAX_CONFIG_VALUES,
        }),
        // Any other fault is reported, with its line, by the real parse.
        _ => Ok(()),
    }
}

/// Parses and validates config text. Errors name the key and its line.
pub fn parse(text: &str) -> Result<Config, Problem> {
    check_expansion(text)?;
    let mut cfg: Config =
        serde_yaml::from_str(text).map_err(|e| Problem::Yaml(yaml_problem(&e)))?;
    settle_rule_settings(&mut cfg)?;
    validate(&mut cfg)?;
    check_log(&cfg.log, line_of(text, "log"))?;
    Ok(cfg)
}

/// A YAML parse error as the config reports it: the parser's message with
/// its line, and for an unknown key what to do. Also for the other YAML
/// files that share the config's blocks (rule test files).
pub fn yaml_problem(e: &serde_yaml::Error) -> String {
    let mut msg = e.to_string();
    // serde names the Rust type a section is read into ("expected struct
    // TierConfig"): the reader needs to know it is a block of keys.
    if let Some(at) = msg.find("expected struct ") {
        let name = at + "expected struct ".len();
        let end = msg[name..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(msg.len(), |e| name + e);
        msg.replace_range(at..end, "expected a block of `key: value` lines");
    }
    if msg.contains("unknown field") {
        format!("{msg}. Fix the spelling or remove the key.")
    } else {
        msg
    }
}

/// The line (1-based) of a top-level `key:` in the YAML text.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// What `run` would refuse later or change on its own, though the config
/// parses: `check` reports each, and the daemon logs each as a warning when
/// it starts. `refused` ones make `check` exit 1.
#[derive(Debug, Clone)]
pub struct Finding {
    pub refused: bool,
    pub message: String,
}

/// Why no folder can be at `dir`: it is a file, or the nearest existing
/// folder above it is a file (None: it is a folder, or can be made one).
fn folder_problem(dir: &Path) -> Option<String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => return None,
            Ok(_) if at == dir => return Some("it is a file, not a folder".into()),
            Ok(_) => return Some(format!("{} is a file, not a folder", at.display())),
            Err(_) => at = at.parent()?,
        }
    }
}

/// The [`Finding`]s for a loaded config: one validation for `check` and
/// `run`.
pub fn findings(cfg: &Loaded) -> Vec<Finding> {
    let mut out: Vec<Finding> = cfg
        .cfg
        .notes
        .iter()
        .map(|n| Finding {
            refused: false,
            message: n.clone(),
        })
        .collect();
    let inbox = cfg.inbox();
    if !inbox.is_dir() {
        out.push(Finding {
            refused: false,
            message: format!(
                "inbox {} does not exist; `run` creates it. Check the path if exports are dropped elsewhere",
                inbox.display()
            ),
        });
    }
    if cfg.cfg.mail.smtp.is_none()
        && let Some(problem) = folder_problem(&cfg.mail_dir())
    {
        out.push(Finding {
            refused: true,
            message: format!(
                "mail.dir {}: {problem}, so no warning can be written there; point mail.dir at a folder kamwatch may create and write, or configure mail.smtp",
                cfg.mail_dir().display()
            ),
        });
    }
    if let Some(f) = cfg
        .cfg
        .mail
        .smtp
        .as_ref()
        .and_then(|s| s.password_file.as_ref())
        && let Err(e) = read_password_file(&cfg.path(f))
    {
        out.push(Finding {
            refused: true,
            message: format!("{e:#}; no mail can be sent until then"),
        });
    }
    for (a, b) in cfg.cfg.seasons.same_dates() {
        out.push(Finding {
            refused: false,
            message: format!(
                "seasons {a} and {b} fall on the same days every year: a rule checking each open season (stock_cover) mails each of its alerts twice; delete one, or give them their own dates"
            ),
        });
    }
    let rules = cfg.rules();
    let has_rules = std::fs::read_dir(&rules).is_ok_and(|rd| {
        rd.filter_map(|e| e.ok())
            .any(|e| e.path().extension().is_some_and(|x| x == "rhai"))
    });
    if rules.is_dir() && !has_rules {
        out.push(Finding {
            refused: true,
            message: format!(
                "no rules in {}: nothing will ever fire; copy the shipped rules/ there or set `rules:`",
                rules.display()
            ),
        });
    }
    out
}

/// Reads the password from a file that only its owner may read.
pub fn read_password_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "mail.smtp.password_file {}: cannot read it; create it with the SMTP password on its first line",
            path.display()
        )
    })?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "mail.smtp.password_file {} can be read by group or others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading mail.smtp.password_file {}", path.display()))?;
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        bail!(
            "mail.smtp.password_file {} is empty; put the SMTP password on its first line",
            path.display()
        );
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dataset;
    use chrono::NaiveTime;

    #[test]
    fn shipped_config_parses() {
        let text = include_str!("../../config/kamwatch.yaml");
        let cfg = parse(text).unwrap();
        assert_eq!(
            cfg.datasets.route("销售明细_2026.csv"),
            Some(Dataset::Orders)
        );
        assert_eq!(
            cfg.datasets.route("客户主数据.csv"),
            Some(Dataset::Accounts)
        );
        assert_eq!(cfg.datasets.route("notes.txt"), None);
    }

    #[test]
    fn unknown_key_named_with_line() {
        let text = include_str!("../../config/kamwatch.yaml").replace("\ninbox:", "\ninbxo:");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("inbxo"), "{e}");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn retention_shorter_than_a_repeat_is_refused() {
        let text = format!(
            "{}\nrule_settings:\n  margin_slip:\n    repeat_interval_days: 30\n",
            include_str!("../../config/kamwatch.yaml")
        );
        assert!(parse(&text).is_ok());
        let text = text.replace("history_retention_days: 400", "history_retention_days: 20");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("history_retention_days is 20"), "{e}");
        assert!(e.contains("at least 30"), "{e}");
    }

    #[test]
    fn bad_quiet_window_and_address_are_refused() {
        let base = include_str!("../../config/kamwatch.yaml");
        let e = parse(&base.replace(
            "  quiet: []",
            "  quiet:\n    - weekdays: [saturday, sunday2]",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("mail.quiet[0]") && e.contains("sunday2"), "{e}");
        let e = parse(&base.replace(
            "  quiet: []",
            "  quiet:\n    - from: 2027-02-13\n      to: 2027-02-05",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("after"), "{e}");
        let e = parse(&base.replace("  # admin: it@example.com", "  admin: not an address"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mail.admin"), "{e}");
    }

    #[test]
    fn currency_is_an_iso_code() {
        let base = include_str!("../../config/kamwatch.yaml");
        assert_eq!(parse(base).unwrap().mail.currency, "CNY");
        let usd = parse(&base.replace("  currency: CNY", "  currency: USD")).unwrap();
        assert_eq!(usd.mail.currency, "USD");
        for bad in ["¥", "rmb", "CNYX", "\"\""] {
            let e = parse(&base.replace("  currency: CNY", &format!("  currency: {bad}")))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("mail.currency") && e.contains("CNY, USD"),
                "{bad}: {e}"
            );
        }
    }

    /// Schedule times and zone and quiet windows are read once, at load,
    /// into their types; a bad one is refused with its key, as before.
    #[test]
    fn schedule_and_quiet_windows_are_typed_at_load() {
        let base = include_str!("../../config/kamwatch.yaml");
        let cfg = parse(base).unwrap();
        assert_eq!(cfg.schedule.zone.to_string(), "Asia/Shanghai");
        assert_eq!(cfg.mail.zone, cfg.schedule.zone);
        let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        assert_eq!(cfg.schedule.times, [t("07:30")]);
        let text = base
            .replace(
                "times: [\"07:30\"]",
                "times: [\" 18:05\", \"07:30\", \"18:05\"]",
            )
            .replace(
                "  quiet: []",
                "  quiet:\n    - name: weekend\n      weekdays: [sat, sun]",
            );
        let cfg = parse(&text).unwrap();
        assert_eq!(cfg.schedule.times, [t("07:30"), t("18:05")]);
        assert_eq!(cfg.mail.quiet.len(), 1);
        assert_eq!(cfg.mail.quiet[0].name, "weekend");
        let sat = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        assert!(cfg.mail.quiet[0].covers(sat));
        let e = parse(&base.replace("times: [\"07:30\"]", "times: [\"7.30\"]"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "schedule.times: \"7.30\" is not a time of day; write it as HH:MM, e.g. \"07:30\""
        );
        let e = parse(&base.replace("timezone: Asia/Shanghai", "timezone: Asia/Shanghia"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "schedule.timezone: \"Asia/Shanghia\" is not a time zone; use an IANA name such as Asia/Shanghai, or `local`"
        );
    }

    /// What cannot be read as a config is refused with the file named and
    /// what to do, before anything is parsed: the same sentences as before
    /// the errors had types.
    #[test]
    fn unreadable_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let message = |p: &Path| load(p).unwrap_err().to_string();
        let missing = dir.path().join("missing.yaml");
        assert_eq!(
            message(&missing),
            format!(
                "config {}: cannot read it: No such file or directory (os error 2); pass another file with --config PATH",
                missing.display()
            )
        );
        assert_eq!(
            message(dir.path()),
            format!(
                "config {}: it is not a regular file; pass the config file with --config PATH",
                dir.path().display()
            )
        );
        let latin1 = dir.path().join("latin1.yaml");
        std::fs::write(&latin1, b"inbox: caf\xe9\n").unwrap();
        assert_eq!(
            message(&latin1),
            format!(
                "config {}: it is not UTF-8 text (invalid byte at offset 10); save it as UTF-8",
                latin1.display()
            )
        );
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).unwrap();
        assert_eq!(
            message(&big),
            format!(
                "config {}: it is larger than 1024 KiB, which no kamwatch config needs (the shipped one is about 10 KiB); is it the right file?",
                big.display()
            )
        );
        let e = load(&big).unwrap_err();
        assert!(matches!(e.problem, Problem::TooLarge { limit_kib: 1024 }));
    }
}
