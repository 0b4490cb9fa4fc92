//! Certificates for HTTPS tests: a fresh CA and a server certificate
//! signed by it, as DER for the receiver and as PEM files for the
//! collector and the clients that must trust the CA.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA and a server certificate signed by it.
pub struct Pki {
    /// The CA's certificate, PEM: what a client is told to trust.
    pub ca_pem: String,
    /// The server's chain, DER: its certificate.
    pub server_chain: Vec<Vec<u8>>,
    /// The server's private key, DER.
    pub server_key: Vec<u8>,
    /// The server's certificate, PEM.
    pub server_cert_pem: String,
    /// The server's private key, PEM.
    pub server_key_pem: String,
}

/// Where [`Pki::write`] put the PEM files.
pub struct PkiFiles {
    /// The CA's certificate.
    pub ca: PathBuf,
    /// The server's certificate followed by the CA's.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl Pki {
    /// A CA named after `name` and a certificate for `localhost` and
    /// 127.0.0.1 signed by it.
    pub fn new(name: &str) -> Pki {
        Pki::for_names(name, &["localhost", "127.0.0.1"], false)
    }

    /// Like [`Pki::new`], with a server certificate for `names` only, valid
    /// in 2000 alone if `expired`.
    pub fn for_names(name: &str, names: &[&str], expired: bool) -> Pki {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("survey test CA {name}"));
        let ca_cert = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let server_key = KeyPair::generate().expect("a server key");
        let mut server_params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("server parameters");
        if expired {
            server_params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            server_params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("a server certificate");
        Pki {
            ca_pem: ca_cert.pem(),
            server_chain: vec![server_cert.der().to_vec()],
            server_key: server_key.serialize_der(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        }
    }

    /// Writes `ca.pem`, `cert.pem` (the server's certificate, then the
    /// CA's) and `key.pem` into `dir`.
    pub fn write(&self, dir: &Path) -> PkiFiles {
        let files = PkiFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.ca, &self.ca_pem).expect("ca.pem written");
        std::fs::write(
            &files.cert,
            format!("{}{}", self.server_cert_pem, self.ca_pem),
        )
        .expect("cert.pem written");
        std::fs::write(&files.key, &self.server_key_pem).expect("key.pem written");
        files
    }
}
