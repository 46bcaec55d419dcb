//! Free text people type that is stored, audited and shown to others: a request's
//! justification and ticket, a break-glass reason, a device's name, an approval
//! comment. Each has one rule here, used by the broker and by the desktop client
//! (which checks before it even tries, e.g. an offline unlock).

use crate::{ErrorCode, RuleError};

/// Longest justification, ticket, approval comment or denial reason, in characters.
pub const MAX_TEXT: usize = 2000;
/// Longest break-glass reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest device name, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 100;

/// Control characters other than line breaks and tabs.
fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// An optional text of a request (justification, ticket), trimmed: `None` when it
/// is blank, refused with `missing` when blank but `required`, and refused when
/// longer than [`MAX_TEXT`] or holding control characters (other than line breaks
/// and tabs). `what` names the field in messages.
pub fn request_text(
    v: Option<&str>,
    required: bool,
    what: &str,
    missing: ErrorCode,
) -> Result<Option<String>, RuleError> {
    let v = v.map(str::trim).filter(|s| !s.is_empty());
    match v {
        None if required => Err(RuleError::new(
            missing,
            format!("this bundle's flow requires a {what}"),
        )),
        None => Ok(None),
        Some(s) if s.chars().count() > MAX_TEXT => Err(RuleError::new(
            ErrorCode::InvalidRequest,
            format!("{what} is longer than {MAX_TEXT} characters"),
        )),
        Some(s) if has_control(s) => Err(RuleError::new(
            ErrorCode::InvalidRequest,
            format!("{what} contains control characters"),
        )),
        Some(s) => Ok(Some(s.to_string())),
    }
}

/// An approval comment: trimmed and cut to [`MAX_TEXT`] characters (a comment is
/// never a reason to refuse an approval).
pub fn approval_comment(c: Option<String>) -> Option<String> {
    c.map(|c| c.trim().chars().take(MAX_TEXT).collect())
}

/// A break-glass reason (online or offline unlock), trimmed: required, at most
/// [`MAX_REASON_CHARS`] characters, no control characters other than line breaks
/// and tabs.
pub fn break_glass_reason(reason: &str) -> Result<String, RuleError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(RuleError::new(
            ErrorCode::JustificationRequired,
            "reason: say why you are breaking the glass",
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(RuleError::new(
            ErrorCode::InvalidRequest,
            format!("reason is longer than {MAX_REASON_CHARS} characters"),
        ));
    }
    if has_control(reason) {
        return Err(RuleError::new(
            ErrorCode::InvalidRequest,
            "reason contains control characters",
        ));
    }
    Ok(reason.to_string())
}

/// A device's name (shown to admins in alerts and the audit log), trimmed: 1 to
/// [`MAX_DEVICE_NAME_CHARS`] characters, no control characters at all.
pub fn device_name(name: &str) -> Result<String, RuleError> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_DEVICE_NAME_CHARS {
        return Err(RuleError::new(
            ErrorCode::InvalidRequest,
            format!(
                "name: give the device a name of 1 to {MAX_DEVICE_NAME_CHARS} characters (e.g. its host name)"
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(RuleError::new(
            ErrorCode::InvalidRequest,
            "name: control characters are not allowed",
        ));
    }
    Ok(name.to_string())
}

/// `s` cut to `n` characters, with an ellipsis when something was cut (for text
/// that is recorded or shown whatever its length, e.g. a reason from a device's
/// already-signed record).
pub fn truncate_chars(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn break_glass_reasons() {
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        let longest = "é".repeat(MAX_REASON_CHARS);
        // (input, Ok(trimmed) or Err(code))
        let cases: Vec<(&str, Result<&str, ErrorCode>)> = vec![
            ("  INC-42 db down ", Ok("INC-42 db down")),
            ("line\nbreak\tand tab", Ok("line\nbreak\tand tab")),
            (&longest, Ok(&longest)),
            ("", Err(ErrorCode::JustificationRequired)),
            (" \n\t ", Err(ErrorCode::JustificationRequired)),
            (&long, Err(ErrorCode::InvalidRequest)),
            ("bell\u{7}", Err(ErrorCode::InvalidRequest)),
            ("esc\u{1b}[31m", Err(ErrorCode::InvalidRequest)),
        ];
        for (input, expect) in cases {
            let got = break_glass_reason(input);
            match expect {
                Ok(s) => assert_eq!(got.unwrap(), s, "{input:?} is a good reason"),
                Err(code) => assert_eq!(got.unwrap_err().code, code, "{input:?} is refused"),
            }
        }
    }

    #[test]
    fn device_names() {
        let long = "d".repeat(MAX_DEVICE_NAME_CHARS + 1);
        let longest = "d".repeat(MAX_DEVICE_NAME_CHARS);
        let cases: Vec<(&str, Option<&str>)> = vec![
            (" ann-laptop ", Some("ann-laptop")),
            ("MacBook Pro (2)", Some("MacBook Pro (2)")),
            (&longest, Some(&longest)),
            ("", None),
            ("   ", None),
            (&long, None),
            ("tab\there", None),
            ("nl\nhere", None),
        ];
        for (input, expect) in cases {
            match expect {
                Some(s) => assert_eq!(device_name(input).unwrap(), s, "{input:?}"),
                None => assert_eq!(
                    device_name(input).unwrap_err().code,
                    ErrorCode::InvalidRequest,
                    "{input:?} is refused"
                ),
            }
        }
    }

    #[test]
    fn request_texts() {
        let long = "j".repeat(MAX_TEXT + 1);
        type Case<'a> = (Option<&'a str>, bool, Result<Option<&'a str>, ErrorCode>);
        let cases: Vec<Case<'_>> = vec![
            (None, false, Ok(None)),
            (Some("  "), false, Ok(None)),
            (None, true, Err(ErrorCode::JustificationRequired)),
            (Some(" \n "), true, Err(ErrorCode::JustificationRequired)),
            (Some(" INC-1 "), true, Ok(Some("INC-1"))),
            (Some("a\nb"), true, Ok(Some("a\nb"))),
            (Some(&long), false, Err(ErrorCode::InvalidRequest)),
            (Some("x\u{0}"), false, Err(ErrorCode::InvalidRequest)),
        ];
        for (input, required, expect) in cases {
            let got = request_text(
                input,
                required,
                "justification",
                ErrorCode::JustificationRequired,
            );
            match expect {
                Ok(v) => assert_eq!(got.unwrap().as_deref(), v, "{input:?}"),
                Err(code) => assert_eq!(got.unwrap_err().code, code, "{input:?}"),
            }
        }
    }

    #[test]
    fn comments_and_truncation() {
        assert_eq!(approval_comment(None), None);
        assert_eq!(
            approval_comment(Some("  ok ".into())).as_deref(),
            Some("ok")
        );
        let long = "c".repeat(MAX_TEXT + 10);
        assert_eq!(
            approval_comment(Some(long)).unwrap().chars().count(),
            MAX_TEXT
        );
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "abc…");
    }
}
