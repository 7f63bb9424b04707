//! The SSRF deny table (docs/resolver.md) and the address canonicalisation it needs.
//!
//! Rust's std predicates are not enough: `Ipv4Addr::is_private` misses CGNAT,
//! `"::ffff:127.0.0.1".is_loopback()` is false, `Ipv6Addr::to_ipv4` maps `::1`
//! to `0.0.0.1`, and `is_global` is unstable. So the table is ours, written as
//! CIDR ranges, and every IPv6 form that carries an IPv4 address is either
//! decoded and judged by the IPv4 rules as well, or refused whole:
//!
//! | form | range | decision |
//! |---|---|---|
//! | IPv4-mapped | `::ffff:0:0/96` | decoded ([`canonical`]) |
//! | SIIT IPv4-translated (RFC 2765, obsolete) | `::ffff:0:0:0/96` | decoded |
//! | NAT64 well-known prefix (RFC 6052) | `64:ff9b::/96` | decoded |
//! | NAT64 local-use prefix (RFC 8215) | `64:ff9b:1::/48` | decoded in all four layouts that fit (/48, /56, /64, /96); refused if any is |
//! | 6to4 (RFC 3056) | `2002::/16` | decoded (bits 16–47) |
//! | IPv4-compatible (deprecated, RFC 4291) | `::/96` | refused whole |
//! | Teredo (RFC 4380) | `2001::/32` | refused whole (inside `2001::/23`) |

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// One refused range and why it is refused, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenyRule {
    pub range: &'static str,
    pub what: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

#[allow(clippy::too_many_arguments)]
const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

const fn rule(range: &'static str, what: &'static str) -> DenyRule {
    DenyRule { range, what }
}

/// IPv4 ranges that are not publicly routable.
const DENY_V4: &[(Ipv4Net, DenyRule)] = &[
    (
        v4(0, 0, 0, 0, 8),
        rule(
            "0.0.0.0/8",
            "\"this network\" (0.0.0.0 reaches the local machine)",
        ),
    ),
    (v4(10, 0, 0, 0, 8), rule("10.0.0.0/8", "private")),
    (
        v4(100, 64, 0, 0, 10),
        rule("100.64.0.0/10", "carrier-grade NAT"),
    ),
    (v4(127, 0, 0, 0, 8), rule("127.0.0.0/8", "loopback")),
    (
        v4(169, 254, 0, 0, 16),
        rule("169.254.0.0/16", "link-local (cloud metadata)"),
    ),
    (v4(172, 16, 0, 0, 12), rule("172.16.0.0/12", "private")),
    (
        v4(192, 0, 0, 0, 24),
        rule("192.0.0.0/24", "IETF protocol assignments"),
    ),
    (
        v4(192, 0, 2, 0, 24),
        rule("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ),
    (
        v4(192, 88, 99, 0, 24),
        rule("192.88.99.0/24", "6to4 relay anycast"),
    ),
    (v4(192, 168, 0, 0, 16), rule("192.168.0.0/16", "private")),
    (v4(198, 18, 0, 0, 15), rule("198.18.0.0/15", "benchmarking")),
    (
        v4(198, 51, 100, 0, 24),
        rule("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ),
    (
        v4(203, 0, 113, 0, 24),
        rule("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ),
    (v4(224, 0, 0, 0, 4), rule("224.0.0.0/4", "multicast")),
    (
        v4(240, 0, 0, 0, 4),
        rule("240.0.0.0/4", "reserved / broadcast"),
    ),
];

/// IPv6 ranges that are not publicly routable. Of the ranges that carry an
/// IPv4 address, only those refused whole are here (IPv4-compatible, Teredo);
/// the others are decoded by [`embedded_ipv4`].
const DENY_V6: &[(Ipv6Net, DenyRule)] = &[
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        rule("::/128", "unspecified"),
    ),
    (
        v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
        rule("::1/128", "loopback"),
    ),
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        rule("::/96", "IPv4-compatible (deprecated)"),
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        rule("100::/64", "discard-only"),
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),
        rule(
            "2001::/32",
            "Teredo (it carries IPv4 addresses: the server's and, obfuscated, the client's)",
        ),
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        rule("2001::/23", "IETF protocol assignments (incl. Teredo)"),
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        rule("2001:db8::/32", "documentation"),
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        rule("3fff::/20", "documentation"),
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        rule("fc00::/7", "unique local"),
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        rule("fe80::/10", "link-local"),
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        rule("fec0::/10", "site-local (deprecated)"),
    ),
    (
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        rule("ff00::/8", "multicast"),
    ),
];

const SIIT: Ipv6Net = v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96);
const NAT64_WKP: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const NAT64_LOCAL: Ipv6Net = v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48);
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

/// Where RFC 6052 §2.2 puts the four IPv4 bytes for each prefix length that
/// fits inside the RFC 8215 local-use /48. Byte 8 (bits 64–71, the "u"
/// octet) is always skipped. /32 and /40 would put IPv4 bits inside the
/// fixed `64:ff9b:1` prefix, so they cannot occur there.
const LOCAL_USE_LAYOUTS: [(&str, [usize; 4]); 4] = [
    ("NAT64 64:ff9b:1::/48 (RFC 6052 /48 layout)", [6, 7, 9, 10]),
    ("NAT64 64:ff9b:1::/48 (RFC 6052 /56 layout)", [7, 9, 10, 11]),
    (
        "NAT64 64:ff9b:1::/48 (RFC 6052 /64 layout)",
        [9, 10, 11, 12],
    ),
    (
        "NAT64 64:ff9b:1::/48 (RFC 6052 /96 layout)",
        [12, 13, 14, 15],
    ),
];

/// An IPv4 address carried by an IPv6 address, and the form that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    pub ipv4: Ipv4Addr,
    pub form: &'static str,
}

