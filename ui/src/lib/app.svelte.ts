// The UI's state and the actions every view shares. One instance per window,
// handed to components through context (see useApp()).

import { getContext, setContext, tick } from 'svelte';
import { SvelteMap, SvelteSet } from 'svelte/reactivity';
import { toBackendError, type Backend } from './backend';
import { Clock } from './clock.svelte';
import { activeGrantOf, connectionCommand, needsForm } from './format';
import type {
  ActionResult, BackendError, Bundle, CredentialItem, Grant, Link, LinkEvent, NewRequest, RequestPrefill, SealedCredential, Snapshot,
} from './types';

export type View = 'bundles' | 'access' | 'requests' | 'approvals' | 'breakglass';
export const VIEWS: { id: View; label: string }[] = [
  { id: 'bundles', label: 'Bundles' },
  { id: 'access', label: 'My access' },
  { id: 'requests', label: 'Requests' },
  { id: 'approvals', label: 'Approvals' },
  { id: 'breakglass', label: 'Break glass' },
];

/** Names the backend may use in onOpen, mapped to our views. */
const VIEW_ALIASES: Record<string, View> = {
  bundles: 'bundles', bundle: 'bundles',
  access: 'access', my_access: 'access', 'my-access': 'access', grants: 'access', grant: 'access',
  requests: 'requests', request: 'requests', my_requests: 'requests', 'my-requests': 'requests',
  approvals: 'approvals', approval: 'approvals', inbox: 'approvals',
  breakglass: 'breakglass', break_glass: 'breakglass', 'break-glass': 'breakglass', unlock: 'breakglass',
};

export interface Toast {
  id: number;
  text: string;
  kind: 'info' | 'warn' | 'error';
  /** "Access active": the grant whose credentials the toast copies. */
  grant?: Grant;
}

/** What one copy action puts on the clipboard. */
export type CopyWhat = 'user' | 'secret' | 'command';

/** How long an "access active" toast (with its copy buttons) stays. */
export const ACCESS_TOAST_MS = 30_000;

/** The readable error of a credentials fetch: offline, it says where to go instead. */
export function credentialsError(e: BackendError): string {
  if (e.code === 'offline') {
    return 'The broker is unreachable, and credentials are fetched live (never cached). '
      + 'Need access now? Break glass (Alt+5) opens sealed emergency credentials offline.';
  }
  return e.message?.trim() || 'The credentials could not be loaded.';
}

/** What the single open dialog is, if any. */
export type Dialog =
  | { kind: 'request'; bundle: Bundle; prefill?: RequestPrefill; another?: Grant }
  | { kind: 'revoke'; grant: Grant }
  | { kind: 'extend'; grant: Grant }
  | { kind: 'credentials'; grant: Grant }
  | { kind: 'deny'; requestId: string; title: string }
  | { kind: 'unlock'; credential: SealedCredential }
  | { kind: 'signout' };

const KEY = Symbol('firedoor-app');

/** How long the buttons that act stay disabled after a link changed the window: a
 *  page that fires a link cannot time it so that a click meant for something else
 *  lands on Approve or Request. */
export const LINK_GUARD_MS = 1000;

export function useApp(): AppState {
  const app = getContext<AppState | undefined>(KEY);
  if (!app) throw new Error('AppState missing: components must render inside <App>.');
  return app;
}

export class AppState {
  readonly backend: Backend;
  /** The latest snapshot; replaced whole, never mutated. */
  snapshot = $state.raw<Snapshot | null>(null);
  loadError = $state<string | null>(null);
  view = $state<View>('bundles');
  highlight = $state<string | null>(null);
  toast = $state<Toast | null>(null);
  dialog = $state<Dialog | null>(null);
  quickOpen = $state(false);
  /** True for a moment after a link changed the window (see LINK_GUARD_MS). */
  linkGuard = $state(false);
  /** Whether Firedoor starts at login; null until known. */
  autostartOn = $state<boolean | null>(null);
  /** A link that came while signed out, followed once signed in. */
  private pendingLink: Link | null = null;
  private linkGuardTimer: ReturnType<typeof setTimeout> | null = null;
  /** What each grant's credentials can give once they were fetched (never the values):
   *  the copy buttons hide what a grant does not have. */
  copyable = new SvelteMap<string, CopyWhat[]>();
  /** Keys of actions in flight ("request:prod-db", "revoke:grt_1"), to stop double clicks. */
  pending = new SvelteSet<string>();
  /** The one clock every countdown in the window reads (ticks only while shown). */
  readonly clock = new Clock();

