//! The process's TLS cryptography: rustls with *ring*, installed once before any HTTPS client
//! (Didit's, or a bucket's) is built.

/// Make *ring* the process's default rustls provider. Idempotent; a provider some embedding
/// program installed first is kept.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
