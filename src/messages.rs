//! Every user-facing line on stderr goes through here: one prefix, one style for errors,
//! warnings and notes, written whole between redraws of the progress bar (never mid-line), and
//! user input cut to a safe length before it is echoed.

use crate::progress;

/// The prefix of errors, as the shell shows which program spoke.
pub const PREFIX: &str = "liveness-batch";

/// Longest piece of outside input (a path, a key, a cell) echoed in a message, in characters.
pub const ECHO_MAX: usize = 120;

/// An error that ends the command.
pub fn error(message: &str) {
    progress::eprint_line(&format!("{PREFIX}: error: {message}"));
}

/// Something the user should know; the run goes on.
pub fn warn(message: &str) {
    progress::eprint_line(&format!("{PREFIX}: warning: {message}"));
}

/// A plain line of the run's own narration (banner, stop notices, summary).
pub fn note(message: &str) {
    progress::eprint_line(message);
}

/// Outside input made safe to echo: control characters escaped, at most [`ECHO_MAX`]
/// characters, with the full length named when cut.
pub fn cut(s: &str) -> String {
    let mut out = String::new();
    for (shown, c) in s.chars().enumerate() {
        if shown == ECHO_MAX {
            return format!("{out}… ({} bytes in all)", s.len());
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The banner's line about a check other than passive liveness (none for liveness): what it
/// sends, what it costs, and what decides. `pairs`: face match's threshold and where each
/// selfie's reference comes from.
pub fn check_note(
    check: &str,
    path: &str,
    price_usd: f64,
    min_age: Option<u32>,
    pairs: Option<(f64, &str)>,
) -> Option<String> {
    let (name, what) = match (check, min_age, pairs) {
        ("age", Some(0), _) => (
            "age estimation",
            "no minimum age: the age check is off, the age is still estimated".to_string(),
        ),
        ("age", Some(n), _) => (
            "age estimation",
            format!("declined when the estimated age is below {n}"),
        ),
        ("face-match", _, Some((threshold, from))) => {
            let permissive = if threshold <= 30.0 {
                " (Didit's standalone default, which it calls permissive; \
                 --face-match-threshold sets another)"
            } else {
                ""
            };
            (
                "face match",
                format!(
                    "each selfie against {from}; declined at a similarity of {threshold} or \
                     below{permissive}"
                ),
            )
        }
        _ => return None,
    };
    Some(format!(
        "Check: {name} ({path}, US${price_usd:.2} a call): {what}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_text_and_cuts_long_text() {
        assert_eq!(cut("photo 1.jpg"), "photo 1.jpg");
        assert_eq!(cut("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
        let long = "x".repeat(10_000_000);
        let shown = cut(&long);
        assert!(shown.len() < 200, "{}", shown.len());
        assert!(shown.ends_with("… (10000000 bytes in all)"), "{shown}");
        let nul = "\0".repeat(1000);
        assert!(cut(&nul).len() < 1000);
    }
}
