//! The `hitl` binary itself: it prints where it listens, and SIGTERM stops it promptly even with
//! event streams open.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

/// Sends SIGTERM and asserts a clean exit (0) within 5 s.
async fn terminate_cleanly(child: &mut tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("the binary exits within 5 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "a clean exit, got {exit:?}");
}

#[tokio::test]
async fn sigterm_stops_the_binary_promptly_with_streams_open() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitl"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--process-delay-ms",
            "0",
            "--store",
            "memory",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("it prints its address")
        .unwrap()
        .unwrap();
    let base = line
        .strip_prefix("listening on ")
        .expect("the contract's first line")
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for path in ["/api/events", "/stream", "/api/events"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        streams.push(response.bytes_stream());
    }

    let sent = Instant::now();
    terminate_cleanly(&mut child).await;
    for mut stream in streams {
        let ended = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
        assert!(ended.is_ok(), "every open stream ended");
    }
    assert!(sent.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn hash_secret_prints_an_argon2_hash_of_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitl"))
        .arg("hash-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"open sesame\n")
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("it answers")
        .unwrap();
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap();
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("open sesame"));
    let users: hitl::auth::Users = format!("ali:reviewer:{hash}").parse().unwrap();
    let auth = hitl::auth::Auth::new(users, None, Duration::from_secs(60), false);
    assert!(
        auth.check("ali", "open sesame").is_some(),
        "the hash is of the secret"
    );
    assert!(auth.check("ali", "open sesame\n").is_none());
}

/// `hitl 2>&1 | logger`, and the logger dies: the log lines hitl writes from then on fail with
/// EPIPE. Requests are still served, and SIGTERM still stops it at once with a clean exit (it
/// once hung for good: tracing reported the failed write with `eprintln!`, which panicked in
/// the task that was to start the shutdown).
#[tokio::test]
async fn sigterm_stops_the_binary_whose_log_reader_is_gone() {
    use std::io::BufRead;
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitl"))
        .args(["--addr", "127.0.0.1:0", "--store", "memory"])
        // Every request and the shutdown write log lines.
        .env("RUST_LOG", "hitl=debug")
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let first = tokio::task::spawn_blocking(move || {
        let mut reader = std::io::BufReader::new(reader);
        let mut line = String::new();
        while !line.starts_with("listening on ") {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "it prints its address"
            );
        }
        // The reader dies here: both outputs now lead to a pipe nobody reads.
        line
    });
    let line = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("it prints its address")
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();

    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client
            .post(format!("{base}/api/tasks"))
            .body(r#"{"input": "logged into a dead pipe"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "requests are still served");
    }
    terminate_cleanly(&mut child).await;
}
