import { describe, expect, it } from 'vitest';
import {
  agoText, countdown, filterBundles, fuzzyBundles, hhmm, humanDuration, lockoutText, moreText, needsForm,
  asOfText, offlineText, onCallLines, pendingRecordsText, remainingMs, sealedFreshness, sealedState, sortFavouritesFirst, spanText,
  termLabels, untilText,
} from '../lib/format';
import type { SealedCredential } from '../lib/types';
import { bundle } from './helpers';

const local = (h: number, m: number) => new Date(2026, 2, 4, h, m, 30).toISOString();

describe('format', () => {
  it('formats countdowns in minutes above 10 min, as H:MM:SS below, and "expired" at zero', () => {
    // Minutes, rounded up (never "0 min" while time is left).
    expect(countdown(3_600_000)).toBe('1 h 00 min');
    expect(countdown(3_599_000)).toBe('1 h 00 min');
    expect(countdown(3_540_000)).toBe('59 min');
    expect(countdown(12 * 3_600_000 + 5 * 60_000 + 9_000)).toBe('12 h 06 min');
    expect(countdown(10 * 60_000 + 1)).toBe('11 min');
    // The last 10 minutes count seconds.
    expect(countdown(10 * 60_000)).toBe('0:10:00');
    expect(countdown(599_000)).toBe('0:09:59');
    expect(countdown(59_001)).toBe('0:01:00');
    expect(countdown(1)).toBe('0:00:01');
    expect(countdown(0)).toBe('expired');
    expect(countdown(-5000)).toBe('expired');
  });

  it('measures remaining time on the broker clock', () => {
    const now = Date.UTC(2026, 0, 1, 12, 0, 0);
    const exp = new Date(now + 60_000).toISOString();
    expect(remainingMs(exp, now, 0)).toBe(60_000);
    // The broker is 10 s ahead: 10 s less remain.
    expect(remainingMs(exp, now, 10_000)).toBe(50_000);
    expect(remainingMs(exp, now, -10_000)).toBe(70_000);
  });

  it('writes durations the short human way', () => {
    expect(humanDuration(4 * 3600)).toBe('4h');
    expect(humanDuration(5400)).toBe('1h 30m');
    expect(humanDuration(1800)).toBe('30m');
    expect(humanDuration(86400)).toBe('1d');
    expect(humanDuration(45)).toBe('45s');
  });

  it('formats the offline banner with local HH:MM', () => {
    expect(offlineText({ offline_since: local(14, 2), last_synced_at: local(14, 1) }))
      .toBe('Offline since 14:02 · last synced 14:01');
    expect(offlineText({ offline_since: local(9, 5), last_synced_at: null }))
      .toBe('Offline since 09:05 · never synced');
    expect(hhmm(local(0, 0))).toBe('00:00');
  });

  it('lists the terms that matter', () => {
    expect(termLabels(bundle('a').terms)).toEqual(['max 4h', 'automatic']);
    expect(termLabels(bundle('b', {
      approvals: 1, justification_required: true, ticket_required: true, break_glass: true, max_duration_secs: 1800,
    }).terms)).toEqual(['BREAK GLASS', 'alerts security', 'max 30m', 'approvals: 1', 'justification required', 'ticket required']);
    expect(needsForm(bundle('a').terms)).toBe(false);
    expect(needsForm(bundle('a', { ticket_required: true }).terms)).toBe(true);
  });

  it('filters on name, title, description and tags, every word', () => {
    const list = [
      bundle('pg', {}, { title: 'Postgres', description: 'orders db', tags: ['prod'] }),
      bundle('k8s', {}, { title: 'Kubernetes', description: 'cluster', tags: ['incident'] }),
    ];
    expect(filterBundles(list, '').map((b) => b.name)).toEqual(['pg', 'k8s']);
    expect(filterBundles(list, 'POSTGRES').map((b) => b.name)).toEqual(['pg']);
    expect(filterBundles(list, 'orders').map((b) => b.name)).toEqual(['pg']);
    expect(filterBundles(list, 'incident').map((b) => b.name)).toEqual(['k8s']);
    expect(filterBundles(list, 'k8s cluster').map((b) => b.name)).toEqual(['k8s']);
    expect(filterBundles(list, 'k8s orders')).toEqual([]);
  });

  it('keeps order but puts favourites first', () => {
    const list = [bundle('a'), bundle('b'), bundle('c'), bundle('d')];
    expect(sortFavouritesFirst(list, ['c', 'b']).map((b) => b.name)).toEqual(['b', 'c', 'a', 'd']);
  });

  it('ranks quick-switcher matches: prefix, substring, then letters in order', () => {
    const list = [
      bundle('staging-ssh', {}, { title: 'Staging SSH' }),
      bundle('prod-db-read', {}, { title: 'Prod DB read' }),
      bundle('db-admin', {}, { title: 'DB admin' }),
    ];
    expect(fuzzyBundles(list, 'db').map((b) => b.name)).toEqual(['db-admin', 'prod-db-read']);
    expect(fuzzyBundles(list, 'pdr').map((b) => b.name)).toEqual(['prod-db-read']);
    expect(fuzzyBundles(list, 'zzz')).toEqual([]);
    expect(fuzzyBundles(list, '', ['db-admin'])[0].name).toBe('db-admin');
  });

  it('writes coarse spans, "ago" and "more" rounded down', () => {
    const s = 1000, m = 60_000, h = 3_600_000, d = 86_400_000;
    expect(spanText(45 * s)).toBe('45 s');
    expect(spanText(12 * m + 59 * s)).toBe('12 min');
    expect(spanText(3 * h + 59 * m)).toBe('3 h');
    expect(spanText(d)).toBe('1 day');
    expect(spanText(6 * d + 23 * h)).toBe('6 days');
    expect(spanText(-5 * s)).toBe('0 s');
    expect(agoText(59 * s)).toBe('just now');
    expect(agoText(-h)).toBe('just now'); // clocks disagree: never "in the future ago"
    expect(agoText(2 * d + h)).toBe('2 days ago');
    expect(moreText(6 * d + 21 * h)).toBe('6 more days');
    expect(moreText(d)).toBe('1 more day');
    expect(moreText(h + 1)).toBe('1 more hour');
    expect(moreText(5 * h)).toBe('5 more hours');
    expect(moreText(12 * m)).toBe('12 more min');
    expect(moreText(30 * s)).toBe('less than a minute more');
  });

  it('describes how fresh a sealed envelope is, on the broker clock', () => {
    const now = Date.UTC(2026, 5, 1, 12, 0, 0);
    const h = 3_600_000, d = 86_400_000;
    const at = (ms: number) => new Date(now + ms).toISOString();
    const cred = (over: Partial<SealedCredential>): SealedCredential => ({
      name: 'db', title: 'DB', description: '', version: 1, sealed_at: at(-3 * h), not_before: at(-3 * h),
      not_after: at(7 * d - 3 * h), state: 'valid', problem: null, ...over,
    });
    expect(sealedFreshness(cred({}), now, 0)).toBe('sealed 3 h ago, valid 6 more days');
    // The broker is 2 h ahead: sealed 5 h ago by its clock.
    expect(sealedFreshness(cred({}), now, 2 * h)).toBe('sealed 5 h ago, valid 6 more days');
    expect(sealedFreshness(cred({ sealed_at: at(-20_000), not_after: at(5 * h) }), now, 0))
      .toBe('sealed just now, valid 5 more hours');

    const expired = cred({ sealed_at: at(-9 * d), not_before: at(-9 * d), not_after: at(-2 * d), state: 'expired' });
    expect(sealedFreshness(expired, now, 0)).toBe('expired 2 days ago — connect to refresh');
    expect(sealedFreshness(cred({ not_after: at(d), state: 'expired' }), now, 0)).toBe('expired — connect to refresh');

    const early = cred({ sealed_at: at(-60_000), not_before: at(2 * h + 30_000), state: 'not_yet_valid' });
    expect(sealedFreshness(early, now, 0)).toBe('not valid yet — becomes valid in 2 h');

    expect(sealedFreshness(cred({ state: 'invalid', problem: 'signature does not match the pinned broker key' }), now, 0))
      .toBe('refused: signature does not match the pinned broker key');
    expect(sealedFreshness(cred({ state: 'invalid', problem: null }), now, 0))
      .toBe('refused: the sealed envelope did not verify');
  });

  it('shows a "valid" envelope whose window has passed as expired', () => {
    const now = Date.UTC(2026, 5, 1, 12, 0, 0);
    const c: SealedCredential = {
      name: 'db', title: 'DB', description: '', version: 1, sealed_at: new Date(now - 8 * 86_400_000).toISOString(),
      not_before: new Date(now - 8 * 86_400_000).toISOString(), not_after: new Date(now - 3 * 3_600_000).toISOString(),
      state: 'valid', problem: null,
    };
    expect(sealedState(c, now, 0)).toBe('expired');
    expect(sealedFreshness(c, now, 0)).toBe('expired 3 h ago — connect to refresh');
    expect(sealedState(c, now - 4 * 3_600_000, 0)).toBe('valid');
    // Sealed a moment "in the future" by our clock: still valid, as the backend says.
    expect(sealedState({ ...c, not_before: new Date(now + 900).toISOString(), not_after: new Date(now + 3_600_000).toISOString() }, now, 0))
      .toBe('valid');
    expect(sealedState({ ...c, state: 'invalid' }, now - 4 * 3_600_000, 0)).toBe('invalid');
  });

  it('writes lock-out time to the second and pending records in words', () => {
    expect(lockoutText(14 * 60_000 + 3000)).toBe('14 min 3 s');
    expect(lockoutText(14 * 60_000 + 2001)).toBe('14 min 3 s'); // rounds up, like countdown()
    expect(lockoutText(15 * 60_000)).toBe('15 min');
    expect(lockoutText(45_000)).toBe('45 s');
    expect(lockoutText(3_720_000)).toBe('1 h 2 min');
    expect(lockoutText(-1)).toBe('0 s');
    expect(pendingRecordsText(1)).toBe('1 unlock record waiting to reach the broker');
    expect(pendingRecordsText(2)).toBe('2 unlock records waiting to reach the broker');
  });

  it('says until when someone is on call, and drops a shift that has ended', () => {
    // Wednesday 4 March 2026, 12:00 local.
    const now = new Date(2026, 2, 4, 12, 0, 0).getTime();
    const fri = new Date(2026, 2, 6, 9, 0, 0).toISOString();
    const later = new Date(2026, 2, 20, 9, 0, 0).toISOString();
    expect(untilText(fri, now)).toBe('Fri 09:00');
    expect(untilText(later, now)).toBe('2026-03-20 09:00');
    expect(untilText('garbage', now)).toBe('—');
    const oncall = [
      { schedule: 'payments-primary', title: 'Payments primary', until: fri },
      { schedule: 'db', title: 'Databases', until: null },
      { schedule: 'old', title: 'Ended', until: new Date(2026, 2, 4, 11, 0, 0).toISOString() },
    ].map((o) => ({ ...o, as_of: null, stale: false }));
    expect(onCallLines(oncall, now)).toEqual(['On call: Payments primary until Fri 09:00', 'On call: Databases']);
    expect(onCallLines(undefined, now)).toEqual([]);
  });

  it('says as of when a synced schedule was read, and when that is stale', () => {
    // Wednesday 4 March 2026, 14:30 local.
    const now = new Date(2026, 2, 4, 14, 30, 0).getTime();
    const fri = new Date(2026, 2, 6, 9, 0, 0).toISOString();
    const read = new Date(2026, 2, 4, 14, 2, 0).toISOString();
    const yesterday = new Date(2026, 2, 3, 22, 15, 0).toISOString();
    expect(asOfText(read, now)).toBe('14:02');
    expect(asOfText(yesterday, now)).toBe('Tue 22:15');
    const oncall = [
      { schedule: 'payments-primary', title: 'payments-primary', until: fri, as_of: read, stale: false },
      { schedule: 'sre', title: 'SRE secondary', until: null, as_of: yesterday, stale: true },
      { schedule: 'db', title: 'Databases', until: null, as_of: null, stale: false },
    ];
    expect(onCallLines(oncall, now)).toEqual([
      'On call: payments-primary until Fri 09:00 · as of 14:02',
      'On call: SRE secondary · as of Tue 22:15 (stale)',
      'On call: Databases',
    ]);
  });
});
