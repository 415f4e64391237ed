//! CLI output: how the commands lay out text tables and common phrases.
//! Writes nothing itself; the commands print what it returns.

use std::process::ExitCode;

use unicode_width::UnicodeWidthStr as _;

/// Pads `s` with spaces to `width` terminal columns: East Asian wide
/// characters (Chinese, Japanese, Korean) count two columns, other letters
/// one, combining marks none. Longer text is left as it is.
pub fn pad(s: &str, width: usize) -> String {
    let mut out = s.to_string();
    for _ in s.width()..width {
        out.push(' ');
    }
    out
}

/// "is running (pid N)" or "is not running", after "kamwatch ".
pub fn running(pid: Option<u32>) -> String {
    pid.map_or("is not running".to_string(), |p| {
        format!("is running (pid {p})")
    })
}

/// Exit 0 when `ok`, else 1 (the job found something, or failed).
pub fn success_if(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::exit::FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_counts_two_columns() {
        assert_eq!(pad("华东医药", 10), "华东医药  ");
        assert_eq!(pad("ABC", 5), "ABC  ");
        assert_eq!(pad("ABCDEF", 3), "ABCDEF");
    }

    /// Before unicode-width every character of more than one byte counted
    /// two columns, so names in accented Latin or Cyrillic came out short.
    #[test]
    fn accented_and_cyrillic_letters_count_one_column() {
        assert_eq!(pad("Müller", 8), "Müller  ");
        assert_eq!(pad("Café", 6), "Café  ");
        assert_eq!(pad("Иван", 6), "Иван  ");
        // A combining accent takes no column of its own.
        assert_eq!(pad("e\u{301}", 3), "e\u{301}  ");
    }
}
