//! Placeholder: journal (being written).
