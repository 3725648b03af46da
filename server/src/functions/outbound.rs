//! Outbound HTTP for functions (`wasi:http/outgoing-handler`): off unless the
//! function's manifest lists where it may go (`outbound`: `scheme://host:port`
//! patterns; `*.example.com` for subdomains, `*` as the port for any).
//!
//! A request goes out only if its scheme, host and port match a pattern. Its host is
//! then resolved, every address checked, and the connection made to a checked
//! address (the client is pinned to it: no second lookup, so no DNS-rebinding gap).
//! Loopback, private, link-local, unique-local, CGNAT, multicast and unspecified
//! addresses are refused unless the pattern names that address itself (or
//! `localhost`, for loopback). Redirects are not followed; each request has a time
//! limit and its response body a size limit.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime_wasi_http::Error as HttpError;

/// A request's whole time limit (connect, send, the response's head and body).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body a function may receive.
pub const MAX_RESPONSE: usize = 4 << 20;
/// The largest request body a function may send.
const MAX_REQUEST: usize = 4 << 20;

/// One allowed destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    scheme: String,
    host: Host,
    /// `None`: any port.
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Name(String),
    /// `*.example.com`: the subdomains of `example.com` (not itself).
    Subdomains(String),
    Ip(IpAddr),
}

impl Pattern {
    /// Parse `scheme://host:port` (the port may be left out for the scheme's own, or
    /// be `*`).
    ///
    /// Fails with a message for the manifest's field error.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let bad = || {
            format!(
                "`{text}` is not `http(s)://host:port` (host may start with `*.`, port may be `*`)."
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (ip, after) = v6.split_once(']').ok_or_else(bad)?;
            (format!("[{ip}]"), after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port {
            None => Some(default_port),
            Some("*") => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
        };
        let host = host.to_ascii_lowercase();
        let host = if let Some(ip) = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .or(Some(host.as_str()))
            .and_then(|h| h.parse::<IpAddr>().ok())
        {
            Host::Ip(ip)
        } else if let Some(domain) = host.strip_prefix("*.") {
            if !valid_name(domain) {
                return Err(bad());
            }
            Host::Subdomains(domain.to_owned())
        } else if valid_name(&host) {
            Host::Name(host)
        } else {
            return Err(bad());
        };
        Ok(Pattern { scheme, host, port })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme == scheme
            && self.port.is_none_or(|p| p == port)
            && match &self.host {
                Host::Name(name) => name == host,
                Host::Subdomains(domain) => host
                    .strip_suffix(domain.as_str())
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                Host::Ip(ip) => host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|h| h == *ip),
            }
    }

    /// Whether this pattern names `ip` itself, which lets a restricted address in.
    fn names(&self, ip: IpAddr) -> bool {
        match &self.host {
            Host::Ip(listed) => *listed == ip,
            Host::Name(name) => name == "localhost" && ip.is_loopback(),
            Host::Subdomains(_) => false,
        }
    }
}

