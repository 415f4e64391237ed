//! Which visits' roles a rule's list of titles names. ERP and CRM exports
//! write the visitor's role (职务) as free text — "区域销售总监", "大区总监",
//! "Sales Director", " director " — so a role counts for a title it
//! contains, not only one it equals: compared without case, with the
//! spaces at its ends dropped and every run of spaces inside read as one
//! ("区域销售总监" is a 总监, "Regional Sales  Director" a "sales director").
//! A list of words to leave out (`except`) takes back the roles that
//! contain one of them whatever else they say ("总监助理", "Assistant to
//! the Director" are not directors). Empty titles and words are ignored: an
//! empty title would name every role. Pure; used by every visit reading
//! that takes roles.

use std::borrow::Cow;

/// A rule's titles and the words that take a role back out, each folded
/// as [`fold`] does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Titles {
    any: Vec<String>,
    except: Vec<String>,
}

/// `s` without case, its ends trimmed and every run of whitespace inside
/// one space (borrowed when already so, as most roles are).
fn fold(s: &str) -> Cow<'_, str> {
    let t = s.trim();
    let plain = !t.chars().any(changes_case)
        && !t
            .char_indices()
            .any(|(i, c)| c.is_whitespace() && (c != ' ' || t[i + 1..].starts_with(' ')));
    if plain {
        return Cow::Borrowed(t);
    }
    Cow::Owned(
        t.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
    )
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
        self.any.iter().any(|t| r.contains(t.as_str()))
            && !self.except.iter().any(|x| r.contains(x.as_str()))
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
}