  private snapshotSeq = 0;
  private toastTimer: ReturnType<typeof setTimeout> | null = null;
  private highlightTimer: ReturnType<typeof setTimeout> | null = null;
  private toastSeq = 0;
  /** Requests made here whose grant is not active yet: an "access active" toast
   *  shows when it is. */
  private awaitingActive = new Set<string>();
  /** The toast that told what reconnecting did, if it is the latest. */
  private reconnectToastId = 0;
  private unsubs: (() => void)[] = [];
  private readySent = false;
  private disposed = false;

  constructor(backend: Backend) {
    this.backend = backend;
  }

  provide(): this {
    setContext(KEY, this);
    return this;
  }

  get status() {
    return this.snapshot?.status ?? null;
  }
  get online(): boolean {
    return this.snapshot?.status.online ?? false;
  }

  /** Cached snapshot first, then live updates. Resolves once the first one has rendered. */
  async start(): Promise<void> {
    const seqAtStart = this.snapshotSeq;
    const first = this.backend.snapshot();
    // Subscribe right away (after asking for the cache) so no change slips between the two.
    const subs = Promise.all([
      this.backend.onSnapshot((s) => this.applySnapshot(s)),
      this.backend.onOpen((t) => this.open(t.view, t.id)),
      this.backend.onLink((ev) => this.handleLink(ev)),
    ]).then((u) => {
      if (this.disposed) u.forEach((f) => f());
      else this.unsubs.push(...u);
    }, (e) => this.showError(e, 'Live updates are unavailable'));
    try {
      const s = await first;
      // A live snapshot that arrived meanwhile is newer than the cache read.
      if (this.snapshotSeq === seqAtStart) this.applySnapshot(s);
      this.loadError = null;
    } catch (e) {
      this.loadError = toBackendError(e).message || 'The local cache could not be read.';
      return;
    }
    await tick();
    await this.markReady();
    await subs;
    void this.loadAutostart();
    // Listening for links now: the one the app was started with comes first.
    try {
      for (const ev of await this.backend.linksReady()) this.handleLink(ev);
    } catch (e) {
      this.showError(e, 'Links cannot be opened');
    }
  }

  stop(): void {
    this.disposed = true;
    this.unsubs.forEach((f) => f());
    this.unsubs = [];
    if (this.toastTimer) clearTimeout(this.toastTimer);
    if (this.highlightTimer) clearTimeout(this.highlightTimer);
    if (this.linkGuardTimer) clearTimeout(this.linkGuardTimer);
    this.clock.stop();
  }

  private async markReady() {
    if (this.readySent) return;
    this.readySent = true;
    document.body.dataset.ready = '1';
    try {
      await this.backend.uiReady();
    } catch {
      // Only a measurement; never bother the user with it.
    }
  }

  applySnapshot(s: Snapshot): void {
    const before = this.snapshot;
    this.snapshotSeq++;
    this.snapshot = s;
    this.checkAccessActive();
    this.tellReconnection(before, s);
  }

  /** Back online after offline work: says in words what became of it (a replayed
   *  request, an offline unlock's record and rotation), once, as it happens. */
  private tellReconnection(before: Snapshot | null, s: Snapshot): void {
    if (!before?.status.signed_in || !s.status.signed_in) return;
    const said = new Set((before.replayed ?? []).map((r) => r.id));
    const fresh = (s.replayed ?? []).filter((r) => !said.has(r.id));
    const was = new Map((before.break_glass?.credentials ?? []).map((c) => [c.name, c.reconnect]));
    const settled = (s.break_glass?.credentials ?? []).filter(
      (c) => c.reconnect && c.reconnect !== was.get(c.name) && c.reconnect.startsWith('record delivered'),
    );
    const lines = [
      ...settled.map((c) => `${c.title}: ${c.reconnect}`),
      ...fresh.map((r) => `${r.summary} — ${r.outcome}`),
    ];
    if (lines.length > 0) {
      const bad = fresh.some((r) => !r.ok);
      this.notify(lines.join(' · '), bad ? 'warn' : 'info');
      this.reconnectToastId = this.toastSeq;
    }
  }

