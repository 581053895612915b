//! Placeholder: the Didit client (being written).
