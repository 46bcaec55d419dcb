// The one module through which the UI reaches Rust. Components import `backend`
// from here (or receive a Backend in tests), never `@tauri-apps/*` directly.

import type {
  ActionResult, AppStatus, BackendError, Credentials, DrillOutcome, DrillTask, LinkEvent, NewRequest,
  PassphraseStrength, Readiness, Snapshot, UnlockResult, UseKind, UseView,
  QuorumProgress, QuorumReleaseOut, QuorumRequestOut, QuorumRequestView,
} from './types';

export interface Backend {
  status(): Promise<AppStatus>;
  /** Cached snapshot; never needs the network. */
  snapshot(): Promise<Snapshot>;
  /** Signs in to one broker at one or more URLs (replicas, tried in order; the first
   *  is the primary). Errors: 'invalid_url', 'insecure_url', 'unauthenticated',
   *  'offline', 'wrong_broker' (a URL serves another broker key). */
  signIn(urls: string[], token: string): Promise<AppStatus>;
  /** Signs in through the broker's single sign-on: the system browser opens at the
   *  identity provider and the app waits (up to 5 minutes) for it to come back.
   *  Errors: 'sso_not_configured', 'offline', 'timeout', 'sso', 'invalid_id_token'… */
  signInSso(urls: string[]): Promise<AppStatus>;
  signOut(): Promise<AppStatus>;
  requestBundle(req: NewRequest): Promise<ActionResult>;
  cancelRequest(id: string): Promise<ActionResult>;
  /** Cancels an action queued offline (an outbox item, by its id) before it is sent:
   *  it is removed for good and never sent. Errors: 'not_found' (sent or cancelled
   *  already), 'conflict' (a sign-out's token revocation cannot be cancelled). */
  cancelQueued(id: string): Promise<ActionResult>;
  approve(id: string, comment?: string): Promise<ActionResult>;
  deny(id: string, reason?: string): Promise<ActionResult>;
  revoke(grantId: string): Promise<ActionResult>;
  extend(grantId: string, durationSecs?: number, justification?: string): Promise<ActionResult>;
  credentials(grantId: string): Promise<Credentials>;
  /** Copies to the clipboard; the backend clears it again after 30 s. */
  copySecret(text: string): Promise<void>;
  setFavourite(bundle: string, favourite: boolean): Promise<Snapshot>;
  /** Creates this device's keys, wrapped with a local unlock passphrase, and registers
   *  the public halves with the broker. Errors: 'weak_passphrase', 'offline', … */
  enrolDevice(passphrase: string): Promise<Snapshot>;
  /** Break glass. Online: the broker's break-glass flow (loud alert). Offline: opens the
   *  sealed envelope after checking the pinned broker signature and validity window,
   *  and appends a signed record to the local audit chain first. Errors:
   *  'wrong_passphrase' (message says attempts left), 'locked_out' (message says time
   *  left), 'envelope_invalid', 'envelope_expired', 'not_enrolled', 'validation'. */
  unlockSecret(name: string, reason: string, passphrase: string): Promise<UnlockResult>;
  /** Judges a proposed unlock passphrase (the rule enrolment applies), with feedback. */
  passphraseStrength(passphrase: string): Promise<PassphraseStrength>;
  /** The user compared both fingerprints of a broker key change and trusts the new key:
   *  re-pins it. Errors: 'fingerprint_mismatch' (the key changed again), 'no_key_change'. */
  confirmBrokerKey(newFingerprint: string): Promise<Snapshot>;
  /** Full resync with the broker now. */
  resync(): Promise<Snapshot>;
  /** Demo mode only: stops (`up = false`, "pull the cable") or restarts the
   *  in-process broker. Errors: 'not_demo'. */
  demoBroker(up: boolean): Promise<Snapshot>;
  /** Tells the backend the window shows data (cold-start measurement). */
  uiReady(): Promise<void>;
  /** Called with a fresh snapshot whenever anything changes. Returns unsubscribe. */
  onSnapshot(cb: (s: Snapshot) => void): Promise<() => void>;
  /** Called when the backend asks to show something (e.g. a notification was clicked). */
  onOpen(cb: (target: { view: string; id?: string }) => void): Promise<() => void>;
  /** Called with each firedoor:// link that reaches the app while the UI listens. */
  onLink(cb: (ev: LinkEvent) => void): Promise<() => void>;
  /** Tells the backend the UI listens for links; returns those that came before
   *  (the link the app was started with). */
  linksReady(): Promise<LinkEvent[]>;
  // issue 14: drills
  /** The break-glass drills waiting on this device (needs the broker). */
  pendingDrills(): Promise<DrillTask[]>;
  /** Answers a drill with the unlock passphrase: the sealed copy is opened in memory
   *  and only a signed proof goes to the broker; no secret comes back. Errors:
   *  'wrong_passphrase', 'locked_out', 'drill_proof_rejected', 'envelope_invalid',
   *  'envelope_expired', 'not_found' (ended or passed already), 'offline'. */
  answerDrill(id: string, passphrase: string): Promise<DrillOutcome>;
  /** Readiness per secret (admins and security). Errors: 'forbidden', 'offline'. */
  readiness(): Promise<Readiness>;
  // issue 14: uses
  /** Break-glass uses the broker shows this user (their own; security and admins:
   *  every use of their secrets), open ones first; only open ones if `openOnly`.
   *  Errors: 'offline'. */
  breakGlassUses(openOnly: boolean): Promise<UseView[]>;
  /** Classifies a use: drill, incident (with its id) or other (with a note). Errors:
   *  'usage' (a missing note or incident id), 'forbidden' (not the unlocker nor
   *  security; or already classified and not security), 'not_found', 'offline'. */
  classifyUse(id: string, kind: UseKind, incident?: string, note?: string): Promise<UseView>;
  /** Whether Firedoor starts at login (into the tray). */
  autostart(): Promise<boolean>;
  /** Turns starting at login on or off; returns the new state. Errors: 'autostart'. */
  setAutostart(on: boolean): Promise<boolean>;
  // issue 14: report
  /** Whether the signed-in user may read reports (an admin); false offline. */
  reportsAllowed(): Promise<boolean>;
  /** The report on an incident, a grant or an unlock (the seq of its audit record), as
   *  the broker renders it. Errors: 'forbidden', 'not_found', 'offline', 'validation'. */
  report(kind: ReportKind, id: string, format: 'md' | 'html'): Promise<string>;
  /** Saves the report's self-contained HTML page (Downloads); returns the file's path. */
  saveReport(kind: ReportKind, id: string): Promise<string>;
  // issue 14: quorum
  /** Two-person break glass, step 1: signs an unlock request (text + QR code) for a
   *  secret that needs several people. Errors: 'validation', 'wrong_passphrase', … */
  quorumRequest(name: string, reason: string, passphrase: string): Promise<QuorumRequestOut>;
  /** Who asks for what and why; nothing is released. Errors: 'quorum_refused'. */
  quorumInspect(request: string): Promise<QuorumRequestView>;
  /** Step 2 (another person): releases this device's share to the request (recorded
   *  first on this device's chain). Errors: 'quorum_refused', 'wrong_passphrase', … */
  quorumRelease(request: string, passphrase: string): Promise<QuorumReleaseOut>;
  /** Step 3: adds releases; with the quorum, the secret (recorded first). Errors:
   *  'quorum_incomplete' (fewer shares: nothing opens), 'quorum_refused' (another
   *  request, expired, replayed, not an eligible co-holder). */
  quorumComplete(requestId: string, releases: string[], passphrase: string): Promise<UnlockResult>;
  /** This device's two-person requests of the last day. */
  quorumPending(): Promise<QuorumProgress[]>;
}

