//! Layer 2 of the guard: a `reqwest::dns::Resolve` that filters answers.
//!
//! hyper connects only to the addresses the resolver returns, so filtering
//! here closes the DNS-rebinding window: the address that is checked is the
//! address that is dialled. A name whose every address is refused fails with
//! a typed [`Blocked`] error that the chain recognises in reqwest's error
//! source chain and reports as `blocked_address`.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{Blocked, Guard};

/// The operating system's resolver (`getaddrinfo` on a blocking thread).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolve;

impl Resolve for SystemResolve {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Wraps any resolver and keeps only the addresses the [`Guard`] allows.
#[derive(Clone)]
pub struct GuardedResolve {
    inner: Arc<dyn Resolve>,
    guard: Arc<Guard>,
}

impl GuardedResolve {
    pub fn new(inner: Arc<dyn Resolve>, guard: Arc<Guard>) -> Self {
        GuardedResolve { inner, guard }
    }
}

impl Resolve for GuardedResolve {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        if let Err(blocked) = self.guard.check_name(&host) {
            return Box::pin(async move { Err(blocked.into()) });
        }
        let guard = self.guard.clone();
        let lookup = self.inner.resolve(name);
        Box::pin(async move {
            let answers: Vec<SocketAddr> = lookup.await?.collect();
            if answers.is_empty() {
                let none = std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} has no addresses"),
                );
                return Err(none.into());
            }
            filter(&guard, &host, answers)
                .map(|allowed| Box::new(allowed.into_iter()) as Addrs)
                .map_err(Into::into)
        })
    }
}

/// Keeps the allowed answers; fails with the first refusal when none remain.
pub fn filter(
    guard: &Guard,
    host: &str,
    answers: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, Blocked> {
    let mut first_refusal = None;
    let mut allowed = Vec::with_capacity(answers.len());
    for addr in answers {
        match guard.check_ip(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(b) => {
                first_refusal.get_or_insert(b);
            }
        }
    }
    match (allowed.is_empty(), first_refusal) {
        (true, Some(first)) => Err(Blocked::AllAddresses {
            host: host.to_string(),
            first: Box::new(first),
        }),
        _ => Ok(allowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn mixed_answers_keep_only_public_ones() {
        let g = Guard::default();
        let out = filter(
            &g,
            "rebind.example",
            vec![
                sa("127.0.0.1:0"),
                sa("93.184.215.14:0"),
                sa("[::ffff:10.0.0.1]:0"),
            ],
        )
        .expect("one public answer remains");
        assert_eq!(out, vec![sa("93.184.215.14:0")]);
    }

    #[test]
    fn all_private_answers_are_a_typed_refusal() {
        let g = Guard::default();
        let err = filter(&g, "evil.example", vec![sa("169.254.169.254:0")]).expect_err("refused");
        assert!(matches!(err, Blocked::AllAddresses { .. }));
        assert!(err.to_string().contains("169.254.169.254"));
    }

    #[test]
    fn empty_answer_is_not_a_refusal() {
        let g = Guard::default();
        assert_eq!(filter(&g, "nothing.example", vec![]), Ok(vec![]));
    }
}
