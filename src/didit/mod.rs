//! Didit's Passive Liveness API: request/response model, the HTTP client, and what each
//! answer means (error classes).

pub mod client;
pub mod error;
pub mod model;

pub use client::{
    Attempt, Client, ClientConfig, ClientError, DEFAULT_BASE_URL, ENDPOINT_PATH,
    MAX_RESPONSE_BYTES, REDACTED, is_loopback_host, redact_body,
};
pub use error::{FatalKind, Outcome, classify, classify_transport};
pub use model::{
    Entity, Liveness, LivenessResponse, ParamError, Params, Upload, UserImage, Warning,
    parse_metadata,
};
