//! What the desktop trusts, and how much: the broker URL it signs in to (TLS unless
//! the broker is on this machine), the strength of a local unlock passphrase, and the
//! break-glass state kept in the OS keyring next to the wrapped device keys (the pinned
//! broker key, the highest envelope version seen per secret, the wrong-passphrase
//! times), so that deleting, editing or restoring an old copy of `cache.db` resets none
//! of it.
//!
//! What the keyring state does not defend against: anyone who can use the logged-in
//! session can also read and write the keyring (that is how the app reads it). Such a
//! person can copy the wrapped keys and guess passphrases offline, paying scrypt's cost
//! per guess: the lock-out only limits guesses made through the app. What stands
//! between that session and the secret is the passphrase's strength and scrypt's cost.

use chrono::{DateTime, Utc};
use firedoor_core::breakglass::{MIN_PASSPHRASE_CHARS, MIN_PASSPHRASE_SCORE};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Checks a broker URL before signing in: `https://`, except for a broker on this
/// machine (`http://127.0.0.1`, `http://localhost`, `http://[::1]`), where nothing
/// crosses a network. Returns a message fit to show.
pub fn check_broker_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| {
        format!("'{url}' is not a broker URL ({e}); it looks like https://firedoor.example.com")
    })?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "The broker URL must start with https:// (plain http:// is only allowed for a broker on this machine, \
                     such as http://127.0.0.1): over http your token and every credential would cross the network \
                     unencrypted. Use https://{}.",
                    parsed.host_str().unwrap_or("the-broker")
                ))
            }
        }
        other => Err(format!(
            "The broker URL must start with https:// (not {other}://)."
        )),
    }
}

/// Splits what someone typed as broker URLs (one per line, or separated by commas or
/// spaces) into a list, ready for [`check_broker_urls`].
pub fn split_broker_urls(text: &str) -> Vec<&str> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Checks the broker URLs of one sign-in (replicas of one broker, in the order to try
/// them; the first is the primary): 1 to [`crate::MAX_BROKER_URLS`] of them, each as
/// [`check_broker_url`] requires, none twice. Returns them trimmed, without a trailing
/// `/` (the form keyring entries are named with), or a message fit to show.
pub fn check_broker_urls(urls: &[&str]) -> Result<Vec<String>, String> {
    let urls: Vec<&str> = urls
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err("Enter the broker URL, for example https://firedoor.example.com.".to_string());
    }
    if urls.len() > crate::MAX_BROKER_URLS {
        return Err(format!(
            "At most {} broker URLs, please ({} given): list the replicas of one broker.",
            crate::MAX_BROKER_URLS,
            urls.len()
        ));
    }
    let many = urls.len() > 1;
    let mut out: Vec<String> = Vec::with_capacity(urls.len());
    let mut seen: Vec<String> = Vec::with_capacity(urls.len());
    for (i, url) in urls.iter().enumerate() {
        let prefix = if many {
            format!("URL {} ({url}): ", i + 1)
        } else {
            String::new()
        };
        check_broker_url(url).map_err(|m| format!("{prefix}{m}"))?;
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{prefix}{e}"))?;
        // The same place however it is spelled (case of the host, default port, a
        // trailing slash).
        let same = parsed.as_str().trim_end_matches('/').to_string();
        if let Some(j) = seen.iter().position(|s| *s == same) {
            return Err(format!(
                "URL {} ({url}) is the same as URL {}: list each broker URL once.",
                i + 1,
                j + 1
            ));
        }
        seen.push(same);
        out.push(url.trim_end_matches('/').to_string());
    }
    Ok(out)
}

/// How strong a proposed unlock passphrase is, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PassphraseStrength {
    /// Long enough and strong enough to be accepted.
    pub acceptable: bool,
    /// zxcvbn's score, 0 (guessed at once) to 4 (very hard to guess).
    pub score: u8,
    /// What is wrong with it, if anything (zxcvbn's warning, or too short).
    pub warning: Option<String>,
    /// How to make it stronger.
    pub suggestions: Vec<String>,
}

