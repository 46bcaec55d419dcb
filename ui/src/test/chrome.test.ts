// The window's chrome at 3 a.m.: sign-out behind a menu and a confirmation, queued
// actions that can be cancelled offline, what reconnecting did said in words, who can
// approve a request, and demo mode's per-run break-glass enrolment.
import { screen, waitFor, within } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import { approversText } from '../lib/format';
import { byId, queryId, renderApp, toastSays } from './helpers';

describe('Sign out', () => {
  it('lives in the account menu and asks first; staying signed in changes nothing', async () => {
    const { user, backend } = await renderApp((s) => { s.status.demo = false; });
    expect(queryId('sign-out')).toBeNull();
    await user.click(byId('account-menu'));
    expect(byId('account-menu-items')).toHaveTextContent('Signed in as alice');
    await user.click(byId('sign-out'));
    const dialog = byId('signout-dialog');
    expect(byId('signout-what')).toHaveTextContent('the sign-in is revoked at the broker and removed from the keyring');
    expect(dialog).toHaveTextContent('Access you hold (1 active) keeps running');
    expect(queryId('signout-demo')).toBeNull();
    await user.click(byId('signout-cancel'));
    expect(queryId('signout-dialog')).toBeNull();
    expect(backend.callsTo('signOut')).toHaveLength(0);
    expect(byId('nav-bundles')).toBeInTheDocument();
  });

  it('Escape closes the confirmation without signing out', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('account-menu'));
    await user.click(byId('sign-out'));
    expect(byId('signout-cancel')).toHaveFocus();
    await user.keyboard('{Escape}');
    expect(queryId('signout-dialog')).toBeNull();
    expect(backend.callsTo('signOut')).toHaveLength(0);
  });

  it('in demo mode says how to get back, and that queued actions are dropped', async () => {
    const { user, backend } = await renderApp((s) => {
      s.status.demo = true;
      s.status.online = false;
      s.outbox = [{
        id: 'obx_1', kind: 'request', summary: 'Request Staging SSH', created_at: new Date().toISOString(),
        attempts: 0, last_error: null, bundle: 'staging-ssh', grant_id: null,
      }];
    });
    await user.click(byId('account-menu'));
    await user.click(byId('sign-out'));
    expect(byId('signout-demo')).toHaveTextContent('quit Firedoor and start the demo again');
    expect(byId('signout-what')).toHaveTextContent('removed from memory');
    expect(queryId('signout-demo')).not.toBeNull();
    expect(byId('signout-queued')).toHaveTextContent('1 action waiting to be sent will be dropped');
    await user.click(byId('signout-confirm'));
    await waitFor(() => expect(backend.callsTo('signOut')).toHaveLength(1));
  });

  it('the menu closes on a click elsewhere', async () => {
    const { user } = await renderApp();
    await user.click(byId('account-menu'));
    expect(byId('account-menu-items')).toBeInTheDocument();
    await user.click(byId('nav-requests'));
    expect(queryId('account-menu-items')).toBeNull();
  });
});

describe('Cancelling a queued action offline', () => {
  it('removes it from Waiting to send and says it will never be sent', async () => {
    const { user, backend } = await renderApp((s) => {
      s.status.online = false;
      s.status.offline_since = new Date().toISOString();
    });
    await user.click(byId('request-staging-ssh'));
    await toastSays('is queued and will be sent when the broker is back');
    const id = backend.state.outbox[0].id;
    await user.click(byId('nav-access'));
    await user.click(await screen.findByTestId(`cancel-queued-${id}`));
    await toastSays(/^“Request Staging SSH” is cancelled and will never be sent to the broker\.$/);
    expect(backend.callsTo('cancelQueued')).toEqual([[id]]);
    await waitFor(() => expect(queryId(`outbox-${id}`)).toBeNull());
    // Back online: nothing is sent for it.
    backend.setOnline(true);
    await waitFor(() => expect(queryId('offline-banner')).toBeNull());
    expect(backend.state.replayed).toEqual([]);
  });

  it('a cancel that comes too late says why', async () => {
    const { user, backend } = await renderApp((s) => {
      s.status.online = false;
      s.outbox = [{
        id: 'obx_9', kind: 'request', summary: 'Request Staging SSH', created_at: new Date().toISOString(),
        attempts: 0, last_error: null, bundle: 'staging-ssh', grant_id: null,
      }];
    });
    await user.click(byId('nav-access'));
    backend.failNext('cancelQueued', { code: 'not_found', message: 'That queued action is no longer waiting: it was sent or cancelled already.' });
    await user.click(byId('cancel-queued-obx_9'));
    await toastSays('no longer waiting');
  });

  it('a sign-out token revocation has no Cancel button', async () => {
    await renderApp((s) => {
      s.status.online = false;
      s.outbox = [{
        id: 'obx_t', kind: 'revoke_token', summary: 'Revoke the signed-out session', created_at: new Date().toISOString(),
        attempts: 0, last_error: null, bundle: null, grant_id: null,
      }];
    });
    (await screen.findByTestId('nav-access')).click();
    await screen.findByTestId('outbox-obx_t');
    expect(queryId('cancel-queued-obx_t')).toBeNull();
  });
});

