//! The SSRF guard: which hosts and addresses an outbound request may reach.
//!
//! Its own crate because two programs make requests to URLs that someone
//! else chose: the agent's resolver follows every hop through it, and the
//! relay delivers webhooks through it. Both need the same answer to "may
//! this address be reached", and neither may depend on the other.
//!
//! A URL from an external system must never reach the user's router, printer,
//! localhost or a cloud metadata address. The guard is enforced in three
//! layers because each one alone has a hole:
//!
//! 1. [`Guard::check_host`] before every request, on the parsed `url::Host`:
//!    hyper connects to IP-literal hosts without asking the DNS resolver, and
//!    names such as `localhost` must be refused before any query is sent.
//! 2. [`dns::GuardedResolve`], a `reqwest::dns::Resolve` that classifies every
//!    resolved address and hands hyper only the allowed ones, so there is no
//!    window between the check and the connect (DNS rebinding).
//! 3. [`Guard::check_ip`] again on `Response::remote_addr()`, defence in depth.
//!
//! Addresses are canonicalised first (`::ffff:a.b.c.d`), and every IPv6 form
//! that carries an IPv4 address (SIIT, NAT64 in every RFC 6052 layout, 6to4)
//! is judged by that IPv4 address too, against the deny table and the
//! machine's own networks; IPv4-compatible and Teredo addresses are refused
//! whole. See [`table`]. `allow_networks` opens ranges (for a local lab) and
//! takes precedence over the deny table and the machine's own networks.

pub mod dns;
mod local;
mod names;
mod table;

use std::net::IpAddr;

use ipnet::IpNet;

pub use table::{Denial, DenyRule, Embedded, canonical, denial, deny_rule, embedded_ipv4};

/// Why a host or address was refused. It travels through reqwest's error
/// chain (from the DNS layer) and is recognised there by downcasting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    #[error("{addr} is {what} ({range}); pass --allow-network to open it")]
    Address {
        addr: IpAddr,
        what: &'static str,
        range: String,
    },
    #[error("host {host:?} is {what} and is refused before any DNS query")]
    Name { host: String, what: &'static str },
    #[error("every address of {host} is refused: {first}")]
    AllAddresses { host: String, first: Box<Blocked> },
}

/// The range named in a refusal, with the IPv4 address it was applied to
/// when the refused address is an IPv6 one carrying it.
fn carried(range: &str, embedded: Option<Embedded>) -> String {
    match embedded {
        Some(e) => format!("{range}, carried as {} by {}", e.ipv4, e.form),
        None => range.to_string(),
    }
}

/// The interface network that holds `ip`, or an IPv4 address it carries.
fn own_network(nets: &[IpNet], ip: IpAddr) -> Option<(IpNet, Option<Embedded>)> {
    let find = |a: IpAddr| nets.iter().find(|n| n.contains(&a)).copied();
    let canon = canonical(ip);
    if let Some(net) = find(canon) {
        return Some((net, None));
    }
    let IpAddr::V6(v6) = canon else {
        return None;
    };
    embedded_ipv4(v6)
        .into_iter()
        .find_map(|e| find(IpAddr::V4(e.ipv4)).map(|net| (net, Some(e))))
}

/// The reachability policy of one resolver (shared by its resolutions).
#[derive(Debug, Default)]
pub struct Guard {
    allow: Vec<IpNet>,
    local: local::LocalNets,
}