impl PassphraseStrength {
    /// One readable sentence (or a few) for an error message.
    pub fn message(&self) -> String {
        let mut m = format!(
            "This passphrase is too easy to guess (strength {} of 4; at least {MIN_PASSPHRASE_SCORE} \
             and {MIN_PASSPHRASE_CHARS} characters are needed).",
            self.score
        );
        if let Some(w) = &self.warning {
            m.push(' ');
            m.push_str(w);
        }
        for s in &self.suggestions {
            m.push(' ');
            m.push_str(s);
        }
        m
    }
}

/// zxcvbn looks at this many characters at most (its cost grows fast with length; a
/// passphrase whose first 100 characters are weak is weak).
const ANALYSED_CHARS: usize = 100;

/// Judges a passphrase: at least [`MIN_PASSPHRASE_CHARS`] characters and a zxcvbn
/// score of at least [`MIN_PASSPHRASE_SCORE`]. `user_inputs` (user name, broker host,
/// device name) count as known words. CPU-bound for long inputs: call it from a
/// blocking thread.
pub fn passphrase_strength(passphrase: &SecretString, user_inputs: &[&str]) -> PassphraseStrength {
    let text = passphrase.expose_secret();
    let chars = text.chars().count();
    let head: zeroize::Zeroizing<String> =
        zeroize::Zeroizing::new(text.chars().take(ANALYSED_CHARS).collect());
    let mut inputs: Vec<&str> = vec!["firedoor", "break glass", "breakglass", "passphrase"];
    inputs.extend(user_inputs.iter().copied().filter(|s| !s.is_empty()));
    let entropy = zxcvbn::zxcvbn(&head, &inputs);
    let score = u8::from(entropy.score());
    let mut warning = entropy
        .feedback()
        .and_then(|f| f.warning())
        .map(|w| w.to_string());
    let mut suggestions: Vec<String> = entropy
        .feedback()
        .map(|f| f.suggestions().iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    let long_enough = chars >= MIN_PASSPHRASE_CHARS;
    if !long_enough {
        warning.get_or_insert_with(|| {
            format!("It is shorter than {MIN_PASSPHRASE_CHARS} characters.")
        });
        suggestions.insert(
            0,
            format!("Use at least {MIN_PASSPHRASE_CHARS} characters, e.g. four or five unrelated words."),
        );
    }
    let acceptable = long_enough && score >= MIN_PASSPHRASE_SCORE;
    if !acceptable && suggestions.is_empty() {
        suggestions.push("Add another word or two. Uncommon words are better.".into());
    }
    PassphraseStrength {
        acceptable,
        score,
        warning,
        suggestions,
    }
}

/// Break-glass state kept in the secret store (OS keyring) next to the wrapped device
/// keys, one per broker + user, as JSON. Not secret, but kept where deleting or editing
/// the cache file does not reach (see the module docs for what that does not cover).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TrustState {
    /// The pinned broker signing key (base64): envelopes must be signed by it.
    #[serde(default)]
    pub broker_key: Option<String>,
    /// A different key the broker presented since, waiting for the user to compare
    /// fingerprints and confirm it (break glass stops meanwhile).
    #[serde(default)]
    pub offered_key: Option<String>,
    #[serde(default)]
    pub offered_at: Option<DateTime<Utc>>,
    /// The highest verified envelope version seen per secret: an older one is refused.
    #[serde(default)]
    pub versions: BTreeMap<String, i64>,
    /// Times of wrong passphrases (the lock-out counts those in its window).
    #[serde(default)]
    pub failures: Vec<DateTime<Utc>>,
}

impl TrustState {
    /// Remembers `version` of `secret` if it is the highest seen; true if it changed.
    pub fn saw_version(&mut self, secret: &str, version: i64) -> bool {
        match self.versions.get(secret) {
            Some(v) if *v >= version => false,
            _ => {
                self.versions.insert(secret.to_string(), version);
                true
            }
        }
    }

