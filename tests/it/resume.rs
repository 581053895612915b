//! Integration tests: resume (being written).
