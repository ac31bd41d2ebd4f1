//! `--processor command`: runs a program per attempt.
//!
//! The program gets the attempt as one JSON object on its standard input:
//! `{"task_id", "input", "attempt", "max_attempts", "history": [{"attempt", "output",
//! "comment"}]}`, then end of file. What it writes on standard output is the attempt's output;
//! each line is pushed as progress as it comes. A non-zero exit is a failure (retried up to
//! `--max-retries`) whose message ends with the last lines of its standard error.
//!
//! It runs in a process group of its own, and the whole group is killed when the try ends for
//! any reason (done, timed out, cancelled, server stopping), so no child it started outlives it.

use std::{process::Stdio, sync::Arc};

use serde::Serialize;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

use crate::{
    config::ProcessorConfig,
    engine::NodeError,
    review::{ProcessRequest, Processor, processor::ProcessFuture},
};

/// How much of standard error a failure's message keeps (its end).
const STDERR_TAIL: usize = 2000;

pub struct CommandProcessor {
    /// The program and its arguments.
    argv: Vec<String>,
}

impl CommandProcessor {
    pub fn new(config: &ProcessorConfig) -> Result<Self, String> {
        let command = config
            .command
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .ok_or("--processor command needs --command (or HITL_COMMAND): the program to run")?;
        let argv = if config.command_shell {
            vec!["sh".to_owned(), "-c".to_owned(), command.to_owned()]
        } else {
            shell_words::split(command).map_err(|e| format!("--command {command:?}: {e}"))?
        };
        Ok(Self { argv })
    }

    fn program(&self) -> &str {
        &self.argv[0]
    }
}

/// The JSON a command reads on its standard input.
#[derive(Serialize)]
struct Stdin<'a> {
    task_id: String,
    input: &'a str,
    attempt: u32,
    max_attempts: u32,
    history: Vec<Earlier<'a>>,
}

#[derive(Serialize)]
struct Earlier<'a> {
    attempt: u32,
    output: &'a str,
    comment: Option<&'a str>,
}

/// Kills the process group when dropped: the try is over, whatever ended it.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: killpg only sends a signal; a group that is already gone is ESRCH, ignored.
        unsafe {
            libc::killpg(self.0, libc::SIGKILL);
        }
    }
}

impl Processor for CommandProcessor {
    fn process<'a>(
        &'a self,
        request: &'a ProcessRequest,
        progress: &'a (dyn Fn(Arc<str>) + Send + Sync),
    ) -> ProcessFuture<'a> {
        Box::pin(async move {
            let program = self.program();
            let mut child = Command::new(program)
                .args(&self.argv[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| NodeError::fatal(format!("Cannot start `{program}`: {e}.")))?;
            let _group = child
                .id()
                .and_then(|pid| i32::try_from(pid).ok())
                .map(Group);

            let json = serde_json::to_vec(&Stdin {
                task_id: request.task_id.to_string(),
                input: &request.input,
                attempt: request.attempt,
                max_attempts: request.max_attempts,
                history: request
                    .history
                    .iter()
                    .map(|p| Earlier {
                        attempt: p.attempt,
                        output: &p.output,
                        comment: p.comment.as_deref(),
                    })
                    .collect(),
            })
            .map_err(|e| NodeError::fatal(e.to_string()))?;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            let feed = async move {
                // A program that does not read its input closes the pipe early: not an error.
                let _ = stdin.write_all(&json).await;
                let _ = stdin.shutdown().await;
            };

            let stdout = child.stdout.take().expect("stdout is piped");
            let read_out = async {
                let mut lines = BufReader::new(stdout).lines();
                let mut output = String::new();
                while let Some(line) = lines.next_line().await.map_err(|e| {
                    NodeError::new(format!("Cannot read the output of `{program}`: {e}."))
                })? {
                    if !output.is_empty() {
                        output.push('\n');
                    }
                    output.push_str(&line);
                    progress(output.as_str().into());
                }
                Ok::<_, NodeError>(output)
            };

            let mut stderr = child.stderr.take().expect("stderr is piped");
            let read_err = async move {
                let mut text = Vec::new();
                let _ = stderr.read_to_end(&mut text).await;
                text
            };

            let ((), output, errors) = tokio::join!(feed, read_out, read_err);
            let status = child
                .wait()
                .await
                .map_err(|e| NodeError::new(format!("`{program}` could not be waited on: {e}.")))?;
            let output = output?;
            if !status.success() {
                let errors = String::from_utf8_lossy(&errors);
                let tail = tail(errors.trim_end(), STDERR_TAIL);
                let how = match status.code() {
                    Some(code) => format!("exited with status {code}"),
                    None => "was killed by a signal".to_owned(),
                };
                return Err(NodeError::new(if tail.is_empty() {
                    format!("`{program}` {how}.")
                } else {
                    format!("`{program}` {how}: {tail}")
                }));
            }
            if output.trim().is_empty() {
                return Err(NodeError::new(format!(
                    "`{program}` wrote no output (it exited successfully)."
                )));
            }
            Ok(output)
        })
    }
}

/// The last `max` bytes of `text` (at a character boundary), marked as cut if they are not all.
fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_split_like_a_shell_does_unless_a_shell_runs_it() {
        let config = |command: &str, shell| ProcessorConfig {
            command: Some(command.into()),
            command_shell: shell,
            ..ProcessorConfig::default()
        };
        let split = CommandProcessor::new(&config("python3 'my step.py' --fast", false)).unwrap();
        assert_eq!(split.argv, ["python3", "my step.py", "--fast"]);
        let shell = CommandProcessor::new(&config("a | b", true)).unwrap();
        assert_eq!(shell.argv, ["sh", "-c", "a | b"]);
        assert!(CommandProcessor::new(&config("  ", false)).is_err());
        assert!(CommandProcessor::new(&config("unterminated 'quote", false)).is_err());
        assert!(CommandProcessor::new(&ProcessorConfig::default()).is_err());
    }

    #[test]
    fn a_tail_keeps_the_end_at_a_character_boundary() {
        assert_eq!(tail("short", 10), "short");
        assert_eq!(tail("abcdef", 3), "…def");
        assert_eq!(tail("aéé", 3), "…é");
    }
}