/// Why an address is refused: the rule, and the IPv4 address it was applied
/// to when an IPv6 address was judged by the IPv4 it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub rule: DenyRule,
    pub embedded: Option<Embedded>,
}

/// Unwraps `::ffff:a.b.c.d` to `a.b.c.d`; every other address is unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn at(o: &[u8; 16], form: &'static str, idx: [usize; 4]) -> Embedded {
    Embedded {
        ipv4: Ipv4Addr::new(o[idx[0]], o[idx[1]], o[idx[2]], o[idx[3]]),
        form,
    }
}

/// The IPv4 addresses an IPv6 address carries and that decide where its
/// packets really go, for the forms that are decoded rather than refused
/// whole: SIIT `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`,
/// 6to4 `2002::/16` (`::ffff:0:0/96` is unwrapped by [`canonical`]).
///
/// Which RFC 6052 layout a local-use NAT64 deployment uses is configuration
/// that the address does not reveal (the operator's subnet bits and the
/// suffix are free), so every layout that fits is returned and the address
/// is refused when any of them is: a translator configured with that layout
/// would take the packets there.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Vec<Embedded> {
    let o = ip.octets();
    if SIIT.contains(&ip) {
        vec![at(
            &o,
            "SIIT IPv4-translated ::ffff:0:0:0/96",
            [12, 13, 14, 15],
        )]
    } else if NAT64_WKP.contains(&ip) {
        vec![at(&o, "NAT64 64:ff9b::/96", [12, 13, 14, 15])]
    } else if NAT64_LOCAL.contains(&ip) {
        LOCAL_USE_LAYOUTS
            .iter()
            .map(|&(form, idx)| at(&o, form, idx))
            .collect()
    } else if SIX_TO_FOUR.contains(&ip) {
        vec![at(&o, "6to4 2002::/16", [2, 3, 4, 5])]
    } else {
        Vec::new()
    }
}

fn deny_v4(ip: Ipv4Addr) -> Option<DenyRule> {
    DENY_V4
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, r)| *r)
}

