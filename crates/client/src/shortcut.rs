//! The desktop app's global shortcut (a system-wide key combination that opens the
//! quick switcher from any application, as password managers do): its setting, kept
//! with this device's preferences in the cache, and the rule a combination must
//! follow. The desktop app registers it (an X11 key grab); the command line changes
//! it (`firedoor shortcut …`), and the running app picks the change up.

/// The combination used until the person chooses another one.
pub const DEFAULT: &str = "Ctrl+Alt+K";

/// The cache key of the setting: a combination, or [`OFF`].
pub const PREF_KEY: &str = "pref/global_shortcut";

/// The cache key where the app tells how registering the shortcut went (for
/// `firedoor shortcut` to show).
pub const STATUS_KEY: &str = "pref/global_shortcut_status";

/// The setting's value when the person turned the shortcut off.
pub const OFF: &str = "off";

/// Named keys accepted after the modifiers (as the key grab library names them),
/// beside letters, digits and F1–F24.
const NAMED_KEYS: &[&str] = &[
    "Space",
    "Enter",
    "Tab",
    "Escape",
    "Backspace",
    "Delete",
    "Insert",
    "Home",
    "End",
    "PageUp",
    "PageDown",
    "Up",
    "Down",
    "Left",
    "Right",
    "Backquote",
    "Minus",
    "Equal",
    "Comma",
    "Period",
    "Slash",
    "Backslash",
    "Semicolon",
    "Quote",
    "BracketLeft",
    "BracketRight",
];

/// Checks a key combination and writes it the one way the app and the command line
/// show it: modifiers in the order Ctrl, Alt, Shift, Super, then one key
/// (`"alt+ctrl+k"` → `"Ctrl+Alt+K"`). It must hold Ctrl, Alt or Super: a global
/// shortcut without one of them would take a key away from typing everywhere.
pub fn normalize(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("Give a key combination such as Ctrl+Alt+K.".into());
    }
    let tokens: Vec<&str> = text.split('+').map(str::trim).collect();
    let Some((key, mods)) = tokens.split_last() else {
        return Err("Give a key combination such as Ctrl+Alt+K.".into());
    };
    let (mut ctrl, mut alt, mut shift, mut sup) = (false, false, false, false);
    for m in mods {
        let flag = match m.to_ascii_lowercase().as_str() {
            "ctrl" | "control" => &mut ctrl,
            "alt" | "option" => &mut alt,
            "shift" => &mut shift,
            "super" | "cmd" | "command" | "meta" | "win" => &mut sup,
            "" => return Err(format!("“{text}” has an empty part between two +.")),
            _ => {
                return Err(format!(
                "“{m}” is not a modifier: use Ctrl, Alt, Shift or Super before the key (e.g. Ctrl+Alt+K)."
            ))
            }
        };
        if *flag {
            return Err(format!("“{text}” names a modifier twice."));
        }
        *flag = true;
    }
    let key = key_name(key).ok_or_else(|| {
        format!(
            "“{key}” is not a key the shortcut can use: a letter, a digit, F1–F24, or one of {}.",
            NAMED_KEYS.join(", ")
        )
    })?;
    if !(ctrl || alt || sup) {
        return Err(format!(
            "“{text}” needs Ctrl, Alt or Super: without one it would take {key} away from typing in every application."
        ));
    }
    let mut out = Vec::new();
    for (on, name) in [
        (ctrl, "Ctrl"),
        (alt, "Alt"),
        (shift, "Shift"),
        (sup, "Super"),
    ] {
        if on {
            out.push(name.to_string());
        }
    }
    out.push(key);
    Ok(out.join("+"))
}

/// The key's canonical name, if it is one a shortcut may use.
fn key_name(key: &str) -> Option<String> {
    let mut chars = key.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        if c.is_ascii_alphanumeric() {
            return Some(c.to_ascii_uppercase().to_string());
        }
    }
    let upper = key.to_ascii_uppercase();
    if let Some(n) = upper.strip_prefix('F').and_then(|n| n.parse::<u8>().ok()) {
        if (1..=24).contains(&n) && !upper[1..].starts_with('0') {
            return Some(format!("F{n}"));
        }
    }
    NAMED_KEYS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(key))
        .map(|k| k.to_string())
}

/// What the setting means: `Some(combination)` to register, `None` when turned off.
/// An absent setting is [`DEFAULT`]; one that no longer passes [`normalize`] is
/// kept as written (the app then says why it cannot be used).
pub fn effective(setting: Option<&str>) -> Option<String> {
    match setting.map(str::trim) {
        None | Some("") => Some(DEFAULT.to_string()),
        Some(s) if s.eq_ignore_ascii_case(OFF) => None,
        Some(s) => Some(normalize(s).unwrap_or_else(|_| s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_are_written_one_way() {
        assert_eq!(normalize("ctrl+alt+k").as_deref(), Ok("Ctrl+Alt+K"));
        assert_eq!(
            normalize(" Alt + Control + k ").as_deref(),
            Ok("Ctrl+Alt+K")
        );
        assert_eq!(
            normalize("super+shift+space").as_deref(),
            Ok("Shift+Super+Space")
        );
        assert_eq!(normalize("Ctrl+F12").as_deref(), Ok("Ctrl+F12"));
        assert_eq!(normalize("cmd+pageup").as_deref(), Ok("Super+PageUp"));
        assert_eq!(normalize("Ctrl+Alt+7").as_deref(), Ok("Ctrl+Alt+7"));
    }

    #[test]
    fn bad_combinations_say_why() {
        let e = normalize("Shift+K").unwrap_err();
        assert!(e.contains("needs Ctrl, Alt or Super"), "{e}");
        let e = normalize("K").unwrap_err();
        assert!(e.contains("needs Ctrl, Alt or Super"), "{e}");
        let e = normalize("Ctrl+Hyper+K").unwrap_err();
        assert!(e.contains("“Hyper” is not a modifier"), "{e}");
        let e = normalize("Ctrl+Alt+Kk").unwrap_err();
        assert!(e.contains("“Kk” is not a key"), "{e}");
        let e = normalize("Ctrl+F25").unwrap_err();
        assert!(e.contains("not a key"), "{e}");
        let e = normalize("Ctrl+Ctrl+K").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = normalize("Ctrl++K").unwrap_err();
        assert!(e.contains("empty part"), "{e}");
        assert!(normalize("  ").is_err());
    }

    #[test]
    fn the_setting_defaults_and_turns_off() {
        assert_eq!(effective(None).as_deref(), Some(DEFAULT));
        assert_eq!(effective(Some("")).as_deref(), Some(DEFAULT));
        assert_eq!(effective(Some("OFF")), None);
        assert_eq!(effective(Some("alt+ctrl+j")).as_deref(), Some("Ctrl+Alt+J"));
        assert_eq!(effective(Some("Hyper+J")).as_deref(), Some("Hyper+J"));
    }
}
