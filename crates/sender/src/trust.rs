//! Which certificate authorities SMTP over TLS trusts, and what to say when a server's
//! certificate is refused.
//!
//! A relay's certificate is checked against the operating system's store (on Debian
//! `/etc/ssl/certs`, so a CA added with `update-ca-certificates` is trusted as by every other
//! mail client on the machine; `SSL_CERT_FILE` / `SSL_CERT_DIR` replace it, as for OpenSSL)
//! plus an optional PEM bundle of our own (`smtp_ca_file`). Only a machine whose store is
//! empty or unreadable falls back to the web PKI roots compiled into the binary.
//!
//! The store is read once ([`TlsTrust::system`] is shared by the process) and the rustls
//! configuration built from it once per server name: reading and parsing a few hundred
//! certificates per connection would cost more than the handshake.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use lettre::transport::smtp::client::{Certificate, CertificateStore, TlsParameters};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, RootCertStore};

/// The certificate authorities trusted for SMTP over TLS. Cheap to share (`Arc`); built once
/// at start-up.
pub struct TlsTrust {
    /// The operating system's usable roots, then those of `smtp_ca_file`.
    roots: Vec<CertificateDer<'static>>,
    /// The operating system's store gave nothing usable: the compiled-in web roots stand in.
    webpki_fallback: bool,
    /// `smtp_ca_file`, when set.
    ca_file: Option<PathBuf>,
    /// The TLS parameters for the last server name asked for (one relay per process).
    built: Mutex<Option<TlsParameters>>,
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTrust")
            .field("roots", &self.roots.len())
            .field("webpki_fallback", &self.webpki_fallback)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// An `smtp_ca_file` that cannot be used. The message names the file and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TrustError(String);

/// Keeps the certificates rustls can use as trust anchors; says how many it dropped.
fn usable(certs: Vec<CertificateDer<'static>>) -> (Vec<CertificateDer<'static>>, usize) {
    let total = certs.len();
    let kept: Vec<_> = certs
        .into_iter()
        .filter(|c| RootCertStore::empty().add(c.clone()).is_ok())
        .collect();
    let dropped = total - kept.len();
    (kept, dropped)
}

impl TlsTrust {
    /// The operating system's store, read on first use and shared by the whole process.
    pub fn system() -> Arc<Self> {
        static SYSTEM: OnceLock<Arc<TlsTrust>> = OnceLock::new();
        SYSTEM.get_or_init(|| Arc::new(Self::load_system())).clone()
    }

