//! Encodings: telling a text file's encoding from its first bytes (UTF-8,
//! with or without BOM, or GBK/GB18030; refused rather than guessed),
//! whether it is text at all, its delimiter, and a UTF-8 row pasted into a
//! GBK file. Touches nothing but the bytes it is given.

use std::io::Read;

/// How many bytes of the start of a file are looked at to tell its kind.
pub(super) const HEAD_BYTES: usize = 64 * 1024;

/// Text encodings we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Gb18030,
}

/// Why a text file's encoding cannot be told from its first bytes: the
/// file is refused with this reason rather than read by a guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// Not UTF-8 (at `byte`, on `line`), and too little other text to call
    /// it GBK.
    #[error(
        "the file's encoding cannot be told: it is not UTF-8 (byte 0x{byte:02X} at line {line} is invalid) and holds too little non-ASCII text to call it GBK. Set `encoding` for this dataset in the config (utf-8, gbk), or export the file again as CSV UTF-8"
    )]
    Untold { byte: u8, line: u64 },
    /// Invalid as UTF-8 and as GBK.
    #[error(
        "the file is neither UTF-8 nor GBK/GB18030 text: as UTF-8, byte 0x{byte:02X} at line {line} is invalid; as GBK, byte 0x{gbk_byte:02X} at line {gbk_line} is. Set `encoding` for this dataset in the config if you know it, or export the file again as CSV UTF-8"
    )]
    Neither {
        byte: u8,
        line: u64,
        gbk_byte: u8,
        gbk_line: u64,
    },
}

/// Chooses the encoding of a text file from its first bytes, on strong
/// evidence only: a BOM or valid UTF-8 is UTF-8; text that is mostly valid
/// UTF-8 (ten or more valid multi-byte characters per invalid byte
/// sequence) is UTF-8 with errors, which the reader then reports at their
/// line; otherwise text that decodes cleanly as GB18030 (a superset of GBK)
/// with some Chinese in it is GB18030. Anything else is refused with the
/// reason: a guess would store every name as mojibake.
pub fn sniff(head: &[u8]) -> std::result::Result<Encoding, EncodingError> {
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Ok(Encoding::Utf8);
    }
    // Judge whole lines: a sample cut by its size may end inside a character.
    let sample = if head.len() >= HEAD_BYTES {
        memchr::memrchr(b'\n', head).map_or(head, |i| &head[..=i])
    } else {
        head
    };
    let mut multibyte = 0usize;
    let mut bad = 0usize;
    let mut first_bad = None;
    let mut at = 0usize;
    for chunk in sample.utf8_chunks() {
        multibyte += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
        at += chunk.valid().len();
        if !chunk.invalid().is_empty() {
            if head.len() >= HEAD_BYTES && at + chunk.invalid().len() == sample.len() {
                break; // a character cut by the end of the sample
            }
            bad += 1;
            first_bad.get_or_insert(at);
            at += chunk.invalid().len();
        }
    }
    let Some(first_bad) = first_bad else {
        return Ok(Encoding::Utf8);
    };
    if multibyte >= 10 * bad {
        return Ok(Encoding::Utf8);
    }
    let (gbk_bad, gbk_chars) = gb18030_check(sample);
    match gbk_bad {
        None if gbk_chars >= 4 => Ok(Encoding::Gb18030),
        None => Err(EncodingError::Untold {
            byte: sample[first_bad],
            line: line_of(sample, first_bad),
        }),
        Some(g) => Err(EncodingError::Neither {
            byte: sample[first_bad],
            line: line_of(sample, first_bad),
            gbk_byte: sample[g.min(sample.len() - 1)],
            gbk_line: line_of(sample, g),
        }),
    }
}

/// The 1-based line of byte `at` of `text`.
fn line_of(text: &[u8], at: usize) -> u64 {
    memchr::memchr_iter(b'\n', &text[..at.min(text.len())]).count() as u64 + 1
}

/// Decodes `text` as GB18030 without replacing anything: the offset of the
/// first byte that is not GB18030 (if any), and how many non-ASCII
/// characters were read.
fn gb18030_check(text: &[u8]) -> (Option<usize>, usize) {
    let mut dec = encoding_rs::GB18030.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(4096);
    let mut read = 0usize;
    let mut chars = 0usize;
    loop {
        out.clear();
        let (res, n) = dec.decode_to_string_without_replacement(&text[read..], &mut out, true);
        chars += out.chars().filter(|c| !c.is_ascii()).count();
        read += n;
        match res {
            encoding_rs::DecoderResult::InputEmpty => return (None, chars),
            encoding_rs::DecoderResult::OutputFull => {}
            encoding_rs::DecoderResult::Malformed(len, back) => {
                let at = read.saturating_sub(len as usize + back as usize);
                return (Some(at), chars);
            }
        }
    }
}

