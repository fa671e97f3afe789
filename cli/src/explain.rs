//! `ibconn explain CODE "MESSAGE"`: the classifier's verdict in a user's words — what happened,
//! what ibconn does about it, what you can do ([`ibconn_core::classify::explain`]).

use ibconn_core::classify::{self, classify, Advice, Classification, ErrorClass, RequestContext};
use serde::Serialize;

/// The verdict as printed.
#[derive(Debug, Serialize)]
pub(crate) struct Explanation<'a> {
    /// IB's code.
    code: i32,
    /// IB's message, as given.
    message: &'a str,
    /// What happened.
    what_happened: String,
    /// What ibconn does about it.
    what_ibconn_does: String,
    /// What the user can do.
    what_you_can_do: String,
    /// The classifier's class (for programs; `--json` only).
    class: ErrorClass,
    /// The classifier's advice to the code handling the request (for programs; `--json` only).
    advice: Advice,
}

/// Classify `code` and `message` (no request context: as if IB's text arrived on its own).
pub(crate) fn explain(code: i32, message: &str) -> Explanation<'_> {
    let verdict = classify(code, message, &RequestContext::default());
    let Classification { class, advice } = verdict;
    let words = classify::explain(code, message, verdict);
    Explanation {
        code,
        message,
        what_happened: words.what_happened,
        what_ibconn_does: words.what_ibconn_does,
        what_you_can_do: words.what_you_can_do,
        class,
        advice,
    }
}

/// Width the text is wrapped to.
const WIDTH: usize = 96;

impl Explanation<'_> {
    /// Human-readable paragraphs.
    pub(crate) fn text(&self) -> String {
        let mut s = format!("IB {}: {}\n\n", self.code, self.message.trim());
        for (head, body) in [
            ("What happened", &self.what_happened),
            ("What ibconn does", &self.what_ibconn_does),
            ("What you can do", &self.what_you_can_do),
        ] {
            s.push_str(head);
            s.push('\n');
            s.push_str(&wrap(body, "  ", WIDTH));
        }
        s
    }
}

/// `text` wrapped at `width` columns, each line starting with `indent`.
fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        let empty = line.len() == indent.len();
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        } else if !empty {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_three_wrapped_parts() {
        let text = explain(10197, "No market data during competing session").text();
        assert!(text.starts_with("IB 10197: No market data during competing session\n\n"));
        for head in ["What happened\n", "What ibconn does\n", "What you can do\n"] {
            assert!(text.contains(head), "{text}");
        }
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains("clears when the other session ends"),
            "{text}"
        );
    }
}
