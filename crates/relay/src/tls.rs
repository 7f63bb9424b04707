//! TLS in the relay: `serve --tls-cert PEM --tls-key PEM`.
//!
//! rustls with the `ring` provider (the one the workspace uses everywhere,
//! `link_peeler_wire::tls`), TLS 1.2 and 1.3, HTTP/1.1 over ALPN. The files are
//! read once at start; every problem with them is one line naming the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The certificate chain and private key a relay serves TLS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Reads the files and builds the acceptor.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| pem_error("private key", &files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "TLS certificate {} and key {} cannot be used together: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error("certificate", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", path, e))?;
    if certs.is_empty() {
        return Err(pem_error("certificate", path, pem::Error::NoItemsFound));
    }
    Ok(certs)
}

fn pem_error(what: &str, path: &Path, e: pem::Error) -> anyhow::Error {
    match e {
        pem::Error::Io(e) => {
            anyhow::anyhow!("cannot read the TLS {what} file {}: {e}", path.display())
        }
        pem::Error::NoItemsFound => anyhow::anyhow!(
            "no PEM {what} found in {} (expected a -----BEGIN {}----- block)",
            path.display(),
            if what == "certificate" {
                "CERTIFICATE"
            } else {
                "PRIVATE KEY"
            }
        ),
        other => anyhow::anyhow!(
            "the TLS {what} file {} is not valid PEM: {other}",
            path.display()
        ),
    }
}
