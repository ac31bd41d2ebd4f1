//! The flags of webhooks and notifications, and the checks that refuse a wrong one at start.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use clap::Args;

use super::parse_timeout;
use crate::model::delivery::{Receivers, Slack};

/// Where events are delivered, and how.
#[derive(Args, Debug, Clone)]
pub struct WebhookConfig {
    /// URLs every status event is POSTed to, signed as Standard Webhooks (repeat the flag, or
    /// separate them with commas).
    #[arg(long = "webhook-url", env = "HITL_WEBHOOK_URL", value_delimiter = ',')]
    pub urls: Vec<String>,

    /// The signing secret, `whsec_` and 24 to 64 random bytes in base64 (`hitl webhook-secret`
    /// makes one). Needed with --webhook-url and --callback-allow.
    #[arg(
        long = "webhook-secret",
        env = "HITL_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<WebhookSecret>,

    /// Hosts (`HOST:PORT`, comma-separated) a task's own `callback_url` may point at; a
    /// submission with any other is refused (422).
    #[arg(
        long = "callback-allow",
        env = "HITL_CALLBACK_ALLOW",
        value_delimiter = ','
    )]
    pub callback_allow: Vec<String>,

    /// How long a delivery is retried before it is given up (90s, 30m, 24h, 7d).
    #[arg(long = "webhook-max-age", env = "HITL_WEBHOOK_MAX_AGE", default_value = "24h",
          value_parser = parse_timeout)]
    pub max_age: Duration,

    /// The wait before a failed delivery's first retry, in milliseconds; each next one doubles
    /// it, up to an hour.
    #[arg(long = "webhook-retry-min-ms", env = "HITL_WEBHOOK_RETRY_MIN_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub retry_min_ms: u64,

    /// Seconds a receiver has to answer one delivery before it is cut (and retried later).
    #[arg(long = "webhook-timeout-secs", env = "HITL_WEBHOOK_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout_secs: u64,

    /// Deliveries that may wait at once; beyond it a new delivery is recorded as failed (the
    /// outbox full), never the event lost.
    #[arg(long = "webhook-max-pending", env = "HITL_WEBHOOK_MAX_PENDING", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pending: u64,

    /// A Slack incoming webhook told when a task starts waiting for review (and, with
    /// --notify-before, when its deadline is near), with a link to the task's page.
    #[arg(
        long = "notify-slack",
        env = "HITL_NOTIFY_SLACK",
        hide_env_values = true
    )]
    pub notify_slack: Option<String>,

    /// The service's address as reviewers reach it (`https://hitl.example.com`), for links in
    /// notifications.
    #[arg(long = "public-url", env = "HITL_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// With --notify-slack: also notify this long before a review's deadline (90s, 30m, 1h).
    #[arg(long = "notify-before", env = "HITL_NOTIFY_BEFORE", value_parser = parse_timeout)]
    pub notify_before: Option<Duration>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: None,
            callback_allow: Vec::new(),
            max_age: Duration::from_secs(24 * 3600),
            retry_min_ms: 5000,
            timeout_secs: 10,
            max_pending: 100_000,
            notify_slack: None,
            public_url: None,
            notify_before: None,
        }
    }
}

impl WebhookConfig {
    /// Is anything delivered at all?
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty() || !self.callback_allow.is_empty() || self.notify_slack.is_some()
    }

    /// The receivers the flags name, or why they cannot be used (said at start).
    pub fn receivers(&self) -> Result<Receivers, String> {
        let mut webhooks: Vec<Arc<str>> = Vec::new();
        for url in self.urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
            let parsed = http_url(url).map_err(|why| format!("--webhook-url {url:?} {why}"))?;
            if !webhooks.iter().any(|known| **known == *parsed) {
                webhooks.push(parsed.into());
            }
        }
        for host in &self.callback_allow {
            allowed_host(host)?;
        }
        if let Some(secret) = &self.secret {
            secret.check()?;
        }
        if (!webhooks.is_empty() || !self.callback_allow.is_empty()) && self.secret.is_none() {
            return Err(
                "--webhook-url and --callback-allow need --webhook-secret (whsec_ and 24 to 64 \
                 random bytes in base64; `hitl webhook-secret` makes one): receivers check the \
                 signature"
                    .into(),
            );
        }
        let slack = match &self.notify_slack {
            None => {
                if self.notify_before.is_some() {
                    return Err("--notify-before needs --notify-slack".into());
                }
                None
            }
            Some(url) => {
                let url = http_url(url.trim()).map_err(|why| format!("--notify-slack {why}"))?;
                let Some(public) = &self.public_url else {
                    return Err(
                        "--notify-slack needs --public-url, the address reviewers open hitl at \
                         (messages link to the task's page)"
                            .into(),
                    );
                };
                let public =
                    http_url(public.trim()).map_err(|why| format!("--public-url {why}"))?;
                Some(Slack {
                    url: url.into(),
                    public_url: public.trim_end_matches('/').into(),
                    before: self.notify_before,
                })
            }
        };
        Ok(Receivers {
            webhooks,
            callbacks: !self.callback_allow.is_empty(),
            slack,
        })
    }

    /// Is `url` a callback this service may send to? `Err` says why not, for the 422.
    pub fn check_callback(&self, url: &str) -> Result<String, String> {
        let parsed = reqwest::Url::parse(url.trim())
            .map_err(|e| format!("The callback_url {url:?} is not a URL ({e})."))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "The callback_url {url:?} must be an http or https URL."
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            // Whoever may read the task reads its callback_url: the signature is the proof.
            return Err(
                "The callback_url must not carry a user name or password: every delivery is \
                 signed, so the receiver checks the signature instead."
                    .into(),
            );
        }
        let host = parsed.host_str().unwrap_or("").to_ascii_lowercase();
        let port = parsed.port_or_known_default().unwrap_or(0);
        let listed = self.callback_allow.iter().any(|allowed| {
            allowed_host(allowed)
                .is_ok_and(|(h, p)| h == host.trim_matches(['[', ']']) && p == port)
        });
        if !listed {
            return Err(if self.callback_allow.is_empty() {
                "callback_url is not accepted here: this service allows no callback hosts \
                 (its operator can list some with --callback-allow)."
                    .to_owned()
            } else {
                format!(
                    "The callback_url's host {host}:{port} is not one this service may call \
                     (--callback-allow lists {}).",
                    self.callback_allow.join(", ")
                )
            });
        }
        Ok(parsed.to_string())
    }
}

