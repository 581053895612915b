//! Placeholder: outputs (being written).
