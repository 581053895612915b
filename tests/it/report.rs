//! Integration tests: report (being written).
