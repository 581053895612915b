//! Integration tests: scan (being written).
