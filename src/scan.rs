//! Placeholder: scan pipeline (being written).
