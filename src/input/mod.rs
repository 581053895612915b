//! Placeholder: input sources (being written).
