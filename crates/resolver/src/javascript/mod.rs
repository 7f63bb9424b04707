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

mod lexer;
mod scan;

/// Finds the first literal load-time redirect in one inline script.
pub fn find_redirect(script: &str) -> Option<String> {
    let tokens = lexer::tokenize(script);
    scan::Scan::new(&tokens).run()
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

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = find_redirect(&s);
        }

        #[test]
        fn never_panics_near_patterns(s in "(location|\\.|href|=|replace|\\(|\\)|'|\"|`|\\\\|/|\\*|\\{|\\}|;|,|=>|function|é| )*") {
            let _ = find_redirect(&s);
        }
    }
}
