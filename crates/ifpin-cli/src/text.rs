//! Text for a terminal: whatever a user can set (a process name, an interface or namespace
//! name, a path) is shown with its control and other invisible characters escaped, so it can
//! neither start a new row nor send escape sequences to the terminal.

use std::fmt::{self, Write as _};

/// Writes its text with `\n`, `\t`, `\r`, `\\`, `\e` and `\xNN`/`\u{NNNN}` escapes for every
/// control, format (bidirectional overrides, zero-width) and separator character; printable
/// text, non-ASCII letters included, is written as is.
pub struct Escaped<'a>(pub &'a str);

/// Whether `c` is written as an escape.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(c,
            '\u{00ad}'                      // soft hyphen
            | '\u{034f}'                    // combining grapheme joiner
            | '\u{061c}'                    // Arabic letter mark
            | '\u{115f}' | '\u{1160}'       // Hangul fillers
            | '\u{180e}'                    // Mongolian vowel separator
            | '\u{2000}'..='\u{200f}'       // spaces of other widths, zero-width, LRM/RLM
            | '\u{2028}'..='\u{202f}'       // line/paragraph separators, bidi embeddings
            | '\u{205f}'..='\u{206f}'       // invisible operators, bidi isolates
            | '\u{3000}' | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'       // variation selectors
            | '\u{feff}'                    // byte order mark
            | '\u{fff0}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'     // tags
        )
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                '\\' => f.write_str("\\\\")?,
                '\u{1b}' => f.write_str("\\e")?,
                c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{{{:04x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

impl Escaped<'_> {
    /// How many characters the escaped text takes.
    pub fn width(&self) -> usize {
        display_width(self)
    }
}

/// How many characters `value`'s `Display` writes, counted without allocating.
pub fn display_width(value: impl fmt::Display) -> usize {
    struct Count(usize);
    impl fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 += s.chars().count();
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = write!(count, "{value}");
    count.0
}

/// Pads escaped text to `width` characters, left-aligned.
pub struct Padded<'a>(pub &'a str, pub usize);

impl fmt::Display for Padded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = Escaped(self.0);
        let width = escaped.width();
        write!(f, "{escaped}")?;
        for _ in width..self.1 {
            f.write_char(' ')?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        let cases = [
            ("sshd", "sshd"),
            ("x\nudp   fake", "x\\nudp   fake"),
            ("\u{1b}[31mred", "\\e[31mred"),
            ("a\tb\rc\\d", "a\\tb\\rc\\\\d"),
            ("\u{7f}\u{0}\u{85}", "\\x7f\\x00\\x85"),
            ("evil\u{202e}txt", "evil\\u{202e}txt"),
            ("zero\u{200b}width", "zero\\u{200b}width"),
            ("été", "été"),
            ("名前", "名前"),
        ];
        for (raw, shown) in cases {
            assert_eq!(Escaped(raw).to_string(), shown, "{raw:?}");
            assert_eq!(Escaped(raw).width(), shown.chars().count());
            assert!(!Escaped(raw).to_string().chars().any(|c| c.is_control()));
        }
        assert_eq!(Padded("a\nb", 6).to_string(), "a\\nb  ");
        assert_eq!(Padded("long-name", 3).to_string(), "long-name");
    }
}
