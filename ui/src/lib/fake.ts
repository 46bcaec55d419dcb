// An in-memory Backend: the demo for `npm run dev` in a plain browser, and the
// backend the component tests drive. It keeps the same rules the UI relies on
// (queued when offline, approvals need the broker, errors as {code, message}).

import type { Backend, ReportKind } from './backend';
import { checkBrokerUrls } from './urls';
import type {
  ActionResult, AppStatus, BackendError, BackendErrorCode, BreakGlass, Bundle, CredentialItem, Credentials, Grant,
  LinkEvent, NewRequest, OutboxItem, PassphraseStrength, Request, SealedCredential, Snapshot, UnlockResult,
  DrillOutcome, DrillTask, Readiness,
  UseKind, UseView,
  QuorumProgress, QuorumReleaseOut, QuorumRequestOut, QuorumRequestView,
} from './types';

export interface FakeCall {
  method: keyof Backend;
  args: unknown[];
}

export interface FakeOptions {
  /** Artificial latency for every call (ms), to make the demo feel real. */
  latencyMs?: number;
  /** Start the demo clock at this time (ms since epoch). */
  now?: () => number;
  /** Extra latency of the slow KDF that wraps/unwraps the device keys (enrolment, unlock). */
  kdfMs?: number;
}

export interface FakeBackend extends Backend {
  /** Every call made, in order. */
  calls: FakeCall[];
  /** The calls to one method. */
  callsTo(method: keyof Backend): unknown[][];
  /** The live state (mutate it, then call emit()). */
  state: Snapshot;
  /** Pushes the current state (or the given one) to onSnapshot listeners. */
  emit(s?: Snapshot): void;
  /** Asks the UI to show something, as a clicked notification would. */
  open(target: { view: string; id?: string }): void;
  /** A firedoor:// link reaches the app (after the UI listens; before, it waits for
   *  linksReady, as the link the app was started with does). */
  link(ev: LinkEvent): void;
  /** Whether the autostart entry exists. */
  autostartOn: boolean;
  /** Whether the signed-in user is an admin (may read reports). */
  reportsAdmin: boolean;
  /** Paths of the report pages saved. */
  savedReports: string[];
  /** Makes the next call to `method` fail with this error. */
  failNext(method: keyof Backend, err: BackendError): void;
  /** The app failed over to `url` (one of the sign-in's URLs), as the client would
   *  after the URL in use stopped answering. */
  failOver(url: string): void;
  /** Goes offline (or back online), as the sync loop would report it. */
  setOnline(online: boolean, error?: string | null): void;
  /** Number of onSnapshot listeners currently subscribed. */
  listenerCount(): number;
  // issue 14: drills
  /** Drills waiting on this device (mutate freely). */
  drills: DrillTask[];
  /** What readiness() answers; null: the user may not see it (forbidden). */
  readinessReport: Readiness | null;
  // issue 14: uses
  /** The broker's break-glass uses (mutate to seed; the signed-in user sees their
   *  own, and every use if they are in `security`). */
  uses: UseView[];
  /** Users the fake broker treats as security (admins / the alert audience). */
  security: string[];
}

/** A break-glass use as the broker would list it (open, immediate rotation). */
export function demoUse(over: Partial<UseView> = {}): UseView {
  const at = new Date().toISOString();
  return {
    id: nextId('use'), secret: 'prod-db-root', version: 4, user: 'alice', mode: 'offline', reason: 'INC-42 orders down',
    unlocked_at: at, recorded_at: at, open: true, rotation: 'immediate', rotated: false, rotation_waits: false,
    may_classify: true, ...over,
  };
}

/** The unlock passphrase of the seeded demo device. */
export const DEMO_PASSPHRASE = 'correct horse battery';
export const DEMO_BROKER_FINGERPRINT = 'SHA256:3q2+7wZk1n0x8JtQpVd4mL9cR6sYb2uE5hA7fG0iKoM';
/** Wrong passphrases in a row that lock the device, and for how long. */
export const MAX_ATTEMPTS = 5;
export const LOCKOUT_MS = 15 * 60_000;
const SEAL_VALIDITY_MS = 7 * 24 * 3600_000;

/** The secret the fake "opens" for a credential (deterministic, for tests). */
export const demoSecret = (name: string, version: number) => `bg-${name}-v${version}-Zq7mK2xR`;

const SEALABLE: Pick<SealedCredential, 'name' | 'title' | 'description' | 'version'>[] = [
  {
    name: 'prod-db-root', title: 'Production database root', version: 4,
    description: 'postgres superuser on the production cluster. Rotated after every use.',
  },
  {
    name: 'k8s-breakglass', title: 'Kubernetes emergency kubeconfig', version: 7,
    description: 'cluster-admin token for the production cluster when SSO is down.',
  },
  {
    name: 'aws-root', title: 'AWS root account', version: 2,
    description: 'Root password of the production AWS account (MFA device is in the safe).',
  },
];

function sealed(meta: (typeof SEALABLE)[number], sealedAt: number, now: number): SealedCredential {
  const notAfter = sealedAt + SEAL_VALIDITY_MS;
  return {
    ...meta,
    sealed_at: new Date(sealedAt).toISOString(),
    not_before: new Date(sealedAt).toISOString(),
    not_after: new Date(notAfter).toISOString(),
    state: now >= notAfter ? 'expired' : now < sealedAt ? 'not_yet_valid' : 'valid',
    problem: null,
    reconnect: null,
    quorum: null,
  };
}

/** Break-glass state of the demo: an enrolled device with envelopes of different freshness. */
export function demoBreakGlass(now: number = Date.now(), enrolled = true): BreakGlass {
  if (!enrolled) {
    return {
      device: {
        enrolled: false, device_id: null, device_name: null, broker_fingerprint: DEMO_BROKER_FINGERPRINT, failed_attempts: 0,
        locked_until: null, pending_records: 0, chain_ok: true, chain_error: null, broker_key_change: null,
      },
      credentials: [],
    };
  }
  const h = 3600_000;
  return {
    device: {
      enrolled: true, device_id: 'dev_7f3a9c', device_name: 'alice-laptop',
      broker_fingerprint: DEMO_BROKER_FINGERPRINT, failed_attempts: 0, locked_until: null,
      pending_records: 0, chain_ok: true, chain_error: null, broker_key_change: null,
    },
    credentials: [
      sealed(SEALABLE[0], now - 3 * h, now), // sealed 3 h ago, valid 6 more days
      sealed(SEALABLE[1], now - 50 * h, now), // sealed 2 days ago, valid 4 more days
      sealed(SEALABLE[2], now - 9 * 24 * h, now), // expired 2 days ago
    ],
  };
}

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
let seq = 1000;
const nextId = <P extends string>(prefix: P): `${P}_${string}` => `${prefix}_${(++seq).toString(36)}`;