    /// The highest version seen of `secret`, if any.
    pub fn floor(&self, secret: &str) -> Option<i64> {
        self.versions.get(secret).copied()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn broker_urls_need_tls_unless_on_this_machine() {
        for ok in [
            "https://firedoor.example.com",
            "https://10.0.0.5:8443/",
            "http://127.0.0.1:8080",
            "http://127.0.0.2",
            "http://localhost:3000",
            "http://LOCALHOST",
            "http://[::1]:8080",
        ] {
            assert_eq!(check_broker_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://firedoor.example.com",
            "http://10.0.0.5:8080",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "ftp://firedoor.example.com",
        ] {
            let e = check_broker_url(bad).unwrap_err();
            assert!(e.contains("https://"), "{bad}: {e}");
        }
        assert!(check_broker_url("not a url").is_err());
    }

    #[test]
    fn broker_url_lists_are_checked_one_by_one() {
        let ok = check_broker_urls(&[
            " https://fd-a.example.com/ ",
            "https://fd-b.example.com:8443",
            "http://127.0.0.1:7878",
        ])
        .unwrap();
        assert_eq!(
            ok,
            [
                "https://fd-a.example.com",
                "https://fd-b.example.com:8443",
                "http://127.0.0.1:7878"
            ],
            "trimmed, no trailing slash, order kept (the first is the primary)"
        );
        // The single-URL rule applies to each, and the message says which one.
        let e = check_broker_urls(&["https://fd-a.example.com", "http://fd-b.example.com"])
            .unwrap_err();
        assert!(e.starts_with("URL 2 (http://fd-b.example.com): "), "{e}");
        assert!(e.contains("https://"), "{e}");
        // A single URL's message is as before.
        assert_eq!(
            check_broker_urls(&["http://10.0.0.5"]).unwrap_err(),
            check_broker_url("http://10.0.0.5").unwrap_err()
        );
        // Duplicates, however spelled.
        for (a, b) in [
            ("https://fd.example.com", "https://fd.example.com/"),
            ("https://fd.example.com", "https://FD.example.com"),
            ("https://fd.example.com", "https://fd.example.com:443"),
        ] {
            let e = check_broker_urls(&[a, b]).unwrap_err();
            assert!(e.contains("same as URL 1"), "{a} {b}: {e}");
        }
        // Counts.
        assert!(check_broker_urls(&[])
            .unwrap_err()
            .contains("Enter the broker URL"));
        assert!(check_broker_urls(&["", "  "]).is_err());
        let nine: Vec<String> = (0..9)
            .map(|i| format!("https://fd{i}.example.com"))
            .collect();
        let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
        assert!(check_broker_urls(&nine).unwrap_err().contains("At most 8"));
        assert_eq!(check_broker_urls(&nine[..8]).unwrap().len(), 8);
        assert!(check_broker_urls(&["not a url"]).is_err());
    }

    #[test]
    fn typed_url_lists_split_on_lines_commas_and_spaces() {
        assert_eq!(
            split_broker_urls("https://a.example\n  https://b.example, https://c.example,,\n"),
            [
                "https://a.example",
                "https://b.example",
                "https://c.example"
            ]
        );
        assert!(split_broker_urls("  \n ").is_empty());
    }

    #[test]
    fn passphrases_are_judged_by_strength_not_length() {
        let judge = |p: &str| passphrase_strength(&SecretString::from(p), &["alice"]);
        // Long but predictable: refused, with zxcvbn's feedback.
        let s = judge("passwordpassword");
        assert!(!s.acceptable, "{s:?}");
        assert!(s.warning.is_some() || !s.suggestions.is_empty(), "{s:?}");
        let s = judge("alicealice1234");
        assert!(!s.acceptable, "{s:?}");
        // Strong but short: refused for length.
        let s = judge("x7#Qv!9z");
        assert!(!s.acceptable, "{s:?}");
        assert!(s.message().contains("12 characters"), "{}", s.message());
        // Unrelated words: accepted.
        let s = judge("correct horse battery staple");
        assert!(s.acceptable, "{s:?}");
        assert!(s.score >= 3);
        // The end-to-end test's demo passphrase (tests/e2e.rs).
        let s = passphrase_strength(&SecretString::from("demo passphrase for bob"), &["bob"]);
        assert!(s.acceptable, "{s:?}");
        // Long input is cut for analysis, not rejected or slow.
        let long = "tangerine Orbit 47 quarry ".repeat(40);
        assert!(judge(&long).acceptable);
    }

    #[test]
    fn version_floor_only_rises() {
        let mut st = TrustState::default();
        assert!(st.saw_version("db", 3));
        assert!(!st.saw_version("db", 2));
        assert!(!st.saw_version("db", 3));
        assert_eq!(st.floor("db"), Some(3));
        assert!(st.saw_version("db", 4));
        assert_eq!(st.floor("other"), None);
    }
}
