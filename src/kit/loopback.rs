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
    bare_is_loopback(bare)
}

/// [`url_is_loopback`] for a host as journals keep it (`127.0.0.1:8080`, `[::1]:9`,
/// `localhost:3000`, `::1`): a `:port` suffix is allowed, names compare without case.
pub fn host_is_loopback(host: &str) -> bool {
    let host = host.trim();
    let port = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    let bare = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, "")) => inside,
            Some((inside, tail)) if tail.strip_prefix(':').is_some_and(port) => inside,
            _ => return false,
        }
    } else if host.parse::<IpAddr>().is_ok() {
        host
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) if port(p) => h,
            _ => host,
        }
    };
    bare_is_loopback(bare)
}

/// The rule itself, for a host without brackets or port: a loopback IP (IPv4-mapped too), or
/// exactly the name `localhost` (never one that merely ends with it).
fn bare_is_loopback(bare: &str) -> bool {
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
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

    #[test]
    fn loopback_hosts_as_strings() {
        for yes in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.255.0.9",
            "::1",
            "[::1]",
            "[::1]:9",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]:80",
            "localhost",
            "LocalHost:3000",
        ] {
            assert!(host_is_loopback(yes), "{yes}");
        }
        for no in [
            "api.localhost",
            "api.localhost:80",
            "localhost.",
            "localhost.:80",
            "localhost.evil.com",
            "10.0.0.1",
            "10.0.0.1:80",
            "[::2]",
            "[::1]x",
            "[::1]:",
            "::ffff:10.0.0.1",
            "verification.didit.me",
            "",
            "localhost:http",
        ] {
            assert!(!host_is_loopback(no), "{no}");
        }
    }
}
