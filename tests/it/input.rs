//! Integration tests: input (being written).