  /** Shows the "access active" toast once a grant asked for here is active. */
  private checkAccessActive(): void {
    if (this.awaitingActive.size === 0 || !this.snapshot) return;
    for (const g of this.snapshot.grants) {
      if (g.state === 'active' && this.awaitingActive.has(g.request_id)) {
        this.awaitingActive.delete(g.request_id);
        this.notifyAccess(g);
      }
    }
    for (const r of this.snapshot.my_requests) {
      // Denied, cancelled or timed out: nothing will become active.
      if (['denied', 'cancelled', 'timed_out', 'failed'].includes(r.state)) this.awaitingActive.delete(r.id);
    }
  }

  /** "Access active" with buttons that copy the user, the secret or a command. */
  notifyAccess(g: Grant): void {
    this.notify(`${g.bundle_title} is active.`, 'info', g);
  }

  /** The live grant of a bundle, if any. */
  activeGrant(bundle: string): Grant | null {
    return activeGrantOf(bundle, this.snapshot?.grants ?? []);
  }

  /** Notes which of user, secret and command a grant's credentials have. */
  noteCopyable(grantId: string, items: CredentialItem[]): void {
    const has: CopyWhat[] = [];
    if (items.some((i) => i.secret)) has.push('secret');
    if (items.some((i) => i.username)) has.push('user');
    if (items.some((i) => connectionCommand(i)) || this.snapshot?.ssh?.some((x) => x.grant_id === grantId && x.command)) {
      has.push('command');
    }
    this.copyable.set(grantId, has);
  }

  /**
   * Copies the user, the secret or a ready connection command of a grant (its first
   * credential that has one) through the backend's clipboard, which clears it again.
   * Credentials are fetched live for each copy.
   */
  async copyFromGrant(g: Grant, what: CopyWhat): Promise<boolean> {
    // An SSH grant's command is known locally (the certificate's user and host).
    const ssh = what === 'command' ? this.snapshot?.ssh?.find((x) => x.grant_id === g.id)?.command : null;
    let text: string | null = ssh ?? null;
    let count = 0;
    if (!text) {
      let creds;
      try {
        creds = await this.backend.credentials(g.id);
      } catch (e) {
        this.notify(credentialsError(toBackendError(e)), 'error');
        return false;
      }
      this.noteCopyable(g.id, creds.items);
      const values = creds.items
        .map((i) => (what === 'user' ? i.username : what === 'secret' ? i.secret : connectionCommand(i)))
        .filter((v): v is string => !!v);
      count = values.length;
      text = values[0] ?? null;
    }
    if (!text) {
      const why = what === 'command'
        ? 'no connection command (its credentials name no host to connect to)'
        : what === 'secret' ? 'no secret to copy (an SSH grant uses your device’s key)' : 'no user name';
      this.notify(`${g.bundle_title} has ${why}.`, 'warn');
      return false;
    }
    const value = text;
    const ok = await this.run('copy', () => this.backend.copySecret(value).then(() => true));
    if (ok) {
      const label = what === 'user' ? 'User' : what === 'secret' ? 'Secret' : 'Command';
      const more = count > 1 ? ` (the first of ${count}: Credentials shows them all)` : '';
      this.notify(`${label} of ${g.bundle_title} copied${more} — clipboard clears in 30 s`);
    }
    return !!ok;
  }

  /** Re-reads the cache after an action, unless a live snapshot already came in. */
  async refresh(): Promise<void> {
    const seq = this.snapshotSeq;
    try {
      const s = await this.backend.snapshot();
      if (this.snapshotSeq === seq) this.applySnapshot(s);
    } catch (e) {
      this.showError(e);
    }
  }

  async retryLoad(): Promise<void> {
    this.loadError = null;
    try {
      this.applySnapshot(await this.backend.snapshot());
    } catch (e) {
      this.loadError = toBackendError(e).message || 'The local cache could not be read.';
      return;
    }
    await tick();
    await this.markReady();
  }

  setView(v: View): void {
    this.view = v;
  }

  /** Shows a view (and flashes one item), as a clicked notification asks. */
  open(view: string, id?: string): void {
    // The global shortcut: the window comes forward with the quick switcher open.
    if (view === 'quick') {
      if (this.snapshot?.status.signed_in) {
        this.dialog = null;
        this.quickOpen = true;
      }
      return;
    }
    const v = VIEW_ALIASES[view?.toLowerCase?.() ?? ''];
    if (v) this.view = v;
    if (id) {
      this.highlight = id;
      if (this.highlightTimer) clearTimeout(this.highlightTimer);
      this.highlightTimer = setTimeout(() => { this.highlight = null; }, 8000);
      void tick().then(() => {
        const el = document.querySelector(`[data-item-id="${CSS.escape(id)}"]`) as HTMLElement | null;
        el?.scrollIntoView?.({ block: 'nearest' });
      });
    }
  }