describe('Reconnecting, in words', () => {
  it('tells what became of each queued action, in a toast and in My access', async () => {
    const { user, backend } = await renderApp((s) => {
      s.status.online = false;
    });
    await user.click(byId('request-staging-ssh'));
    const id = backend.state.outbox[0].id;
    backend.setOnline(true);
    await toastSays('Request Staging SSH — sent · waiting for 1 approval (sre-leads can approve)');
    expect(byId('toast').textContent).not.toMatch(/:.*:/);
    await user.click(byId('nav-access'));
    expect(byId(`replayed-outcome-${id}`)).toHaveTextContent('sent · waiting for 1 approval');
  });

  it('an offline unlock: record delivered, rotated, the copied password no longer works', async () => {
    const { user, backend } = await renderApp((s) => {
      s.status.online = false;
    });
    await user.click(byId('nav-breakglass'));
    await user.click(byId('unlock-prod-db-root'));
    await user.type(byId('unlock-reason'), 'INC-1 db down');
    await user.type(byId('unlock-passphrase'), 'correct horse battery');
    await user.click(byId('unlock-submit'));
    await screen.findByTestId('unlock-result');
    await user.keyboard('{Escape}');
    await waitFor(() => expect(byId('reconnect-prod-db-root')).toHaveTextContent('record not delivered yet'));
    backend.setOnline(true);
    await waitFor(() => expect(byId('reconnect-prod-db-root')).toHaveTextContent(
      'record delivered · rotated to v5 — the password you copied no longer works',
    ));
    await toastSays('Production database root: record delivered · rotated to v5 — the password you copied no longer works');
  });
});

describe('Who can approve', () => {
  it('a pending request names its approvers', async () => {
    const { user } = await renderApp();
    await user.click(byId('nav-requests'));
    const row = byId('myreq-req_demo2');
    expect(within(row).getByText(/0\/1 approvals · sre-leads can approve/)).toBeInTheDocument();
  });

  it('lists several as people say them', () => {
    expect(approversText({ users: ['bob', 'erin'], groups: ['security'], oncall: [] })).toBe('bob, erin or security can approve');
    expect(approversText({ users: [], groups: [], oncall: ['payments-primary'] })).toBe('whoever is on call for payments-primary can approve');
    expect(approversText({ users: [], groups: [], oncall: [] })).toBeNull();
  });
});

describe('Demo mode', () => {
  it('Break glass says the enrolment lasts for this run', async () => {
    const { user } = await renderApp((s) => { s.status.demo = true; });
    await user.click(byId('nav-breakglass'));
    expect(byId('demo-enrolment-note')).toHaveTextContent('an enrolment lasts until Firedoor quits');
  });

  it('outside demo mode there is no such note', async () => {
    const { user } = await renderApp((s) => { s.status.demo = false; });
    await user.click(byId('nav-breakglass'));
    expect(queryId('demo-enrolment-note')).toBeNull();
  });
});

describe('Demo: plugging the cable back in', () => {
  it('keeps what reconnecting did on screen after "back online"', async () => {
    const { user, backend } = await renderApp((s) => {
      s.status.demo = true;
      s.status.online = false;
    });
    await user.click(byId('request-staging-ssh'));
    await toastSays('is queued');
    await user.click(byId('demo-broker-toggle'));
    await toastSays(/^Demo broker started again, back online\. Request Staging SSH — sent · waiting for 1 approval/);
    expect(backend.callsTo('demoBroker')).toEqual([[true]]);
  });
});
