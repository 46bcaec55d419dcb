// The window's idle cost: one shared clock that ticks only while a countdown shows
// and the window can be seen; only countdown text changes each second; long lists
// render only the rows near the visible part.
import { fireEvent, waitFor } from '@testing-library/svelte';
import { tick } from 'svelte';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Clock } from '../lib/clock.svelte';
import type { Grant, Snapshot } from '../lib/types';
import { byId, grant, queryId, renderApp } from './helpers';

let hidden = false;
Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
function setHidden(h: boolean) {
  hidden = h;
  document.dispatchEvent(new Event('visibilitychange'));
}
afterEach(() => { hidden = false; });

const manyGrants = (n: number, now = Date.now()): Grant[] =>
  Array.from({ length: n }, (_, i) => grant(`g${i}`, new Date(now + 540_000 + i * 1000).toISOString(), {
    bundle: 'staging-shell', bundle_title: `Staging shell ${i}`,
  }));

const renderedGrantRows = () =>
  [...document.querySelectorAll('[data-testid^="grant-grt_"]')].map((e) => e.getAttribute('data-item-id'));

describe('The shared clock', () => {
  it('ticks only while held and while the document is visible', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const clock = new Clock();
    expect(clock.running).toBe(false);
    await vi.advanceTimersByTimeAsync(5000);
    expect(clock.now).toBe(1_000_000); // nothing shows a countdown: no timer at all
    expect(vi.getTimerCount()).toBe(0);

    const release = clock.hold();
    const release2 = clock.hold();
    expect(clock.running).toBe(true);
    expect(clock.now).toBe(1_005_000); // jumps to now when it starts
    await vi.advanceTimersByTimeAsync(1000);
    expect(clock.now).toBe(1_006_000);

    setHidden(true);
    expect(clock.running).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(clock.now).toBe(1_006_000);

    setHidden(false);
    expect(clock.running).toBe(true);
    expect(clock.now).toBe(1_036_000); // shown again: current at once

    release();
    release(); // twice is once
    expect(clock.running).toBe(true);
    release2();
    expect(clock.running).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    // Released: visibility changes start nothing.
    setHidden(true);
    setHidden(false);
    expect(clock.running).toBe(false);
  });
});

describe('Clock precision', () => {
  it('ticks every 10 s while everything shown is in minutes, each second while seconds are shown', async () => {
    vi.useFakeTimers({ now: 2_000_000 });
    const clock = new Clock();
    const coarse = clock.hold(false);
    expect(clock.period).toBe(10_000);
    await vi.advanceTimersByTimeAsync(9_999);
    expect(clock.now).toBe(2_000_000);
    await vi.advanceTimersByTimeAsync(1);
    expect(clock.now).toBe(2_010_000);
    const fine = clock.hold(true);
    expect(clock.period).toBe(1000);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(clock.now).toBe(2_011_000);
    fine();
    expect(clock.period).toBe(10_000);
    expect(vi.getTimerCount()).toBe(1);
    coarse();
    expect(clock.period).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a countdown in minutes holds the clock coarsely, one in its last 11 minutes finely', async () => {
    const NOW = Date.UTC(2026, 0, 10, 3, 0, 0);
    await renderApp((s) => { s.grants = [grant('g1', new Date(NOW + 3_600_000).toISOString())]; });
    vi.useFakeTimers({ now: NOW });
    const every = vi.spyOn(globalThis, 'setInterval');
    const lastPeriod = () => every.mock.calls.at(-1)?.[1];
    await fireEvent.click(byId('nav-access'));
    await tick();
    await vi.advanceTimersByTimeAsync(0);
    expect(vi.getTimerCount()).toBe(1);
    expect(lastPeriod()).toBe(10_000);
    // 49 minutes on: 11 minutes left, seconds are near.
    await vi.advanceTimersByTimeAsync(49 * 60_000);
    await tick();
    expect(lastPeriod()).toBe(1000);
    expect(vi.getTimerCount()).toBe(1);
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^11 min$/);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^0:10:00$/);
    every.mockRestore();
  });
});

