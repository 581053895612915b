//! The ground floor: small rules every part may use, depending on none of them.

pub mod digest;
pub mod hashing;
pub mod kinds;
pub mod loopback;
pub mod open;
pub mod sort;
pub mod tls;
