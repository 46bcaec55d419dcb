import { fireEvent, screen, waitFor, within } from '@testing-library/svelte';
import { tick } from 'svelte';
import { describe, expect, it, vi } from 'vitest';
import { byId, grant, queryId, renderApp, toastSays } from './helpers';

describe('My access', () => {
  it('counts down on the broker clock (clock_offset_ms): minutes, then seconds in the last 10 min', async () => {
    const NOW = Date.UTC(2026, 0, 10, 3, 0, 0);
    // Expires 12 min 5 s after NOW on our clock; the broker is 5 s ahead, so 12:00 is left.
    const { backend } = await renderApp((s) => {
      s.status.clock_offset_ms = 5000;
      s.grants = [grant('g1', new Date(NOW + 725_000).toISOString())];
    });
    vi.useFakeTimers({ now: NOW });
    await fireEvent.click(byId('nav-access'));
    await tick();
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^12 min$/);
    await vi.advanceTimersByTimeAsync(1000);
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^12 min$/);
    await vi.advanceTimersByTimeAsync(59_000);
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^11 min$/);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^0:10:00$/);
    await vi.advanceTimersByTimeAsync(1000);
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^0:09:59$/);

    // A new offset from the backend applies at once.
    backend.state.status.clock_offset_ms = 65_000;
    backend.emit();
    await tick();
    await vi.advanceTimersByTimeAsync(1000);
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^0:08:58$/);

    await vi.advanceTimersByTimeAsync(3600_000);
    expect(byId('countdown-grt_g1')).toHaveTextContent(/^expired$/);
  });

  it('shows revoke_failed and revoking grants with their last error', async () => {
    const { user } = await renderApp((s) => {
      s.grants.push(grant('g2', new Date(Date.now() + 60_000).toISOString(), {
        state: 'revoking', last_error: 'postgres: connection reset',
      }));
    });
    await user.click(byId('nav-access'));
    const failed = byId('grant-grt_demo0');
    expect(failed).toHaveTextContent('revoke failed');
    expect(failed).toHaveTextContent('ssh: could not remove principal from staging-2 (connection timed out)');
    expect(byId('grant-grt_g2')).toHaveTextContent('revoking');
    expect(byId('grant-grt_g2')).toHaveTextContent('postgres: connection reset');
  });

  it('says an SSH grant\'s key is in the ssh-agent and for how long, or why not', async () => {
    const { user } = await renderApp((s) => {
      s.grants.push(grant('g3', new Date(Date.now() + 47 * 60_000 + 30_000).toISOString(), {
        bundle: 'payments-shell', bundle_title: 'Payments hosts',
      }));
      s.grants.push(grant('g4', new Date(Date.now() + 10 * 60_000).toISOString(), {
        bundle: 'payments-shell', bundle_title: 'Payments hosts',
      }));
      s.ssh = [
        { grant_id: 'grt_g3', in_agent: true, until: null, principals: ['payments-oncall'], command: 'ssh oncall@payments-1', problem: null },
        { grant_id: 'grt_g4', in_agent: false, until: null, principals: [], command: null, problem: 'no ssh-agent is running: start one' },
      ];
    });
    await user.click(byId('nav-access'));
    expect(byId('ssh-grt_g3')).toHaveTextContent('in your ssh-agent · 47m');
    expect(byId('ssh-grt_g3')).toHaveTextContent('ssh oncall@payments-1');
    expect(byId('ssh-grt_g4')).toHaveTextContent('no ssh-agent is running: start one');
    expect(queryId('ssh-grt_demo1')).toBeNull();
  });

  it('revokes only after confirmation', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-access'));
    await user.click(byId('revoke-grt_demo1'));
    expect(byId('confirm-no')).toBeInTheDocument();
    expect(backend.callsTo('revoke')).toEqual([]);
    await user.click(byId('confirm-no'));
    expect(queryId('confirm-yes')).toBeNull();
    expect(backend.callsTo('revoke')).toEqual([]);

    await user.click(byId('revoke-grt_demo1'));
    await user.click(byId('confirm-yes'));
    expect(backend.callsTo('revoke')).toEqual([['grt_demo1']]);
    await toastSays('Revoked Production database (read-only).');
    await waitFor(() => expect(queryId('grant-grt_demo1')).toBeNull());
  });

  it('extends by the bundle default duration, editable', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-access'));
    await user.click(byId('extend-grt_demo1'));
    const minutes = byId('extend-minutes');
    expect(minutes).toHaveValue(60); // prod-db-read's default is 1 h
    await user.clear(minutes);
    await user.type(minutes, '30');
    await user.click(byId('extend-submit'));
    expect(backend.callsTo('extend')).toEqual([['grt_demo1', 1800, undefined]]);
    await toastSays('Extended Production database (read-only) by 30 min.');
  });

  it('masks secrets until revealed, copies through the backend, re-masks after 30 s', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-access'));
    await user.click(byId('creds-grt_demo1'));
    expect(backend.callsTo('credentials')).toEqual([['grt_demo1']]);
    const modal = byId('creds-modal');
    await waitFor(() => expect(byId('secret-0')).toBeInTheDocument());
    expect(modal).toHaveTextContent('postgres');
    expect(modal).toHaveTextContent('db.prod.internal:5432');
    expect(modal).toHaveTextContent('fd_alice_emo1');
    expect(byId('secret-0')).toHaveTextContent(/^••••••••$/);
    expect(byId('secret-1')).toHaveTextContent(/^••••••••$/);
    expect(modal).not.toHaveTextContent('pg-S3cret-emo1');

    await user.click(byId('copy-0'));
    expect(backend.callsTo('copySecret')).toEqual([['pg-S3cret-emo1']]);
    await toastSays(/^Copied — clipboard clears in 30 s$/);
    expect(byId('secret-0')).toHaveTextContent(/^••••••••$/); // copying does not reveal

    vi.useFakeTimers();
    await fireEvent.click(byId('reveal-0'));
    expect(byId('secret-0')).toHaveTextContent(/^pg-S3cret-emo1$/);
    expect(byId('secret-1')).toHaveTextContent(/^••••••••$/);
    await vi.advanceTimersByTimeAsync(29_000);
    expect(byId('secret-0')).toHaveTextContent('pg-S3cret-emo1');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(byId('secret-0')).toHaveTextContent(/^••••••••$/);

    // Reveal toggles back too.
    await fireEvent.click(byId('reveal-1'));
    expect(byId('secret-1')).toHaveTextContent('demo-token-emo1');
    await fireEvent.click(byId('reveal-1'));
    expect(byId('secret-1')).toHaveTextContent(/^••••••••$/);
  });

  it('shows a credentials error inside the modal', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-access'));
    backend.failNext('credentials', { code: 'forbidden', message: 'The grant was revoked by carol.' });
    await user.click(byId('creds-grt_demo1'));
    await waitFor(() => expect(within(byId('creds-modal')).getByRole('alert'))
      .toHaveTextContent('The grant was revoked by carol.'));
  });

  it('lists queued outbox items as queued', async () => {
    const { user } = await renderApp((s) => {
      s.outbox = [{
        id: 'o1', kind: 'revoke', summary: 'Revoke Staging SSH', created_at: new Date().toISOString(),
        attempts: 2, last_error: 'connection refused', bundle: 'staging-ssh', grant_id: 'grt_demo0',
      }];
    });
    await user.click(byId('nav-access'));
    const row = byId('outbox-o1');
    expect(row).toHaveTextContent('Queued — will be sent when the broker is back');
    expect(row).toHaveTextContent('Revoke Staging SSH');
    expect(row).toHaveTextContent('connection refused');
    expect(screen.getAllByTestId(/^outbox-/)).toHaveLength(1);
  });
});
