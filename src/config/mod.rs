//! Configuration: the YAML file, its defaults and its validation, and the
//! one clock.
//!
//! Owns the `Config` types and the rule that relative paths are resolved
//! against `root`, which is itself relative to the config file. Touches only
//! the config file it is asked to read (and, to check them, the folders and
//! the SMTP password file it names); every other stage receives a loaded,
//! validated `Config` and never reads YAML itself. Values written as text
//! (schedule times and zone, quiet windows) are parsed into types once, at
//! load. Defaults live here and are mirrored, commented, in
//! `config/kamwatch.yaml`. What it reads is bounded before it is parsed: a
//! regular file of at most 1 MiB whose YAML aliases expand to at most
//! 100,000 values. Imports only `model` and `format` of kamwatch.
//!
//! - `load`: reading the file, parsing, `Loaded` (paths), `findings`, the
//!   SMTP password file;
//! - `schema`: the serde structs of the sections and their defaults;
//! - `mail`: the `mail:` section, quiet windows, mail addresses;
//! - `datasets`: the `datasets:` section and the datasets kamwatch knows;
//! - `settings`: per-rule settings (`RuleSettings`);
//! - `validate`: the checks, one per section;
//! - `clock`: `now()` and `Zone`, the one place that reads the clock;
//! - `error`: `ConfigError`, `Problem`, `SettingError`.

mod clock;
mod datasets;
mod error;
mod load;
mod mail;
mod schema;
mod settings;
#[cfg(test)]
pub mod testing;
mod validate;

pub use clock::{Zone, now};
pub use datasets::{
    Dataset, DatasetConfig, Datasets, DateOrder, DuplicateKeys, OnError, TextEncoding, glob_match,
};
pub use error::{ConfigError, Problem, SettingError};
pub use load::{
    Finding, Loaded, MAX_CONFIG_BYTES, MAX_CONFIG_VALUES, findings, line_of, load, parse,
    read_password_file, yaml_problem,
};
pub use mail::{
    DigestConfig, MailConfig, Quiet, QuietWindow, SmtpConfig, SmtpSecurity, sendable_address,
};
pub use schema::{
    AlertsConfig, Config, DEFAULT_MAX_ALERTS_PER_ACCOUNT, DEFAULT_MAX_ALERTS_PER_RULE,
    DaemonConfig, IngestConfig, ReviewConfig, ScheduleConfig, SeasonConfig, TierBasis, TierConfig,
    WatchConfig, resolve_seasons, season_map, some_season_map,
};
pub use settings::RuleSettings;
