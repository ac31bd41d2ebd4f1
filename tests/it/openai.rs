//! `--processor openai` over real HTTP against a fake OpenAI-compatible server: directly through
//! the processor, and end to end through the service.

mod fake;

use std::{
    io::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hitl::{
    config::{Config, ProcessorConfig, ProcessorKind},
    engine::NodeError,
    processors::openai::OpenAiProcessor,
    review::{PriorAttempt, ProcessRequest, Processor},
    task::{TaskId, TaskStatus},
};
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Notify;

use crate::helpers::{WAIT, spawn_app_with, test_config, within};
use fake::{FakeLlm, Reply, chunk, tokens};

fn llm_config(fake: &FakeLlm) -> ProcessorConfig {
    ProcessorConfig {
        llm_model: Some("test-model".into()),
        llm_base_url: fake.base_url.clone(),
        ..ProcessorConfig::default()
    }
}

fn processor(fake: &FakeLlm) -> OpenAiProcessor {
    OpenAiProcessor::new(&llm_config(fake)).expect("the processor builds")
}

fn first_attempt(input: &str) -> ProcessRequest {
    ProcessRequest {
        task_id: TaskId::new(),
        input: input.into(),
        attempt: 1,
        max_attempts: 3,
        history: Vec::new(),
    }
}

/// Runs one try, bounded by [`WAIT`], and returns its result with every progress report.
async fn run(
    processor: &OpenAiProcessor,
    request: &ProcessRequest,
) -> (Result<String, NodeError>, Vec<String>) {
    let reports = Mutex::new(Vec::new());
    let report = |text: Arc<str>| reports.lock().unwrap().push(text.to_string());
    let result = within("one try", processor.process(request, &report)).await;
    (result, reports.into_inner().unwrap())
}

/// Runs one try that must fail, and returns its error.
async fn fails(processor: &OpenAiProcessor, request: &ProcessRequest) -> NodeError {
    match run(processor, request).await.0 {
        Ok(output) => panic!("expected an error, got {output:?}"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn tokens_arrive_as_progress_and_make_the_output() {
    // Arrange: a model that streams three pieces, with a keep-alive comment among them
    let Reply::Events(mut events) = tokens(&["Hel", "lo", ", world"]) else {
        unreachable!()
    };
    events.insert(2, ": keep-alive".into());
    let fake = FakeLlm::start([Reply::Events(events)]).await;
    let processor = OpenAiProcessor::new(&ProcessorConfig {
        llm_api_key: Some("sk-test".into()),
        ..llm_config(&fake)
    })
    .unwrap();

    // Act
    let (result, reports) = run(&processor, &first_attempt("Greet the world")).await;

    // Assert: progress grew in order, the output is the whole text, the request was well made
    assert_eq!(result, Ok("Hello, world".to_owned()));
    assert_eq!(reports, ["Hel", "Hello", "Hello, world"]);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body["model"], "test-model");
    assert_eq!(seen[0].body["stream"], true);
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk-test"));
    assert!(!seen[0].message("system").is_empty());
    let user = seen[0].message("user");
    assert!(user.contains("Greet the world"), "{user}");
    assert!(!user.contains("rejected"), "{user}");
}

#[tokio::test]
async fn a_revision_is_told_what_was_rejected_and_why() {
    let fake = FakeLlm::start([tokens(&["Better"])]).await;
    let request = ProcessRequest {
        attempt: 2,
        history: vec![PriorAttempt {
            attempt: 1,
            output: "The first draft".into(),
            comment: Some("Too formal, say hi".into()),
        }],
        ..first_attempt("Greet the world")
    };

    let (result, _) = run(&processor(&fake), &request).await;

    assert_eq!(result, Ok("Better".to_owned()));
    let seen = fake.seen();
    let user = seen[0].message("user");
    for part in [
        "Greet the world",
        "The first draft",
        "Too formal, say hi",
        "rejected",
        "attempt 2 of 3",
    ] {
        assert!(user.contains(part), "{part:?} in {user}");
    }
    assert_eq!(seen[0].authorization, None, "no key, no header");
}

#[tokio::test]
async fn busy_servers_are_retryable_refusals_are_not() {
    let fake = FakeLlm::start([
        Reply::Status(StatusCode::TOO_MANY_REQUESTS, "slow down".into()),
        Reply::Status(StatusCode::SERVICE_UNAVAILABLE, "loading model".into()),
        Reply::Status(
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"message":"bad key"}}"#.into(),
        ),
        Reply::Status(StatusCode::BAD_REQUEST, "x".repeat(5000)),
    ])
    .await;
    let processor = processor(&fake);
    let request = first_attempt("anything");

    let rate_limited = fails(&processor, &request).await;
    assert!(rate_limited.retryable);
    assert!(
        rate_limited.message.contains("429 Too Many Requests"),
        "{rate_limited}"
    );
    assert!(
        rate_limited.message.contains("rate-limited"),
        "{rate_limited}"
    );

    let unavailable = fails(&processor, &request).await;
    assert!(unavailable.retryable);
    assert!(
        unavailable.message.contains("503 Service Unavailable"),
        "{unavailable}"
    );
    assert!(
        unavailable.message.contains("loading model"),
        "{unavailable}"
    );

    let unauthorized = fails(&processor, &request).await;
    assert!(!unauthorized.retryable);
    assert!(
        unauthorized
            .message
            .starts_with(&format!("The LLM server at {}", fake.base_url))
    );
    assert!(
        unauthorized
            .message
            .contains("401 Unauthorized: check HITL_LLM_API_KEY"),
        "{unauthorized}"
    );
    assert!(unauthorized.message.contains("bad key"), "{unauthorized}");

    let bad_request = fails(&processor, &request).await;
    assert!(!bad_request.retryable);
    assert!(
        bad_request.message.contains("400 Bad Request"),
        "{bad_request}"
    );
    assert!(
        bad_request.message.len() < 500,
        "the body is quoted, bounded: {bad_request}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let processor = OpenAiProcessor::new(&ProcessorConfig {
        llm_model: Some("m".into()),
        llm_base_url: format!("http://{addr}/v1"),
        ..ProcessorConfig::default()
    })
    .unwrap();

    let error = fails(&processor, &first_attempt("anything")).await;

    assert!(error.retryable);
    assert!(error.message.contains("could not be reached"), "{error}");
}

