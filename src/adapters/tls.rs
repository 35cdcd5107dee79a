//! The roots of trust of every TLS connection a function makes (S3 and the other AWS APIs through the SDK's HTTP
//! connector, Valkey through fred): one CA bundle, read when a TLS client first needs it, not at every start.
//!
//! Left to themselves, the SDK and fred each call rustls-native-certs, which reads the system's CA bundle and then
//! every file of the certificate directory (the same roots a second time: 147 files on Debian), and the SDK does it
//! while the client is created, to warm its cache. Decoding those PEM files was 89% of the instructions a function
//! ran before its first `/next`, the same in the commit the issue took as its baseline
//! ([cold starts](../../docs/src/benchmarks/cold-starts.md)). The bundle alone holds every root the directory does.
//!
//! Which bundle: the one `SSL_CERT_FILE` names (as for OpenSSL and rustls-native-certs: operators and the TLS tests
//! point it at their own CA), else the first of the distribution paths OpenSSL's probe knows, the one
//! rustls-native-certs reads first (`/etc/ssl/certs/ca-certificates.crt` on Debian, the `ca-trust` bundle on
//! Amazon Linux 2023, which Lambda's `provided.al2023` runtime is). With `SSL_CERT_DIR` set, or no bundle found,
//! the native loader's own search is kept, so that nothing that verified before stops verifying.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;
use rustls::RootCertStore;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot set up TLS with aws-lc-rs: {0}")]
    Provider(#[source] rustls::Error),
}

/// Where the roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// One PEM bundle.
    Bundle(PathBuf),
    /// rustls-native-certs' own search: `SSL_CERT_DIR` (with `SSL_CERT_FILE`) when set, else the system's
    /// certificate directories.
    Native,
}

/// SSL_CERT_FILE and SSL_CERT_DIR are the process's TLS environment, read where OpenSSL and rustls-native-certs read
/// them, not s3kv configuration.
fn source(var: impl Fn(&str) -> Option<String>, probe: impl FnOnce() -> Option<PathBuf>) -> Source {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if set("SSL_CERT_DIR").is_some() {
        return Source::Native;
    }
    match set("SSL_CERT_FILE").map(PathBuf::from).or_else(probe) {
        Some(file) => Source::Bundle(file),
        None => Source::Native,
    }
}

fn this_process_source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| {
        source(
            |name| std::env::var(name).ok(),
            || openssl_probe::probe().cert_file,
        )
    })
}

/// The roots as a rustls store (fred's client configuration), read on first use. Never fails: with no usable root
/// (a machine without CA certificates) a TLS handshake fails with an unknown issuer, as with the clients' own
/// loaders, and the problem is logged.
fn root_store() -> Arc<RootCertStore> {
    static STORE: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let found = match this_process_source() {
                Source::Bundle(file) => rustls_native_certs::load_certs_from_paths(Some(file), None),
                Source::Native => rustls_native_certs::load_native_certs(),
            };
            for error in &found.errors {
                tracing::warn!(%error, "root certificates: not all could be read");
            }
            let mut store = RootCertStore::empty();
            let (_, unusable) = store.add_parsable_certificates(found.certs);
            if unusable > 0 {
                tracing::warn!(unusable, "root certificates rustls cannot use were skipped");
            }
            if store.is_empty() {
                tracing::warn!("no root certificates: TLS connections will fail to verify (SSL_CERT_FILE names a CA bundle)");
            }
            Arc::new(store)
        })
        .clone()
}

/// fred's TLS settings (Valkey over TLS): aws-lc-rs, TLS 1.2 and 1.3, the process's roots.
pub fn rustls_config() -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_root_certificates(root_store())
        .with_no_client_auth())
}

/// The SDK connector's TLS settings: the bundle's roots and no others (the SDK takes them as PEM and decodes them
/// itself), or the SDK's native roots where there is no single bundle.
fn sdk_tls_context() -> TlsContext {
    static CONTEXT: OnceLock<TlsContext> = OnceLock::new();
    CONTEXT
        .get_or_init(|| {
            let store = match this_process_source() {
                Source::Bundle(file) => match std::fs::read(file) {
                    Ok(pem) => TrustStore::empty().with_pem_certificate(pem),
                    Err(error) => {
                        tracing::warn!(%error, file = %file.display(), "cannot read the CA bundle; using the system's roots");
                        TrustStore::default()
                    }
                },
                Source::Native => TrustStore::default(),
            };
            TlsContext::builder()
                .with_trust_store(store)
                .build()
                .unwrap_or_default()
        })
        .clone()
}

/// The SDK's default HTTPS client (hyper, rustls on aws-lc-rs, proxy settings from the environment), built as
/// aws-smithy-runtime builds its own, but with [`sdk_tls_context`]'s roots, taken when the first request needs a
/// connector. The SDK's own client builds a throwaway connector when a client is created, only to load the roots
/// early; here nothing is built at start, so a function reaches its first `/next` without them, and one that never
/// calls S3 (a reader that hits the cache) never reads them. Give it to every `aws_config` loader a function uses.
pub fn sdk_http_client() -> SharedHttpClient {
    let client = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(sdk_tls_context());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    FirstRequest(client).into_shared()
}

/// An HTTP client that builds its connectors on the first request only: it leaves `validate_base_client_config`
/// at the trait's default, which builds nothing.
#[derive(Debug)]
struct FirstRequest(SharedHttpClient);

impl HttpClient for FirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// The connector the push functions sign their own requests on ([`super::signed_http`]): the SDK's, with the same
/// roots.
pub(crate) fn sdk_connector() -> aws_smithy_http_client::Connector {
    aws_smithy_http_client::Connector::builder()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(sdk_tls_context())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bundle_unless_the_environment_asks_for_directories() {
        let probe = || Some(PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            source(env(&[]), probe),
            Source::Bundle("/etc/ssl/certs/ca-certificates.crt".into())
        );
        assert_eq!(
            source(env(&[("SSL_CERT_FILE", "/tmp/ca.pem")]), probe),
            Source::Bundle("/tmp/ca.pem".into())
        );
        assert_eq!(
            source(env(&[("SSL_CERT_FILE", "")]), probe),
            Source::Bundle("/etc/ssl/certs/ca-certificates.crt".into())
        );
        assert_eq!(
            source(
                env(&[
                    ("SSL_CERT_FILE", "/tmp/ca.pem"),
                    ("SSL_CERT_DIR", "/etc/ssl/certs")
                ]),
                probe
            ),
            Source::Native
        );
        assert_eq!(source(env(&[]), || None), Source::Native);
    }

    #[test]
    fn fred_gets_a_configuration_whatever_the_machine_holds() {
        assert!(rustls_config().is_ok());
    }
}
