//! Break-glass uses (issue 14), the app's side: after reconnecting, the person who
//! unlocked is asked to classify each of their open uses (drill, incident with its
//! id, other with a note); admins and the secret's security audience see every
//! open use. Both need the broker (nothing is queued: a classification is a
//! decision the broker checks and audits when it is made).

use crate::console::{Console, ConsoleError, Result};
use firedoor_core::uses::{ClassifyUse, UseKind, UseView};
use firedoor_core::ConsoleErrorCode;

/// Parses a kind as typed: `drill`, `incident` or `other`.
pub fn parse_kind(text: &str) -> std::result::Result<UseKind, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "drill" => Ok(UseKind::Drill),
        "incident" => Ok(UseKind::Incident),
        "other" => Ok(UseKind::Other),
        other => Err(format!(
            "kind '{other}': use drill, incident (with --incident ID) or other (with --note)"
        )),
    }
}

impl Console {
    /// Break-glass uses the broker shows this user (theirs; security and admins
    /// see all of theirs), open ones first; only open ones if `open_only`.
    pub async fn break_glass_uses(&self, open_only: bool) -> Result<Vec<UseView>> {
        let c = self.client().await?;
        self.needs_broker("Break-glass uses", c.unlocks(open_only).await)
            .await
    }

    /// Classifies a use. The classification is checked here first (the same rules
    /// as the broker's), so a missing note or incident id is said at once.
    pub async fn classify_use(
        &self,
        id: &str,
        kind: UseKind,
        incident: Option<&str>,
        note: Option<&str>,
    ) -> Result<UseView> {
        let body = ClassifyUse {
            kind,
            incident: incident
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
            note: note
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        };
        body.check()
            .map_err(|m| ConsoleError::new(ConsoleErrorCode::Usage, m))?;
        let c = self.client().await?;
        self.needs_broker("Classifying a use", c.classify_use(id, &body).await)
            .await
    }
}
