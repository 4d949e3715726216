//! Where a webhook goes and how: the URL (http or https, no credentials), the SSRF rule (no loopback,
//! private, link-local, shared or metadata address unless `[webhooks] allow_private_targets`), and one
//! signed POST over a connection to the checked address (so DNS cannot change it in between), with
//! certificate verification for https and no redirects followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A parsed endpoint URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// https?
    pub tls: bool,
    /// Host name or address literal (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query (`/` at least).
    pub path: String,
}

impl Target {
    /// Parses `http(s)://host[:port]/path`; the error says what is wrong.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: hyper::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url:?}: only http and https URLs")),
        };
        let authority = uri.authority().ok_or_else(|| format!("{url:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{url:?}: credentials in the URL are not allowed"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Target {
            tls,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            host,
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
        })
    }

    /// The addresses of the host, each allowed by the SSRF rule (`allow_private`: every address).
    pub async fn addresses(&self, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .collect();
        if found.is_empty() {
            return Err(format!("{} has no address", self.host));
        }
        if !allow_private && let Some(bad) = found.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "{} resolves to {}, a loopback, private, link-local or metadata address",
                self.host,
                bad.ip()
            ));
        }
        Ok(found)
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local, shared,
/// documentation, multicast, unspecified or a cloud metadata address).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8)
}

/// One signed POST of `body`; `Ok(status)` when an answer came, `Err` for a network, TLS or timeout
/// failure.
pub async fn post(
    target: &Target,
    address: SocketAddr,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<u16, String> {
    let exchange = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect {address}: {e}"))?;
        if target.tls {
            let server_name = rustls_pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| format!("bad TLS name {}: {e}", target.host))?;
            let stream = tls_connector()?
                .connect(server_name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", target.host))?;
            send(target, TokioIo::new(stream), headers, body).await
        } else {
            send(target, TokioIo::new(tcp), headers, body).await
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// The request over an open connection; the answer's status (its body is read and dropped).
async fn send<T>(
    target: &Target,
    io: TokioIo<T>,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<u16, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let host = if (target.tls && target.port == 443) || (!target.tls && target.port == 80) {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let mut request = Request::post(target.path.as_str())
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "penguin-mta-webhooks");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("HTTP: {e}"))?;
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"));
    let status = match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            Ok(status)
        }
        Err(error) => Err(error),
    };
    driver.abort();
    status
}

/// A TLS client verifying certificates against the system's roots.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for cert in loaded.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no trusted root certificates on this system".into());
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_defaults_and_refusals() {
        let parsed = Target::parse("https://hooks.example.com/penguin?x=1");
        assert_eq!(
            parsed,
            Ok(Target {
                tls: true,
                host: "hooks.example.com".into(),
                port: 443,
                path: "/penguin?x=1".into()
            })
        );
        assert_eq!(
            Target::parse("http://[::1]:8080").map(|t| (t.host, t.port, t.path)),
            Ok(("::1".into(), 8080, "/".into()))
        );
        for bad in [
            "ftp://x.example/",
            "https://user:pw@x.example/",
            "not a url",
            "/relative",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_public_addresses_pass_the_ssrf_rule() {
        let cases = [
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("fd00:ec2::254", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
            ("93.184.216.34", true),
            ("2606:4700::1111", true),
        ];
        for (ip, public) in cases {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(is_public(ip), public, "{ip}");
        }
    }
}
