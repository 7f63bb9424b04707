//! The machine's own networks, refused like the deny table.
//!
//! On a desktop, the machine's own addresses and the subnets its interfaces
//! sit on are its LAN: with a public IPv4 or, commonly, a global IPv6 /64, the
//! printer and the router have public-looking addresses that the deny table
//! cannot know. The interface list is read with `if-addrs` and cached briefly
//! (laptops change networks, but one enumeration per request would be waste).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

const REFRESH: Duration = Duration::from_secs(10);

/// A cached snapshot of the networks the machine's interfaces are on.
#[derive(Debug, Default)]
pub struct LocalNets {
    cache: Mutex<Option<(Instant, Arc<Vec<IpNet>>)>>,
}

impl LocalNets {
    /// The current networks (re-read at most every 10 s). Enumeration
    /// failures give an empty list: the deny table still applies.
    pub fn get(&self) -> Arc<Vec<IpNet>> {
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((at, nets)) = cache.as_ref()
            && at.elapsed() < REFRESH
        {
            return nets.clone();
        }
        let nets = Arc::new(enumerate());
        *cache = Some((Instant::now(), nets.clone()));
        nets
    }
}

fn enumerate() -> Vec<IpNet> {
    let Ok(ifaces) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    ifaces
        .iter()
        .filter_map(|i| interface_net(i.ip(), prefix_len(&i.addr)))
        .collect()
}

fn prefix_len(addr: &if_addrs::IfAddr) -> u8 {
    match addr {
        if_addrs::IfAddr::V4(a) => a.prefixlen,
        if_addrs::IfAddr::V6(a) => a.prefixlen,
    }
}

/// The on-link network of one interface address. Implausible prefixes (a
/// zero netmask) shrink to the address itself for IPv4 and to its /64 for
/// IPv6; IPv6 prefixes longer than /64 widen to the /64 (the LAN).
pub fn interface_net(ip: IpAddr, prefix: u8) -> Option<IpNet> {
    let prefix = match ip {
        IpAddr::V4(_) if !(8..=32).contains(&prefix) => 32,
        IpAddr::V4(_) => prefix,
        IpAddr::V6(_) if !(32..=64).contains(&prefix) => 64,
        IpAddr::V6(_) => prefix,
    };
    IpNet::new(ip, prefix).ok().map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(ip: &str, p: u8) -> String {
        interface_net(ip.parse().expect("ip"), p)
            .map(|n| n.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn interface_prefixes_are_sane() {
        assert_eq!(net("203.0.113.7", 24), "203.0.113.0/24");
        assert_eq!(net("203.0.113.7", 0), "203.0.113.7/32");
        assert_eq!(net("2a01:db8:1:2:3:4:5:6", 64), "2a01:db8:1:2::/64");
        assert_eq!(net("2a01:db8:1:2:3:4:5:6", 128), "2a01:db8:1:2::/64");
        assert_eq!(net("2a01:db8:1:2:3:4:5:6", 0), "2a01:db8:1:2::/64");
        assert_eq!(net("2a01:db8:1:2:3:4:5:6", 56), "2a01:db8:1::/56");
    }

    #[test]
    fn loopback_interface_is_among_local_nets() {
        let nets = LocalNets::default().get();
        let holds = |ip: &str| {
            let ip: IpAddr = ip.parse().expect("ip");
            nets.iter().any(|n| n.contains(&ip))
        };
        // Every Linux machine (and CI container) has lo with 127.0.0.1.
        assert!(holds("127.0.0.1"));
        assert!(!holds("8.8.8.8"));
    }
}
