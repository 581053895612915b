//! Integration tests: emulator (being written).
