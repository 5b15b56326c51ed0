//! A raw TLS endpoint for tests that play a peer doing what a well-behaved box never would.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use vitrine_peer::Identity;
use vitrine_peer::frame::{Frame, Hello, PROTOCOL_VERSION};
use vitrine_peer::proof::EXPORTER_LABEL;

/// An attacker's verifier: accepts any certificate, still checks handshake signatures.
#[derive(Debug)]
pub struct AnyCert(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("tls1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for AnyCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("tls1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

pub fn client(ident: Option<&Identity>) -> ClientConfig {
    let p = provider();
    let b = ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(p)));
    let mut cfg = match ident {
        Some(i) => b.with_client_auth_cert(vec![i.cert()], i.private_key()).unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"vitrine/1".to_vec()];
    cfg
}

pub async fn read_frame<S: AsyncReadExt + Unpin>(s: &mut S) -> std::io::Result<Frame> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await?;
    Frame::parse(&body).map_err(|e| std::io::Error::other(e.to_string()))
}

/// A TLS connection to `addr` under `ident`, its hello sent; returns it and the session's
/// exporter (what rotation statements are bound to).
pub async fn raw_connect(
    addr: std::net::SocketAddr,
    ident: &Identity,
) -> (TlsStream<TcpStream>, [u8; 32]) {
    let tls = raw_tls(addr, ident).await;
    raw_hello(tls).await
}

/// The TLS handshake only: the connection has passed the certificate checks, no hello yet.
pub async fn raw_tls(addr: std::net::SocketAddr, ident: &Identity) -> TlsStream<TcpStream> {
    let connector = TlsConnector::from(Arc::new(client(Some(ident))));
    let name = ServerName::IpAddress(addr.ip().into());
    connector.connect(name, TcpStream::connect(addr).await.unwrap()).await.unwrap()
}

/// Sends the hello on a connection from [`raw_tls`].
pub async fn raw_hello(mut tls: TlsStream<TcpStream>) -> (TlsStream<TcpStream>, [u8; 32]) {
    let hello = Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        name: "raw".into(),
        site_proof: None,
        pair_commit: None,
    });
    tls.write_all(&hello.encode().unwrap()).await.unwrap();
    let mut exporter = [0u8; 32];
    tls.get_ref().1.export_keying_material(&mut exporter, EXPORTER_LABEL, None).unwrap();
    (tls, exporter)
}

pub async fn send(tls: &mut TlsStream<TcpStream>, frame: &Frame) {
    tls.write_all(&frame.encode().unwrap()).await.unwrap();
}

/// The next frame that is not a keepalive; `None` once the connection ends.
pub async fn next_frame(tls: &mut TlsStream<TcpStream>) -> Option<Frame> {
    loop {
        match read_frame(tls).await.ok()? {
            Frame::Ping(n) => send(tls, &Frame::Pong(n)).await,
            Frame::Pong(_) => {}
            other => return Some(other),
        }
    }
}
