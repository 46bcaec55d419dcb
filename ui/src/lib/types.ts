// The shapes the desktop backend (Rust, crates/client + src-tauri) sends to the UI.
// Field names are snake_case exactly as serialized by serde on the Rust side;
// timestamps are RFC 3339 strings in UTC.

export type RequestState =
  | 'pending' | 'approved' | 'active' | 'expired' | 'revoked'
  | 'denied' | 'cancelled' | 'timed_out' | 'failed';

export type GrantState =
  | 'provisioning' | 'active' | 'revoking' | 'revoke_failed'
  | 'revoked' | 'expired' | 'failed';

export interface FlowTerms {
  flow: string;
  approvals: number; // 0 = automatic
  default_duration_secs: number;
  max_duration_secs: number;
  justification_required: boolean;
  ticket_required: boolean;
  pending_ttl_secs: number;
  break_glass: boolean;
}

export interface ResourceGrant {
  integration: string;
  resource: string;
  permission: string;
}

export interface Bundle {
  name: string;
  title: string;
  description: string;
  tags: string[];
  resources: ResourceGrant[];
  terms: FlowTerms;
}

export interface Decision {
  by: string;
  at: string;
  decision: 'approve' | 'deny';
  comment: string | null;
}

export interface Request {
  id: string;
  kind: 'access' | 'extension';
  bundle: string;
  bundle_title: string;
  requester: string;
  state: RequestState;
  duration_secs: number;
  justification: string | null;
  ticket: string | null;
  created_at: string;
  pending_until: string;
  approvals_needed: number;
  decisions: Decision[];
  grant_id: string | null;
  error: string | null;
  /** The incident it was made for. */
  incident_id?: string | null;
  /** Who asked, when they asked on the requester's behalf. */
  requested_by?: string | null;
  /** The approval stage it reached: 0 = the flow's approvers, then one per escalation. */
  stage?: number;
}

/** An incident a source (Alertmanager, PagerDuty) reported and a policy rule matched. */
export interface Incident {
  id: string;
  source: string;
  external_id: string;
  rule: string;
  title: string;
  url: string | null;
  state: 'open' | 'resolved';
  opened_at: string;
  resolved_at: string | null;
  /** The bundles it opens to its responders. */
  bundles: string[];
  /** Whether I am one of its responders. */
  responder: boolean;
}

export interface Grant {
  id: string;
  request_id: string;
  bundle: string;
  bundle_title: string;
  holder: string;
  state: GrantState;
  activated_at: string | null;
  expires_at: string;
  ended_at: string | null;
  end_reason: string | null;
  ended_by: string | null;
  last_error: string | null;
  attempts: number;
  next_attempt_at: string | null;
}

export interface CredentialItem {
  integration: string;
  kind: string; // 'postgres' | 'demo'
  resource: string;
  username: string;
  secret: string;
  host: string | null;
  port: number | null;
  note: string | null;
}

export interface Credentials {
  grant_id: string;
  expires_at: string;
  items: CredentialItem[];
}

export interface AppStatus {
  signed_in: boolean;
  /** Demo mode: an in-process broker with a seeded team. */
  demo: boolean;
  user: string | null;
  groups: string[];
  /** The primary broker URL (the first given at sign-in; names the keyring entries). */
  broker_url: string | null;
  /** Every broker URL of this sign-in (replicas of one broker), in the order tried. */
  broker_urls: string[];
  /** The URL the app talks to now: the one that answered last (failover moves it). */
  broker_url_in_use: string | null;
  /** The broker answered the last call or the event stream is connected. */
  online: boolean;
  offline_since: string | null;
  last_synced_at: string | null;
  /** broker clock minus local clock, in ms: add it to Date.now() for countdowns. */
  clock_offset_ms: number;
  /** The last sync/network error, readable, if any. */
  last_error: string | null;
  /** The on-call schedules the user was on call for at the last sync. */
  oncall?: MyOnCall[];
}

/** A schedule the user is on call for, and until when (null: not within 90 days,
 *  or for a synced schedule not within what was fetched). */
export interface MyOnCall {
  schedule: string;
  title: string;
  until: string | null;
  /** Synced schedules (PagerDuty, Opsgenie): when the provider was last read. */
  as_of?: string | null;
  /** Synced schedules: the provider could not be read lately (last known state). */
  stale?: boolean;
}

/** An action taken offline, waiting to be sent to the broker exactly once. */
export interface OutboxItem {
  id: string;
  kind: 'request' | 'revoke';
  summary: string;
  created_at: string;
  attempts: number;
  last_error: string | null;
  bundle: string | null;
  grant_id: string | null;
}

