//! Word-level differences between two texts (with `similar`), marked so they read without
//! colour and out loud: deletions in `<del>`, insertions in `<ins>`, each with words a screen
//! reader speaks, since most do not announce those elements.

use maud::{Markup, html};
use similar::{ChangeTag, TextDiff};

/// `new` against `old`, runs of one kind of change kept together.
pub fn diff(old: &str, new: &str) -> Markup {
    let (old, new) = (words(old), words(new));
    let diff = TextDiff::from_slices(&old, &new);
    let mut runs: Vec<(ChangeTag, String)> = Vec::new();
    for change in diff.iter_all_changes() {
        match runs.last_mut() {
            Some((tag, text)) if *tag == change.tag() => text.push_str(change.value()),
            _ => runs.push((change.tag(), change.value().to_owned())),
        }
    }
    html! {
        pre.text.diff {
            @for (tag, text) in &runs {
                @match tag {
                    ChangeTag::Equal => (text),
                    ChangeTag::Delete => del {
                        span.visually-hidden { "[removed: " } (text) span.visually-hidden { "]" }
                    },
                    ChangeTag::Insert => ins {
                        span.visually-hidden { "[added: " } (text) span.visually-hidden { "]" }
                    },
                }
            }
        }
    }
}

/// Words with the white space after them: `similar`'s own word split makes spaces tokens of
/// their own, and a lone matching space would cut one changed phrase into many marks.
fn words(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if in_space && !c.is_whitespace() {
            words.push(&text[start..i]);
            start = i;
        }
        in_space = c.is_whitespace();
    }
    if start < text.len() {
        words.push(&text[start..]);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_words_are_marked_and_the_rest_kept() {
        let html = diff("the quick brown fox", "the slow brown fox jumps over").into_string();
        assert_eq!(
            html,
            "<pre class=\"text diff\">the \
             <del><span class=\"visually-hidden\">[removed: </span>quick <span class=\"visually-hidden\">]</span></del>\
             <ins><span class=\"visually-hidden\">[added: </span>slow <span class=\"visually-hidden\">]</span></ins>\
             brown <del><span class=\"visually-hidden\">[removed: </span>fox<span class=\"visually-hidden\">]</span></del>\
             <ins><span class=\"visually-hidden\">[added: </span>fox jumps over<span class=\"visually-hidden\">]</span></ins></pre>"
        );
        assert_eq!(words("a  b\nc"), vec!["a  ", "b\n", "c"]);
        assert!(!diff("same", "same").into_string().contains("<ins>"));
        assert!(
            diff("a", "<b>").into_string().contains("&lt;b&gt;"),
            "escaped"
        );
    }
}
