//! One try of one delivery: the HTTP request, signed as a Standard Webhook, cut at the timeout,
//! never following a redirect, and for a task's own `callback_url` only to an address the
//! operator allowed, checked when the name is resolved (so a DNS change cannot point an allowed
//! name at a private address).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::model::delivery::{Delivery, Kind};

/// What a try came to.
pub struct Tried {
    /// A 2xx came back.
    pub accepted: bool,
    pub code: Option<u16>,
    pub error: Option<Arc<str>>,
}

/// A client for deliveries: no redirects, cut at `timeout`, and for callbacks, resolving only to
/// allowed addresses.
pub fn client(timeout: Duration, resolver: Option<CheckedResolver>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("hitl/", env!("CARGO_PKG_VERSION")));
    if let Some(resolver) = resolver {
        // Through a proxy the proxy would resolve the name, past the check.
        builder = builder.dns_resolver(Arc::new(resolver)).no_proxy();
    }
    builder.build().unwrap_or_else(|error| {
        tracing::error!(%error, "cannot build the webhook client with its settings; using defaults");
        reqwest::Client::new()
    })
}

/// Sends `delivery` once, signed with `signer` if it is a webhook.
pub async fn send(
    client: &reqwest::Client,
    signer: Option<&standardwebhooks::Webhook>,
    delivery: &Delivery,
) -> Tried {
    let body = delivery.body.to_string();
    let mut request = client
        .post(&*delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if delivery.kind == Kind::Webhook
        && let Some(signer) = signer
    {
        let id = delivery.id.to_string();
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        match signer.sign(&id, timestamp, body.as_bytes()) {
            Ok(signature) => {
                request = request
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature);
            }
            Err(error) => {
                return Tried {
                    accepted: false,
                    code: None,
                    error: Some(format!("cannot sign it: {error}").into()),
                };
            }
        }
    }
    match request.body(body).send().await {
        // The body is never read: a receiver's answer is its status alone, whatever its size.
        Ok(response) => {
            let status = response.status();
            let code = Some(status.as_u16());
            if status.is_success() {
                return Tried {
                    accepted: true,
                    code,
                    error: None,
                };
            }
            let reason = status.canonical_reason().unwrap_or("");
            let why = if status.is_redirection() {
                format!(
                    "answered {} {reason} (redirects are not followed: give the final URL)",
                    status.as_u16()
                )
            } else if status.is_client_error() && !matches!(status.as_u16(), 408 | 429) {
                format!(
                    "answered {} {reason}: the receiver refuses it (tried again until --webhook-max-age)",
                    status.as_u16()
                )
            } else {
                format!("answered {} {reason}", status.as_u16())
            };
            Tried {
                accepted: false,
                code,
                error: Some(why.into()),
            }
        }
        Err(error) => Tried {
            accepted: false,
            code: None,
            error: Some(describe(&error).into()),
        },
    }
}

/// Words for a failed request, with its cause (reqwest's own message alone says little).
fn describe(error: &reqwest::Error) -> String {
    use std::error::Error;
    if error.is_timeout() {
        return "no answer within --webhook-timeout-secs".into();
    }
    let mut text = if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves callback hosts, keeping only addresses the operator allowed: public ones, those
/// `--callback-allow` names by address, and loopback for `localhost`.
pub struct CheckedResolver {
    pub allowed: Vec<IpAddr>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = keep(&host, &found, &allowed)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `host` a callback may go to, or why there is none.
fn keep(host: &str, found: &[SocketAddr], allowed: &[IpAddr]) -> Result<Vec<SocketAddr>, String> {
    let localhost = host.eq_ignore_ascii_case("localhost");
    let kept: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|addr| {
            let ip = addr.ip();
            is_public(ip) || allowed.contains(&ip) || (localhost && ip.is_loopback())
        })
        .collect();
    if kept.is_empty() {
        // Which addresses is for the operator's logs, not for whoever reads the task.
        tracing::warn!(host, addresses = ?found, "a callback's host resolves to no public address");
        return Err(format!(
            "{host} resolves to no public address; its operator can list the address in \
             --callback-allow to allow it"
        ));
    }
    Ok(kept)
}

/// Is `ip` an address on the public internet (not loopback, private, link-local, shared,
/// documentation, multicast or unspecified)?
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            let first = segments[0];
            // Addresses that carry an IPv4 one: NAT64 (64:ff9b::/96), 6to4 (2002::/16) and the
            // old IPv4-compatible form (::/96) are as public as the address they carry.
            let v4 = |hi: u16, lo: u16| {
                std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
            };
            if first == 0x64 && segments[1] == 0xff9b && segments[2..6] == [0; 4] {
                return is_public(IpAddr::V4(v4(segments[6], segments[7])));
            }
            if first == 0x2002 {
                return is_public(IpAddr::V4(v4(segments[1], segments[2])));
            }
            if segments[..6] == [0; 6] {
                return false;
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || first == 0x2001 && segments[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "64:ff9b::101:101",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn a_name_resolving_to_a_private_address_is_refused_unless_allowed() {
        let private: SocketAddr = "10.0.0.7:0".parse().unwrap();
        let public: SocketAddr = "93.184.216.34:0".parse().unwrap();
        let refused = keep("hooks.example.com", &[private], &[]).unwrap_err();
        assert!(
            !refused.contains("10.0.0.7"),
            "no inside address shown: {refused}"
        );
        assert_eq!(
            keep("hooks.example.com", &[private, public], &[]),
            Ok(vec![public])
        );
        assert_eq!(
            keep("hooks.example.com", &[private], &[private.ip()]),
            Ok(vec![private])
        );
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(keep("hooks.example.com", &[loopback], &[]).is_err());
        assert_eq!(keep("localhost", &[loopback], &[]), Ok(vec![loopback]));
    }
}