/// The deny rule an address falls under, after canonicalisation, or `None`
/// when it is publicly routable.
pub fn deny_rule(ip: IpAddr) -> Option<DenyRule> {
    denial(ip).map(|d| d.rule)
}

/// [`deny_rule`] with the embedded IPv4 address it was decided on, if any.
pub fn denial(ip: IpAddr) -> Option<Denial> {
    match canonical(ip) {
        IpAddr::V4(v4) => deny_v4(v4).map(|rule| Denial {
            rule,
            embedded: None,
        }),
        IpAddr::V6(v6) => {
            if let Some((_, rule)) = DENY_V6.iter().find(|(net, _)| net.contains(&v6)) {
                return Some(Denial {
                    rule: *rule,
                    embedded: None,
                });
            }
            embedded_ipv4(v6).into_iter().find_map(|e| {
                deny_v4(e.ipv4).map(|rule| Denial {
                    rule,
                    embedded: Some(e),
                })
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(s: &str) -> bool {
        deny_rule(s.parse().expect("test address parses")).is_some()
    }

    #[test]
    fn every_ipv4_deny_range_is_refused_at_both_ends() {
        for (net, r) in DENY_V4 {
            assert!(denied(&net.network().to_string()), "{}", r.range);
            assert!(denied(&net.broadcast().to_string()), "{}", r.range);
            assert_eq!(deny_rule(IpAddr::V4(net.network())), Some(*r));
        }
    }

    #[test]
    fn every_ipv6_deny_range_is_refused_at_both_ends() {
        for (net, r) in DENY_V6 {
            let first = IpAddr::V6(net.network());
            let last = IpAddr::V6(net.broadcast());
            assert!(deny_rule(first).is_some(), "{}", r.range);
            assert!(deny_rule(last).is_some(), "{}", r.range);
        }
    }

    #[test]
    fn neighbours_of_ipv4_ranges_are_public() {
        for s in [
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "8.8.8.8",
            "1.1.1.1",
            "93.184.215.14",
        ] {
            assert!(!denied(s), "{s} should be public");
        }
    }

    #[test]
    fn public_ipv6_is_allowed() {
        for s in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:200::1",
            "2001:4860:4860::8888",
            "3fff:1000::1",
            "::ffff:8.8.8.8",
            "::ffff:0:808:808", // SIIT
            "64:ff9b::808:808",
            // Local-use NAT64 passes only when every layout carries a public
            // address (here 8.8.8.8 in all four).
            "64:ff9b:1:808:808:808:808:808",
            "2002:808:808::1",
        ] {
            assert!(!denied(s), "{s} should be public");
        }
    }

    #[test]
    fn std_pitfalls_are_covered() {
        // "::ffff:127.0.0.1" is not is_loopback() in std, but it is loopback.
        let mapped: Ipv6Addr = "::ffff:127.0.0.1".parse().expect("parses");
        assert!(!mapped.is_loopback());
        assert_eq!(
            deny_rule(IpAddr::V6(mapped)).map(|r| r.what),
            Some("loopback")
        );
        // is_private() misses CGNAT.
        let cgnat: Ipv4Addr = "100.64.0.1".parse().expect("parses");
        assert!(!cgnat.is_private());
        assert!(denied("100.64.0.1"));
        // to_ipv4() turns ::1 into 0.0.0.1; we must see loopback, not 0/8.
        let one: Ipv6Addr = "::1".parse().expect("parses");
        assert_eq!(one.to_ipv4(), Some(Ipv4Addr::new(0, 0, 0, 1)));
        assert_eq!(one.to_ipv4_mapped(), None);
        assert_eq!(deny_rule(IpAddr::V6(one)).map(|r| r.range), Some("::1/128"));
        // Metadata, in every spelling that reaches it.
        for s in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "fd00:ec2::254",
        ] {
            assert!(denied(s), "{s}");
        }
    }

    #[test]
    fn translated_forms_are_judged_by_their_ipv4() {
        for s in [
            "::ffff:10.0.0.1",
            "::ffff:192.168.1.1",
            "::ffff:0.0.0.0",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1:7f00:1:0:0:0", // /48 position: 127.0.1.0
            "64:ff9b:1::c0a8:101",    // /96 position: 192.168.1.1
            "64:ff9b:1::",            // nothing embedded: 0.0.0.0
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "::127.0.0.1",
            "::8.8.8.8", // IPv4-compatible is refused whatever it carries
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:0:0",
        ] {
            assert!(denied(s), "{s}");
        }
    }

    #[test]
    fn every_local_use_nat64_layout_is_decoded() {
        // 10.1.1.1 in each RFC 6052 layout, with subnet and suffix bits
        // chosen so that every other layout reads a public address: only the
        // layout under test can refuse it.
        for (s, layout) in [
            ("64:ff9b:1:a01:1:108:808:808", "/48"),
            ("64:ff9b:1:80a:1:101:808:808", "/56"),
            ("64:ff9b:1:808:a:101:108:808", "/64"),
            ("64:ff9b:1:808:8:808:a01:101", "/96"),
        ] {
            let d = denial(s.parse().expect("parses")).expect(s);
            assert_eq!(d.rule.range, "10.0.0.0/8", "{s}");
            let e = d.embedded.expect("decided on the embedded address");
            assert_eq!(e.ipv4, Ipv4Addr::new(10, 1, 1, 1), "{s}");
            let all = embedded_ipv4(s.parse().expect("parses"));
            assert_eq!(
                all.iter().filter(|e| deny_v4(e.ipv4).is_some()).count(),
                1,
                "{s}"
            );
            assert!(e.form.contains(layout), "{s}: {}", e.form);
        }
        // The u-octet (bits 64..71) never carries IPv4 bits.
        let with_u: Ipv6Addr = "64:ff9b:1:808:ff08:808:808:808".parse().expect("parses");
        let got: Vec<Ipv4Addr> = embedded_ipv4(with_u).iter().map(|e| e.ipv4).collect();
        assert!(got.iter().all(|a| !a.octets().contains(&0xff)), "{got:?}");
    }

    #[test]
    fn ambiguous_local_use_addresses_are_refused() {
        // 64:ff9b:1::808:808 is 8.8.8.8 for a /96 deployment but 0.0.0.8 for
        // a /64 one; the address cannot say which, so it is refused.
        assert!(denied("64:ff9b:1::808:808"));
        assert!(denied("64:ff9b:1:808:8:800::"));
    }

    #[test]
    fn teredo_is_refused_whole_and_named() {
        for s in ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::"] {
            let r = deny_rule(s.parse().expect("parses")).expect(s);
            assert_eq!(r.range, "2001::/32", "{s}");
        }
    }

    #[test]
    fn embedded_ipv4_positions() {
        let v4s = |s: &str| -> Vec<Ipv4Addr> {
            let ip: Ipv6Addr = s.parse().expect("parses");
            embedded_ipv4(ip).iter().map(|e| e.ipv4).collect()
        };
        assert_eq!(v4s("64:ff9b::c000:201"), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(v4s("::ffff:0:c000:201"), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(v4s("2002:cb00:7101::"), vec![Ipv4Addr::new(203, 0, 113, 1)]);
        assert_eq!(
            v4s("64:ff9b:1:102:304:506:708:90a"),
            vec![
                Ipv4Addr::new(1, 2, 4, 5),
                Ipv4Addr::new(2, 4, 5, 6),
                Ipv4Addr::new(4, 5, 6, 7),
                Ipv4Addr::new(7, 8, 9, 10),
            ]
        );
        assert!(v4s("2a00::1").is_empty());
        assert!(v4s("::ffff:1.2.3.4").is_empty()); // mapped: canonical() unwraps it
    }
}
