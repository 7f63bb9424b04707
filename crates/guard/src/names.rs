//! Host names refused before any DNS query.
//!
//! Some names never leave the machine or the LAN whatever DNS says: asking the
//! resolver would already leak the lookup to the LAN, and the answer (from
//! `/etc/hosts`, mDNS or a home router) would point inside the network. They
//! are refused by name, so no query and no connection happen.

/// Why a host name is refused, or `None` when it may be looked up.
pub fn name_denial(host: &str) -> Option<&'static str> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host.is_empty() {
        return Some("an empty host name");
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Some("a localhost name");
    }
    for (suffix, what) in [
        (".local", "an mDNS (.local) name"),
        (".internal", "an .internal name"),
        (".home.arpa", "a home network (.home.arpa) name"),
    ] {
        if host.ends_with(suffix) || host == suffix[1..] {
            return Some(what);
        }
    }
    if !host.contains('.') {
        return Some("a single-label (intranet) name");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::name_denial;

    #[test]
    fn local_names_are_refused() {
        for h in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "app.localhost",
            "printer.local",
            "printer.local.",
            "metadata.google.internal",
            "router.home.arpa",
            "home.arpa",
            "intranet",
            "wpad",
            "",
        ] {
            assert!(name_denial(h).is_some(), "{h:?} should be refused");
        }
    }

    #[test]
    fn public_names_pass() {
        for h in [
            "example.com",
            "example.com.",
            "localhost.example.com",
            "local.example.com",
            "internal.example.org",
            "xn--bcher-kva.de",
            "t.co",
        ] {
            assert!(name_denial(h).is_none(), "{h:?} should pass");
        }
    }
}
