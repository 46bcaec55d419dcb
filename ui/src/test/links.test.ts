import { act, waitFor } from '@testing-library/svelte';
import { describe, expect, it, vi } from 'vitest';
import { LINK_GUARD_MS } from '../lib/app.svelte';
import { signedOutSnapshot } from '../lib/fake';
import type { LinkEvent } from '../lib/types';
import { byId, queryId, renderApp, toastSays } from './helpers';

const requestLink = (over: Partial<{ reason: string; ticket: string; incident: string }> = {}): LinkEvent => ({
  kind: 'link',
  link: {
    kind: 'request', bundle: 'prod-db-write',
    reason: over.reason ?? 'Replication lag on db-2', ticket: over.ticket ?? 'OPS-12', incident: over.incident ?? null,
  },
});

describe('firedoor:// links', () => {
  it('a request link opens the filled-in form and sends nothing until the user clicks', async () => {
    const { backend, user } = await renderApp();
    backend.link(requestLink({ incident: 'inc_7' }));
    await waitFor(() => expect(byId('request-form')).toBeInTheDocument());
    expect(byId('request-from-link')).toHaveTextContent('Filled in from a link');
    expect(byId('request-justification')).toHaveValue('Replication lag on db-2');
    expect(byId('request-ticket')).toHaveValue('OPS-12');
    expect(byId('request-incident')).toHaveTextContent('inc_7');
    expect(backend.callsTo('requestBundle')).toHaveLength(0);
    // The buttons that act wait a moment, then the user sends it.
    expect(byId('request-submit')).toBeDisabled();
    await waitFor(() => expect(byId('request-submit')).toBeEnabled(), { timeout: LINK_GUARD_MS + 1000 });
    await user.click(byId('request-submit'));
    await waitFor(() => expect(backend.callsTo('requestBundle')).toHaveLength(1));
    expect(backend.callsTo('requestBundle')[0][0]).toMatchObject({
      bundle: 'prod-db-write', justification: 'Replication lag on db-2', ticket: 'OPS-12', incident: 'inc_7',
    });
  });

  it('the link the app was started with is followed once the window shows', async () => {
    const { backend } = await renderApp(() => {}, (b) => {
      b.link(requestLink());
      return b;
    });
    await waitFor(() => expect(byId('request-justification')).toHaveValue('Replication lag on db-2'));
    expect(backend.callsTo('linksReady')).toHaveLength(1);
  });

  it('ATTACK: a link cannot approve, deny or request by itself — it only shows the approval', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      const { backend } = await renderApp();
      // A hostile page fires link after link; whatever it tries, nothing is decided or sent.
      backend.link({ kind: 'link', link: { kind: 'approve', request: 'req_demo4' } });
      await waitFor(() => expect(byId('approval-req_demo4')).toHaveClass('highlight'));
      expect(byId('nav-approvals')).toHaveAttribute('aria-current', 'page');
      // Its Approve and Deny stay disabled for a moment, so a click the page timed
      // for something else cannot land on them.
      expect(byId('approve-req_demo4')).toBeDisabled();
      expect(byId('deny-req_demo4')).toBeDisabled();
      backend.link(requestLink());
      backend.link({ kind: 'invalid', message: 'A request link takes reason, ticket and incident, not "submit".' });
      await act(() => vi.advanceTimersByTimeAsync(5 * LINK_GUARD_MS));
      expect(backend.callsTo('approve')).toHaveLength(0);
      expect(backend.callsTo('deny')).toHaveLength(0);
      expect(backend.callsTo('requestBundle')).toHaveLength(0);
      expect(backend.state.approvals.map((r) => r.id)).toContain('req_demo4');
      await act(() => backend.link({ kind: 'link', link: { kind: 'approve', request: 'req_demo4' } }));
      await act(() => vi.advanceTimersByTimeAsync(2 * LINK_GUARD_MS));
      expect(byId('approve-req_demo4')).toBeEnabled();
      expect(backend.callsTo('approve')).toHaveLength(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('an approve link for a request that is not waiting for me says so', async () => {
    const { backend } = await renderApp();
    backend.link({ kind: 'link', link: { kind: 'approve', request: 'req_0123456789abcdef0123456789abcdef' } });
    await toastSays(/not waiting for your decision/);
    expect(byId('nav-approvals')).toHaveAttribute('aria-current', 'page');
  });

  it('a bad link shows a readable message', async () => {
    const { backend } = await renderApp();
    backend.link({ kind: 'invalid', message: 'The link\'s request "123" is not a request id (req_…).' });
    await toastSays('This Firedoor link cannot be opened: The link\'s request "123" is not a request id');
    backend.link({ kind: 'link', link: { kind: 'request', bundle: 'no-such-bundle', reason: null, ticket: null, incident: null } });
    await toastSays(/“no-such-bundle”, which you cannot request/);
    expect(queryId('request-form')).toBeNull();
  });

  it('an open link shows the item', async () => {
    const { backend } = await renderApp();
    backend.link({ kind: 'link', link: { kind: 'open', view: 'access', id: 'grt_demo1' } });
    await waitFor(() => expect(byId('nav-access')).toHaveAttribute('aria-current', 'page'));
  });

  it('a link that comes while signed out is followed after sign-in', async () => {
    const { backend, user } = await renderApp((s) => Object.assign(s, signedOutSnapshot()));
    backend.link(requestLink());
    await toastSays(/Sign in to open/);
    await user.type(byId('signin-url'), 'https://firedoor.example.com');
    await user.type(byId('signin-token'), 'fdt_alice');
    await user.click(byId('signin-submit'));
    await waitFor(() => expect(byId('request-justification')).toHaveValue('Replication lag on db-2'));
    expect(backend.callsTo('requestBundle')).toHaveLength(0);
  });
});

describe('Start at login', () => {
  it('the setting shows the state and turns it on and off', async () => {
    const { backend, user } = await renderApp();
    // In the account menu.
    await user.click(byId('account-menu'));
    const box = await waitFor(() => byId('autostart-toggle'));
    expect(box).not.toBeChecked();
    await user.click(box);
    await waitFor(() => expect(byId('autostart-toggle')).toBeChecked());
    expect(backend.autostartOn).toBe(true);
    await user.click(byId('autostart-toggle'));
    await waitFor(() => expect(byId('autostart-toggle')).not.toBeChecked());
    expect(backend.callsTo('setAutostart')).toEqual([[true], [false]]);
  });
});