const terms = (over: Partial<Bundle['terms']> = {}): Bundle['terms'] => ({
  flow: 'self-service',
  approvals: 0,
  default_duration_secs: 3600,
  max_duration_secs: 4 * 3600,
  justification_required: false,
  ticket_required: false,
  pending_ttl_secs: 1800,
  break_glass: false,
  ...over,
});

/** The seeded team of the demo mode. */
export function demoSnapshot(now: number = Date.now()): Snapshot {
  const iso = (offsetMs: number) => new Date(now + offsetMs).toISOString();
  const min = 60_000;
  const bundles: Bundle[] = [
    {
      name: 'prod-db-read', title: 'Production database (read-only)',
      description: 'SELECT on the orders and billing schemas of the production PostgreSQL.',
      tags: ['postgres', 'prod', 'read-only'],
      resources: [{ integration: 'postgres', resource: 'orders', permission: 'read' }],
      terms: terms({ flow: 'auto-1h' }),
    },
    {
      name: 'prod-db-write', title: 'Production database (write)',
      description: 'Write access to production PostgreSQL for data fixes.',
      tags: ['postgres', 'prod'],
      resources: [{ integration: 'postgres', resource: 'orders', permission: 'write' }],
      terms: terms({ flow: 'one-approver', approvals: 1, justification_required: true, ticket_required: true }),
    },
    {
      name: 'k8s-prod-admin', title: 'Kubernetes prod cluster admin',
      description: 'cluster-admin on the production cluster. Use during incidents only.',
      tags: ['kubernetes', 'prod', 'incident'],
      resources: [{ integration: 'demo', resource: 'k8s/prod', permission: 'admin' }],
      terms: terms({ flow: 'break-glass', justification_required: true, break_glass: true, default_duration_secs: 1800, max_duration_secs: 2 * 3600 }),
    },
    {
      name: 'staging-ssh', title: 'Staging SSH',
      description: 'Shell on the staging hosts.',
      tags: ['ssh', 'staging'],
      resources: [{ integration: 'ssh', resource: 'staging-*', permission: 'login' }],
      terms: terms({ flow: 'auto-8h', default_duration_secs: 4 * 3600, max_duration_secs: 8 * 3600 }),
    },
    {
      name: 'billing-console', title: 'Billing console (support)',
      description: 'Refunds and invoice corrections in the billing console.',
      tags: ['billing', 'support'],
      resources: [{ integration: 'demo', resource: 'billing', permission: 'support' }],
      terms: terms({ flow: 'two-approvers', approvals: 2, justification_required: true, max_duration_secs: 3600 }),
    },
  ];
  const baseReq = {
    kind: 'access' as const, justification: null, ticket: null, decisions: [],
    grant_id: null, error: null, approvals_needed: 0, incident_id: null, stage: 0,
    approvers: { users: [], groups: [], oncall: [] },
  };
  const my_requests: Request[] = [
    {
      ...baseReq, id: 'req_demo1', bundle: 'prod-db-read', bundle_title: 'Production database (read-only)',
      requester: 'alice', state: 'active', duration_secs: 3600, created_at: iso(-18 * min),
      pending_until: iso(12 * min), grant_id: 'grt_demo1',
    },
    {
      ...baseReq, id: 'req_demo2', bundle: 'prod-db-write', bundle_title: 'Production database (write)',
      requester: 'alice', state: 'pending', duration_secs: 1800, justification: 'Fix stuck order #4411',
      ticket: 'OPS-2231', created_at: iso(-4 * min), pending_until: iso(26 * min), approvals_needed: 1,
      approvers: { users: [], groups: ['sre-leads'], oncall: [] },
    },
    {
      ...baseReq, id: 'req_demo3', bundle: 'billing-console', bundle_title: 'Billing console (support)',
      requester: 'alice', state: 'denied', duration_secs: 3600, justification: 'Refund check',
      created_at: iso(-3 * 3600_000), pending_until: iso(-2.5 * 3600_000), approvals_needed: 2,
      decisions: [{ by: 'carol', at: iso(-2.9 * 3600_000), decision: 'deny', comment: 'Ask support lead first' }],
    },
  ];
  const approvals: Request[] = [
    {
      ...baseReq, id: 'req_demo4', bundle: 'prod-db-write', bundle_title: 'Production database (write)',
      requester: 'bob', state: 'pending', duration_secs: 3600, justification: 'Backfill missing invoices',
      ticket: 'INC-881', created_at: iso(-2 * min), pending_until: iso(28 * min), approvals_needed: 1,
    },
    {
      ...baseReq, id: 'req_demo5', bundle: 'billing-console', bundle_title: 'Billing console (support)',
      requester: 'dave', state: 'pending', duration_secs: 1800, justification: 'Customer refund escalation',
      created_at: iso(-9 * min), pending_until: iso(21 * min), approvals_needed: 2,
      requested_by: 'erin', stage: 1,
      decisions: [{ by: 'carol', at: iso(-5 * min), decision: 'approve', comment: null }],
    },
  ];
  const grants: Grant[] = [
    {
      id: 'grt_demo1', request_id: 'req_demo1', bundle: 'prod-db-read', bundle_title: 'Production database (read-only)',
      holder: 'alice', state: 'active', activated_at: iso(-18 * min), expires_at: iso(42 * min),
      ended_at: null, end_reason: null, ended_by: null, last_error: null, attempts: 0, next_attempt_at: null,
      ssh: false,
    },
    {
      id: 'grt_demo0', request_id: 'req_demo0', bundle: 'staging-ssh', bundle_title: 'Staging SSH',
      holder: 'alice', state: 'revoke_failed', activated_at: iso(-5 * 3600_000), expires_at: iso(-60 * min),
      ended_at: null, end_reason: 'expired', ended_by: null,
      last_error: 'ssh: could not remove principal from staging-2 (connection timed out)', attempts: 3,
      next_attempt_at: iso(2 * min), ssh: true,
    },
  ];
  return {
    status: {
      signed_in: true, demo: true, user: 'alice', groups: ['sre', 'oncall'],
      broker_url: 'demo://in-process', broker_urls: ['demo://in-process'],
      broker_url_in_use: 'demo://in-process', online: true, offline_since: null,
      last_synced_at: iso(-20_000), clock_offset_ms: 0, last_error: null, audit_alert: null, oncall: [], sso: false, session_expires_at: null, session_ended: null,
    },
    bundles,
    favourites: ['prod-db-read'],
    my_requests,
    approvals,
    grants,
    outbox: [],
    break_glass: demoBreakGlass(now),
    incidents: [],
    ssh: [],
    replayed: [],
  };
}

