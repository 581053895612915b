//! Integration tests: client (being written).