/// An http or https URL with a host, as text; `Err` completes "--flag URL …".
fn http_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err("is not an http or https URL with a host".into());
    }
    Ok(parsed.to_string())
}

/// A `--callback-allow` entry, `HOST:PORT`, as (lower-case host, port).
pub fn allowed_host(entry: &str) -> Result<(String, u16), String> {
    let entry = entry.trim();
    let bad =
        || format!("--callback-allow {entry:?} is not HOST:PORT (such as hooks.example.com:443)");
    let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    // An IPv6 address is written in brackets, [::1]:8080: without them its colons are ambiguous.
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.contains(':') && !bracketed {
        return Err(bad());
    }
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// The signing secret: `whsec_` and base64 of 24 to 64 bytes. Never printed: its `Debug` says
/// only that it is set.
#[derive(Clone)]
pub struct WebhookSecret(pub Arc<str>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<set>)")
    }
}

/// Taken as given, so that a wrong secret is never echoed in clap's error: [`Self::check`]
/// says what is wrong with it, without it.
impl FromStr for WebhookSecret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.trim().into()))
    }
}

impl WebhookSecret {
    /// Is it `whsec_` and base64 of 24 to 64 bytes? `Err` says what is wrong, never the secret.
    pub fn check(&self) -> Result<(), String> {
        use base64::Engine;
        let wrong = |why: &str| {
            format!(
                "--webhook-secret {why}: give whsec_ followed by 24 to 64 random bytes in \
                 base64 (`hitl webhook-secret` makes one)"
            )
        };
        let Some(encoded) = self.0.strip_prefix("whsec_") else {
            return Err(wrong("does not start with whsec_"));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| wrong("is not valid base64 after whsec_"))?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(wrong(&format!("holds {} bytes", bytes.len())));
        }
        Ok(())
    }
}

/// A new random secret, for `hitl webhook-secret`.
pub fn new_secret() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..2)
        .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
        .collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_a_wrong_format_are_refused() {
        assert!(
            new_secret()
                .parse::<WebhookSecret>()
                .unwrap()
                .check()
                .is_ok()
        );
        for bad in [
            "",
            "abc",
            "whsec_",
            "whsec_!!!!",
            "whsec_c2hvcnQ=",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            let refused = bad.parse::<WebhookSecret>().unwrap().check().unwrap_err();
            assert!(refused.contains("whsec_"), "{bad:?}: {refused}");
            assert!(
                bad.len() < 8 || !refused.contains(bad),
                "the secret is not echoed"
            );
        }
        let secret: WebhookSecret = new_secret().parse().unwrap();
        assert_eq!(format!("{secret:?}"), "WebhookSecret(<set>)");
    }

    #[test]
    fn callbacks_go_only_to_listed_hosts() {
        let config = WebhookConfig {
            callback_allow: vec!["hooks.example.com:443".into(), "127.0.0.1:9000".into()],
            secret: Some(new_secret().parse().unwrap()),
            ..WebhookConfig::default()
        };
        assert!(config.check_callback("https://hooks.example.com/x").is_ok());
        assert!(config.check_callback("http://127.0.0.1:9000/cb").is_ok());
        assert!(config.check_callback("http://127.0.0.1:9001/cb").is_err());
        assert!(config.check_callback("https://evil.example.com/x").is_err());
        assert!(config.check_callback("ftp://hooks.example.com/x").is_err());
        assert!(config.check_callback("not a url").is_err());
        assert!(
            config
                .check_callback("http://u:p@127.0.0.1:9000/cb")
                .is_err()
        );
        assert!(allowed_host("fe80::1").is_err());
        assert_eq!(allowed_host("[::1]:80"), Ok(("::1".into(), 80)));
        assert!(
            WebhookConfig::default()
                .check_callback("https://hooks.example.com/")
                .is_err()
        );
    }

    #[test]
    fn receivers_need_what_they_use() {
        let urls = WebhookConfig {
            urls: vec!["http://127.0.0.1:9/hook".into()],
            ..WebhookConfig::default()
        };
        assert!(urls.receivers().unwrap_err().contains("--webhook-secret"));
        let slack = WebhookConfig {
            notify_slack: Some("https://hooks.slack.com/services/x".into()),
            ..WebhookConfig::default()
        };
        assert!(slack.receivers().unwrap_err().contains("--public-url"));
        let bad = WebhookConfig {
            urls: vec!["mailto:x@example.com".into()],
            secret: Some(new_secret().parse().unwrap()),
            ..WebhookConfig::default()
        };
        assert!(bad.receivers().unwrap_err().contains("http"));
    }
}
