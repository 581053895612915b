//! Didit's API: the endpoint descriptions (one per check), the one lenient reading of each
//! answer, the transport (the HTTP client), and the classifier (what each answer means).

pub mod classify;
pub mod client;
pub mod endpoint;
pub mod model;

pub use crate::kit::loopback::host_is_loopback as is_loopback_host;
/// The process's TLS provider, installed before any HTTPS client is built (for callers that
/// build their own clients: the tests and the benchmarks).
pub use crate::kit::tls::install as install_tls;
pub use classify::{FatalKind, Outcome, classify, classify_for, classify_transport};
pub use client::{
    Attempt, Client, ClientConfig, ClientError, DEFAULT_BASE_URL, MAX_RESPONSE_BYTES, REDACTED,
    redact_body,
};
pub use endpoint::{AGE, Endpoint, FACE_MATCH, LIVENESS};
pub use model::{
    CheckResponse, Entity, ParamError, Params, Upload, UserImage, Warning, parse_metadata,
};
