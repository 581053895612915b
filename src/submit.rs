//! Placeholder: submission with retries (being written).