    fn load_system() -> Self {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "part of the system certificate store could not be read");
        }
        let (roots, dropped) = usable(found.certs);
        let webpki_fallback = roots.is_empty();
        if webpki_fallback {
            tracing::warn!(
                "the operating system's certificate store is empty or unreadable (install ca-certificates); SMTP over TLS trusts only the web roots built into nurture, plus smtp_ca_file"
            );
        } else {
            tracing::debug!(
                roots = roots.len(),
                unusable = dropped,
                "loaded the system certificate store"
            );
        }
        Self {
            roots,
            webpki_fallback,
            ca_file: None,
            built: Mutex::new(None),
        }
    }

    /// The operating system's store plus every certificate in the PEM bundle at `path`
    /// (`smtp_ca_file`). Fails, naming the file, if it cannot be read, is not PEM, holds no
    /// certificate, or holds one that cannot serve as a certificate authority.
    pub fn with_ca_file(path: &Path) -> Result<Arc<Self>, TrustError> {
        let shown = path.display();
        let pem = std::fs::read(path)
            .map_err(|e| TrustError(format!("cannot read smtp_ca_file {shown}: {e}")))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TrustError(format!("smtp_ca_file {shown} is not a PEM bundle: {e}")))?;
        if certs.is_empty() {
            return Err(TrustError(format!(
                "smtp_ca_file {shown} holds no certificate (no -----BEGIN CERTIFICATE----- block)"
            )));
        }
        for (i, c) in certs.iter().enumerate() {
            if let Err(e) = RootCertStore::empty().add(c.clone()) {
                return Err(TrustError(format!(
                    "smtp_ca_file {shown}: certificate {} of {} cannot be used as a certificate authority: {e}",
                    i + 1,
                    certs.len()
                )));
            }
        }
        let system = Self::system();
        let mut roots = system.roots.clone();
        roots.extend(certs);
        Ok(Arc::new(Self {
            roots,
            webpki_fallback: system.webpki_fallback,
            ca_file: Some(path.to_path_buf()),
            built: Mutex::new(None),
        }))
    }

    /// How many certificate authorities are trusted besides the compiled-in web roots.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// No certificate authority is trusted besides the compiled-in web roots.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// A rustls root store of these authorities, for HTTPS webhooks.
    pub(crate) fn root_store(&self) -> RootCertStore {
        let mut store = RootCertStore::empty();
        for root in &self.roots {
            let _ = store.add(root.clone());
        }
        store
    }

    /// The TLS parameters for a server named `host` (a name or an IP address).
    pub(crate) fn parameters(
        &self,
        host: &str,
    ) -> Result<TlsParameters, lettre::transport::smtp::Error> {
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = built.as_ref().filter(|p| p.domain() == host) {
            return Ok(p.clone());
        }
        let store = if self.webpki_fallback {
            CertificateStore::WebpkiRoots
        } else {
            CertificateStore::None
        };
        let mut builder = TlsParameters::builder(host.to_string()).certificate_store(store);
        for root in &self.roots {
            builder = builder.add_root_certificate(Certificate::from_der(root.to_vec())?);
        }
        let params = builder.build_rustls()?;
        *built = Some(params.clone());
        Ok(params)
    }
}

/// What went wrong in a TLS handshake, in words for an operator, when `e` (or an error it
/// wraps) is one: `None` for any other failure.
pub(crate) fn tls_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(err) = next {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return Some(describe(tls));
        }
        next = err.source();
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    let rustls::Error::InvalidCertificate(cert) = e else {
        return format!("the TLS handshake failed ({e})");
    };
    match cert {
        CertificateError::UnknownIssuer => "the server's certificate is not trusted (unknown issuer); add its CA to the system store or set smtp_ca_file".into(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("the server's certificate has expired ({cert})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("the server's certificate is not valid yet ({cert})")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("the server's certificate is for another name ({cert}); use one of its names in smtp_url")
        }
        CertificateError::Revoked => "the server's certificate has been revoked".into(),
        other => format!("the server's certificate was refused ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_errors_are_found_inside_io_errors_and_described() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let said = tls_problem(&wrapped).unwrap();
        assert_eq!(
            said,
            "the server's certificate is not trusted (unknown issuer); add its CA to the system store or set smtp_ca_file"
        );
        for (err, expect) in [
            (CertificateError::Expired, "has expired"),
            (CertificateError::NotValidYet, "not valid yet"),
            (CertificateError::NotValidForName, "for another name"),
            (CertificateError::Revoked, "revoked"),
            (CertificateError::BadSignature, "was refused"),
        ] {
            let said = tls_problem(&rustls::Error::InvalidCertificate(err)).unwrap();
            assert!(said.contains(expect), "{said}");
        }
        let said = tls_problem(&rustls::Error::NoCertificatesPresented).unwrap();
        assert!(said.starts_with("the TLS handshake failed"), "{said}");
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(tls_problem(&plain), None);
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = TlsTrust::with_ca_file(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read smtp_ca_file ") && e.contains("nope.pem"),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = TlsTrust::with_ca_file(&empty).unwrap_err().to_string();
        assert!(e.contains("holds no certificate"), "{e}");
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = TlsTrust::with_ca_file(&broken).unwrap_err().to_string();
        assert!(e.contains("certificate 1 of 1 cannot be used"), "{e}");
    }
}
