//! Which code in a script runs when the page loads, and whether a
//! `location` token there is a literal navigation.
//!
//! Braces, parentheses and arrows are tracked with a small stack: every `{`
//! and every expression-bodied arrow knows whether its code runs at load
//! (top level, blocks, IIFEs, timers, load listeners) or only later (named
//! function declarations, assigned functions, object methods, other
//! callbacks such as click handlers).

use super::lexer::Tok;

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

pub struct Scan<'t, 'a> {
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
    pub fn new(t: &'t [Tok<'a>]) -> Self {
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

    pub fn run(mut self) -> Option<String> {
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
