//! Placeholder: backoff policy (being written).
