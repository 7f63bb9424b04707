//! JavaScript redirect detection in inline scripts — without running them.
//!
//! Tracking pages that answer browsers with a 200 often navigate with a
//! literal `location.replace("…")`. We follow exactly these literal forms:
//!
//! - `location = "…"`, `location.href = "…"` (also behind `window.`,
//!   `document.`, `self.`, `top.`, `parent.`, `globalThis.`),
//! - `location.replace("…")`, `location.assign("…")`,
//!
//! where the URL is one string literal (quotes or a template without `${}`).
//! Anything computed (`"…" + x`, a variable, `atob(…)`, `location['href']`)
//! cannot be followed and is deliberately ignored: guessing would invent hops.
//!
//! To avoid following click handlers ("Continue" buttons), a redirect counts
//! only where it runs when the page loads: top-level code, blocks, IIFEs, and
//! callbacks of `setTimeout`/`setInterval`/`requestAnimationFrame`/jQuery
//! ready/`addEventListener("load" | "DOMContentLoaded" | …)` and `onload =`.
//! Code in named function declarations, other assigned functions, object
//! methods and other callbacks is skipped. A small tokenizer skips strings,
//! comments, template literals and regular expressions so that their
//! contents never match.

/// Finds the first literal load-time redirect in one inline script.
pub fn find_redirect(script: &str) -> Option<String> {
    let toks = tokenize(script);
    Scan::new(&toks).run()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
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

fn tokenize(src: &str) -> Vec<Tok<'_>> {
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

/// Functions (and therefore the code inside them) that run at page load.
const RUN_NOW_CALLEES: &[&str] = &[
    "setTimeout",
    "setInterval",
    "requestAnimationFrame",
    "queueMicrotask",
    "$",
    "jQuery",
    "ready",
];
const LISTENER_CALLEES: &[&str] = &["addEventListener", "attachEvent", "on"];
const LOAD_EVENTS: &[&str] = &[
    "load",
    "onload",
    "DOMContentLoaded",
    "pageshow",
    "readystatechange",
    "onreadystatechange",
];
const LOAD_HANDLERS: &[&str] = &["onload", "onpageshow", "onreadystatechange"];
const WINDOW_ALIASES: &[&str] = &["window", "document", "self", "top", "parent", "globalThis"];

#[derive(Debug, Clone)]
struct Paren<'a> {
    callee: Option<&'a str>,
    first_arg: Option<String>,
    /// Whether code here runs at load (inherited).
    live: bool,
    /// The token index of the '('.
    at: usize,
}

struct Scan<'t, 'a> {
    t: &'t [Tok<'a>],
    parens: Vec<Paren<'a>>,
    /// One entry per open `{`: does code in it run at load?
    braces: Vec<bool>,
    /// A function whose body `{` has not been seen yet: (its verdict, the
    /// paren depth where the body will open).
    pending_body: Option<(bool, usize)>,
    /// Expression-bodied arrows in force: (paren depth, live).
    arrow_exprs: Vec<(usize, bool)>,
    last_closed: Option<Paren<'a>>,
}

