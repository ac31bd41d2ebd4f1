//! The two messages each attempt sends: a fixed system message, and a user message that gives
//! the task and, after a rejection, every earlier output with the reviewer's comment on it.
//!
//! The user message is built in, or comes from `--llm-prompt-file`, a template with four
//! placeholders: `{{input}}`, `{{attempt}}`, `{{max_attempts}}` and `{{feedback}}` (empty on the
//! first attempt; later, the earlier outputs and comments with a sentence saying they were
//! rejected). The substitution is written here rather than taken from a template engine: four
//! fixed names need no loops, conditions or escaping, and checking the names once at start-up
//! turns a typo into a start-up error instead of a prompt with a hole in it.

use std::{fmt::Write as _, path::Path};

use crate::review::{PriorAttempt, ProcessRequest};

/// What the model is told it is for, whichever user message follows.
const SYSTEM: &str = "You carry out tasks for a person who reviews each output before it is used. \
A reviewer may reject an output and say why; you then write a revised one. Reply with the output \
itself only: no preamble, no remarks about the task or about what you changed.";

/// The user message: built in, or a checked template.
pub struct Prompt {
    template: Option<Template>,
}

impl Prompt {
    pub fn built_in() -> Self {
        Self { template: None }
    }

    /// Reads and checks a template file: every placeholder known, `{{input}}` used.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --llm-prompt-file {shown}: {e}"))?;
        let template = Template::parse(&text)
            .map_err(|problem| format!("--llm-prompt-file {shown}: {problem}"))?;
        if !template.uses(Piece::Feedback) {
            tracing::warn!(
                file = %shown,
                "the prompt template has no {{{{feedback}}}}: the model will not see the reviewer's comments"
            );
        }
        Ok(Self {
            template: Some(template),
        })
    }

    /// The system and user messages for this attempt.
    pub fn messages(&self, request: &ProcessRequest) -> (&'static str, String) {
        let user = match &self.template {
            Some(template) => template.render(request),
            None => built_in_user(request),
        };
        (SYSTEM, user)
    }
}

fn built_in_user(request: &ProcessRequest) -> String {
    let mut user = format!("<task>\n{}\n</task>\n\n", request.input);
    if request.history.is_empty() {
        user.push_str("Write the output for this task.");
    } else {
        let _ = write!(
            user,
            "This is attempt {} of {}. {}\nWrite a revised output for the task that addresses \
             every comment of the reviewer.",
            request.attempt,
            request.max_attempts,
            feedback(&request.history),
        );
    }
    user
}

/// Earlier outputs and the reviewer's comments, saying plainly that they were rejected; empty
/// on the first attempt.
fn feedback(history: &[PriorAttempt]) -> String {
    let Some(last) = history.last() else {
        return String::new();
    };
    let mut out = format!(
        "The reviewer rejected your previous output (attempt {}). Each earlier output, with the \
         reviewer's comment saying why it was rejected:\n\n",
        last.attempt
    );
    for prior in history {
        let comment = prior
            .comment
            .as_deref()
            .unwrap_or("(rejected without a comment)");
        let _ = write!(
            out,
            "<attempt number=\"{n}\">\n<output>\n{output}\n</output>\n<reviewer_comment>\n\
             {comment}\n</reviewer_comment>\n</attempt>\n",
            n = prior.attempt,
            output = prior.output,
        );
    }
    out
}

/// A template cut into text and placeholders once, at start-up.
struct Template(Vec<Piece>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Input,
    Attempt,
    MaxAttempts,
    Feedback,
}

const KNOWN: &str = "{{input}}, {{attempt}}, {{max_attempts}}, {{feedback}}";

impl Template {
    /// `{{` always opens a placeholder (spaces inside the braces are allowed).
    fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let line = text[..text.len() - rest.len() + open].matches('\n').count() + 1;
            pieces.push(Piece::Text(rest[..open].to_owned()));
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("line {line}: a `{{{{` is never closed by `}}}}`"))?;
            pieces.push(match after[..close].trim() {
                "input" => Piece::Input,
                "attempt" => Piece::Attempt,
                "max_attempts" => Piece::MaxAttempts,
                "feedback" => Piece::Feedback,
                name => {
                    return Err(format!(
                        "line {line}: unknown placeholder `{{{{{name}}}}}`; the known ones are {KNOWN}"
                    ));
                }
            });
            rest = &after[close + 2..];
        }
        pieces.push(Piece::Text(rest.to_owned()));
        let template = Self(pieces);
        if !template.uses(Piece::Input) {
            return Err(
                "the template never uses {{input}}, so the model would not see the task".into(),
            );
        }
        Ok(template)
    }

    fn uses(&self, piece: Piece) -> bool {
        self.0.contains(&piece)
    }

    /// One pass: text substituted in (an input that contains `{{feedback}}`, say) is never
    /// read as a placeholder.
    fn render(&self, request: &ProcessRequest) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Input => out.push_str(&request.input),
                Piece::Attempt => out.push_str(&request.attempt.to_string()),
                Piece::MaxAttempts => out.push_str(&request.max_attempts.to_string()),
                Piece::Feedback => out.push_str(&feedback(&request.history)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::TaskId;

    fn request(history: &[(&str, Option<&str>)]) -> ProcessRequest {
        ProcessRequest {
            task_id: TaskId::new(),
            input: "Write a haiku about {{feedback}}".into(),
            attempt: history.len() as u32 + 1,
            max_attempts: 3,
            history: history
                .iter()
                .zip(1..)
                .map(|((output, comment), attempt)| PriorAttempt {
                    attempt,
                    output: (*output).into(),
                    comment: comment.map(Into::into),
                })
                .collect(),
        }
    }

    #[test]
    fn the_first_attempt_asks_for_the_output_only() {
        let (system, user) = Prompt::built_in().messages(&request(&[]));
        assert!(system.contains("output"));
        assert!(user.contains("Write a haiku about {{feedback}}"));
        assert!(user.ends_with("Write the output for this task."));
        assert!(!user.contains("rejected"));
    }

    #[test]
    fn a_revision_shows_every_rejected_output_and_why() {
        let history = [("first draft", Some("too long")), ("second draft", None)];
        let (_, user) = Prompt::built_in().messages(&request(&history));
        assert!(user.contains("attempt 3 of 3"));
        assert!(user.contains("rejected your previous output (attempt 2)"));
        for part in [
            "first draft",
            "too long",
            "second draft",
            "without a comment",
        ] {
            assert!(user.contains(part), "{part} in {user}");
        }
        assert!(user.ends_with("every comment of the reviewer."));
    }

    #[test]
    fn a_template_substitutes_once_and_knows_its_lines() {
        let template = Template::parse("{{ input }} ({{attempt}}/{{max_attempts}})\n{{feedback}}")
            .expect("a valid template");
        let rendered = template.render(&request(&[("draft", Some("shorter"))]));
        assert!(rendered.starts_with("Write a haiku about {{feedback}} (2/3)\nThe reviewer"));
        assert!(rendered.contains("shorter"));

        let unknown = Template::parse("{{input}}\n\n{{nope}}").err().unwrap();
        assert!(
            unknown.starts_with("line 3: unknown placeholder `{{nope}}`"),
            "{unknown}"
        );
        let unclosed = Template::parse("{{input}} {{attempt").err().unwrap();
        assert!(unclosed.contains("never closed"), "{unclosed}");
        let no_input = Template::parse("Just do it").err().unwrap();
        assert!(no_input.contains("{{input}}"), "{no_input}");
    }
}
