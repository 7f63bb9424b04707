//! Property tests for the SSRF guard (docs/resolver.md, "SSRF guard"): every
//! IPv6 form that carries an IPv4 address is refused whenever that IPv4
//! address is, whatever the other bits of the IPv6 address say, and the
//! decoded forms let a public IPv4 address through.
//!
//! The denied IPv4 classes are written out here again, independently of the
//! guard's table, so a range dropped from the table fails these tests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failure report

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use link_peeler_guard::{Guard, deny_rule};
use proptest::prelude::*;

/// One guard for every case: its interface cache is shared, like the resolver's.
static GUARD: LazyLock<Guard> = LazyLock::new(Guard::default);

/// The IPv4 classes that must never be reached, as (network, prefix, name).
const DENIED_V4: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "this network"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "carrier-grade NAT"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignments"),
    ([192, 0, 2, 0], 24, "TEST-NET-1"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "TEST-NET-2"),
    ([203, 0, 113, 0], 24, "TEST-NET-3"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved and broadcast"),
];

fn in_class(ip: Ipv4Addr, net: [u8; 4], len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_denied_class(ip: Ipv4Addr) -> bool {
    DENIED_V4
        .iter()
        .any(|&(net, len, _)| in_class(ip, net, len))
}

/// An arbitrary address of one denied class, plus the addresses that matter
/// most (metadata, broadcast, the first and last of each class).
fn denied_v4() -> impl Strategy<Value = Ipv4Addr> {
    let classes = DENIED_V4.iter().map(|&(net, len, _)| {
        let base = u32::from(Ipv4Addr::from(net));
        let host_mask = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        any::<u32>()
            .prop_map(move |host| Ipv4Addr::from(base | (host & host_mask)))
            .boxed()
    });
    let specials = prop::sample::select(vec![
        Ipv4Addr::new(169, 254, 169, 254),
        Ipv4Addr::new(169, 254, 170, 2),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(192, 168, 1, 1),
        Ipv4Addr::new(100, 100, 100, 200),
    ])
    .boxed();
    prop::strategy::Union::new(classes.chain(std::iter::once(specials)))
}

/// A public IPv4 address: arbitrary, outside every denied class.
fn public_v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>()
        .prop_map(Ipv4Addr::from)
        .prop_filter("public", |ip| !is_denied_class(*ip))
}

/// Puts `v4` into `template` at the byte positions `at` (RFC 6052 §2.2:
/// the IPv4 bytes skip the u-octet, byte 8).
fn place(mut template: [u8; 16], at: [usize; 4], v4: Ipv4Addr) -> Ipv6Addr {
    for (i, b) in at.into_iter().zip(v4.octets()) {
        template[i] = b;
    }
    Ipv6Addr::from(template)
}

fn with_prefix(prefix: &[u8], noise: [u8; 16]) -> [u8; 16] {
    let mut a = noise;
    a[..prefix.len()].copy_from_slice(prefix);
    a
}

const WKP: [u8; 12] = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0];
const LOCAL_USE: [u8; 6] = [0, 0x64, 0xff, 0x9b, 0, 1];

/// Every IPv6 form that carries an IPv4 address. `noise` fills every bit the
/// form leaves free (subnet bits, the u-octet, suffixes, Teredo's flags and
/// port, the other Teredo address), so no layout can hide behind them.
#[allow(clippy::type_complexity)]
const FORMS: &[(&str, fn(Ipv4Addr, [u8; 16]) -> Ipv6Addr)] = &[
    ("IPv4-mapped ::ffff:0:0/96", |v4, _| v4.to_ipv6_mapped()),
    ("IPv4-compatible ::/96", |v4, _| v4.to_ipv6_compatible()),
    ("SIIT IPv4-translated ::ffff:0:0:0/96", |v4, _| {
        let mut a = [0u8; 16];
        a[8] = 0xff;
        a[9] = 0xff;
        place(a, [12, 13, 14, 15], v4)
    }),
    ("NAT64 64:ff9b::/96", |v4, _| {
        place(with_prefix(&WKP, [0; 16]), [12, 13, 14, 15], v4)
    }),
    ("NAT64 64:ff9b:1::/48, /48 layout", |v4, n| {
        place(with_prefix(&LOCAL_USE, n), [6, 7, 9, 10], v4)
    }),
    ("NAT64 64:ff9b:1::/48, /56 layout", |v4, n| {
        place(with_prefix(&LOCAL_USE, n), [7, 9, 10, 11], v4)
    }),
    ("NAT64 64:ff9b:1::/48, /64 layout", |v4, n| {
        place(with_prefix(&LOCAL_USE, n), [9, 10, 11, 12], v4)
    }),
    ("NAT64 64:ff9b:1::/48, /96 layout", |v4, n| {
        place(with_prefix(&LOCAL_USE, n), [12, 13, 14, 15], v4)
    }),
    ("6to4 2002::/16", |v4, n| {
        place(with_prefix(&[0x20, 0x02], n), [2, 3, 4, 5], v4)
    }),
    ("Teredo 2001::/32, server", |v4, n| {
        place(with_prefix(&[0x20, 0x01, 0, 0], n), [4, 5, 6, 7], v4)
    }),
    ("Teredo 2001::/32, client (obfuscated)", |v4, n| {
        let obfuscated = Ipv4Addr::from(!u32::from(v4));
        place(
            with_prefix(&[0x20, 0x01, 0, 0], n),
            [12, 13, 14, 15],
            obfuscated,
        )
    }),
];

