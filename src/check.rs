//! Placeholder: the one-image `check` command (being written).
