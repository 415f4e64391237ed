//! Which visits' roles a rule's list of titles names. ERP and CRM exports
//! write the visitor's role (职务) as free text — "区域销售总监", "大区总监",
//! "Sales Director", " director ", "ＤＩＲＥＣＴＯＲ", "总 监" — so a role
//! counts for a title it contains, not only one it equals. Both are read
//! the same way first ([`fold`]):
//!
//! - Unicode compatibility forms folded (NFKC): full-width ＤＩＲＥＣＴＯＲ
//!   is DIRECTOR, the ideographic space a space;
//! - without case (and the Turkish İ read as i);
//! - the invisible zero-width characters dropped (U+200B-U+200D, U+2060,
//!   U+FEFF, the soft hyphen U+00AD), so a role reads as it shows:
//!   "Direc\u{200b}tor" is "director";
//! - the spaces at the ends dropped, every run of spaces inside read as
//!   one, and a space between two CJK characters dropped ("总 监" is
//!   总监). Spaces between Latin words stay: they are what tells words
//!   apart ("general manager" does not name "generalmanager").
//!
//! A CJK title is found anywhere in the role ("区域销售总监" is a 总监).
//! A title that starts (ends) with a Latin letter or digit must start
//! (end) a word of the role, an English plural "s" allowed after it: "gm"
//! names "GM", "Regional GM" and "GM/销售", not "GmbH"; "vp" names "VP
//! Sales" and "VPs", not "MVP"; "director" names "Sales Director" and
//! "Directors", not "Directorate". Traditional and Simplified Chinese are
//! not folded into each other: a list that should count both writes both
//! (总监, 總監).
//!
//! A list of words to leave out (`except`) takes back the roles that
//! contain one of them, matched the same way, whatever else they say
//! ("总监助理", "Assistant to the Director" are not directors). Empty
//! titles and words are ignored: an empty title would name every role.
//! Pure; used by every visit reading that takes roles.

use std::borrow::Cow;

use unicode_normalization::{IsNormalized, UnicodeNormalization as _, is_nfkc_quick};

/// A rule's titles and the words that take a role back out, each folded
/// as [`fold`] does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Titles {
    any: Vec<String>,
    except: Vec<String>,
}

/// Characters that show nothing and are dropped: zero-width space,
/// non-joiner and joiner, word joiner, byte-order mark, soft hyphen.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// A CJK letter (汉字, kana, hangul): words of these scripts are written
/// without spaces, so a space between two of them is a typo.
fn cjk(c: char) -> bool {
    u32::from(c) >= 0x2E80 && c.is_alphanumeric()
}

/// A letter or digit of a script that separates words with spaces (Latin
/// and the like): a Latin title must start and end a word of them.
fn word(c: char) -> bool {
    c.is_alphanumeric() && !cjk(c)
}

/// `s` as titles and roles are compared (see the module): NFKC, without
/// case, invisible characters dropped, its ends trimmed, every run of
/// whitespace inside one space and none between two CJK characters
/// (borrowed when already so, as most roles are).
fn fold(s: &str) -> Cow<'_, str> {
    let t = s.trim_matches(|c: char| c.is_whitespace() || invisible(c));
    if plain(t) {
        return Cow::Borrowed(t);
    }
    let mut out = String::with_capacity(t.len());
    let mut prev: Option<char> = None;
    let mut space = false;
    let lower = t.nfkc().flat_map(|c| {
        // İ lower-cases to i and a combining dot, which "director" lacks.
        let c = if c == 'İ' { 'I' } else { c };
        c.to_lowercase()
    });
    for c in lower.filter(|c| !invisible(*c)) {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && prev.is_some_and(|p| !(cjk(p) && cjk(c))) {
            out.push(' ');
        }
        space = false;
        prev = Some(c);
        out.push(c);
    }
    Cow::Owned(out)
}

/// Whether `t` (trimmed) is already as [`fold`] leaves it.
fn plain(t: &str) -> bool {
    let mut prev: Option<char> = None;
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        let ok = if c.is_whitespace() {
            c == ' '
                && chars
                    .peek()
                    .is_some_and(|&n| !(n.is_whitespace() || (prev.is_some_and(cjk) && cjk(n))))
        } else {
            !changes_case(c) && !invisible(c)
        };
        if !ok {
            return false;
        }
        prev = Some(c);
    }
    t.is_ascii() || is_nfkc_quick(t.chars()) == IsNormalized::Yes
}

/// Whether lower-casing changes `c` (not for 汉字, digits or a-z).
fn changes_case(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_uppercase()
    } else {
        !c.is_lowercase() && !c.to_lowercase().eq(std::iter::once(c))
    }
}