/** Everything the UI shows, served from the local cache (works offline). */
export interface Snapshot {
  status: AppStatus;
  bundles: Bundle[];
  favourites: string[];
  my_requests: Request[];
  /** Requests waiting for my decision. */
  approvals: Request[];
  /** My grants whose access may still be live. */
  grants: Grant[];
  outbox: OutboxItem[];
  /** Offline break glass: this device's enrolment and its sealed credentials. */
  break_glass: BreakGlass;
  /** Open incidents first, then recent resolved ones (from the last sync). */
  incidents?: Incident[];
  /** My active SSH grants: their key in the ssh-agent until when, or why not. */
  ssh?: SshStatus[];
}

/** An SSH grant on this device: a key made for it, certified, in the ssh-agent. */
export interface SshStatus {
  grant_id: string;
  in_agent: boolean;
  until: string | null;
  principals: string[];
  /** `ssh user@host` for the first host. */
  command: string | null;
  /** Why the key is not in the agent. */
  problem: string | null;
}

export interface ActionResult {
  /** True when the broker was unreachable and the action went to the outbox. */
  queued: boolean;
  message: string;
  request: Request | null;
  grant: Grant | null;
}

/** Every error from the backend: a stable code and a readable message. */
export interface BackendError {
  code: string;
  message: string;
}

export interface NewRequest {
  bundle: string;
  duration_secs?: number;
  justification?: string;
  ticket?: string;
  /** The open incident this request is for (its responders may request what it opens). */
  incident?: string;
}

// ---- Offline break glass -------------------------------------------------------

export interface DeviceStatus {
  /** The device has its keys (age identity + signing key) and is registered. */
  enrolled: boolean;
  device_id: string | null;
  device_name: string | null;
  /** Fingerprint of the broker signing key pinned at sign-in, e.g. "SHA256:3q2+7w…". */
  broker_fingerprint: string | null;
  /** Wrong passphrases in the current 15-minute window (5 locks the device). */
  failed_attempts: number;
  /** Set while locked out after 5 wrong passphrases. */
  locked_until: string | null;
  /** Unlock records waiting to be acknowledged by the broker. */
  pending_records: number;
  /** The local signed audit chain verified; false if a record was edited or removed. */
  chain_ok: boolean;
  chain_error: string | null;
  /** Set when the broker presented a signing key other than the pinned one: break glass
   *  is stopped until the user compares both fingerprints and confirms, or signs out. */
  broker_key_change: BrokerKeyChange | null;
}

export interface BrokerKeyChange {
  pinned_fingerprint: string;
  new_fingerprint: string;
  seen_at: string;
}

/** How strong a proposed unlock passphrase is (zxcvbn on the Rust side). */
export interface PassphraseStrength {
  /** At least 12 characters and a zxcvbn score of at least 3. */
  acceptable: boolean;
  /** 0 (guessed at once) to 4 (very hard to guess). */
  score: number;
  warning: string | null;
  suggestions: string[];
}

export type SealedState = 'valid' | 'expired' | 'not_yet_valid' | 'invalid';

/** A break-glass credential cached on this device as a sealed envelope. */
export interface SealedCredential {
  name: string;
  title: string;
  description: string;
  version: number;
  /** When the broker sealed this envelope. */
  sealed_at: string;
  not_before: string;
  not_after: string;
  /** 'invalid': signature, pinned key or ciphertext check failed; see `problem`. */
  state: SealedState;
  problem: string | null;
}

export interface BreakGlass {
  device: DeviceStatus;
  credentials: SealedCredential[];
}

/** A revealed break-glass secret. Shown masked; the UI hides it after `hide_after_secs`. */
export interface UnlockResult {
  name: string;
  title: string;
  version: number;
  secret: string;
  /** 'offline': opened from the sealed envelope; 'online': released by the broker. */
  mode: 'offline' | 'online';
  /** Sequence number of the local audit record written before the secret was shown. */
  record_seq: number | null;
  hide_after_secs: number;
  message: string;
}

/** A firedoor:// link, as the backend parsed and checked it. A link only fills in or
 *  shows something; it never acts by itself. */
export type Link =
  | { kind: 'request'; bundle: string; reason: string | null; ticket: string | null; incident: string | null }
  | { kind: 'approve'; request: string }
  | { kind: 'open'; view: 'requests' | 'access' | 'bundles'; id: string | null };

/** What the backend sends for each link that reached the app. */
export type LinkEvent =
  | { kind: 'link'; link: Link }
  | { kind: 'invalid'; message: string };

/** What a link filled in on the request form (the user still reviews and sends it). */
export interface RequestPrefill {
  justification?: string;
  ticket?: string;
  incident?: string;
}