impl<'t, 'a> Scan<'t, 'a> {
    fn new(t: &'t [Tok<'a>]) -> Self {
        Scan {
            t,
            parens: Vec::new(),
            braces: Vec::new(),
            pending_body: None,
            arrow_exprs: Vec::new(),
            last_closed: None,
        }
    }

    fn live(&self) -> bool {
        let brace = self.braces.last().copied().unwrap_or(true);
        let paren = self.parens.last().is_none_or(|p| p.live);
        let arrow = self.arrow_exprs.last().is_none_or(|a| a.1);
        brace && paren && arrow
    }

    fn tok(&self, i: usize) -> Option<&Tok<'a>> {
        self.t.get(i)
    }

    fn before(&self, i: usize) -> Option<&Tok<'a>> {
        i.checked_sub(1).and_then(|j| self.t.get(j))
    }

    /// Does a function starting at token `start` run at load?
    fn function_runs(&self, start: usize, named_decl: bool) -> bool {
        if named_decl {
            return false;
        }
        match self.before(start) {
            Some(Tok::Punct(b'=')) => {
                let target = start.checked_sub(2).and_then(|j| self.t.get(j));
                matches!(target, Some(Tok::Ident(n)) if LOAD_HANDLERS.contains(n))
            }
            Some(Tok::Punct(b'(' | b',')) => match self.parens.last() {
                None => false,
                Some(p) => match p.callee {
                    None => true,
                    Some(c) if RUN_NOW_CALLEES.contains(&c) => true,
                    Some(c) if LISTENER_CALLEES.contains(&c) => p
                        .first_arg
                        .as_deref()
                        .is_some_and(|e| LOAD_EVENTS.contains(&e)),
                    Some(_) => false,
                },
            },
            Some(Tok::Punct(b'!' | b'+' | b'-' | b'~')) => true,
            Some(Tok::Ident("void")) => true,
            _ => false,
        }
    }

    fn run(mut self) -> Option<String> {
        let mut i = 0;
        while i < self.t.len() {
            match &self.t[i] {
                Tok::Ident("function") => {
                    let statement_start =
                        matches!(self.before(i), None | Some(Tok::Punct(b';' | b'{' | b'}')));
                    let mut j = i + 1;
                    if self.tok(j) == Some(&Tok::Punct(b'*')) {
                        j += 1;
                    }
                    let named = matches!(self.tok(j), Some(Tok::Ident(_)));
                    let verdict = self.live() && self.function_runs(i, named && statement_start);
                    self.pending_body = Some((verdict, self.parens.len()));
                }
                Tok::Arrow => {
                    // The arrow's parameters start at the '(' just closed, or
                    // are one identifier.
                    let start = match self.before(i) {
                        Some(Tok::Punct(b')')) => self.last_closed.as_ref().map_or(i, |p| p.at),
                        _ => i.saturating_sub(1),
                    };
                    let verdict = self.live() && self.function_runs(start, false);
                    if self.tok(i + 1) == Some(&Tok::Punct(b'{')) {
                        self.pending_body = Some((verdict, self.parens.len()));
                    } else {
                        self.arrow_exprs.push((self.parens.len(), verdict));
                    }
                }
                Tok::Punct(b'{') => {
                    let live = match self.pending_body.take() {
                        Some((verdict, depth)) if depth == self.parens.len() => verdict,
                        other => {
                            self.pending_body = other;
                            self.live()
                        }
                    };
                    self.braces.push(live);
                }
                Tok::Punct(b'}') => {
                    self.braces.pop();
                    self.end_arrow_exprs();
                }
                Tok::Punct(b'(') => {
                    let callee = match self.before(i) {
                        Some(Tok::Ident(n)) if *n != "function" => Some(*n),
                        _ => None,
                    };
                    let first_arg = match (self.tok(i + 1), self.tok(i + 2)) {
                        (Some(Tok::Str(Some(s))), Some(Tok::Punct(b',' | b')'))) => Some(s.clone()),
                        _ => None,
                    };
                    let live = self.live();
                    self.parens.push(Paren {
                        callee,
                        first_arg,
                        live,
                        at: i,
                    });
                }
                Tok::Punct(b')') => {
                    self.end_arrow_exprs();
                    self.last_closed = self.parens.pop();
                }
                Tok::Punct(b',' | b';') => self.end_arrow_exprs(),
                Tok::Ident("location") if self.live() => {
                    if let Some(url) = self.match_redirect(i) {
                        return Some(url);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        None
    }

    /// Ends expression-bodied arrows opened at the current paren depth.
    fn end_arrow_exprs(&mut self) {
        let depth = self.parens.len();
        while self.arrow_exprs.last().is_some_and(|a| a.0 >= depth) {
            self.arrow_exprs.pop();
        }
    }

    /// Token `i` is `location`: is this a literal navigation?
    fn match_redirect(&self, i: usize) -> Option<String> {
        // What is in front: nothing, or a chain of window aliases.
        let mut j = i;
        while j >= 2
            && self.t[j - 1] == Tok::Punct(b'.')
            && matches!(self.t[j - 2], Tok::Ident(n) if WINDOW_ALIASES.contains(&n))
        {
            j -= 2;
        }
        match self.before(j) {
            Some(Tok::Punct(b'.')) => return None,
            Some(Tok::Ident("var" | "let" | "const")) => return None,
            _ => {}
        }
        let t = |k: usize| self.tok(i + k);
        let literal_then_end = |k: usize| match (t(k), t(k + 1)) {
            (Some(Tok::Str(Some(s))), next) => {
                let computed = matches!(
                    next,
                    Some(Tok::Punct(b'+' | b'.' | b'[' | b'(' | b'?' | b'&' | b'|'))
                        | Some(Tok::Other | Tok::Value | Tok::Str(_))
                );
                (!computed).then(|| s.clone())
            }
            _ => None,
        };
        match (t(1), t(2), t(3)) {
            (Some(Tok::Punct(b'=')), _, _) => literal_then_end(2),
            (Some(Tok::Punct(b'.')), Some(Tok::Ident("href")), Some(Tok::Punct(b'='))) => {
                literal_then_end(4)
            }
            (
                Some(Tok::Punct(b'.')),
                Some(Tok::Ident("replace" | "assign")),
                Some(Tok::Punct(b'(')),
            ) => match (t(4), t(5)) {
                (Some(Tok::Str(Some(s))), Some(Tok::Punct(b')'))) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::find_redirect;

    fn found(s: &str) -> Option<String> {
        find_redirect(s)
    }

    #[test]
    fn literal_forms_are_found() {
        for (src, want) in [
            ("location='/a'", "/a"),
            ("location = \"/a\";", "/a"),
            ("location.href = '/a'", "/a"),
            ("window.location = '/a'", "/a"),
            ("window.location.href=\"/a\"", "/a"),
            ("document.location.href = '/a'", "/a"),
            ("top.location.href = '/a'", "/a"),
            ("window.top.location = '/a'", "/a"),
            ("location.replace('/a')", "/a"),
            ("window.location.replace(\"/a\");", "/a"),
            ("location.assign(`/a`)", "/a"),
            (
                "  // go\n  location.replace('https://x.test/?a=1&b=2')",
                "https://x.test/?a=1&b=2",
            ),
        ] {
            assert_eq!(found(src).as_deref(), Some(want), "{src}");
        }
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(
            found(r#"location.replace("https:\/\/t.test\/x")"#).as_deref(),
            Some("https://t.test/x")
        );
        assert_eq!(
            found(r#"location.href = '\x2Fa\u002Fb\u{2F}c'"#).as_deref(),
            Some("/a/b/c")
        );
        assert_eq!(
            found(r#"location = "/\uD83D\uDE00""#).as_deref(),
            Some("/😀")
        );
    }

    #[test]
    fn load_time_callbacks_count() {
        for src in [
            "setTimeout(function(){ location.href = '/a' }, 0)",
            "setTimeout(() => { window.location.replace('/a') }, 500)",
            "setTimeout(() => location.href = '/a', 0)",
            "(function(){ location.replace('/a') })()",
            "!function(){ location.replace('/a') }()",
            "window.onload = function() { location.href = '/a' }",
            "document.addEventListener('DOMContentLoaded', function(){ location.href='/a' })",
            "$(function(){ location.href = '/a' })",
            "$(document).ready(function(){ location.href = '/a' })",
            "if (true) { location.href = '/a' }",
            "try { location.replace('/a') } catch (e) {}",
        ] {
            assert_eq!(found(src).as_deref(), Some("/a"), "{src}");
        }
    }

    #[test]
    fn handlers_and_declarations_do_not_count() {
        for src in [
            "function go() { location.href = '/a' }",
            "var go = function() { location.href = '/a' }",
            "const go = () => { location.href = '/a' }",
            "btn.onclick = function() { location.href = '/a' }",
            "btn.addEventListener('click', function(){ location.href = '/a' })",
            "$('#b').click(function(){ location.href = '/a' })",
            "var o = { go: function() { location.href = '/a' } }",
        ] {
            assert_eq!(found(src), None, "{src}");
        }
    }

    #[test]
    fn computed_and_obfuscated_forms_are_not_followed() {
        for src in [
            "location.href = '/a?u=' + encodeURIComponent(document.referrer)",
            "location.href = url",
            "location = atob('L2E=')",
            "location['href'] = '/a'",
            "location.href = `/a/${id}`",
            "window['loc'+'ation'] = '/a'",
            "eval(\"location.href='/a'\")",
            "if (location.href == '/a') {}",
            "if (location.href === '/a') {}",
            "location.href += '#x'",
            "var x = location.href.replace('a', 'b')",
            "var location = '/a'",
            "obj.location = '/a'",
            "mylocation = '/a'",
            "// location.href = '/a'",
            "/* location.replace('/a') */",
            "var s = \"location.href='/a'\"",
            "var r = /location.href='\\/a'/",
            "location.reload()",
        ] {
            assert_eq!(found(src), None, "{src}");
        }
    }

    #[test]
    fn regex_and_division_do_not_derail_the_tokenizer() {
        let src = "var r = /[\"']/g; var d = a / b / 2 / c; location.replace('/ok')";
        assert_eq!(found(src).as_deref(), Some("/ok"));
        let src = "var q = \"it's\"; var t = '\"'; location = '/ok'";
        assert_eq!(found(src).as_deref(), Some("/ok"));
    }

    #[test]
    fn first_redirect_wins() {
        assert_eq!(
            found("location.replace('/first'); location.href = '/second'").as_deref(),
            Some("/first")
        );
    }

    #[test]
    fn garbage_never_panics() {
        for src in [
            "'",
            "`",
            "/*",
            "location.replace(",
            "location =",
            "\\",
            "location.href = '\\",
            "é location = 'é'",
        ] {
            let _ = found(src);
        }
    }
}