#[tokio::test]
async fn a_stalled_stream_stops_when_the_try_is_dropped() {
    // Arrange: one piece, then silence
    let gone = Arc::new(Notify::new());
    let first = chunk("Once").to_string();
    let fake = FakeLlm::start([Reply::Stall(first, gone.clone())]).await;
    let processor = processor(&fake);
    let request = first_attempt("a story");
    let reports = Mutex::new(Vec::new());
    let report = |text: Arc<str>| reports.lock().unwrap().push(text.to_string());

    // Act: the caller's per-try timeout
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_millis(200),
        processor.process(&request, &report),
    )
    .await;

    // Assert: it returned at the timeout, having shown the first piece, and the server saw the
    // connection go
    assert!(result.is_err(), "the try timed out");
    assert!(started.elapsed() < WAIT / 2, "{:?}", started.elapsed());
    assert_eq!(reports.into_inner().unwrap(), ["Once"]);
    within("the server sees the client go", gone.notified()).await;
}

#[tokio::test]
async fn broken_streams_are_retryable_errors() {
    let text = chunk("Hi").to_string();
    let fake = FakeLlm::start([
        Reply::Events(vec!["not json".into()]),
        Reply::Events(vec![
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk"}"#.into(),
        ]),
        Reply::Events(vec![text.clone()]),
        Reply::Events(vec![r#"{"error":{"message":"out of memory"}}"#.into()]),
        tokens(&[]),
    ])
    .await;
    let processor = processor(&fake);
    let request = first_attempt("anything");

    let expected = [
        "not JSON",
        "no `choices` list",
        "without `data: [DONE]`, after 2 characters",
        "out of memory",
        "empty completion",
    ];
    for expected in expected {
        let error = fails(&processor, &request).await;
        assert!(error.retryable, "{error}");
        assert!(error.message.contains(expected), "{expected:?} in {error}");
    }
    assert_eq!(fake.seen().len(), 5);
}

#[tokio::test]
async fn a_stream_cut_mid_answer_is_a_retryable_error() {
    // Arrange: the server cuts the connection once the client has shown the first piece
    let cut = Arc::new(Notify::new());
    let fake = FakeLlm::start([Reply::Cut(vec![chunk("Hi").to_string()], cut.clone())]).await;
    let processor = processor(&fake);
    let request = first_attempt("anything");
    let report = |_: Arc<str>| cut.notify_one();

    // Act
    let result = within("one try", processor.process(&request, &report)).await;

    // Assert
    let error = result.expect_err("a cut stream is an error");
    assert!(error.retryable);
    assert!(
        error
            .message
            .contains("broke off its answer after 2 characters"),
        "{error}"
    );
}

#[tokio::test]
async fn a_prompt_file_is_filled_in_and_checked_at_start() {
    // Arrange
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let template = "Attempt {{attempt}} of {{ max_attempts }}: {{input}}\n{{feedback}}END";
    file.write_all(template.as_bytes()).unwrap();
    let fake = FakeLlm::start([tokens(&["ok"]), tokens(&["ok"])]).await;
    let processor = OpenAiProcessor::new(&ProcessorConfig {
        llm_prompt_file: Some(file.path().into()),
        ..llm_config(&fake)
    })
    .unwrap();
    let revision = ProcessRequest {
        attempt: 2,
        history: vec![PriorAttempt {
            attempt: 1,
            output: "draft one".into(),
            comment: None,
        }],
        ..first_attempt("Sum 2 and {{attempt}}")
    };

    // Act
    run(&processor, &first_attempt("Sum 2 and 2"))
        .await
        .0
        .unwrap();
    run(&processor, &revision).await.0.unwrap();

    // Assert: substituted once each, feedback empty on the first attempt
    let seen = fake.seen();
    assert_eq!(seen[0].message("user"), "Attempt 1 of 3: Sum 2 and 2\nEND");
    let second = seen[1].message("user");
    assert!(
        second.starts_with("Attempt 2 of 3: Sum 2 and {{attempt}}\nThe reviewer rejected"),
        "{second}"
    );
    assert!(
        second.contains("draft one") && second.ends_with("END"),
        "{second}"
    );

    // An unknown placeholder, or a file that cannot be read, stops the start
    let mut bad = tempfile::NamedTempFile::new().unwrap();
    bad.write_all(b"{{input}} in {{language}}").unwrap();
    let refused = |path: &std::path::Path| {
        OpenAiProcessor::new(&ProcessorConfig {
            llm_prompt_file: Some(path.into()),
            ..llm_config(&fake)
        })
        .err()
        .expect("refused")
    };
    let unknown = refused(bad.path());
    assert!(
        unknown.contains(&bad.path().display().to_string()),
        "{unknown}"
    );
    assert!(
        unknown.contains("unknown placeholder `{{language}}`"),
        "{unknown}"
    );
    let missing = refused(std::path::Path::new("/no/such/prompt.txt"));
    assert!(
        missing.contains("cannot read --llm-prompt-file /no/such/prompt.txt"),
        "{missing}"
    );
}

#[tokio::test]
async fn the_model_an_http_base_url_and_a_usable_key_are_required() {
    let no_model = OpenAiProcessor::new(&ProcessorConfig::default())
        .err()
        .unwrap();
    assert!(
        no_model.contains("--llm-model") && no_model.contains("HITL_LLM_MODEL"),
        "{no_model}"
    );
    assert!(!no_model.contains('\n'));

    for url in [
        "ftp://example.com/v1",
        "localhost:8080",
        "",
        "http://x/v1?key=1",
    ] {
        let bad_url = OpenAiProcessor::new(&ProcessorConfig {
            llm_model: Some("m".into()),
            llm_base_url: url.into(),
            ..ProcessorConfig::default()
        })
        .err()
        .unwrap();
        assert!(bad_url.contains("--llm-base-url"), "{bad_url}");
    }

    let bad_key = OpenAiProcessor::new(&ProcessorConfig {
        llm_model: Some("m".into()),
        llm_api_key: Some("sk-\nsplit".into()),
        ..ProcessorConfig::default()
    })
    .err()
    .unwrap();
    assert!(bad_key.contains("HITL_LLM_API_KEY"), "{bad_key}");
}

// Through the service.

fn service_config(fake: &FakeLlm, max_retries: u32) -> Config {
    Config {
        processing: ProcessorConfig {
            processor: ProcessorKind::Openai,
            max_retries,
            retry_wait_ms: 1,
            ..llm_config(fake)
        },
        ..test_config()
    }
}

#[tokio::test]
async fn the_review_loop_runs_on_the_model() {
    // Arrange
    let fake = FakeLlm::start([tokens(&["Hi ", "there"]), tokens(&["Hello, ", "world"])]).await;
    let app = spawn_app_with(service_config(&fake, 0)).await;

    // Act: a draft, rejected with a comment, and its revision
    let task = app.submit_for_review("Greet the world", 3).await;
    let first = task.output.clone();
    app.decide(
        &task.id,
        json!({ "decision": "rejected", "attempt": 1, "comment": "Say hello" }),
    )
    .await;
    let task = app.wait_for_review(&task.id, 2).await;

    // Assert
    assert_eq!(first.as_deref(), Some("Hi there"));
    assert_eq!(task.output.as_deref(), Some("Hello, world"));
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let revision = seen[1].message("user");
    for part in ["Greet the world", "Hi there", "Say hello", "rejected"] {
        assert!(revision.contains(part), "{part:?} in {revision}");
    }
}

#[tokio::test]
async fn a_rate_limited_try_is_retried_by_the_service() {
    let fake = FakeLlm::start([
        Reply::Status(StatusCode::TOO_MANY_REQUESTS, "slow down".into()),
        tokens(&["second ", "answer"]),
    ])
    .await;
    let app = spawn_app_with(service_config(&fake, 1)).await;

    let task = app.submit("anything", 1).await;
    let task = app
        .wait_for(&task.id, |e| {
            matches!(e.status, TaskStatus::WaitingForReview | TaskStatus::Failed)
        })
        .await;

    assert_eq!(
        task.status,
        TaskStatus::WaitingForReview,
        "{:?}",
        task.error
    );
    assert_eq!(task.output.as_deref(), Some("second answer"));
    assert_eq!(fake.seen().len(), 2);
}

#[tokio::test]
async fn a_bad_key_fails_the_task_after_one_request() {
    let fake = FakeLlm::start([
        Reply::Status(StatusCode::UNAUTHORIZED, "invalid api key".into()),
        tokens(&["never sent"]),
    ])
    .await;
    let app = spawn_app_with(service_config(&fake, 3)).await;

    let task = app.submit("anything", 1).await;
    let task = app.wait_for_status(&task.id, TaskStatus::Failed).await;

    let error = task.error.expect("an error");
    assert!(
        error.contains("401 Unauthorized: check HITL_LLM_API_KEY"),
        "{error}"
    );
    assert_eq!(fake.seen().len(), 1);
}