  /** A firedoor:// link reached the app. It only fills in the request form or shows
   *  a view: sending the request, approving or denying stays the user's click. */
  handleLink(ev: LinkEvent): void {
    if (ev.kind === 'invalid') {
      this.notify(`This Firedoor link cannot be opened: ${ev.message}`, 'error');
      return;
    }
    if (!this.snapshot?.status.signed_in) {
      this.pendingLink = ev.link;
      this.notify('Sign in to open the Firedoor link you followed.', 'warn');
      return;
    }
    this.followLink(ev.link);
  }

  private followLink(link: Link): void {
    const snap = this.snapshot;
    if (!snap) return;
    this.quickOpen = false;
    this.armLinkGuard();
    switch (link.kind) {
      case 'request': {
        const bundle = snap.bundles.find((b) => b.name === link.bundle);
        this.setView('bundles');
        if (!bundle) {
          this.dialog = null;
          this.notify(`The link asks for the bundle “${link.bundle}”, which you cannot request.`, 'error');
          return;
        }
        const prefill: RequestPrefill = {};
        if (link.reason) prefill.justification = link.reason;
        if (link.ticket) prefill.ticket = link.ticket;
        if (link.incident) prefill.incident = link.incident;
        this.dialog = { kind: 'request', bundle, prefill };
        return;
      }
      case 'approve': {
        this.dialog = null;
        this.open('approvals', link.request);
        if (!snap.approvals.some((r) => r.id === link.request)) {
          this.notify(`Request ${link.request} is not waiting for your decision (decided already, or not yours to decide).`, 'warn');
        }
        return;
      }
      case 'open':
        this.dialog = null;
        this.open(link.view, link.id ?? undefined);
    }
  }

  private armLinkGuard(): void {
    this.linkGuard = true;
    if (this.linkGuardTimer) clearTimeout(this.linkGuardTimer);
    this.linkGuardTimer = setTimeout(() => { this.linkGuard = false; }, LINK_GUARD_MS);
  }

  async loadAutostart(): Promise<void> {
    try {
      this.autostartOn = await this.backend.autostart();
    } catch {
      this.autostartOn = null;
    }
  }

  async setAutostart(on: boolean): Promise<void> {
    const r = await this.run('autostart', () => this.backend.setAutostart(on));
    if (r !== undefined) {
      this.autostartOn = r;
      this.notify(r ? 'Firedoor starts at login, in the tray.' : 'Firedoor no longer starts at login.');
    }
  }

  notify(text: string, kind: Toast['kind'] = 'info', grant?: Grant): void {
    this.toast = grant ? { id: ++this.toastSeq, text, kind, grant } : { id: ++this.toastSeq, text, kind };
    if (this.toastTimer) clearTimeout(this.toastTimer);
    // Errors stay until replaced or dismissed; the rest fades.
    if (kind !== 'error') {
      this.toastTimer = setTimeout(() => { this.toast = null; }, grant ? ACCESS_TOAST_MS : 10_000);
    }
  }

  dismissToast(): void {
    this.toast = null;
  }

  showError(e: unknown, prefix?: string): void {
    const err = toBackendError(e);
    const msg = err.message?.trim() || `Something went wrong (${err.code}).`;
    this.notify(prefix ? `${prefix}: ${msg}` : msg, 'error');
  }

  isPending(key: string): boolean {
    return this.pending.has(key);
  }

  /** Runs a backend call; errors become a readable toast. Returns undefined on failure. */
  async run<T>(key: string | null, fn: () => Promise<T>): Promise<T | undefined> {
    if (key && this.pending.has(key)) return undefined;
    if (key) this.pending.add(key);
    try {
      return await fn();
    } catch (e) {
      this.showError(e);
      return undefined;
    } finally {
      if (key) this.pending.delete(key);
    }
  }

  /** Runs an action and reports its result (as a warning when it went to the outbox:
   *  the message says so in one sentence). */
  async act(key: string | null, fn: () => Promise<ActionResult>): Promise<ActionResult | undefined> {
    const r = await this.run(key, fn);
    if (r) {
      if (r.queued) this.notify(r.message, 'warn');
      else this.notify(r.message);
      void this.refresh();
    }
    return r;
  }

  // ---- shared actions ----