/** A signed-out, empty snapshot. */
export function signedOutSnapshot(): Snapshot {
  return {
    status: {
      signed_in: false, demo: false, user: null, groups: [], broker_url: null, broker_urls: [],
      broker_url_in_use: null, online: false,
      offline_since: null, last_synced_at: null, clock_offset_ms: 0, last_error: null,
      audit_alert: null, oncall: [], sso: false, session_expires_at: null, session_ended: null,
    },
    bundles: [], favourites: [], my_requests: [], approvals: [], grants: [], outbox: [],
    break_glass: demoBreakGlass(0, false),
    incidents: [], ssh: [], replayed: [],
  };
}

/** A stand-in for zxcvbn: common or repetitive passphrases are weak, 12 characters minimum. */
export function fakeStrength(pass: string): PassphraseStrength {
  const common = ['password', 'passwordpassword', '123456789012', 'qwertyuiopasdf', 'firedoorfiredoor'];
  const words = pass.trim().split(/\s+/).filter(Boolean).length;
  const distinct = new Set(pass.toLowerCase()).size;
  const score = common.includes(pass.toLowerCase()) || distinct < 5 ? 0 : pass.length >= 16 && words >= 3 ? 4 : pass.length >= 12 ? 3 : 1;
  const acceptable = pass.length >= 12 && score >= 3;
  return {
    acceptable,
    score,
    warning: common.includes(pass.toLowerCase()) ? 'This is a very common password.' : pass.length < 12 ? 'It is shorter than 12 characters.' : null,
    suggestions: acceptable ? [] : ['Add another word or two. Uncommon words are better.'],
  };
}