/// Whether the start of a file is not text in `enc`: NUL bytes, or more
/// than 1% control or undecodable characters. Returns the byte offset of
/// the first such character.
pub fn binary_at(head: &[u8], enc: Encoding) -> Option<usize> {
    if let Some(i) = head.iter().position(|b| *b == 0) {
        return Some(i);
    }
    let coder = match enc {
        Encoding::Utf8 => encoding_rs::UTF_8,
        Encoding::Gb18030 => encoding_rs::GB18030,
    };
    let (text, _) = coder.decode_without_bom_handling(head);
    let mut bad = 0usize;
    let mut first = None;
    let mut total = 0usize;
    let mut at = 0usize;
    for c in text.chars() {
        total += 1;
        let odd = c == '\u{FFFD}' || (c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c'));
        if odd {
            bad += 1;
            first.get_or_insert(at);
        }
        at += c.len_utf8();
    }
    // The last character may be cut by the sample's end.
    if bad > 1 && bad * 100 > total {
        first
    } else {
        None
    }
}

/// Picks the delimiter that the header line uses most: `,`, `;` or tab.
pub fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or(head);
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| line.iter().filter(|b| *b == d).count())
        .unwrap_or(b',')
}

pub(super) fn decoder(enc: Encoding, inner: impl Read + Send + 'static) -> Box<dyn Read + Send> {
    match enc {
        // BOM-sniffing decoder: strips a UTF-8 BOM, passes the rest through.
        Encoding::Utf8 => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding_rs::UTF_8))
                .bom_override(true)
                .build(inner),
        ),
        Encoding::Gb18030 => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding_rs::GB18030))
                .build(inner),
        ),
    }
}

/// Whether a field decoded as GB18030 was really UTF-8: its bytes are valid
/// UTF-8 holding at least two CJK characters (a single pair of GBK bytes can
/// happen to be valid UTF-8; a run of them practically never is).
pub(super) fn looks_utf8_in_gbk(field: &str) -> bool {
    if field.is_ascii() {
        return false;
    }
    let (bytes, _, _) = encoding_rs::GB18030.encode(field);
    std::str::from_utf8(&bytes).is_ok_and(|t| {
        t.chars()
            .filter(|c| ('\u{4E00}'..='\u{9FFF}').contains(c))
            .nth(1)
            .is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_read_as_gbk_is_told_apart_from_gbk() {
        let gbk_of_utf8 = |t: &str| encoding_rs::GB18030.decode(t.as_bytes()).0.into_owned();
        assert!(looks_utf8_in_gbk(&gbk_of_utf8("华润万家")));
        assert!(looks_utf8_in_gbk(&gbk_of_utf8("KH1001 华润万家")));
        for real in ["华润万家", "人人乐", "纸巾10包", "A", "é", "SO26090001"] {
            assert!(!looks_utf8_in_gbk(real), "{real}");
        }
    }

    #[test]
    fn sniffs_encodings() {
        assert_eq!(sniff(b"\xEF\xBB\xBFa,b"), Ok(Encoding::Utf8));
        assert_eq!(sniff("客户编号,x".as_bytes()), Ok(Encoding::Utf8));
        // 客户编号,客户名称 in GBK
        let gbk = encoding_rs::GBK
            .encode("客户编号,客户名称\n")
            .0
            .into_owned();
        assert_eq!(sniff(&gbk), Ok(Encoding::Gb18030));
        // Too little to call it GBK: refused, not guessed.
        let e = sniff(b"\xbf\xcd\xbb\xa7,x").unwrap_err().to_string();
        assert!(e.contains("cannot be told"), "{e}");
        // UTF-8 cut in the middle of a character by the sample's end
        let mut long = "客户".repeat(HEAD_BYTES / 6 + 1).into_bytes();
        long.truncate(HEAD_BYTES);
        assert_eq!(sniff(&long), Ok(Encoding::Utf8));
        // One stray Latin-1 byte in UTF-8 Chinese text: UTF-8, not GBK.
        let mut text = "订单编号,客户名称\n".repeat(50).into_bytes();
        text.extend_from_slice(b"SO1,caf\xE9\n");
        assert_eq!(sniff(&text), Ok(Encoding::Utf8));
        // Neither: named with its bytes and lines.
        let mut both = gbk.clone();
        both.extend_from_slice(b"x,\xff\xff\n");
        let e = sniff(&both).unwrap_err().to_string();
        assert!(e.contains("neither UTF-8 nor GBK"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn sniffs_delimiters() {
        assert_eq!(sniff_delimiter(b"a;b;c\n1,2;3"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc"), b'\t');
        assert_eq!(sniff_delimiter(b"a,b,c"), b',');
    }

    #[test]
    fn tells_binary_from_text() {
        assert_eq!(binary_at(b"a,b\n1,\x002", Encoding::Utf8), Some(6));
        assert_eq!(
            binary_at("客户编号,金额\r\n".as_bytes(), Encoding::Utf8),
            None
        );
        assert_eq!(
            binary_at(b"\xbf\xcd\xbb\xa7,x\r\n", Encoding::Gb18030),
            None
        );
        let noise: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251 + 1) as u8).collect();
        assert!(binary_at(&noise, Encoding::Utf8).is_some());
    }
}