describe('Countdowns', () => {
  it('the clock runs only while My access shows countdowns, and pauses while the window is hidden', async () => {
    const NOW = Date.UTC(2026, 0, 10, 3, 0, 0);
    // 5 minutes left: the last 10 minutes count down in seconds.
    await renderApp((s) => { s.grants = [grant('g1', new Date(NOW + 300_000).toISOString())]; });
    vi.useFakeTimers({ now: NOW });
    // Bundles: no countdown, no timer.
    expect(vi.getTimerCount()).toBe(0);
    await fireEvent.click(byId('nav-access'));
    await tick();
    await vi.advanceTimersByTimeAsync(0); // one-off timeouts of the click
    expect(vi.getTimerCount()).toBe(1);
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^0:05:00$/);

    setHidden(true);
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^0:05:00$/);
    setHidden(false);
    await tick();
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^0:04:50$/);
    await vi.advanceTimersByTimeAsync(1000);
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^0:04:49$/);

    await fireEvent.click(byId('nav-requests'));
    await tick();
    await vi.advanceTimersByTimeAsync(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('each second changes only the countdown text, not the rows around it', async () => {
    const NOW = Date.UTC(2026, 0, 10, 3, 0, 0);
    await renderApp((s) => {
      s.grants = manyGrants(5, NOW);
      s.ssh = [{ grant_id: 'grt_g1', in_agent: true, until: null, principals: ['p'], command: 'ssh a@b', problem: null }];
    });
    vi.useFakeTimers({ now: NOW });
    await fireEvent.click(byId('nav-access'));
    await tick();
    const list = byId('grants-list');
    const rowsBefore = [...list.children];
    const records: MutationRecord[] = [];
    const mo = new MutationObserver((r) => records.push(...r));
    mo.observe(list, { subtree: true, childList: true, attributes: true, characterData: true });
    await vi.advanceTimersByTimeAsync(1000);
    records.push(...mo.takeRecords());
    mo.disconnect();

    expect(records.length).toBeGreaterThanOrEqual(5);
    for (const r of records) {
      expect(r.type).toBe('characterData');
      const host = r.target.parentElement!;
      // The big countdown of a row, or the ssh line's "in your ssh-agent · 59m".
      expect(host.matches('[data-testid^="countdown-"], [data-testid^="ssh-"]')).toBe(true);
    }
    expect([...list.children]).toEqual(rowsBefore);
    expect(byId('countdown-grt_g0')).toHaveTextContent(/^0:08:59$/);
  });
});

describe('Long lists', () => {
  it('render only the rows near the visible part of 1000 grants', async () => {
    await renderApp((s) => { s.grants = manyGrants(1000); });
    await fireEvent.click(byId('nav-access'));
    await tick();
    const rows = renderedGrantRows();
    expect(rows.length).toBeGreaterThan(5);
    expect(rows.length).toBeLessThan(40);
    expect(rows[0]).toBe('grt_g0');
    // The rows that are not rendered still take their room (a spacer), so the
    // scrollbar is right.
    const list = byId('grants-list');
    expect(list.dataset.rows).toBe('1000');
    expect(parseFloat(list.style.paddingBottom)).toBeGreaterThan(900 * 30);
    // Rendered rows keep their buttons and test ids.
    expect(byId('creds-grt_g0')).toBeInTheDocument();
    expect(queryId('grant-grt_g999')).toBeNull();
    // The nav still counts them all.
    expect(byId('nav-access')).toHaveTextContent('1000');
  });

  it('a highlighted item far down the list (a clicked notification) is rendered and scrolled to', async () => {
    const spy = vi.spyOn(Element.prototype, 'scrollIntoView');
    const { backend } = await renderApp((s) => { s.grants = manyGrants(1000); });
    expect(queryId('grant-grt_g900')).toBeNull();
    backend.open({ view: 'access', id: 'grt_g900' });
    await waitFor(() => expect(byId('grant-grt_g900')).toHaveClass('highlight'));
    await waitFor(() => expect(spy.mock.contexts).toContain(byId('grant-grt_g900')));
    expect(renderedGrantRows().length).toBeLessThan(40);
    expect(queryId('grant-grt_g0')).toBeNull();
  });

  it('virtualises my requests and approvals too, and highlights an approval not rendered yet', async () => {
    const { backend, user } = await renderApp((s) => {
      const base = s.my_requests[0];
      const reqs: Snapshot['my_requests'] = Array.from({ length: 500 }, (_, i) => ({
        ...base, id: `req_p${i}`, state: 'pending', justification: `bench ${i}`,
      }));
      s.my_requests = reqs;
      const a = s.approvals[0];
      s.approvals = Array.from({ length: 500 }, (_, i) => ({ ...a, id: `req_a${i}`, justification: `approve ${i}` }));
    });
    await user.click(byId('nav-requests'));
    expect(byId('requests-list').dataset.rows).toBe('500');
    expect(document.querySelectorAll('[data-testid^="myreq-"]').length).toBeLessThan(40);
    expect(byId('myreq-req_p0')).toBeInTheDocument();

    backend.open({ view: 'approvals', id: 'req_a420' });
    await waitFor(() => expect(byId('approval-req_a420')).toHaveClass('highlight'));
    expect(byId('approve-req_a420')).toBeInTheDocument();
    expect(document.querySelectorAll('[data-testid^="approval-req_a"]').length).toBeLessThan(40);
  });
});
