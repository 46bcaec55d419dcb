// issue 14: drills and readiness in the Break glass view.
import { waitFor } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import { DEMO_PASSPHRASE, demoSecret } from '../lib/fake';
import type { Readiness } from '../lib/types';
import { byId, queryId, renderApp } from './helpers';

const DRILL = {
  id: 'drl_1', secret: 'prod-db-root', title: 'Production DB root', version: 4,
  deadline: '2030-01-02T03:04:00Z',
};

describe('Drill banner', () => {
  it('proves access with the passphrase and shows the result, never a secret', { timeout: 20_000 }, async () => {
    const { user, backend } = await renderApp();
    backend.drills = [{ ...DRILL }];
    await user.click(byId('nav-breakglass'));
    const form = await waitFor(() => byId('drill-drl_1'));
    expect(form).toHaveTextContent('Drill: prove your break-glass access (no secret is shown)');
    expect(form).toHaveTextContent('Production DB root');
    expect(form).toHaveTextContent('2030-01-02 03:04 UTC');
    expect(byId('drill-passphrase-drl_1')).toHaveAttribute('type', 'password');

    // Empty: asked for, the backend is not called.
    await user.click(byId('drill-submit-drl_1'));
    expect(byId('drill-error-drl_1')).toHaveTextContent('Type your unlock passphrase.');
    expect(backend.callsTo('answerDrill')).toEqual([]);

    // A wrong passphrase: the backend's words, attempts counted like an unlock.
    await user.type(byId('drill-passphrase-drl_1'), 'not the passphrase');
    await user.click(byId('drill-submit-drl_1'));
    await waitFor(() => expect(byId('drill-error-drl_1')).toHaveTextContent('Wrong passphrase. 4 attempts left'));
    expect(byId('drill-passphrase-drl_1')).toHaveValue('');

    await user.type(byId('drill-passphrase-drl_1'), DEMO_PASSPHRASE);
    await user.click(byId('drill-submit-drl_1'));
    await waitFor(() => expect(byId('drill-passed')).toHaveTextContent('Drill passed'));
    expect(byId('drill-passed')).toHaveTextContent('No secret was shown.');
    expect(queryId('drill-drl_1')).toBeNull();
    expect(backend.callsTo('answerDrill')).toEqual([
      ['drl_1', 'not the passphrase'],
      ['drl_1', DEMO_PASSPHRASE],
    ]);
    expect(document.body.textContent).not.toContain(demoSecret('prod-db-root', 4));
  });

  it('shows a drill started while the view is open, with the next snapshot', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-breakglass'));
    await waitFor(() => expect(backend.callsTo('pendingDrills').length).toBeGreaterThan(0));
    expect(queryId('drill-drl_1')).toBeNull();
    // The broker's "drill started" event makes the app sync: a new snapshot.
    backend.drills = [{ ...DRILL }];
    backend.emit();
    const form = await waitFor(() => byId('drill-drl_1'));
    expect(form).toHaveTextContent('Drill: prove your break-glass access (no secret is shown)');
  });

  it('shows no banner without a pending drill or offline', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-breakglass'));
    await waitFor(() => expect(backend.callsTo('pendingDrills').length).toBe(1));
    expect(document.body.textContent).not.toContain('Drill: prove');

    const off = await renderApp((s) => {
      s.status.online = false;
      s.status.offline_since = new Date().toISOString();
    });
    off.backend.drills = [{ ...DRILL }];
    await off.user.click(off.getAllByTestId('nav-breakglass')[0]);
    expect(off.backend.callsTo('pendingDrills')).toEqual([]);
  });
});

const REPORT: Readiness = {
  at: '2030-01-01T00:00:00Z',
  secrets: [{
    name: 'prod-db-root', title: 'Production DB root', version: 4, ready: 1, required: 2, below: true,
    holders: [
      {
        user: 'alice', ready: true, on_call: true,
        devices: [{
          device_id: 'dev_a', device_name: 'alice-laptop', version: 4, not_after: '2030-01-05T00:00:00Z',
          fresh: true, expiring_soon: false, drill: 'passed', passed_at: '2030-01-01T10:00:00Z', ready: true,
        }],
      },
      { user: 'bob', ready: false, on_call: false, devices: [] },
    ],
    on_call_without_envelope: [{ user: 'dave', eligible: false }],
    last_drill: {
      id: 'drl_1', state: 'closed', version: 4, started_at: '2029-12-30T00:00:00Z', deadline: '2030-01-02T00:00:00Z',
      asked: 2, passed: 1, failed: 1,
    },
    next_drill_at: '2030-01-29T00:00:00Z',
    open_uses: [{
      id: 'use_1', secret: 'prod-db-root', version: 3, user: 'bob', mode: 'offline', reason: 'INC-9',
      unlocked_at: '2029-12-31T23:00:00Z', recorded_at: '2029-12-31T23:05:00Z', open: true, rotation: 'immediate',
      rotated: true, rotation_waits: false, may_classify: true,
    }],
  }],
};

describe('Readiness view', () => {
  it('is hidden from people the broker does not show it to', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-breakglass'));
    await waitFor(() => expect(backend.callsTo('readiness').length).toBe(1));
    expect(queryId('readiness')).toBeNull();
  });

  it('shows counts, who passed the last drill, and the gaps', async () => {
    const { user, backend } = await renderApp();
    backend.readinessReport = structuredClone(REPORT);
    await user.click(byId('nav-breakglass'));
    await waitFor(() => byId('readiness'));
    expect(byId('readiness-count-prod-db-root')).toHaveTextContent('1 of 2 required ready');
    expect(byId('readiness-below-prod-db-root')).toHaveTextContent('below required');
    expect(byId('readiness-drill-prod-db-root')).toHaveTextContent('Last drill closed, started 2029-12-30 00:00: 1 of 2 passed, 1 failed');
    expect(byId('readiness-drill-prod-db-root')).toHaveTextContent('next 2030-01-29 00:00');
    const rows = await waitFor(() => document.querySelectorAll('[data-testid="readiness-row-prod-db-root-alice"]'));
    expect(rows[0]).toHaveTextContent('alice (on call)');
    expect(rows[0]).toHaveTextContent('v4 fresh');
    expect(rows[0]).toHaveTextContent('passed 2030-01-01 10:00');
    expect(byId('readiness-row-prod-db-root-bob')).toHaveTextContent('no device');
    expect(byId('readiness-gaps-prod-db-root')).toHaveTextContent('dave (may not unlock it)');
    expect(byId('readiness-open-uses-prod-db-root')).toHaveTextContent("Not classified yet: bob's offline unlock of v3 (2029-12-31 23:00)");
  });
});