fn valid_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Addresses a function may reach only when its pattern names them.
pub fn restricted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return restricted(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// A function's outbound policy, the `WasiHttpHooks` its calls use.
#[derive(Clone, Debug, Default)]
pub struct Outbound {
    patterns: Arc<Vec<Pattern>>,
}

type Sent = Result<
    (
        hyper::Response<wasmtime_wasi_http::WasiBody>,
        Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl Outbound {
    /// The policy of a manifest's `outbound` list (patterns that do not parse were
    /// refused at deploy; any left are ignored).
    pub fn new(outbound: &[String]) -> Outbound {
        Outbound {
            patterns: Arc::new(
                outbound
                    .iter()
                    .filter_map(|p| Pattern::parse(p).ok())
                    .collect(),
            ),
        }
    }

    /// Check `request` against the policy, resolve and check its host, and send it
    /// to a checked address.
    ///
    /// Fails with `HttpRequestDenied` (no pattern matches), `DestinationIpProhibited`
    /// (a restricted address not named), a DNS or connection error, or a timeout.
    pub async fn send(&self, request: hyper::Request<wasmtime_wasi_http::WasiBody>) -> Sent {
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri
            .host()
            .ok_or(HttpError::HttpRequestUriInvalid)?
            .to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let Some(pattern) = self
            .patterns
            .iter()
            .find(|p| p.matches(&scheme, &host, port))
        else {
            return Err(HttpError::HttpRequestDenied);
        };
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((bare.as_str(), port)))
                .await
                .map_err(|_| HttpError::DnsTimeout)?
                .map_err(|_| HttpError::DestinationNotFound)?
                .collect(),
        };
        let Some(address) = addresses
            .iter()
            .copied()
            .find(|a| !restricted(a.ip()) || pattern.names(a.ip()))
        else {
            return Err(if addresses.is_empty() {
                HttpError::DestinationNotFound
            } else {
                HttpError::DestinationIpProhibited
            });
        };
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(
                crate::auth::oauth2::tls().map_err(|_| HttpError::TlsProtocolError)?,
            )
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(TIMEOUT)
            .resolve(&bare, address)
            .build()
            .map_err(|_| HttpError::InternalError(Some("the HTTP client".into())))?;
        let (parts, body) = request.into_parts();
        let body = http_body_util::Limited::new(body, MAX_REQUEST)
            .collect()
            .await
            .map_err(|_| HttpError::HttpRequestBodySize(None))?
            .to_bytes();
        let mut outgoing = client.request(parts.method, uri.to_string()).body(body);
        for (name, value) in &parts.headers {
            outgoing = outgoing.header(name, value);
        }
        let response = outgoing.send().await.map_err(|e| {
            if e.is_timeout() {
                HttpError::ConnectionTimeout
            } else if e.is_connect() {
                HttpError::ConnectionRefused
            } else {
                HttpError::InternalError(Some(e.to_string()))
            }
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            if e.is_timeout() {
                HttpError::ConnectionReadTimeout
            } else {
                HttpError::InternalError(Some(e.to_string()))
            }
        })? {
            if bytes.len() + chunk.len() > MAX_RESPONSE {
                return Err(HttpError::HttpResponseBodySize(Some(MAX_RESPONSE as u64)));
            }
            bytes.extend_from_slice(&chunk);
        }
        let mut answer = hyper::Response::builder().status(status);
        for (name, value) in &headers {
            // The body is whole: its length is known, not chunked.
            if name != hyper::header::TRANSFER_ENCODING {
                answer = answer.header(name, value);
            }
        }
        let body = http_body_util::Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed_unsync();
        let answer = answer
            .body(body)
            .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
        Ok((answer, Box::new(async { Ok(()) })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_scheme_host_and_port() {
        let p = Pattern::parse("https://api.example.com").unwrap();
        assert!(p.matches("https", "api.example.com", 443));
        assert!(!p.matches("http", "api.example.com", 443));
        assert!(!p.matches("https", "api.example.com", 8443));
        assert!(!p.matches("https", "evil.com", 443));
        let any = Pattern::parse("https://*.example.com:*").unwrap();
        assert!(any.matches("https", "a.example.com", 8443));
        assert!(!any.matches("https", "example.com", 443));
        assert!(!any.matches("https", "aexample.com", 443));
        let local = Pattern::parse("http://127.0.0.1:8080").unwrap();
        assert!(local.matches("http", "127.0.0.1", 8080));
        assert!(local.names("127.0.0.1".parse().unwrap()));
        assert!(!any.names("127.0.0.1".parse().unwrap()));
        for bad in [
            "ftp://x.com",
            "x.com",
            "https://",
            "https://a/b",
            "https://x.com:99999",
            "https://u@x.com",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_addresses_are_restricted() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(restricted(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "1.1.1.1"] {
            assert!(!restricted(ip.parse().unwrap()), "{ip}");
        }
    }
}
