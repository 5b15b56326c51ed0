//! rustls configuration: TLS 1.3 only, the ring provider set explicitly, ALPN `vitrine/1`,
//! mutual authentication by pinned keys, and no session resumption of any kind.
//!
//! The verifiers ask a [`Gate`] whether the presented key may proceed (pinned, or a stranger
//! while a trust-on-first-connection flow is possible) and still check the TLS 1.3 handshake
//! signature, so a peer must hold the private key of the certificate it shows. Resumption is off
//! because a resumed session skips certificate verification, and with it the pin check.

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureScheme,
};

use crate::id::PeerId;
use crate::identity::{Identity, ed25519_raw_key};

/// The application protocol both ends must agree on.
pub const ALPN: &[u8] = b"vitrine/1";

/// Decides whether a presented key may complete the TLS handshake.
pub(crate) trait Gate: Send + Sync + std::fmt::Debug {
    /// `Err` carries a short reason for logs.
    fn admit(&self, id: &PeerId) -> Result<(), &'static str>;
}

/// The peer ID of an end-entity certificate, if it carries an Ed25519 key.
pub fn cert_peer_id(cert: &CertificateDer<'_>) -> Result<PeerId, Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    let spki = parsed.subject_public_key_info();
    if ed25519_raw_key(spki.as_ref()).is_none() {
        return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
    }
    Ok(PeerId::from_spki(spki.as_ref()))
}

/// The SubjectPublicKeyInfo of a certificate (DER).
pub fn cert_spki(cert: &CertificateDer<'_>) -> Result<Vec<u8>, Error> {
    Ok(ParsedCertificate::try_from(cert)?.subject_public_key_info().as_ref().to_vec())
}

#[derive(Debug)]
struct PinVerifier {
    gate: Arc<dyn Gate>,
    algs: WebPkiSupportedAlgorithms,
}

/// Why the trust store refused a key during the handshake.
#[derive(thiserror::Error)]
#[error("key {peer} refused: {reason}")]
struct KeyRefused {
    peer: PeerId,
    reason: &'static str,
}

// rustls shows the error inside `CertificateError::Other` with `Debug`: keep it readable.
impl std::fmt::Debug for KeyRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl PinVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), Error> {
        // A pinned self-signed key needs no chain; anything else is not one of ours.
        if !intermediates.is_empty() {
            return Err(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        }
        let id = cert_peer_id(end_entity)?;
        self.gate.admit(&id).map_err(|reason| {
            tracing::debug!(peer = %id, reason, "key refused during the TLS handshake");
            // Carried as the error's text so the handshake-failed event says who and why.
            let refusal = KeyRefused { peer: id, reason };
            Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
                refusal,
            ))))
        })
    }

    fn tls13(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(msg, cert, dss, &self.algs)
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(end_entity, intermediates).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic))
    }

    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(msg, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PinVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check(end_entity, intermediates).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic))
    }

    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(msg, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The one crypto provider of this crate; mixing providers panics inside rustls at runtime.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn verifier(gate: Arc<dyn Gate>, provider: &CryptoProvider) -> Arc<PinVerifier> {
    Arc::new(PinVerifier { gate, algs: provider.signature_verification_algorithms })
}

/// The accepting side's configuration.
pub(crate) fn server_config(
    ident: &Identity,
    gate: Arc<dyn Gate>,
) -> Result<Arc<ServerConfig>, Error> {
    let provider = provider();
    let v = verifier(gate, &provider);
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(v)
        .with_single_cert(vec![ident.cert()], ident.private_key())?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // No session cache and no tickets: every connection is a full handshake with a pin check.
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    cfg.max_early_data_size = 0;
    Ok(Arc::new(cfg))
}

/// The dialing side's configuration.
pub(crate) fn client_config(
    ident: &Identity,
    gate: Arc<dyn Gate>,
) -> Result<Arc<ClientConfig>, Error> {
    let provider = provider();
    let v = verifier(gate, &provider);
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(v)
        .with_client_auth_cert(vec![ident.cert()], ident.private_key())?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.resumption = Resumption::disabled();
    cfg.enable_early_data = false;
    Ok(Arc::new(cfg))
}

/// The name the dialer presents: the dialed IP, so no host name is ever sent in SNI (rustls
/// sends none for IP addresses) and none is checked (identities are keys).
pub(crate) fn server_name(addr: std::net::SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}