impl Guard {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Guard {
            allow,
            local: local::LocalNets::default(),
        }
    }

    fn allowed_explicitly(&self, ip: IpAddr) -> bool {
        let canon = canonical(ip);
        self.allow
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&canon))
    }

    /// Layers 2 and 3: may a connection go to this address?
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allowed_explicitly(ip) {
            return Ok(());
        }
        if let Some(d) = denial(ip) {
            return Err(Blocked::Address {
                addr: ip,
                what: d.rule.what,
                range: carried(d.rule.range, d.embedded),
            });
        }
        match own_network(&self.local.get(), ip) {
            Some((net, embedded)) => Err(Blocked::Address {
                addr: ip,
                what: "on this machine's own network",
                range: carried(&net.to_string(), embedded),
            }),
            None => Ok(()),
        }
    }

    /// Name rules, before any DNS query (layer 1 and again in layer 2).
    pub fn check_name(&self, host: &str) -> Result<(), Blocked> {
        match names::name_denial(host) {
            Some(what) => Err(Blocked::Name {
                host: host.to_string(),
                what,
            }),
            None => Ok(()),
        }
    }

    /// Layer 1: the parsed host of a URL about to be requested.
    pub fn check_host(&self, host: &url::Host<&str>) -> Result<(), Blocked> {
        match host {
            url::Host::Ipv4(a) => self.check_ip(IpAddr::V4(*a)),
            url::Host::Ipv6(a) => self.check_ip(IpAddr::V6(*a)),
            url::Host::Domain(d) => self.check_name(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_blocked(g: &Guard, u: &str) -> bool {
        let url = url::Url::parse(u).expect("test URL parses");
        let host = url.host().expect("has host");
        g.check_host(&host).is_err()
    }

    #[test]
    fn every_loopback_spelling_is_refused_by_default() {
        let g = Guard::default();
        for u in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://017700000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://127.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
            "http://[64:ff9b::127.0.0.1]/",
            "http://[::ffff:0:127.0.0.1]/",
            "http://[64:ff9b:1:808:7f:1:108:808]/",
            "http://[2002:7f00:1::]/",
            "http://[::127.0.0.1]/",
            "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://foo.localhost/",
            "http://0.0.0.0/",
            "http://0/",
            "http://[::]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://metadata.google.internal/",
            "http://10.1.2.3/",
            "http://192.168.1.1/",
            "http://printer.local/",
            "http://router/",
        ] {
            assert!(url_blocked(&g, u), "{u} should be refused");
        }
    }

    #[test]
    fn public_hosts_pass_layer_one() {
        let g = Guard::default();
        for u in [
            "http://example.com/",
            "https://8.8.8.8/",
            "http://[2606:4700:4700::1111]/",
        ] {
            assert!(!url_blocked(&g, u), "{u} should pass");
        }
    }

    #[test]
    fn allow_networks_open_exactly_their_ranges() {
        let g = Guard::new(vec!["127.0.0.1/32".parse().expect("cidr")]);
        assert!(!url_blocked(&g, "http://127.0.0.1:8080/"));
        assert!(!url_blocked(&g, "http://2130706433/"));
        assert!(!url_blocked(&g, "http://[::ffff:127.0.0.1]/"));
        assert!(url_blocked(&g, "http://127.0.0.2/"));
        assert!(url_blocked(&g, "http://[::1]/"));
        // Names stay refused: the allow list opens addresses, not names.
        assert!(url_blocked(&g, "http://localhost/"));
    }

    #[test]
    fn blocked_messages_name_the_range() {
        let g = Guard::default();
        let e = g
            .check_ip("169.254.169.254".parse().expect("ip"))
            .expect_err("metadata is refused");
        let msg = e.to_string();
        assert!(msg.contains("169.254.0.0/16"), "{msg}");
        assert!(msg.contains("metadata"), "{msg}");

        let e = g
            .check_ip("64:ff9b::a9fe:a9fe".parse().expect("ip"))
            .expect_err("metadata through NAT64 is refused");
        let msg = e.to_string();
        assert!(msg.contains("169.254.0.0/16"), "{msg}");
        assert!(
            msg.contains("169.254.169.254 by NAT64 64:ff9b::/96"),
            "{msg}"
        );
    }

    #[test]
    fn own_networks_are_matched_through_the_ipv4_they_carry() {
        // A desktop on a public IPv4 LAN: the table cannot know it.
        let nets: Vec<IpNet> = vec!["93.184.215.0/24".parse().expect("cidr")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        for s in [
            "93.184.215.14",
            "::ffff:93.184.215.14",
            "::ffff:0:5db8:d70e",
            "64:ff9b::5db8:d70e",
            "2002:5db8:d70e::1",
        ] {
            let (net, _) = own_network(&nets, ip(s)).expect(s);
            assert_eq!(net.to_string(), "93.184.215.0/24", "{s}");
        }
        let (_, e) = own_network(&nets, ip("64:ff9b::5db8:d70e")).expect("carried");
        assert_eq!(e.map(|e| e.form), Some("NAT64 64:ff9b::/96"));
        assert_eq!(own_network(&nets, ip("64:ff9b::808:808")), None);
        assert_eq!(own_network(&nets, ip("8.8.8.8")), None);
    }
}
