//! The one loopback rule: whether plain http may be used to reach a URL (the API's base URL,
//! an object store's endpoint). Only this machine: an IP in 127.0.0.0/8, `::1` (IPv4-mapped
//! too), or exactly `localhost`.

use std::net::IpAddr;

use reqwest::Url;

/// Whether a parsed URL's host is loopback. The host is already normalised by the parse: IPv4
/// in any notation becomes dotted decimal, IPv6 is bracketed, names are lower-cased (so
/// `localhost.` and `api.localhost` stay themselves and are refused).
pub fn url_is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => host == "localhost",
    }
}

/// [`url_is_loopback`] for URL text; text that is not a URL is not loopback.
pub fn text_is_loopback(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| url_is_loopback(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_is_loopback() {
        for yes in [
            "http://127.0.0.1:9000",
            "http://localhost:1/x",
            "http://LOCALHOST/",
            "http://[::1]:80",
            "http://127.8.9.10",
            "http://0x7f.1/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(text_is_loopback(yes), "{yes}");
        }
        for no in [
            "http://10.0.0.1:9000",
            "http://minio.internal",
            "http://127.0.0.1.evil.example",
            "http://localhost@evil.example",
            "http://localhost./",
            "http://api.localhost/",
            "nonsense",
        ] {
            assert!(!text_is_loopback(no), "{no}");
        }
    }
}