  /** One click: request straight away when nothing must be typed, else open the form.
   *  A bundle with live access opens its credentials instead: a second grant of the
   *  same bundle is only made through {@link requestAnother}. */
  startRequest(bundle: Bundle): void {
    this.quickOpen = false;
    const live = this.activeGrant(bundle.name);
    if (live) {
      this.dialog = { kind: 'credentials', grant: live };
    } else if (needsForm(bundle.terms)) {
      this.dialog = { kind: 'request', bundle };
    } else {
      void this.requestNow({ bundle: bundle.name });
    }
  }

  /** The explicit choice of a second grant of a bundle that is active: always the
   *  form, which says access is live already. */
  requestAnother(bundle: Bundle): void {
    this.quickOpen = false;
    const live = this.activeGrant(bundle.name);
    this.dialog = live ? { kind: 'request', bundle, another: live } : { kind: 'request', bundle };
  }

  private async requestNow(req: NewRequest): Promise<ActionResult | undefined> {
    const r = await this.act(`request:${req.bundle}`, () => this.backend.requestBundle(req));
    const id = r && !r.queued ? r.request?.id : undefined;
    if (id) {
      this.awaitingActive.add(id);
      this.checkAccessActive();
    }
    return r;
  }

  async submitRequest(req: NewRequest): Promise<boolean> {
    const r = await this.requestNow(req);
    if (r) this.dialog = null;
    return !!r;
  }

  async toggleFavourite(bundle: string, favourite: boolean): Promise<void> {
    const s = await this.run(`fav:${bundle}`, () => this.backend.setFavourite(bundle, favourite));
    if (s) this.applySnapshot(s);
  }

  async resync(): Promise<void> {
    const s = await this.run('resync', () => this.backend.resync());
    if (s) {
      this.applySnapshot(s);
      this.notify(s.status.online ? 'Synced with the broker.' : 'Still offline — showing cached data.');
    }
  }

  /** Demo mode: stop or restart the in-process broker. */
  async setDemoBroker(up: boolean): Promise<void> {
    const since = this.toastSeq;
    const s = await this.run('demo-broker', () => this.backend.demoBroker(up));
    if (s) {
      this.applySnapshot(s);
      // What reconnecting did (told as the snapshots came in) stays on screen, after the news.
      const t = this.toast;
      const told = t && t.id > since && t.id === this.reconnectToastId ? t : null;
      if (up && told) this.notify(`Demo broker started again, back online. ${told.text}`, told.kind);
      else this.notify(up ? 'Demo broker started again: back online.' : 'Demo broker stopped: Firedoor is offline now. Try Break glass.');
    }
  }

  async signIn(urls: string[], token: string): Promise<void> {
    // Errors are shown inline by the sign-in form, so they are thrown, not toasted.
    this.pending.add('signin');
    try {
      const status = await this.backend.signIn(urls, token);
      this.applySnapshot({ ...(this.snapshot ?? emptySnapshot()), status });
      await this.refresh();
      const link = this.pendingLink;
      this.pendingLink = null;
      if (link && this.snapshot?.status.signed_in) this.followLink(link);
    } finally {
      this.pending.delete('signin');
    }
  }

  async signInSso(urls: string[]): Promise<void> {
    // As signIn: errors are shown inline by the sign-in form.
    this.pending.add('signin');
    try {
      const status = await this.backend.signInSso(urls);
      this.applySnapshot({ ...(this.snapshot ?? emptySnapshot()), status });
      await this.refresh();
    } finally {
      this.pending.delete('signin');
    }
  }

  async signOut(): Promise<void> {
    const status = await this.run('signout', () => this.backend.signOut());
    if (status) {
      this.dialog = null;
      this.quickOpen = false;
      this.toast = null;
      this.applySnapshot({ ...emptySnapshot(), status });
      void this.refresh();
    }
  }
}

function emptySnapshot(): Snapshot {
  return {
    status: {
      signed_in: false, demo: false, user: null, groups: [], broker_url: null, broker_urls: [],
      broker_url_in_use: null, online: false,
      offline_since: null, last_synced_at: null, clock_offset_ms: 0, last_error: null,
      audit_alert: null, oncall: [], sso: false, session_expires_at: null, session_ended: null,
    },
    bundles: [], favourites: [], my_requests: [], approvals: [], grants: [], outbox: [],
    break_glass: {
      device: {
        enrolled: false, device_id: null, device_name: null, broker_fingerprint: null, failed_attempts: 0,
        locked_until: null, pending_records: 0, chain_ok: true, chain_error: null, broker_key_change: null,
      },
      credentials: [],
    },
    incidents: [], ssh: [], replayed: [],
  };
}
