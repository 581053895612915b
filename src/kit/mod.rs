//! The ground floor: small rules every part may use, depending on none of them.

pub mod loopback;