/// The forms decoded and judged by the IPv4 they carry (the others are
/// refused whole, whatever they carry).
const DECODED: &[&str] = &[
    "IPv4-mapped ::ffff:0:0/96",
    "SIIT IPv4-translated ::ffff:0:0:0/96",
    "NAT64 64:ff9b::/96",
    "6to4 2002::/16",
];

fn form(name: &str) -> fn(Ipv4Addr, [u8; 16]) -> Ipv6Addr {
    FORMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .expect("a known form")
}

proptest! {
    // 1,024 cases in well under a second; failures are reported, not saved
    // to a regressions file (proptest's default wants a src/ to save next to).
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A denied IPv4 address is denied in every IPv6 form that carries it.
    #[test]
    fn every_embedding_of_a_denied_ipv4_is_denied(v4 in denied_v4(), noise in any::<[u8; 16]>()) {
        prop_assert!(deny_rule(IpAddr::V4(v4)).is_some(), "{v4} itself must be denied");
        for (name, embed) in FORMS {
            let v6 = embed(v4, noise);
            prop_assert!(
                deny_rule(IpAddr::V6(v6)).is_some(),
                "{v6} ({name}, carrying {v4}) is not in the deny table"
            );
            prop_assert!(
                GUARD.check_ip(IpAddr::V6(v6)).is_err(),
                "{v6} ({name}, carrying {v4}) passes the guard"
            );
        }
    }

    /// The guard's table agrees with the classes above on arbitrary IPv4.
    #[test]
    fn ipv4_table_matches_the_denied_classes(v4 in any::<u32>().prop_map(Ipv4Addr::from)) {
        prop_assert_eq!(deny_rule(IpAddr::V4(v4)).is_some(), is_denied_class(v4), "{}", v4);
    }

    /// NAT64's well-known prefix reaches the public IPv4 Internet: allowed.
    #[test]
    fn public_ipv4_through_nat64_well_known_prefix_is_allowed(v4 in public_v4()) {
        let v6 = form("NAT64 64:ff9b::/96")(v4, [0; 16]);
        prop_assert_eq!(deny_rule(IpAddr::V6(v6)), None, "{} carrying {}", v6, v4);
    }

    /// Every decoded form is judged by its IPv4 alone: a public one passes.
    #[test]
    fn decoded_forms_carrying_a_public_ipv4_are_allowed(
        v4 in public_v4(),
        noise in any::<[u8; 16]>(),
    ) {
        for name in DECODED {
            let v6 = form(name)(v4, noise);
            prop_assert_eq!(deny_rule(IpAddr::V6(v6)), None, "{} ({}) carrying {}", v6, name, v4);
        }
    }

    /// IPv4-compatible and Teredo addresses are refused whole, whatever they carry.
    #[test]
    fn compatible_and_teredo_are_refused_whatever_they_carry(
        v4 in any::<u32>().prop_map(Ipv4Addr::from),
        noise in any::<[u8; 16]>(),
    ) {
        for name in [
            "IPv4-compatible ::/96",
            "Teredo 2001::/32, server",
            "Teredo 2001::/32, client (obfuscated)",
        ] {
            let v6 = form(name)(v4, noise);
            prop_assert!(deny_rule(IpAddr::V6(v6)).is_some(), "{v6} ({name})");
        }
    }
}

#[test]
fn the_generators_cover_what_they_claim() {
    // The test's own encoders, checked against hand-written addresses.
    let ten = Ipv4Addr::new(10, 0, 0, 1);
    let cases = [
        ("IPv4-mapped ::ffff:0:0/96", "::ffff:10.0.0.1"),
        ("IPv4-compatible ::/96", "::10.0.0.1"),
        ("SIIT IPv4-translated ::ffff:0:0:0/96", "::ffff:0:a00:1"),
        ("NAT64 64:ff9b::/96", "64:ff9b::a00:1"),
        ("NAT64 64:ff9b:1::/48, /48 layout", "64:ff9b:1:a00:0:100::"),
        ("NAT64 64:ff9b:1::/48, /56 layout", "64:ff9b:1:a:0:1::"),
        ("NAT64 64:ff9b:1::/48, /64 layout", "64:ff9b:1:0:a:0:100:0"),
        ("NAT64 64:ff9b:1::/48, /96 layout", "64:ff9b:1::a00:1"),
        ("6to4 2002::/16", "2002:a00:1::"),
        ("Teredo 2001::/32, server", "2001:0:a00:1::"),
        ("Teredo 2001::/32, client (obfuscated)", "2001::f5ff:fffe"),
    ];
    for (name, want) in cases {
        let got = form(name)(ten, [0; 16]);
        assert_eq!(got, want.parse::<Ipv6Addr>().unwrap(), "{name}");
    }
    assert!(is_denied_class(Ipv4Addr::new(169, 254, 169, 254)));
    assert!(is_denied_class(Ipv4Addr::BROADCAST));
    assert!(!is_denied_class(Ipv4Addr::new(8, 8, 8, 8)));
}