export type ReportKind = 'incident' | 'grant' | 'unlock';

/** Turns anything thrown by a backend call into a readable BackendError. */
export function toBackendError(e: unknown): BackendError {
  if (e && typeof e === 'object' && 'code' in e && 'message' in e) {
    // Thrown by the Rust side: a ConsoleError, whose code is a ConsoleErrorCode.
    return { code: (e as BackendError).code, message: String((e as BackendError).message) };
  }
  if (typeof e === 'string') return { code: 'error', message: e };
  if (e instanceof Error) return { code: 'error', message: e.message };
  return { code: 'error', message: 'Something went wrong.' };
}

/** The real backend: Tauri commands and events. */
export async function tauriBackend(): Promise<Backend> {
  const { invoke } = await import('@tauri-apps/api/core');
  const { listen } = await import('@tauri-apps/api/event');
  const call = <T>(cmd: string, args?: Record<string, unknown>) =>
    invoke<T>(cmd, args).catch((e) => { throw toBackendError(e); });
  return {
    status: () => call('status'),
    snapshot: () => call('snapshot'),
    signIn: (urls, token) => call('sign_in', { urls, token }),
    signInSso: (urls) => call('sign_in_sso', { urls }),
    signOut: () => call('sign_out'),
    requestBundle: (r) => call('request_bundle', {
      bundle: r.bundle, durationSecs: r.duration_secs ?? null,
      justification: r.justification ?? null, ticket: r.ticket ?? null, incident: r.incident ?? null,
    }),
    cancelRequest: (id) => call('cancel_request', { id }),
    cancelQueued: (id) => call('cancel_queued', { id }),
    approve: (id, comment) => call('approve', { id, comment: comment ?? null }),
    deny: (id, reason) => call('deny', { id, reason: reason ?? null }),
    revoke: (grantId) => call('revoke', { grantId }),
    extend: (grantId, durationSecs, justification) =>
      call('extend', { grantId, durationSecs: durationSecs ?? null, justification: justification ?? null }),
    credentials: (grantId) => call('credentials', { grantId }),
    copySecret: (text) => call('copy_secret', { text }),
    setFavourite: (bundle, favourite) => call('set_favourite', { bundle, favourite }),
    enrolDevice: (passphrase) => call('enrol_device', { passphrase }),
    unlockSecret: (name, reason, passphrase) => call('unlock_secret', { name, reason, passphrase }),
    passphraseStrength: (passphrase) => call('passphrase_strength', { passphrase }),
    confirmBrokerKey: (newFingerprint) => call('confirm_broker_key', { newFingerprint }),
    resync: () => call('resync'),
    demoBroker: (up) => call('demo_broker', { up }),
    uiReady: () => call('ui_ready'),
    onSnapshot: async (cb) => listen<Snapshot>('firedoor://snapshot', (e) => cb(e.payload)),
    onOpen: async (cb) => listen<{ view: string; id?: string }>('firedoor://open', (e) => cb(e.payload)),
    onLink: async (cb) => listen<LinkEvent>('firedoor://link', (e) => cb(e.payload)),
    linksReady: () => call('links_ready'),
    autostart: () => call('autostart'),
    setAutostart: (on) => call('set_autostart', { on }),
    // issue 14: drills
    pendingDrills: () => call('pending_drills'),
    answerDrill: (id, passphrase) => call('answer_drill', { id, passphrase }),
    readiness: () => call('readiness'),
    // issue 14: uses
    breakGlassUses: (openOnly) => call('break_glass_uses', { openOnly }),
    classifyUse: (id, kind, incident, note) =>
      call('classify_use', { id, kind, incident: incident ?? null, note: note ?? null }),
    reportsAllowed: () => call('reports_allowed'),
    report: (kind, id, format) => call('report', { kind, id, format }),
    saveReport: (kind, id) => call('save_report', { kind, id }),
    quorumRequest: (name, reason, passphrase) => call('quorum_request', { name, reason, passphrase }),
    quorumInspect: (request) => call('quorum_inspect', { request }),
    quorumRelease: (request, passphrase) => call('quorum_release', { request, passphrase }),
    quorumComplete: (requestId, releases, passphrase) =>
      call('quorum_complete', { requestId, releases, passphrase }),
    quorumPending: () => call('quorum_pending'),
  };
}
