//! Network addresses in resource documents: IP addresses, hostnames,
//! `host:port` pairs, URLs and URL paths.

use std::net::IpAddr;

use crate::schema::Schema;
use crate::violations::{FieldPath, Violations};

/// An IP address (v4 or v6), as inbound and outbound addresses must be.
pub const IP: Schema = Schema::Check(&Schema::String, |value, path, out| {
    report(path, out, check_ip(value.as_str().unwrap_or_default()));
});

/// An IP address or a hostname the control plane resolves, but not the
/// wildcard `0.0.0.0` or `::` (other proxies must be able to reach it).
pub const HOST: Schema = Schema::Check(&Schema::String, |value, path, out| {
    report(path, out, check_host(value.as_str().unwrap_or_default()));
});

/// An absolute file path on the proxy's host (`/var/log/access.log`, or
/// `C:\logs\access.log` on Windows), such as an access log or an event log.
pub const FILE_PATH: Schema = Schema::Check(&Schema::NonEmptyString, |value, path, out| {
    if !is_file_path(value.as_str().unwrap_or_default()) {
        out.add(path, format!("must be an absolute file path, got {value}"));
    }
});

/// `host:port`, such as a TCP log collector's address.
pub const HOST_PORT: Schema = Schema::Check(&Schema::String, |value, path, out| {
    report(path, out, check_host_port(value.as_str().unwrap_or_default()));
});

/// An absolute URL with an explicit port (a tracing collector).
pub const URL_WITH_PORT: Schema = Schema::Check(&Schema::String, |value, path, out| {
    report(path, out, check_url_with_port(value.as_str().unwrap_or_default()));
});

/// A URL path such as `/metrics`.
pub const URL_PATH: Schema = Schema::Check(&Schema::String, |value, path, out| {
    if !is_url_path(value.as_str().unwrap_or_default()) {
        out.add(path, format!("must be a URL path starting with '/', got {value}"));
    }
});

fn report(path: &FieldPath, out: &mut Violations, result: Result<(), String>) {
    if let Err(reason) = result {
        out.add(path, reason);
    }
}

pub fn check_ip(text: &str) -> Result<(), String> {
    match text.parse::<IpAddr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("{text:?} is not an IP address (such as 10.0.0.1 or fd00::1)")),
    }
}

pub fn check_host(text: &str) -> Result<(), String> {
    match text.parse::<IpAddr>() {
        _ if text.is_empty() => Err("must not be empty".into()),
        Ok(ip) if ip.is_unspecified() => {
            Err(format!("must not be {text}: other proxies cannot reach a wildcard address"))
        }
        Ok(_) => Ok(()),
        Err(_) if is_hostname(text) => Ok(()),
        Err(_) => Err(format!("{text:?} is neither an IP address nor a hostname")),
    }
}

/// A DNS name: dot-separated labels of 1-63 letters, digits, `-` and `_`
/// that do not start or end with `-`; 253 characters at most; one trailing
/// dot allowed.
pub fn is_hostname(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// `host:port` with a hostname or IP (IPv6 in brackets) and a port number.
pub fn check_host_port(text: &str) -> Result<(), String> {
    let shape = || format!("{text:?} must have the form HOST:PORT, such as logstash:5000 or [fd00::1]:5000");
    let (host, port) = text.rsplit_once(':').ok_or_else(shape)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = host.parse::<IpAddr>().is_ok() || is_hostname(host);
    if port_ok && host_ok { Ok(()) } else { Err(shape()) }
}

/// An absolute URL with an explicit port, such as `http://zipkin:9411/api/v2/spans`.
pub fn check_url_with_port(text: &str) -> Result<(), String> {
    let shape = || format!("{text:?} must be a URL with an explicit port, such as http://zipkin:9411/api/v2/spans");
    let (scheme, rest) = text.split_once("://").ok_or_else(shape)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let scheme_ok =
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if scheme_ok && check_host_port(authority).is_ok() { Ok(()) } else { Err(shape()) }
}

fn is_file_path(text: &str) -> bool {
    let bytes = text.as_bytes();
    let windows = bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && &bytes[1..3] == b":\\";
    (text.starts_with('/') || windows) && !text.contains('\0')
}

pub fn is_url_path(text: &str) -> bool {
    text.starts_with('/') && !text.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips() {
        for good in ["10.0.0.1", "127.0.0.1", "::1", "fd00::1", "::ffff:10.0.0.1"] {
            assert!(check_ip(good).is_ok(), "{good}");
        }
        for bad in ["", "10.0.0", "10.0.0.256", "web", "fe80::1%eth0", " 10.0.0.1"] {
            assert!(check_ip(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        for good in ["10.0.0.1", "::1", "web", "web.default.svc.cluster.local", "my_host.local.", "a-b.c"] {
            assert!(check_host(good).is_ok(), "{good}");
        }
        for bad in ["", "0.0.0.0", "::", "web..local", "-web", "web-", "we b", "web:80", &"a".repeat(64)] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ports() {
        for good in ["logstash:5000", "10.0.0.1:514", "[fd00::1]:5000"] {
            assert!(check_host_port(good).is_ok(), "{good}");
        }
        for bad in ["logstash", ":5000", "logstash:", "logstash:0", "logstash:99999", "fd00::1:5000x"] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_and_paths() {
        assert!(check_url_with_port("http://zipkin.mesh:9411/api/v2/spans").is_ok());
        assert!(check_url_with_port("https://[fd00::1]:9411").is_ok());
        assert!(check_url_with_port("http://zipkin/api/v2/spans").is_err());
        assert!(check_url_with_port("zipkin:9411").is_err());
        assert!(is_url_path("/metrics"));
        assert!(!is_url_path("metrics"));
        assert!(!is_url_path("/a b"));
    }
}