fn folded<S: AsRef<str>>(words: &[S]) -> Vec<String> {
    words
        .iter()
        .map(|w| fold(w.as_ref()).into_owned())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Whether the folded `role` contains the folded `title`, a Latin title
/// as whole words (see the module): the character before it is no
/// [`word`] character, nor the one after it or after a plural "s".
fn names(role: &str, title: &str) -> bool {
    let starts_word = title.chars().next().is_some_and(word);
    let ends_word = title.chars().next_back().is_some_and(word);
    let mut from = 0;
    while let Some(at) = role[from..].find(title).map(|i| from + i) {
        let bounded = |rest: &str| rest.chars().next().is_none_or(|c| !word(c));
        let rest = &role[at + title.len()..];
        let starts = !starts_word || role[..at].chars().next_back().is_none_or(|c| !word(c));
        let ends = !ends_word || bounded(rest) || rest.strip_prefix('s').is_some_and(bounded);
        if starts && ends {
            return true;
        }
        from = at + role[at..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

impl Titles {
    /// The titles `any`, less the roles containing one of `except`.
    pub fn new<S: AsRef<str>, E: AsRef<str>>(any: &[S], except: &[E]) -> Titles {
        Titles {
            any: folded(any),
            except: folded(except),
        }
    }

    /// Whether the exported `role` is one of the titles: it contains one of
    /// them and none of the words taken out.
    pub fn matches(&self, role: &str) -> bool {
        let r = fold(role);
        self.any.iter().any(|t| names(&r, t)) && !self.except.iter().any(|x| names(&r, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: [&str; 0] = [];

    #[test]
    fn a_role_counts_for_a_title_it_contains() {
        let senior = Titles::new(&["销售总监", "总监", "总经理"], &NONE);
        for yes in [
            "总监",
            "区域销售总监",
            "大区总监",
            "副总经理",
            "销售总监 ",
            " 总经理",
        ] {
            assert!(senior.matches(yes), "{yes:?}");
        }
        for no in ["业务员", "销售经理", "经理", "总", ""] {
            assert!(!senior.matches(no), "{no:?}");
        }
    }

    #[test]
    fn english_titles_match_without_case_or_extra_spaces() {
        let senior = Titles::new(&[" Director", "general manager"], &NONE);
        for yes in [
            "Sales Director",
            " director ",
            "DIRECTOR",
            "Regional  Sales\tDirector",
            "General   Manager",
            "Deputy General Manager",
        ] {
            assert!(senior.matches(yes), "{yes:?}");
        }
        for no in ["Sales Rep", "Manager", "Direct sales", "General"] {
            assert!(!senior.matches(no), "{no:?}");
        }
    }

    #[test]
    fn a_word_taken_out_wins_over_any_title() {
        let senior = Titles::new(
            &["总监", "总经理", "director"],
            &["助理", "秘书", "Assistant"],
        );
        for no in [
            "总监助理",
            "总经理助理",
            "总经理秘书",
            "Assistant to the Sales Director",
            "Director's ASSISTANT",
        ] {
            assert!(!senior.matches(no), "{no:?}");
        }
        assert!(senior.matches("区域销售总监"));
        assert!(senior.matches("Sales Director"));
    }

    #[test]
    fn empty_titles_and_words_are_ignored() {
        // An empty title would name every role; an empty word would take
        // every role back out.
        let t = Titles::new(&["", "  ", "总监"], &["", " "]);
        assert!(t.matches("销售总监"));
        assert!(!t.matches("业务员"));
        assert!(!Titles::new(&["", " "], &NONE).matches("业务员"));
        assert!(!Titles::default().matches("总监"));
    }

    #[test]
    fn full_width_and_compatibility_forms_are_folded() {
        let senior = Titles::new(&["director", "总监", "gm"], &["assistant"]);
        for yes in [
            "ＤＩＲＥＣＴＯＲ",
            "Ｓａｌｅｓ　Ｄｉｒｅｃｔｏｒ",
            "销售总监　",
            "ＧＭ",
            "区域ＧＭ",
        ] {
            assert!(senior.matches(yes), "{yes:?}");
        }
        assert!(!senior.matches("ＡＳＳＩＳＴＡＮＴ to the Director"));
        // A full-width title in the list is folded too.
        assert!(Titles::new(&["ＶＰ"], &NONE).matches("vp sales"));
        // The Turkish dotted capital I reads as i.
        assert!(senior.matches("DİRECTOR"));
        // Traditional Chinese is not folded into Simplified: the list
        // names both forms when both should count.
        assert!(!senior.matches("總監"));
        assert!(Titles::new(&["总监", "總監"], &NONE).matches("區域銷售總監"));
    }

    #[test]
    fn invisible_characters_and_spaces_inside_cjk_words_are_dropped() {
        let senior = Titles::new(
            &["总监", "总经理", "director", "general manager"],
            &["助理"],
        );
        for yes in [
            "总 监",
            "销售 总监",
            "总\u{3000}经理",
            "总\u{200b}监",
            "Direc\u{200b}tor",
            "Sales \u{200c}Director",
            "\u{feff}director",
            "General\u{200d} Manager",
            "区域 Sales Director",
            "General  \u{200b} Manager",
        ] {
            assert!(senior.matches(yes), "{yes:?}");
        }
        // Taken out the same way.
        assert!(!senior.matches("总监 助 理"));
        // Spaces between Latin words stay: they tell the words apart.
        assert!(!senior.matches("generalmanager"));
        assert!(!Titles::new(&["vp"], &NONE).matches("Dev Pool"));
    }

    #[test]
    fn latin_titles_match_whole_words() {
        let senior = Titles::new(&["gm", "vp", "ceo", "director", "vp销售"], &["assistant"]);
        for yes in [
            "GM",
            "Regional GM",
            "GM/销售",
            "区域GM",
            "VP, Sales",
            "VPs",
            "Co-CEO",
            "CEO & Founder",
            "Sales Director",
            "Directors",
            "director's office",
            "VP销售",
        ] {
            assert!(senior.matches(yes), "{yes:?}");
        }
        for no in [
            "GmbH sales rep",
            "MVP rep",
            "Directorate clerk",
            "ceorep",
            "gms2",
            "Assistants' pool director",
        ] {
            assert!(!senior.matches(no), "{no:?}");
        }
        // A CJK title is found anywhere in the role.
        assert!(Titles::new(&["总监"], &NONE).matches("区域销售总监A组"));
    }
}
