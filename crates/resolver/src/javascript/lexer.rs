//! The tokenizer behind JavaScript redirect detection: just enough of the
//! language to know where strings, template literals, comments and regular
//! expressions start and end, so that their contents never look like code,
//! and to decode string literals (`\/`, `\x2F`, `\u002F`, surrogate pairs).

#[derive(Debug, Clone, PartialEq)]
pub enum Tok<'a> {
    Ident(&'a str),
    Punct(u8),
    /// A string literal, decoded; `None` for a template with `${…}`.
    Str(Option<String>),
    Arrow,
    /// A number or a regular expression literal (a `/` after it divides).
    Value,
    /// `==`, `!=`, `<=`, `+=`…: never part of a pattern, but they separate
    /// tokens (a `/` after one starts a regular expression).
    Other,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_ident_part(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// Where a `/` starts a regular expression rather than a division.
fn regex_allowed(prev: Option<&Tok<'_>>) -> bool {
    match prev {
        None | Some(Tok::Arrow) | Some(Tok::Other) => true,
        Some(Tok::Punct(p)) => !matches!(p, b')' | b']' | b'}'),
        Some(Tok::Ident(w)) => matches!(
            *w,
            "return"
                | "typeof"
                | "case"
                | "do"
                | "else"
                | "in"
                | "of"
                | "new"
                | "delete"
                | "void"
                | "throw"
                | "instanceof"
                | "yield"
                | "await"
        ),
        Some(Tok::Str(_) | Tok::Value) => false,
    }
}

pub fn tokenize(src: &str) -> Vec<Tok<'_>> {
    let b = src.as_bytes();
    let mut out: Vec<Tok<'_>> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            i = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p);
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = find(b, i + 2, b"*/").map_or(b.len(), |p| p + 2);
        } else if c == b'<' && b[i..].starts_with(b"<!--") {
            // HTML-like comments are line comments in inline scripts.
            i = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p);
        } else if c == b'"' || c == b'\'' {
            let (s, next) = string_literal(src, i + 1, c);
            out.push(Tok::Str(Some(s)));
            i = next;
        } else if c == b'`' {
            let (s, next) = template_literal(src, i + 1);
            out.push(Tok::Str(s));
            i = next;
        } else if c == b'/' && regex_allowed(out.last()) {
            i = skip_regex(b, i + 1);
            out.push(Tok::Value);
        } else if is_ident_start(c) {
            let start = i;
            while i < b.len() && is_ident_part(b[i]) {
                i += 1;
            }
            // Non-ASCII bytes are ident parts, so `start..i` ends on a char
            // boundary (the byte after is ASCII or the end).
            out.push(Tok::Ident(&src[start..i]));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            out.push(Tok::Value);
        } else if c == b'=' && b.get(i + 1) == Some(&b'>') {
            out.push(Tok::Arrow);
            i += 2;
        } else if c == b'=' && b.get(i + 1) == Some(&b'=') {
            while i < b.len() && b[i] == b'=' {
                i += 1;
            }
            out.push(Tok::Other);
        } else if matches!(
            c,
            b'!' | b'<' | b'>' | b'+' | b'-' | b'*' | b'%' | b'&' | b'|' | b'^'
        ) && b.get(i + 1) == Some(&b'=')
        {
            i += 2;
            while i < b.len() && b[i] == b'=' {
                i += 1;
            }
            out.push(Tok::Other);
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn skip_regex(b: &[u8], mut i: usize) -> usize {
    let mut in_class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'/' if !in_class => {
                i += 1;
                while i < b.len() && b[i].is_ascii_alphabetic() {
                    i += 1;
                }
                return i;
            }
            b'\n' => return i,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Reads a quoted literal starting after the opening quote; returns the
/// decoded value and the index after the closing quote.
fn string_literal(src: &str, start: usize, quote: u8) -> (String, usize) {
    let b = src.as_bytes();
    let mut i = start;
    while i < b.len() && b[i] != quote && b[i] != b'\n' {
        if b[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    let end = i.min(b.len());
    (unescape(&src[start..end]), (end + 1).min(b.len()))
}

fn template_literal(src: &str, start: usize) -> (Option<String>, usize) {
    let b = src.as_bytes();
    let mut i = start;
    let mut dynamic = false;
    while i < b.len() && b[i] != b'`' {
        if b[i] == b'\\' {
            i += 1;
        } else if b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
            dynamic = true;
        }
        i += 1;
    }
    let end = i.min(b.len());
    let value = (!dynamic).then(|| unescape(&src[start..end]));
    (value, (end + 1).min(b.len()))
}

/// Decodes JavaScript string escapes (`\/`, `\x2F`, `\u002F`, `\u{2F}`,
/// surrogate pairs, line continuations).
fn unescape(raw: &str) -> String {
    let mut units: Vec<u16> = Vec::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
            continue;
        }
        let Some(e) = chars.next() else { break };
        let simple = match e {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'v' => Some('\u{b}'),
            '0' => Some('\0'),
            '\n' | '\u{2028}' | '\u{2029}' => None,
            '\r' => {
                chars.next_if_eq(&'\n');
                None
            }
            'x' => hex_digits(&mut chars, 2).and_then(char::from_u32),
            'u' if chars.peek() == Some(&'{') => {
                chars.next();
                let mut v: u32 = 0;
                for h in chars.by_ref() {
                    if h == '}' {
                        break;
                    }
                    v = v
                        .saturating_mul(16)
                        .saturating_add(h.to_digit(16).unwrap_or(0));
                }
                char::from_u32(v)
            }
            'u' => {
                if let Some(v) = hex_digits(&mut chars, 4) {
                    // A lone surrogate half: keep the code unit for pairing.
                    units.push(v as u16);
                }
                None
            }
            other => Some(other),
        };
        if let Some(ch) = simple {
            let mut buf = [0u16; 2];
            units.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

fn hex_digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, n: usize) -> Option<u32> {
    let mut v = 0;
    for _ in 0..n {
        let d = chars.peek()?.to_digit(16)?;
        chars.next();
        v = v * 16 + d;
    }
    Some(v)
}
