//! `--processor openai`: each try of an attempt is one streamed chat completion from an
//! OpenAI-compatible server (OpenAI, llama.cpp's `llama-server`, Ollama, vLLM, …).
//!
//! - [`prompt`]: the messages sent, built in or from `--llm-prompt-file`.
//! - [`stream`]: the streamed answer read into the output, with progress as it comes.
//!
//! Timeouts and retries are the caller's: each try runs under the per-try timeout, which drops
//! this future, and dropping it aborts the request. Errors only say whether another try may help
//! (a refused connection, 429, 5xx, a cut stream) or not (a bad key, an unknown model).

mod prompt;
mod stream;

use std::{error::Error, fmt, sync::Arc, time::Duration};

use reqwest::{
    Response, StatusCode, Url,
    header::{ACCEPT, AUTHORIZATION, HeaderValue},
};
use serde_json::json;

use crate::{
    config::ProcessorConfig,
    engine::NodeError,
    review::{ProcessRequest, Processor, processor::ProcessFuture},
};
use prompt::Prompt;

/// How long to wait for a TCP (and TLS) connection; the rest of a try is bounded by the caller.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an error body a message quotes.
const BODY_EXCERPT_CHARS: usize = 300;

pub struct OpenAiProcessor {
    /// One client for every attempt, so connections are reused.
    client: reqwest::Client,
    /// `{--llm-base-url}/chat/completions`.
    endpoint: Url,
    /// `Bearer <HITL_LLM_API_KEY>`; `None` when the key is unset or empty (local servers want
    /// none).
    authorization: Option<HeaderValue>,
    prompt: Prompt,
    /// Names the server (and model) in error messages.
    server: Server,
}

impl OpenAiProcessor {
    /// Checks the configuration once, at start-up; each error is one line naming the flag.
    pub fn new(config: &ProcessorConfig) -> Result<Self, String> {
        let model = config
            .llm_model
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .ok_or(
                "--processor openai needs --llm-model (or HITL_LLM_MODEL): the model to ask for",
            )?;
        let base = config.llm_base_url.trim().trim_end_matches('/');
        let endpoint = Url::parse(&format!("{base}/chat/completions"))
            .ok()
            .filter(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.has_host()
                    && url.query().is_none()
                    && url.fragment().is_none()
            })
            .ok_or_else(|| {
                format!(
                    "--llm-base-url {:?} is not an http(s) URL such as http://127.0.0.1:8080/v1",
                    config.llm_base_url
                )
            })?;
        let prompt = match &config.llm_prompt_file {
            Some(path) => Prompt::from_file(path)?,
            None => Prompt::built_in(),
        };
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {}", causes(&e)))?;
        Ok(Self {
            client,
            endpoint,
            authorization: authorization(config.llm_api_key.as_deref())?,
            prompt,
            server: Server {
                url: base.to_owned(),
                model: model.to_owned(),
            },
        })
    }

    async fn complete(
        &self,
        request: &ProcessRequest,
        progress: &(dyn Fn(Arc<str>) + Send + Sync),
    ) -> Result<String, NodeError> {
        let (system, user) = self.prompt.messages(request);
        let body = json!({
            "model": self.server.model,
            "messages": [
                { "role": "system", "content": system },
                { "role": "user", "content": user },
            ],
            "stream": true,
        });
        let mut post = self
            .client
            .post(self.endpoint.clone())
            .header(ACCEPT, "text/event-stream")
            .json(&body);
        if let Some(authorization) = &self.authorization {
            post = post.header(AUTHORIZATION, authorization.clone());
        }
        let response = post.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "did not accept a connection in time"
            } else if e.is_connect() {
                "could not be reached"
            } else {
                "did not answer"
            };
            NodeError::new(format!(
                "{} {what}: {}",
                self.server,
                causes(&e.without_url())
            ))
        })?;
        let response = self.check_status(response).await?;
        stream::read_completion(response, &self.server, progress).await
    }

    /// A success passes; anything else becomes an error that says what to do about it.
    async fn check_status(&self, response: Response) -> Result<Response, NodeError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let server = &self.server;
        let body = match body_start(response).await {
            body if body.is_empty() => String::new(),
            body => format!(" It said: {body}"),
        };
        let answered = format!("{server} answered {status}");
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => {
                NodeError::new(format!("{answered}: the request was rate-limited.{body}"))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                NodeError::fatal(format!("{answered}: check HITL_LLM_API_KEY.{body}"))
            }
            StatusCode::NOT_FOUND => NodeError::fatal(format!(
                "{answered}: check --llm-base-url (the part before /chat/completions) and \
                 --llm-model {:?}.{body}",
                server.model
            )),
            StatusCode::REQUEST_TIMEOUT => NodeError::new(format!("{answered}.{body}")),
            s if s.is_server_error() => NodeError::new(format!("{answered}.{body}")),
            _ => NodeError::fatal(format!("{answered}.{body}")),
        })
    }
}

impl Processor for OpenAiProcessor {
    fn process<'a>(
        &'a self,
        request: &'a ProcessRequest,
        progress: &'a (dyn Fn(Arc<str>) + Send + Sync),
    ) -> ProcessFuture<'a> {
        Box::pin(self.complete(request, progress))
    }
}

/// The header the key is sent in, checked at start-up rather than failing every request.
fn authorization(key: Option<&str>) -> Result<Option<HeaderValue>, String> {
    let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) else {
        return Ok(None);
    };
    let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| "HITL_LLM_API_KEY holds characters an HTTP header cannot carry")?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// The server, as error messages name it.
struct Server {
    url: String,
    model: String,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "The LLM server at {}", self.url)
    }
}

/// The start of an error body, read no further than needed.
async fn body_start(mut response: Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_EXCERPT_CHARS * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    excerpt(&String::from_utf8_lossy(&bytes))
}

/// Text from the server, on one line and at most [`BODY_EXCERPT_CHARS`] long.
fn excerpt(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// An error's causes, innermost last ("connection refused" says more than "error sending
/// request").
fn causes(error: &dyn Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
