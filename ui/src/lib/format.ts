// Pure formatting and filtering helpers: no Svelte, no backend, easy to test.

import type {
  AlertAudience, AppStatus, Bundle, CredentialItem, FlowTerms, Grant, MyOnCall, SealedCredential, SealedState,
} from './types';

const pad = (n: number) => String(n).padStart(2, '0');

/** Local wall-clock time of an RFC 3339 timestamp as HH:MM. */
export function hhmm(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** "14:02" today, "2026-03-04 14:02" otherwise (local time). */
export function dateTime(iso: string, now: number = Date.now()): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  const today = new Date(now);
  const sameDay = d.getFullYear() === today.getFullYear()
    && d.getMonth() === today.getMonth() && d.getDate() === today.getDate();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return sameDay ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

/** A duration in seconds, human-readable and short: "4h", "1h 30m", "45m", "2d", "30s". */
export function humanDuration(secs: number): string {
  if (!Number.isFinite(secs) || secs <= 0) return '0m';
  const s = Math.round(secs);
  if (s < 60) return `${s}s`;
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const parts: string[] = [];
  if (d) parts.push(`${d}d`);
  if (h) parts.push(`${h}h`);
  if (m) parts.push(`${m}m`);
  return parts.length ? parts.join(' ') : `${s}s`;
}

/** Milliseconds left until `expiresAt`, measured on the broker's clock. */
export function remainingMs(expiresAt: string, nowMs: number, clockOffsetMs: number): number {
  const end = new Date(expiresAt).getTime();
  if (Number.isNaN(end)) return 0;
  return end - (nowMs + clockOffsetMs);
}

/** H:MM:SS (hours unpadded), or "expired" once nothing is left. */
export function countdown(ms: number): string {
  if (!(ms > 0)) return 'expired';
  // More than 10 minutes left: minutes are enough, and an idle window then changes
  // (and repaints) once a minute instead of every second.
  if (ms > 10 * 60_000) {
    const mins = Math.ceil(ms / 60_000);
    const hh = Math.floor(mins / 60);
    return hh > 0 ? `${hh} h ${pad(mins % 60)} min` : `${mins} min`;
  }
  const total = Math.ceil(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return `${h}:${pad(m)}:${pad(s)}`;
}

/** "Offline since 14:02 · last synced 14:01" (local times). */
export function offlineText(status: Pick<AppStatus, 'offline_since' | 'last_synced_at'>): string {
  const since = status.offline_since ? `Offline since ${hhmm(status.offline_since)}` : 'Offline';
  const synced = status.last_synced_at ? `last synced ${hhmm(status.last_synced_at)}` : 'never synced';
  return `${since} · ${synced}`;
}

/** The terms of a flow as short labels, in the order they matter. */
export function termLabels(t: FlowTerms): string[] {
  const out: string[] = [];
  if (t.break_glass) out.push('BREAK GLASS', 'alerts security');
  out.push(`max ${humanDuration(t.max_duration_secs)}`);
  out.push(t.approvals > 0 ? `approvals: ${t.approvals}` : 'automatic');
  if (t.justification_required) out.push('justification required');
  if (t.ticket_required) out.push('ticket required');
  return out;
}

/** Whether requesting needs a form (anything the user must type). */
export function needsForm(t: FlowTerms): boolean {
  return t.justification_required || t.ticket_required;
}

/** Search-box filter: every word must appear in the name, title, description or a tag. */
export function filterBundles(bundles: Bundle[], query: string): Bundle[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return bundles;
  return bundles.filter((b) => {
    const hay = [b.name, b.title, b.description, ...b.tags].join('\n').toLowerCase();
    return words.every((w) => hay.includes(w));
  });
}

/** Favourites first; otherwise the backend's order is kept. */
export function sortFavouritesFirst(bundles: Bundle[], favourites: string[]): Bundle[] {
  const fav = new Set(favourites);
  return bundles
    .map((b, i) => ({ b, i, f: fav.has(b.name) ? 0 : 1 }))
    .sort((x, y) => x.f - y.f || x.i - y.i)
    .map((x) => x.b);
}

function isSubsequence(needle: string, hay: string): boolean {
  let i = 0;
  for (const ch of hay) {
    if (ch === needle[i]) i++;
    if (i === needle.length) return true;
  }
  return needle.length === 0;
}

/** Whether `query` names the bundle exactly (its name or title, any case). */
export function namesBundle(b: Bundle, query: string): boolean {
  const q = query.trim().toLowerCase();
  return q !== '' && (b.name.toLowerCase() === q || b.title.toLowerCase() === q);
}

/**
 * Break glass is never the default match: break-glass bundles go after every other
 * one (order otherwise kept), unless the query names one exactly, which then comes
 * first.
 */
export function breakGlassLast(bundles: Bundle[], query: string): Bundle[] {
  const rank = (b: Bundle) => (!b.terms.break_glass ? 1 : namesBundle(b, query) ? 0 : 2);
  return bundles
    .map((b, i) => ({ b, i, r: rank(b) }))
    .sort((x, y) => x.r - y.r || x.i - y.i)
    .map((x) => x.b);
}

/** Quick-switcher ranking: prefix > substring > tag/description > letters in order;
 *  break glass last unless named (see {@link breakGlassLast}). */
export function fuzzyBundles(bundles: Bundle[], query: string, favourites: string[] = []): Bundle[] {
  return breakGlassLast(rankBundles(bundles, query, favourites), query);
}

function rankBundles(bundles: Bundle[], query: string, favourites: string[]): Bundle[] {
  const q = query.trim().toLowerCase();
  const ordered = sortFavouritesFirst(bundles, favourites);
  if (!q) return ordered;
  const scored: { b: Bundle; score: number; i: number }[] = [];
  ordered.forEach((b, i) => {
    const name = b.name.toLowerCase();
    const title = b.title.toLowerCase();
    const rest = [b.description, ...b.tags].join('\n').toLowerCase();
    const words = q.split(/\s+/).filter(Boolean);
    let score = 0;
    if (name.startsWith(q) || title.startsWith(q)) score = 4;
    else if (name.includes(q) || title.includes(q)) score = 3;
    else if (words.every((w) => name.includes(w) || title.includes(w) || rest.includes(w))) score = 2;
    else if (isSubsequence(q.replace(/\s+/g, ''), name) || isSubsequence(q.replace(/\s+/g, ''), title)) score = 1;
    if (score > 0) scored.push({ b, score, i });
  });
  return scored.sort((x, y) => y.score - x.score || x.i - y.i).map((x) => x.b);
}

/** The live grant of a bundle (active or being provisioned), the one that lasts
 *  longest when there are several; null when there is none. */
export function activeGrantOf(bundle: string, grants: Grant[]): Grant | null {
  let best: Grant | null = null;
  for (const g of grants) {
    if (g.bundle !== bundle || (g.state !== 'active' && g.state !== 'provisioning')) continue;
    if (!best || g.expires_at > best.expires_at) best = g;
  }
  return best;
}

/** Time left, short: "1:58" (hours and minutes) from an hour up, "12 min", "40 s". */
export function leftText(ms: number): string {
  if (!(ms > 0)) return '0 s';
  const totalMin = Math.floor(ms / 60_000);
  if (totalMin >= 60) return `${Math.floor(totalMin / 60)}:${pad(totalMin % 60)}`;
  if (totalMin >= 1) return `${totalMin} min`;
  return `${Math.ceil(ms / 1000)} s`;
}

/** "active · 1:58 left" (or "provisioning…") for a bundle's live grant. */
export function activeLabel(g: Grant, nowMs: number, clockOffsetMs: number): string {
  if (g.state === 'provisioning') return 'active soon · provisioning';
  return `active · ${leftText(remainingMs(g.expires_at, nowMs, clockOffsetMs))} left`;
}

const hostPort = (host: string, port: number | null) => {
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return port != null ? `${h}:${port}` : h;
};
const shellQuote = (s: string) => (/^[A-Za-z0-9_.@:/=+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/**
 * A ready command that connects with a credential, built from the fields the broker
 * returned (never the secret: the client asks for it): `psql "postgresql://user@host:port/db"`,
 * `mysql -h host -P port -u user -p db`, `ssh user@host`. Null when the item names no
 * host, or its kind has no command line.
 */
export function connectionCommand(item: CredentialItem): string | null {
  const host = item.host?.trim();
  if (!host) return null;
  const user = item.username;
  switch (item.kind) {
    case 'postgres': {
      const auth = user ? `${encodeURIComponent(user)}@` : '';
      const db = item.resource ? `/${encodeURIComponent(item.resource)}` : '';
      return `psql "postgresql://${auth}${hostPort(host, item.port)}${db}"`;
    }
    case 'mysql': {
      const parts = ['mysql', '-h', shellQuote(host)];
      if (item.port != null) parts.push('-P', String(item.port));
      if (user) parts.push('-u', shellQuote(user));
      parts.push('-p');
      if (item.resource) parts.push(shellQuote(item.resource));
      return parts.join(' ');
    }
    case 'ssh': {
      const target = user ? `${user}@${host}` : host;
      return item.port != null && item.port !== 22 ? `ssh -p ${item.port} ${shellQuote(target)}` : `ssh ${shellQuote(target)}`;
    }
    default:
      return null;
  }
}

/** Who a break-glass request alerts, in words: "group security and every admin". */
export function alertAudienceText(a: AlertAudience | null | undefined): string {
  if (!a) return 'security and the admins (the broker did not say who exactly)';
  const parts: string[] = [];
  if (a.groups.length) parts.push(`${a.groups.length === 1 ? 'group' : 'groups'} ${a.groups.join(', ')}`);
  if (a.users.length) parts.push(a.users.join(', '));
  if (a.oncall.length) parts.push(`whoever is on call for ${a.oncall.join(', ')}`);
  if (a.admins) parts.push('every admin');
  if (parts.length === 0) return 'nobody besides the audit log';
  return parts.length === 1 ? parts[0] : `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}`;
}

// ---- Offline break glass -------------------------------------------------------

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** A coarse span, rounded down to its largest unit: "45 s", "12 min", "3 h", "1 day", "6 days". */
export function spanText(ms: number): string {
  const v = Math.max(0, ms);
  if (v < MIN) return `${Math.floor(v / 1000)} s`;
  if (v < HOUR) return `${Math.floor(v / MIN)} min`;
  if (v < DAY) return `${Math.floor(v / HOUR)} h`;
  return plural(Math.floor(v / DAY), 'day', 'days');
}

/** "3 h ago", "2 days ago"; "just now" under a minute (or when the clocks disagree). */
export function agoText(ms: number): string {
  return ms < MIN ? 'just now' : `${spanText(ms)} ago`;
}

/** Time still left, rounded down: "6 more days", "3 more hours", "12 more min". */
export function moreText(ms: number): string {
  if (ms >= DAY) return plural(Math.floor(ms / DAY), 'more day', 'more days');
  if (ms >= HOUR) return plural(Math.floor(ms / HOUR), 'more hour', 'more hours');
  if (ms >= MIN) return `${Math.floor(ms / MIN)} more min`;
  return 'less than a minute more';
}

/**
 * The state to show for a sealed credential now. The backend's state is authoritative;
 * only a 'valid' envelope whose window has passed since the snapshot shows as 'expired'
 * (time only moves forward; the backend refuses it anyway). A just-sealed envelope is
 * never shown as "not valid yet" because of a second of clock lag.
 */
export function sealedState(c: SealedCredential, nowMs: number, clockOffsetMs: number): SealedState {
  if (c.state === 'valid' && remainingMs(c.not_after, nowMs, clockOffsetMs) <= 0) return 'expired';
  return c.state;
}

/**
 * One line on how fresh a sealed envelope is:
 * "sealed 3 h ago, valid 6 more days", "expired 2 days ago — connect to refresh",
 * "not valid yet — becomes valid in 2 h", "refused: <problem>".
 */
export function sealedFreshness(c: SealedCredential, nowMs: number, clockOffsetMs: number): string {
  const state = sealedState(c, nowMs, clockOffsetMs);
  switch (state) {
    case 'invalid':
      return `refused: ${c.problem?.trim() || 'the sealed envelope did not verify'}`;
    case 'expired': {
      const since = -remainingMs(c.not_after, nowMs, clockOffsetMs);
      return since >= 0 ? `expired ${agoText(since)} — connect to refresh` : 'expired — connect to refresh';
    }
    case 'not_yet_valid': {
      const until = remainingMs(c.not_before, nowMs, clockOffsetMs);
      return until > 0 ? `not valid yet — becomes valid in ${spanText(until)}` : 'not valid yet';
    }
    default: {
      const sealedAgo = -remainingMs(c.sealed_at, nowMs, clockOffsetMs);
      const left = remainingMs(c.not_after, nowMs, clockOffsetMs);
      return `sealed ${agoText(sealedAgo)}, valid ${moreText(left)}`;
    }
  }
}

/** A lock-out's time left, to the second: "14 min 3 s", "45 s", "1 h 2 min". */
export function lockoutText(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return m > 0 ? `${h} h ${m} min` : `${h} h`;
  if (m > 0) return s > 0 ? `${m} min ${s} s` : `${m} min`;
  return `${s} s`;
}

/** "2 unlock records waiting to reach the broker". */
export function pendingRecordsText(n: number): string {
  return `${plural(n, 'unlock record', 'unlock records')} waiting to reach the broker`;
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** When an on-call shift ends, local time: "Fri 09:00" within the coming week,
 *  "2026-03-04 09:00" further out. */
export function untilText(iso: string, now: number = Date.now()): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (d.getTime() - now < 6 * 86_400_000) return `${WEEKDAYS[d.getDay()]} ${time}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

/** When a synced schedule's provider was last read, local time: "14:02" today,
 *  otherwise as {@link untilText} says a time ("Thu 14:02"). */
export function asOfText(iso: string, now: number = Date.now()): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  const today = new Date(now);
  if (d.toDateString() === today.toDateString()) return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return untilText(iso, d.getTime());
}

/** The on-call shifts still running at `now` (the list is from the last sync),
 *  as "On call: Payments primary until Fri 09:00"; a schedule synced from
 *  PagerDuty or Opsgenie adds when it was read ("· as of 14:02"), and "(stale)"
 *  when the broker could not read it lately (the last known state). */
export function onCallLines(oncall: MyOnCall[] | undefined, now: number = Date.now()): string[] {
  return (oncall ?? [])
    .filter((o) => o.until === null || new Date(o.until).getTime() > now)
    .map((o) => {
      const until = o.until === null ? '' : ` until ${untilText(o.until, now)}`;
      const asOf = o.as_of ? ` · as of ${asOfText(o.as_of, now)}${o.stale ? ' (stale)' : ''}` : '';
      return `On call: ${o.title}${until}${asOf}`;
    });
}

/** Who may decide a request, as the console says it: "sre-leads can approve",
 *  "bob, erin or security can approve"; null when the policy names nobody. */
export function approversText(a: { users: string[]; groups: string[]; oncall: string[] } | null | undefined): string | null {
  if (!a) return null;
  const names = [...a.users, ...a.groups, ...a.oncall.map((s) => `whoever is on call for ${s}`)];
  if (names.length === 0) return null;
  const list = names.length === 1 ? names[0] : `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`;
  return `${list} can approve`;
}
