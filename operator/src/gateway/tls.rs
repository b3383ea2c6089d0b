//! The gateway's certificate: read from a `kubernetes.io/tls` Secret in the operator's
//! namespace, or generated self-signed and stored there on first start, so every replica
//! and every restart serves the same certificate that agents were told to trust.

use anyhow::Context;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// PEM certificate chain and key.
#[derive(Clone)]
pub struct CertPem {
    /// `tls.crt`.
    pub cert: String,
    /// `tls.key`.
    pub key: String,
}

impl std::fmt::Debug for CertPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPem")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A self-signed certificate for `dns_names` plus localhost and 127.0.0.1.
pub fn self_signed(dns_names: &[String]) -> anyhow::Result<CertPem> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    names.extend(dns_names.iter().cloned());
    let ck =
        rcgen::generate_simple_self_signed(names).context("generating the gateway certificate")?;
    Ok(CertPem {
        cert: ck.cert.pem(),
        key: ck.signing_key.serialize_pem(),
    })
}

fn from_secret(s: &Secret) -> Option<CertPem> {
    let data = s.data.as_ref()?;
    let get = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    Some(CertPem {
        cert: get("tls.crt")?,
        key: get("tls.key")?,
    })
}

/// The certificate in Secret `name`, created if absent. Concurrent replicas race on the
/// create; the loser reads the winner's Secret.
pub async fn load_or_create(
    client: &Client,
    namespace: &str,
    name: &str,
    dns_names: &[String],
) -> anyhow::Result<CertPem> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(s) = api.get_opt(name).await? {
        return from_secret(&s)
            .with_context(|| format!("Secret {namespace}/{name} lacks tls.crt or tls.key"));
    }
    let pem = self_signed(dns_names)?;
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.type_ = Some("kubernetes.io/tls".into());
    s.data = Some(BTreeMap::from([
        (
            "tls.crt".to_string(),
            ByteString(pem.cert.clone().into_bytes()),
        ),
        (
            "tls.key".to_string(),
            ByteString(pem.key.clone().into_bytes()),
        ),
    ]));
    match api.create(&PostParams::default(), &s).await {
        Ok(_) => Ok(pem),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let s = api.get(name).await?;
            from_secret(&s).context("the gateway TLS Secret another replica created is malformed")
        }
        Err(e) => Err(e.into()),
    }
}

/// A rustls server configuration (ring provider) for `pem`.
pub fn server_config(pem: &CertPem) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
        .collect::<Result<_, _>>()
        .context("parsing tls.crt")?;
    let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).context("parsing tls.key")?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the gateway certificate and key do not match")?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_makes_a_server_config() {
        let pem = self_signed(&["zop-gateway.zoptoken-system.svc".into()]).unwrap();
        assert!(pem.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(server_config(&pem).is_ok());
        assert!(!format!("{pem:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_mismatched_key_is_refused() {
        let a = self_signed(&[]).unwrap();
        let b = self_signed(&[]).unwrap();
        let mixed = CertPem {
            cert: a.cert,
            key: b.key,
        };
        assert!(server_config(&mixed).is_err());
    }
}