export function createFakeBackend(initial: Snapshot = demoSnapshot(), opts: FakeOptions = {}): FakeBackend {
  const now = opts.now ?? (() => Date.now());
  const state: Snapshot = clone(initial);
  const snapListeners = new Set<(s: Snapshot) => void>();
  const openListeners = new Set<(t: { view: string; id?: string }) => void>();
  const linkListeners = new Set<(ev: LinkEvent) => void>();
  const waitingLinks: LinkEvent[] = [];
  let linksListening = false;
  const failures = new Map<keyof Backend, BackendError>();
  const calls: FakeCall[] = [];
  const iso = (offset = 0) => new Date(now() + offset).toISOString();

  const SLOW: (keyof Backend)[] = ['enrolDevice', 'unlockSecret'];
  const wait = (method: keyof Backend) => {
    const ms = (opts.latencyMs ?? 0) + (SLOW.includes(method) ? opts.kdfMs ?? 0 : 0);
    return ms ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
  };
  // Break glass: the local unlock passphrase, the audit chain's last record, what was opened offline.
  let passphrase = DEMO_PASSPHRASE;
  let recordSeq = 0;
  const openedOffline = new Set<string>();
  // issue 14: drills
  const drillState: { drills: DrillTask[]; readiness: Readiness | null } = { drills: [], readiness: null };
  // issue 14: uses — the broker's uses, and who it treats as security.
  const uses: UseView[] = [];
  const security: string[] = [];
  const isSecurity = () => security.includes(state.status.user ?? '');
  function openUse(name: string, version: number, mode: string) {
    uses.unshift(demoUse({
      secret: name, version, mode, user: state.status.user ?? 'me', reason: 'break glass',
      rotates_at: iso(), rotated: false,
    }));
  }
  // Two-person requests made here (issue 14: quorum).
  const quorumRequests = new Map<string, { name: string; reason: string; expires: string; releases: string[]; done: boolean }>();
  const parseRequest = (text: string): { id: string; name: string; reason: string } => {
    const t = text.trim();
    const prefix = 'firedoor-unlock-request:v1:';
    if (!t.startsWith(prefix)) {
      throw fail('quorum_refused', `this is not a unlock request (it should start with ${prefix}).`);
    }
    try {
      return JSON.parse(atob(t.slice(prefix.length)));
    } catch {
      throw fail('quorum_refused', 'the unlock request is damaged.');
    }
  };

  const fail = (code: BackendErrorCode, message: string): BackendError => ({ code, message });

  async function call<T>(method: keyof Backend, args: unknown[], body: () => T): Promise<T> {
    calls.push({ method, args });
    await wait(method);
    const f = failures.get(method);
    if (f) {
      failures.delete(method);
      throw f;
    }
    return body();
  }

  function emit(s?: Snapshot) {
    if (s) Object.assign(state, clone(s));
    const copy = clone(state);
    for (const l of snapListeners) l(clone(copy));
  }
  const changed = () => { void Promise.resolve().then(() => emit()); };

  const result = (message: string, extra: Partial<ActionResult> = {}): ActionResult =>
    ({ queued: false, message, request: null, grant: null, ...extra });

  function requireSignedIn() {
    if (!state.status.signed_in) throw fail('unauthenticated', 'You are signed out. Sign in to a broker first.');
  }
  function requireOnline(what: string) {
    if (!state.status.online) throw fail('offline', `${what} needs the broker, which is unreachable right now.`);
  }
  function queue(kind: OutboxItem['kind'], summary: string, bundle: string | null, grantId: string | null): ActionResult {
    const item: OutboxItem = {
      id: nextId('obx'), kind, summary, created_at: iso(), attempts: 0, last_error: null, bundle, grant_id: grantId,
    };
    state.outbox.push(item);
    changed();
    // As the console words it: one sentence.
    return result(`${summary} is queued and will be sent when the broker is back (it cannot be reached now).`, { queued: true });
  }
  function findBundle(name: string): Bundle {
    const b = state.bundles.find((x) => x.name === name);
    if (!b) throw fail('not_found', `No bundle named “${name}”.`);
    return b;
  }
  function findGrant(id: string): Grant {
    const g = state.grants.find((x) => x.id === id);
    if (!g) throw fail('not_found', 'That grant is no longer live.');
    return g;
  }
  /** The broker re-seals envelopes that were opened offline (rotated) or have expired. */
  function reseal() {
    const bg = state.break_glass;
    if (!bg?.device.enrolled) return;
    // The uploaded records are open uses at the broker.
    for (const c of bg.credentials) if (openedOffline.has(c.name)) openUse(c.name, c.version, 'offline');
    bg.device.pending_records = 0;
    bg.credentials = bg.credentials.map((c) => {
      const opened = openedOffline.has(c.name);
      if (!opened && c.state !== 'expired') return c;
      const v = opened ? c.version + 1 : c.version;
      return {
        ...sealed({ ...c, version: v }, now(), now()),
        reconnect: opened ? `record delivered · rotated to v${v} — the password you copied no longer works` : null,
      };
    });
    openedOffline.clear();
  }
  function activate(req: Request, bundle: Bundle): Grant {
    const g: Grant = {
      id: nextId('grt'), request_id: req.id, bundle: bundle.name, bundle_title: bundle.title,
      holder: req.requester, state: 'active', activated_at: iso(), expires_at: iso(req.duration_secs * 1000),
      ended_at: null, end_reason: null, ended_by: null, last_error: null, attempts: 0, next_attempt_at: null,
      ssh: false,
    };
    req.state = 'active';
    req.grant_id = g.id;
    state.grants.unshift(g);
    return g;
  }

  const backend: FakeBackend = {
    calls,
    state,
    callsTo: (m) => calls.filter((c) => c.method === m).map((c) => c.args),
    emit,
    open: (t) => { for (const l of openListeners) l({ ...t }); },
    link: (ev) => {
      if (linksListening) for (const l of linkListeners) l(clone(ev));
      else waitingLinks.push(clone(ev));
    },
    autostartOn: false,
    reportsAdmin: false,
    savedReports: [] as string[],
    failNext: (m, e) => { failures.set(m, e); },
    failOver(url) {
      if (!state.status.broker_urls.includes(url)) throw new Error(`${url} is not one of the sign-in's URLs`);
      state.status.broker_url_in_use = url;
      state.status.online = true;
      state.status.offline_since = null;
      state.status.last_error = null;
      emit();
    },
    setOnline(online, error = null) {
      state.status.online = online;
      state.status.offline_since = online ? null : iso();
      state.status.last_error = online ? null : (error ?? 'broker unreachable');
      if (online) {
        state.status.last_synced_at = iso();
        // The outbox is sent, and what became of each is told in words.
        state.replayed = [
          ...state.outbox.map((o) => ({
            id: o.id, summary: o.summary, at: iso(), ok: true,
            outcome: o.kind === 'revoke' ? 'sent · access revoked' : 'sent · waiting for 1 approval (sre-leads can approve)',
          })).reverse(),
          ...(state.replayed ?? []),
        ].slice(0, 10);
        state.outbox = [];
        reseal();
      }
      emit();
    },
    listenerCount: () => snapListeners.size,
    uses,
    security,

    breakGlassUses: (openOnly) => call('breakGlassUses', [openOnly], (): UseView[] => {
      requireSignedIn();
      requireOnline('Break-glass uses');
      const me = state.status.user;
      return clone(uses
        .filter((u) => (!openOnly || u.open) && (u.user === me || isSecurity()))
        .map((u) => ({ ...u, may_classify: isSecurity() || (u.user === me && u.open) })));
    }),

    classifyUse: (id, kind: UseKind, incident, note) => call('classifyUse', [id, kind, incident, note], (): UseView => {
      requireSignedIn();
      const inc = incident?.trim() || undefined;
      const n = note?.trim() || undefined;
      if (kind === 'incident' && !inc) throw fail('usage', 'kind incident needs the incident\'s id: send "incident": "INC-123"');
      if (kind !== 'incident' && inc) throw fail('usage', `incident: only kind incident names an incident (this is ${kind})`);
      if (kind === 'other' && !n) throw fail('usage', 'kind other needs a note saying what the use was');
      if (inc && !/^[A-Za-z0-9._:#/-]{1,100}$/.test(inc)) {
        throw fail('usage', 'incident: use the incident\'s id (letters, digits and - _ . : # /), e.g. INC-123 or inc_…');
      }
      requireOnline('Classifying a use');
      const u = uses.find((x) => x.id === id);
      if (!u) throw fail('not_found', 'No break-glass use with that id.');
      const me = state.status.user;
      if (!isSecurity()) {
        if (u.user !== me) throw fail('forbidden', 'only the person who unlocked, admins or the secret\'s security audience may classify this use');
        if (!u.open) throw fail('forbidden', 'this use is classified already; only admins or the secret\'s security audience may change a classification');
      }
      Object.assign(u, {
        open: false, kind, incident: inc, note: n, classified_by: me ?? undefined, classified_at: iso(),
      });
      return clone({ ...u, may_classify: isSecurity() });
    }),

    // issue 14: drills
    get drills() { return drillState.drills; },
    set drills(v: DrillTask[]) { drillState.drills = v; },
    get readinessReport() { return drillState.readiness; },
    set readinessReport(v: Readiness | null) { drillState.readiness = v; },
    pendingDrills: () => call('pendingDrills', [], (): DrillTask[] => {
      requireSignedIn();
      requireOnline('Drills');
      return clone(drillState.drills);
    }),
    answerDrill: (id, pass) => call('answerDrill', [id, pass], (): DrillOutcome => {
      requireSignedIn();
      requireOnline('Answering a drill');
      const device = state.break_glass.device;
      if (!device.enrolled) throw fail('not_enrolled', 'This device is not enrolled for break glass, so it has nothing to prove.');
      const lockedFor = device.locked_until ? new Date(device.locked_until).getTime() - now() : 0;
      if (lockedFor > 0) {
        throw fail('locked_out', `Locked out after ${MAX_ATTEMPTS} wrong passphrases. Try again in ${Math.ceil(lockedFor / 60_000)} min.`);
      }
      const d = drillState.drills.find((x) => x.id === id);
      if (!d) throw fail('not_found', 'No such drill waits on this device (it ended, or this device already passed it).');
      if (pass !== passphrase) {
        device.failed_attempts += 1;
        changed();
        if (device.failed_attempts >= MAX_ATTEMPTS) {
          device.locked_until = iso(LOCKOUT_MS);
          throw fail('locked_out', `Locked out after ${MAX_ATTEMPTS} wrong passphrases. Try again in ${LOCKOUT_MS / 60_000} min.`);
        }
        const left = MAX_ATTEMPTS - device.failed_attempts;
        throw fail('wrong_passphrase', `Wrong passphrase. ${left} attempt${left === 1 ? '' : 's'} left before a 15-minute lock-out.`);
      }
      drillState.drills = drillState.drills.filter((x) => x.id !== id);
      return {
        drill_id: d.id, secret: d.secret, title: d.title, version: d.version, passed_at: iso(),
        message: `Drill passed: this device opened its sealed copy of ${d.title} (version ${d.version}) and proved it to the broker. No secret was shown.`,
      };
    }),
    readiness: () => call('readiness', [], (): Readiness => {
      requireSignedIn();
      requireOnline('Readiness');
      if (!drillState.readiness) throw fail('forbidden', 'readiness is for admins and the secrets\' alert audiences (security)');
      return clone(drillState.readiness);
    }),

    status: () => call('status', [], () => clone(state.status)),
    snapshot: () => call('snapshot', [], () => clone(state)),

    signIn: (urls, token) => call('signIn', [urls, token], (): AppStatus => {
      // As the backend: the same checks (ui/src/lib/urls.ts mirrors them), then the
      // first URL that answers is the one in use; 'unreachable' in a URL means it does
      // not answer, 'other-broker' that it presents another broker key.
      const checked = checkBrokerUrls(urls.join('\n'));
      if (checked.errors.length > 0) {
        const msg = checked.errors[0];
        throw fail(/https:\/\//.test(msg) ? 'insecure_url' : 'invalid_url', msg);
      }
      const list = checked.urls;
      const inUse = list.find((u) => !u.includes('unreachable'));
      if (!inUse) {
        throw fail('offline', list.length > 1
          ? `Could not reach any of the ${list.length} broker URLs: connection refused.`
          : `Could not reach ${list[0]}: connection refused.`);
      }
      const other = list.find((u) => u.includes('other-broker'));
      if (other) {
        throw fail('wrong_broker', `${other} presents the broker signing key SHA256:0ther…, but ${inUse} presents `
          + `${DEMO_BROKER_FINGERPRINT}: they are different brokers, not replicas of one.`);
      }
      if (!token.trim() || token.trim() === 'wrong') {
        throw fail('unauthenticated', 'The broker rejected this API token.');
      }
      const demo = demoSnapshot(now());
      Object.assign(state, demo);
      Object.assign(state.status, {
        signed_in: true, demo: false, broker_url: list[0], broker_urls: list, broker_url_in_use: inUse,
        online: true, last_synced_at: iso(),
      });
      changed();
      return clone(state.status);
    }),

    signInSso: (urls) => call('signInSso', [urls], (): AppStatus => {
      // As the backend: 'nosso' in a URL is a broker without [sso].
      const checked = checkBrokerUrls(urls.join('\n'));
      if (checked.errors.length > 0) {
        const msg = checked.errors[0];
        throw fail(/https:\/\//.test(msg) ? 'insecure_url' : 'invalid_url', msg);
      }
      const list = checked.urls;
      if (list[0].includes('nosso')) {
        throw fail('sso_not_configured', 'single sign-on is not configured on this broker (no [sso] section in its policy); sign in with a token from an admin');
      }
      const demo = demoSnapshot(now());
      Object.assign(state, demo);
      Object.assign(state.status, {
        signed_in: true, demo: false, broker_url: list[0], broker_urls: list, broker_url_in_use: list[0],
        online: true, last_synced_at: iso(), sso: true, session_ended: null,
      });
      changed();
      return clone(state.status);
    }),

    signOut: () => call('signOut', [], (): AppStatus => {
      Object.assign(state, signedOutSnapshot(), {
        status: { ...signedOutSnapshot().status, broker_url: state.status.broker_url, broker_urls: state.status.broker_urls },
      });
      changed();
      return clone(state.status);
    }),

    requestBundle: (r: NewRequest) => call('requestBundle', [r], (): ActionResult => {
      requireSignedIn();
      const b = findBundle(r.bundle);
      const t = b.terms;
      const duration = r.duration_secs ?? t.default_duration_secs;
      if (duration <= 0 || duration > t.max_duration_secs) {
        throw fail('invalid_duration', `Duration must be between 1 minute and ${Math.round(t.max_duration_secs / 60)} minutes.`);
      }
      if (t.justification_required && !r.justification?.trim()) {
        throw fail('justification_required', `${b.title} needs a justification.`);
      }
      if (t.ticket_required && !r.ticket?.trim()) {
        throw fail('ticket_required', `${b.title} needs a ticket reference.`);
      }
      if (!state.status.online) {
        return queue('request', `Request ${b.title}`, b.name, null);
      }
      const req: Request = {
        id: nextId('req'), kind: 'access', bundle: b.name, bundle_title: b.title,
        requester: state.status.user ?? 'me', state: 'pending', duration_secs: duration,
        justification: r.justification ?? null, ticket: r.ticket ?? null, created_at: iso(),
        pending_until: iso(t.pending_ttl_secs * 1000), approvals_needed: t.approvals, decisions: [],
        grant_id: null, error: null, incident_id: r.incident ?? null, stage: 0,
        approvers: { users: [], groups: t.approvals > 0 ? ['sre-leads'] : [], oncall: [] },
      };
      state.my_requests.unshift(req);
      let grant: Grant | null = null;
      // The broker approves at once for an incident's responder (flows that say so).
      if (t.approvals === 0 || r.incident) grant = activate(req, b);
      changed();
      const msg = grant
        ? `${b.title} granted for ${Math.round(duration / 60)} min.`
        : `Requested ${b.title}: waiting for ${t.approvals} approval${t.approvals === 1 ? '' : 's'}.`;
      return result(msg, { request: clone(req), grant: grant && clone(grant) });
    }),

    cancelRequest: (id) => call('cancelRequest', [id], (): ActionResult => {
      const req = state.my_requests.find((x) => x.id === id);
      if (!req) throw fail('not_found', 'That request no longer exists.');
      if (req.state !== 'pending') throw fail('conflict', `The request is ${req.state}, it can no longer be cancelled.`);
      requireOnline('Cancelling');
      req.state = 'cancelled';
      changed();
      return result(`Cancelled the request for ${req.bundle_title}.`, { request: clone(req) });
    }),

    cancelQueued: (id) => call('cancelQueued', [id], (): ActionResult => {
      const item = state.outbox.find((o) => o.id === id);
      if (!item) throw fail('not_found', 'That queued action is no longer waiting: it was sent or cancelled already.');
      if (item.kind === 'revoke_token') {
        throw fail('conflict', 'The revocation of a signed-out session\'s token cannot be cancelled.');
      }
      state.outbox = state.outbox.filter((o) => o.id !== id);
      changed();
      return result(`“${item.summary}” is cancelled and will never be sent to the broker.`);
    }),

    approve: (id, comment) => call('approve', [id, comment], (): ActionResult => {
      requireOnline('Approving');
      const req = state.approvals.find((x) => x.id === id);
      if (!req) throw fail('not_found', 'That request is no longer waiting for you.');
      req.decisions.push({ by: state.status.user ?? 'me', at: iso(), decision: 'approve', comment: comment ?? null });
      state.approvals = state.approvals.filter((x) => x.id !== id);
      changed();
      return result(`Approved ${req.requester}’s request for ${req.bundle_title}.`, { request: clone(req) });
    }),

    deny: (id, reason) => call('deny', [id, reason], (): ActionResult => {
      requireOnline('Denying');
      const req = state.approvals.find((x) => x.id === id);
      if (!req) throw fail('not_found', 'That request is no longer waiting for you.');
      req.state = 'denied';
      req.decisions.push({ by: state.status.user ?? 'me', at: iso(), decision: 'deny', comment: reason ?? null });
      state.approvals = state.approvals.filter((x) => x.id !== id);
      changed();
      return result(`Denied ${req.requester}’s request for ${req.bundle_title}.`, { request: clone(req) });
    }),

    revoke: (grantId) => call('revoke', [grantId], (): ActionResult => {
      const g = findGrant(grantId);
      if (!state.status.online) {
        return queue('revoke', `Revoke ${g.bundle_title}`, g.bundle, g.id);
      }
      g.state = 'revoked';
      g.ended_at = iso();
      g.end_reason = 'revoked';
      g.ended_by = state.status.user;
      state.grants = state.grants.filter((x) => x.id !== grantId);
      const req = state.my_requests.find((x) => x.grant_id === grantId);
      if (req) req.state = 'revoked';
      changed();
      return result(`Revoked ${g.bundle_title}.`, { grant: clone(g) });
    }),

    extend: (grantId, durationSecs, justification) => call('extend', [grantId, durationSecs, justification], (): ActionResult => {
      requireOnline('Extending');
      const g = findGrant(grantId);
      const b = state.bundles.find((x) => x.name === g.bundle);
      const secs = durationSecs ?? b?.terms.default_duration_secs ?? 3600;
      if (b?.terms.justification_required && !justification?.trim()) {
        throw fail('justification_required', `Extending ${g.bundle_title} needs a justification.`);
      }
      g.expires_at = new Date(new Date(g.expires_at).getTime() + secs * 1000).toISOString();
      changed();
      return result(`Extended ${g.bundle_title} by ${Math.round(secs / 60)} min.`, { grant: clone(g) });
    }),

    credentials: (grantId) => call('credentials', [grantId], (): Credentials => {
      // As the backend: fetched live, never from the cache.
      if (!state.status.online) throw fail('offline', 'Credentials need the broker, and it cannot be reached right now.');
      const g = findGrant(grantId);
      if (g.state !== 'active') throw fail('conflict', `The grant is ${g.state}; no credentials to show.`);
      const items: CredentialItem[] = [
        {
          integration: 'postgres', kind: 'postgres', resource: 'orders', username: `fd_${g.holder}_${g.id.slice(-4)}`,
          secret: 'pg-S3cret-' + g.id.slice(-4), host: 'db.prod.internal', port: 5432, note: 'VALID UNTIL the grant expires',
        },
        {
          integration: 'demo', kind: 'demo', resource: g.bundle, username: g.holder,
          secret: 'demo-token-' + g.id.slice(-4), host: null, port: null, note: null,
        },
      ];
      return { grant_id: g.id, expires_at: g.expires_at, items };
    }),

    copySecret: (text) => call('copySecret', [text], () => undefined),

    setFavourite: (bundle, favourite) => call('setFavourite', [bundle, favourite], (): Snapshot => {
      findBundle(bundle);
      state.favourites = state.favourites.filter((x) => x !== bundle);
      if (favourite) state.favourites.push(bundle);
      changed();
      return clone(state);
    }),

    enrolDevice: (pass) => call('enrolDevice', [pass], (): Snapshot => {
      requireSignedIn();
      const device = state.break_glass.device;
      if (device.enrolled) throw fail('conflict', 'This device is already enrolled.');
      if (device.broker_key_change) throw fail('broker_key_changed', 'The broker\'s signing key changed.');
      const strength = fakeStrength(pass);
      if (!strength.acceptable) {
        throw fail('weak_passphrase', `This passphrase is too easy to guess (strength ${strength.score} of 4; at least 3 and 12 characters are needed). ${[strength.warning, ...strength.suggestions].filter(Boolean).join(' ')}`);
      }
      requireOnline('Enrolling this device');
      passphrase = pass;
      recordSeq = 0;
      openedOffline.clear();
      // The broker seals the break-glass credentials to the new device key.
      state.break_glass = {
        device: {
          enrolled: true, device_id: nextId('dev'), device_name: `${state.status.user ?? 'my'}-laptop`,
          broker_fingerprint: DEMO_BROKER_FINGERPRINT, failed_attempts: 0, locked_until: null,
          pending_records: 0, chain_ok: true, chain_error: null, broker_key_change: null,
        },
        credentials: SEALABLE.map((m) => sealed(m, now(), now())),
      };
      changed();
      return clone(state);
    }),

    passphraseStrength: (pass) => call('passphraseStrength', [pass], (): PassphraseStrength => fakeStrength(pass)),

    confirmBrokerKey: (fp) => call('confirmBrokerKey', [fp], (): Snapshot => {
      requireSignedIn();
      const device = state.break_glass.device;
      const change = device.broker_key_change;
      if (!change) throw fail('no_key_change', 'The broker\'s signing key has not changed: there is nothing to confirm.');
      if (change.new_fingerprint !== fp) throw fail('fingerprint_mismatch', 'The fingerprint confirmed is not the broker\'s new key. Compare again.');
      device.broker_fingerprint = change.new_fingerprint;
      device.broker_key_change = null;
      changed();
      return clone(state);
    }),

    unlockSecret: (name, reason, pass) => call('unlockSecret', [name, reason, pass], (): UnlockResult => {
      requireSignedIn();
      const bg = state.break_glass;
      const device = bg.device;
      if (!device.enrolled) throw fail('not_enrolled', 'This device is not enrolled for offline break glass.');
      const change = device.broker_key_change;
      if (change) {
        throw fail('broker_key_changed', `The broker's signing key changed: it was ${change.pinned_fingerprint} and is now ${change.new_fingerprint}. Break glass is stopped until you compare both fingerprints and confirm the new key, or sign out.`);
      }
      const lockedFor = device.locked_until ? new Date(device.locked_until).getTime() - now() : 0;
      if (lockedFor > 0) {
        throw fail('locked_out', `Locked out after ${MAX_ATTEMPTS} wrong passphrases. Try again in ${Math.ceil(lockedFor / 60_000)} min.`);
      }
      if (device.locked_until) {
        device.locked_until = null;
        device.failed_attempts = 0;
      }
      if (!reason.trim()) throw fail('validation', 'A reason is required to break glass.');
      const c = bg.credentials.find((x) => x.name === name);
      if (!c) throw fail('not_found', `No sealed credential named “${name}” on this device.`);
      if (pass !== passphrase) {
        device.failed_attempts += 1;
        changed();
        if (device.failed_attempts >= MAX_ATTEMPTS) {
          device.locked_until = iso(LOCKOUT_MS); // before the deferred emit runs
          throw fail('locked_out', `Locked out after ${MAX_ATTEMPTS} wrong passphrases. Try again in ${LOCKOUT_MS / 60_000} min.`);
        }
        const left = MAX_ATTEMPTS - device.failed_attempts;
        throw fail('wrong_passphrase', `Wrong passphrase. ${left} attempt${left === 1 ? '' : 's'} left before a 15-minute lock-out.`);
      }
      device.failed_attempts = 0;
      if (state.status.online) {
        openUse(c.name, c.version, 'online');
        changed();
        return {
          name: c.name, title: c.title, version: c.version, secret: demoSecret(c.name, c.version),
          mode: 'online', record_seq: null, hide_after_secs: 60,
          message: `Released ${c.title} by the broker. Security has been alerted; it is rotated after use.`,
        };
      }
      if (c.state === 'invalid') throw fail('envelope_invalid', `Refused: ${c.problem ?? 'the sealed envelope did not verify'}.`);
      if (now() >= new Date(c.not_after).getTime() || c.state === 'expired') {
        throw fail('envelope_expired', `The sealed copy of ${c.title} expired at ${c.not_after}. Connect to the broker to refresh it.`);
      }
      if (now() < new Date(c.not_before).getTime() || c.state === 'not_yet_valid') {
        throw fail('envelope_invalid', `The sealed copy of ${c.title} is not valid before ${c.not_before}. Check this device’s clock.`);
      }
      // The record is written before the secret is shown.
      recordSeq += 1;
      device.pending_records += 1;
      openedOffline.add(c.name);
      c.reconnect = 'unlocked offline · record not delivered yet — it is sent to the broker (and security) as soon as it is reachable';
      changed();
      return {
        name: c.name, title: c.title, version: c.version, secret: demoSecret(c.name, c.version),
        mode: 'offline', record_seq: recordSeq, hide_after_secs: 60,
        message: `Opened ${c.title} offline. The broker rotates it once it receives record #${recordSeq}.`,
      };
    }),

    resync: () => call('resync', [], (): Snapshot => {
      requireSignedIn();
      if (state.status.online) {
        state.status.last_synced_at = iso();
        reseal();
      }
      changed();
      return clone(state);
    }),

    demoBroker: (up) => call('demoBroker', [up], (): Snapshot => {
      if (!state.status.demo) throw fail('not_demo', 'Only the demo\'s built-in broker can be stopped from the app.');
      backend.setOnline(up, up ? null : 'The broker cannot be reached (demo: stopped from the app).');
      return clone(state);
    }),

    uiReady: () => call('uiReady', [], () => undefined),

    onSnapshot: (cb) => call('onSnapshot', [], () => {
      snapListeners.add(cb);
      return () => { snapListeners.delete(cb); };
    }),

    onOpen: (cb) => call('onOpen', [], () => {
      openListeners.add(cb);
      return () => { openListeners.delete(cb); };
    }),

    onLink: (cb) => call('onLink', [], () => {
      linkListeners.add(cb);
      return () => { linkListeners.delete(cb); };
    }),

    linksReady: () => call('linksReady', [], () => {
      linksListening = true;
      return waitingLinks.splice(0);
    }),

    autostart: () => call('autostart', [], () => backend.autostartOn),

    setAutostart: (on) => call('setAutostart', [on], () => {
      backend.autostartOn = on;
      return on;
    }),

    // issue 14: report. The fake's reports are built from its own state: a grant's
    // request, the grant, in the broker's Markdown layout; only admins may read them.
    reportsAllowed: () => call('reportsAllowed', [], () => state.status.online && backend.reportsAdmin),
    report: (kind, id, format) => call('report', [kind, id, format], () => fakeReport(kind, id, format)),
    saveReport: (kind, id) => call('saveReport', [kind, id], () => {
      fakeReport(kind, id, 'html');
      const path = `/home/demo/Downloads/firedoor-report-${kind}-${id.replace(/[^A-Za-z0-9_-]/g, '_')}.html`;
      backend.savedReports.push(path);
      return path;
    }),
    // issue 14: quorum. The fake stands for both people: a request it made can be
    // released "by the other person" here too (the real app refuses your own).
    quorumRequest: (name, reason, pass) => call('quorumRequest', [name, reason, pass], (): QuorumRequestOut => {
      requireSignedIn();
      const c = state.break_glass.credentials.find((x) => x.name === name);
      if (!c || !c.quorum) throw fail('quorum_refused', `${name} opens with one person: unlock it directly.`);
      if (!reason.trim()) throw fail('validation', 'Give a reason: it goes to the audit trail and to security.');
      if (pass !== passphrase) throw fail('wrong_passphrase', 'Wrong passphrase.');
      const id = `req${quorumRequests.size + 1}`.padEnd(64, '0');
      const expires = iso(15 * 60_000);
      quorumRequests.set(id, { name, reason, expires, releases: [], done: false });
      const text = `firedoor-unlock-request:v1:${btoa(JSON.stringify({ id, name, reason }))}`;
      return {
        request_id: id, name, title: c.title, version: c.version, text,
        qr_svg: '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"><rect width="1" height="1"/></svg>',
        expires_at: expires, need: c.quorum, co_holders: ['bob'],
      };
    }),
    quorumInspect: (request) => call('quorumInspect', [request], (): QuorumRequestView => {
      const r = parseRequest(request);
      const c = state.break_glass.credentials.find((x) => x.name === r.name);
      return {
        request_id: r.id, name: r.name, title: c?.title ?? r.name, version: c?.version ?? 1,
        requester: state.status.user ?? 'me', requester_device: 'dev_fake', reason: r.reason,
        created_at: iso(), expires_at: quorumRequests.get(r.id)?.expires ?? iso(15 * 60_000), need: c?.quorum ?? 2,
      };
    }),
    quorumRelease: (request, pass) => call('quorumRelease', [request, pass], (): QuorumReleaseOut => {
      const r = parseRequest(request);
      if (pass !== passphrase) throw fail('wrong_passphrase', 'Wrong passphrase.');
      recordSeq += 1;
      state.break_glass.device.pending_records += 1;
      changed();
      return {
        request_id: r.id, name: r.name, requester: state.status.user ?? 'me',
        text: `firedoor-share-release:v1:${r.id}`, qr_svg: null, expires_at: iso(15 * 60_000), record_seq: recordSeq,
      };
    }),
    quorumComplete: (requestId, releases, pass) => call('quorumComplete', [requestId, releases, pass], (): UnlockResult => {
      const q = quorumRequests.get(requestId);
      if (!q) throw fail('quorum_refused', 'This device made no such request.');
      if (q.done) throw fail('quorum_refused', 'This request was already completed: a release is applied once. Start a new request.');
      if (pass !== passphrase) throw fail('wrong_passphrase', 'Wrong passphrase.');
      for (const r of releases) {
        if (r.trim() !== `firedoor-share-release:v1:${requestId}`) {
          throw fail('quorum_refused', 'the release answers another unlock request.');
        }
        if (q.releases.includes(r.trim())) throw fail('quorum_refused', 'this release was already applied.');
        q.releases.push(r.trim());
      }
      const c = state.break_glass.credentials.find((x) => x.name === q.name)!;
      const have = 1 + q.releases.length;
      if (have < (c.quorum ?? 2)) {
        throw fail('quorum_incomplete', `${have} of ${c.quorum} shares: nothing opens until ${c.quorum} different people took part.`);
      }
      q.done = true;
      recordSeq += 1;
      state.break_glass.device.pending_records += 1;
      changed();
      return {
        name: c.name, title: c.title, version: c.version, secret: demoSecret(c.name, c.version),
        mode: 'quorum', record_seq: recordSeq, hide_after_secs: 60,
        message: 'Opened offline with the shares of bob. This unlock is recorded and will be reported to security as soon as the broker is reachable.',
      };
    }),
    quorumPending: () => call('quorumPending', [], (): QuorumProgress[] =>
      [...quorumRequests.entries()].map(([id, q]) => {
        const c = state.break_glass.credentials.find((x) => x.name === q.name);
        return {
          request_id: id, name: q.name, expires_at: q.expires,
          have: 1 + q.releases.length, need: c?.quorum ?? 2, completed: q.done,
        };
      })),
  };

  function fakeReport(kind: ReportKind, id: string, format: 'md' | 'html'): string {
    requireSignedIn();
    requireOnline('Reports');
    if (!backend.reportsAdmin) throw fail('forbidden', 'the audit log is for admins');
    const g = kind === 'grant' ? state.grants.find((x) => x.id === id) : undefined;
    const inc = kind === 'incident' ? state.incidents?.find((x) => x.id === id) : undefined;
    if (!g && !inc) throw fail('not_found', `no such ${kind}`);
    const rows: string[][] = [];
    let seq = 40;
    if (inc) rows.push([`#${++seq}`, 'system', '', 'incident', `incident opened: ${inc.title}`]);
    if (g) {
      rows.push([`#${++seq}`, g.holder, '', 'request', `${g.holder} requested ${g.bundle}`]);
      rows.push([`#${++seq}`, 'system', '', 'provisioning', `access provisioned for ${g.holder}: ${g.bundle}`]);
    }
    if (format === 'html') {
      const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
      return `<!DOCTYPE html><html><body><h1>Firedoor report: ${kind} ${esc(id)}</h1><table>${
        rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('')}</table></body></html>`;
    }
    return [`# Firedoor report: ${kind} ${id}`, '', '| Audit record | Who | Channel | Phase | What |', '|---|---|---|---|---|',
      ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n') + '\n';
  }
  return backend;
}
