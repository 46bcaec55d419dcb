import { describe, expect, it } from 'vitest';
import {
  countdown, filterBundles, fuzzyBundles, hhmm, humanDuration, needsForm, offlineText, remainingMs,
  sortFavouritesFirst, termLabels,
} from '../lib/format';
import { bundle } from './helpers';

const local = (h: number, m: number) => new Date(2026, 2, 4, h, m, 30).toISOString();

describe('format', () => {
  it('formats countdowns as H:MM:SS and "expired" at zero', () => {
    expect(countdown(3_600_000)).toBe('1:00:00');
    expect(countdown(3_599_000)).toBe('0:59:59');
    expect(countdown(59_001)).toBe('0:01:00');
    expect(countdown(12 * 3_600_000 + 5 * 60_000 + 9_000)).toBe('12:05:09');
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
    }).terms)).toEqual(['BREAK GLASS', 'max 30m', 'approvals: 1', 'justification required', 'ticket required']);
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
});
