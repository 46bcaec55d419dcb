//! Firedoor's domain model and rules. No I/O lives here: the broker and the desktop
//! client call these pure functions and persist what they return.
//!
//! - [`policy`]: the policy-as-code file (integrations, bundles, access flows), parsed
//!   and validated once at start with file/line errors.
//! - [`lifecycle`]: the request and grant state machine and every rule about who may
//!   do what, when.
//! - [`audit`]: the hash-chained audit record and its verification.
//! - [`breakglass`]: sealed envelopes and the signed, hash-chained unlock record.
//! - [`api`]: the JSON shapes exchanged over HTTP, shared by broker and client.
//! - [`access`]: who may see what and who may do what (admin-only actions, with the
//!   CLI as an operator allowed explicitly), checked by every operation.
//! - [`notify`]: who hears of each live event.
//! - [`input`]: the rules for free text people type (justifications, break-glass
//!   reasons, device names), shared by broker and client.
//! - [`siem`]: the audit stream's sinks (syslog, webhook) and their wire formats.
//! - [`sso`]: single sign-on (OpenID Connect): the `[sso]` section and claim mapping.
//! - [`webhooks`]: Standard Webhooks signatures for every outbound webhook.

pub mod access;
pub mod api;
pub mod approval;
pub mod audit;
pub mod audit_event;
pub mod breakglass;
pub mod drill;
pub mod duration;
pub mod error;
pub mod ids;
pub mod incident;
pub mod input;
pub mod lifecycle;
pub mod links;
pub mod notify;
pub mod oncall;
pub mod outbound;
pub mod policy;
pub mod quorum;
pub mod report;
pub mod siem;
pub mod ssh;
pub mod sso;
pub mod webhooks;
// issue 14: uses
pub mod uses;

pub use error::{ConsoleErrorCode, ErrorCode, RuleError};
pub use ids::{GrantId, RequestId, TokenId};
