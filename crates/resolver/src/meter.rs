//! An optional watcher of one resolution: it is told every byte downloaded
//! (status line, headers, body chunks) and may refuse a hop before its
//! request is sent. The agent uses it for its quotas and destination rules;
//! the resolver knows nothing of either.
//!
//! Why a task-local and not a parameter: the bytes are read deep in the hop
//! code (`body.rs`); a task-local reaches them without threading a parameter
//! through every function, and a resolution without a watcher pays nothing.

use std::sync::Arc;

use url::Url;

/// Watches one resolution (see [`crate::Resolver::resolve_watched`]).
pub trait Watch: Send + Sync {
    /// Called before each hop's request is sent; `Err(why)` stops the chain
    /// there with the conclusion `refused_by_policy` and nothing is sent.
    fn before_hop(&self, url: &Url) -> Result<(), String>;
    /// `bytes` more were downloaded by this resolution.
    fn downloaded(&self, bytes: u64);
}

tokio::task_local! {
    static WATCH: Arc<dyn Watch>;
}

/// Runs `fut` with `watch` watching it.
pub(crate) async fn scope<F: std::future::Future>(watch: Arc<dyn Watch>, fut: F) -> F::Output {
    WATCH.scope(watch, fut).await
}

/// Tells the watcher, if any, that `bytes` were downloaded.
pub(crate) fn downloaded(bytes: usize) {
    let _ = WATCH.try_with(|w| w.downloaded(bytes as u64));
}

/// Tells the watcher, if any, of `bytes()` downloaded; `bytes` is not
/// computed without one.
pub(crate) fn downloaded_with(bytes: impl FnOnce() -> usize) {
    let _ = WATCH.try_with(|w| w.downloaded(bytes() as u64));
}

/// Asks the watcher, if any, whether `url` may be requested.
pub(crate) fn before_hop(url: &Url) -> Result<(), String> {
    WATCH.try_with(|w| w.before_hop(url)).unwrap_or(Ok(()))
}

/// The bytes of a response's status line and headers as sent on HTTP/1.1
/// (`HTTP/1.1 200 OK\r\n`, `name: value\r\n` each, the blank line).
pub(crate) fn head_bytes(resp: &reqwest::Response) -> usize {
    let status = "HTTP/1.1 200 \r\n".len() + resp.status().canonical_reason().map_or(0, str::len);
    let headers: usize = resp
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.as_bytes().len() + 2)
        .sum();
    status + headers + 2
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use link_peeler_wire::protocol::Conclusion;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::{Resolver, ResolverConfig};

    /// A loopback HTTP/1.1 server: `/a` redirects to `/b`, `/b` is a 1000-byte page.
    async fn serve() -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(Mutex::new(vec![]));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = req.split(' ').nth(1).unwrap_or("").to_owned();
                    log.lock().unwrap().push(path.clone());
                    let reply = if path == "/a" {
                        "HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n".to_owned()
                    } else {
                        let body = "x".repeat(1000);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        (base, seen)
    }

    struct Counting {
        bytes: AtomicU64,
        refuse_path: Option<&'static str>,
    }

    impl Watch for Counting {
        fn before_hop(&self, url: &Url) -> Result<(), String> {
            match self.refuse_path {
                Some(p) if url.path() == p => Err(format!("{url} is refused")),
                _ => Ok(()),
            }
        }
        fn downloaded(&self, bytes: u64) {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn resolver() -> Resolver {
        Resolver::new(ResolverConfig {
            allow_networks: vec!["127.0.0.0/8".parse().unwrap()],
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn every_byte_of_every_hop_is_counted() {
        let (base, _) = serve().await;
        let watch = Arc::new(Counting {
            bytes: AtomicU64::new(0),
            refuse_path: None,
        });
        let r = resolver()
            .resolve_watched(&format!("{base}/a"), None, None, watch.clone())
            .await;
        assert_eq!(r.conclusion, Conclusion::Resolved, "{r:?}");
        let counted = watch.bytes.load(Ordering::Relaxed);
        // Two heads (each at least its status line) and the 1000-byte body.
        assert!(counted >= 1000 + 2 * 17, "{counted}");
        assert!(counted < 1000 + 2 * 200, "{counted}");
        // Without a watcher nothing is counted anywhere, and nothing breaks.
        let r = resolver().resolve(&format!("{base}/a")).await;
        assert_eq!(r.conclusion, Conclusion::Resolved);
    }

    #[tokio::test]
    async fn a_refused_hop_is_never_requested() {
        let (base, seen) = serve().await;
        let watch = Arc::new(Counting {
            bytes: AtomicU64::new(0),
            refuse_path: Some("/b"),
        });
        let r = resolver()
            .resolve_watched(&format!("{base}/a"), None, None, watch)
            .await;
        assert_eq!(r.conclusion, Conclusion::RefusedByPolicy, "{r:?}");
        assert_eq!(r.hops.len(), 2);
        assert_eq!(r.hops[1].status, None);
        assert!(r.error.unwrap().contains("refused"));
        assert_eq!(*seen.lock().unwrap(), ["/a"]);
        // Refused at the first hop: no request at all.
        let watch = Arc::new(Counting {
            bytes: AtomicU64::new(0),
            refuse_path: Some("/a"),
        });
        let r = resolver()
            .resolve_watched(&format!("{base}/a"), None, None, watch.clone())
            .await;
        assert_eq!(r.conclusion, Conclusion::RefusedByPolicy);
        assert_eq!(watch.bytes.load(Ordering::Relaxed), 0);
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
