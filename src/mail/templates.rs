//! Templates: the minijinja environment of one locale, from
//! `<templates dir>/<locale>/<name>`, any file missing there falling back to
//! the copy built into the binary, so a missing folder still works. Names
//! ending in `.html` are auto-escaped by minijinja: data can never become
//! markup. Reads the template files; touches nothing else.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The template files, each in both shipped languages.
const NAMES: [&str; 6] = [
    "subject.txt",
    "single.txt",
    "single.html",
    "digest_subject.txt",
    "digest.txt",
    "digest.html",
];

fn builtin(locale: &str, name: &str) -> Option<&'static str> {
    macro_rules! t {
        ($l:literal, $n:literal) => {
            include_str!(concat!("../../config/templates/", $l, "/", $n))
        };
    }
    Some(match (locale, name) {
        ("zh-CN", "subject.txt") => t!("zh-CN", "subject.txt"),
        ("zh-CN", "single.txt") => t!("zh-CN", "single.txt"),
        ("zh-CN", "single.html") => t!("zh-CN", "single.html"),
        ("zh-CN", "digest_subject.txt") => t!("zh-CN", "digest_subject.txt"),
        ("zh-CN", "digest.txt") => t!("zh-CN", "digest.txt"),
        ("zh-CN", "digest.html") => t!("zh-CN", "digest.html"),
        ("en", "subject.txt") => t!("en", "subject.txt"),
        ("en", "single.txt") => t!("en", "single.txt"),
        ("en", "single.html") => t!("en", "single.html"),
        ("en", "digest_subject.txt") => t!("en", "digest_subject.txt"),
        ("en", "digest.txt") => t!("en", "digest.txt"),
        ("en", "digest.html") => t!("en", "digest.html"),
        _ => return None,
    })
}

/// The templates of `locale`: `dir/<locale>/*`, falling back to the
/// built-in copies. A template that does not parse is an error naming its
/// file and line.
pub fn environment(dir: Option<&Path>, locale: &str) -> Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    for name in NAMES {
        let file: Option<PathBuf> = dir.map(|d| d.join(locale).join(name));
        let src = match file.as_deref().filter(|f| f.exists()) {
            Some(f) => std::fs::read_to_string(f)
                .with_context(|| format!("reading the mail template {}", f.display()))?,
            None => builtin(locale, name)
                .with_context(|| {
                    format!("mail.locale {locale:?} has no built-in templates; use zh-CN or en")
                })?
                .to_string(),
        };
        let shown = file.filter(|f| f.exists()).map_or_else(
            || format!("built-in {locale}/{name}"),
            |f| f.display().to_string(),
        );
        env.add_template_owned(name, src).map_err(|e| {
            anyhow::anyhow!(
                "mail template {shown}: {e}; fix the template or delete it to use the built-in one"
            )
        })?;
    }
    Ok(env)
}
