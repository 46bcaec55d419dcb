import { waitFor } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import { byId, queryId, renderApp, toastSays } from './helpers';

describe('Requests', () => {
  it('shows state, bundle, duration, decisions and the deny comment', async () => {
    const { user } = await renderApp();
    await user.click(byId('nav-requests'));
    expect(byId('state-req_demo1')).toHaveTextContent(/^active$/);
    expect(byId('state-req_demo2')).toHaveTextContent(/^pending$/);
    expect(byId('state-req_demo3')).toHaveTextContent(/^denied$/);
    expect(byId('myreq-req_demo2')).toHaveTextContent('Production database (write)');
    expect(byId('myreq-req_demo2')).toHaveTextContent('30m');
    expect(byId('myreq-req_demo3')).toHaveTextContent('Denied by carol');
    expect(byId('myreq-req_demo3')).toHaveTextContent('Ask support lead first');
    // Only pending requests can be cancelled.
    expect(queryId('cancel-req_demo1')).toBeNull();
    expect(queryId('cancel-req_demo3')).toBeNull();
  });

  it('cancels a pending request', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-requests'));
    await user.click(byId('cancel-req_demo2'));
    expect(backend.callsTo('cancelRequest')).toEqual([['req_demo2']]);
    await toastSays('Cancelled the request for Production database (write).');
    await waitFor(() => expect(byId('state-req_demo2')).toHaveTextContent(/^cancelled$/));
    expect(queryId('cancel-req_demo2')).toBeNull();
  });
});

describe('Approvals', () => {
  it('counts the inbox on the nav item and shows each request', async () => {
    const { user } = await renderApp();
    expect(byId('approvals-count')).toHaveTextContent(/^2$/);
    await user.click(byId('nav-approvals'));
    const row = byId('approval-req_demo4');
    expect(row).toHaveTextContent('bob');
    expect(row).toHaveTextContent('Production database (write)');
    expect(row).toHaveTextContent('1h');
    expect(row).toHaveTextContent('Backfill missing invoices');
    expect(row).toHaveTextContent('INC-881');
    expect(queryId('approvals-offline')).toBeNull();
    expect(byId('approve-req_demo4')).toBeEnabled();
    expect(queryId('escalated-req_demo4')).toBeNull();
  });

  it('says who asked on whose behalf, and that a request escalated to me', async () => {
    const { user } = await renderApp();
    await user.click(byId('nav-approvals'));
    const row = byId('approval-req_demo5');
    expect(row).toHaveTextContent('asked by erin on dave’s behalf');
    expect(byId('escalated-req_demo5')).toHaveTextContent('escalated');
    expect(byId('approval-req_demo4')).not.toHaveTextContent('behalf');
  });

  it('approves', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-approvals'));
    await user.click(byId('approve-req_demo4'));
    expect(backend.callsTo('approve')).toEqual([['req_demo4', undefined]]);
    await toastSays('Approved bob’s request');
    await waitFor(() => expect(byId('approvals-count')).toHaveTextContent(/^1$/));
    expect(queryId('approval-req_demo4')).toBeNull();
  });

  it('denies with the reason typed', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-approvals'));
    await user.click(byId('deny-req_demo5'));
    expect(backend.callsTo('deny')).toEqual([]);
    expect(byId('deny-reason')).toHaveFocus();
    await user.type(byId('deny-reason'), 'Use the support bundle');
    await user.click(byId('deny-submit'));
    expect(backend.callsTo('deny')).toEqual([['req_demo5', 'Use the support bundle']]);
    await toastSays('Denied dave’s request');
    await waitFor(() => expect(queryId('deny-reason')).toBeNull());
  });

  it('disables decisions offline and says why', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-approvals'));
    backend.setOnline(false, 'connection refused');
    await waitFor(() => expect(byId('approvals-offline')).toHaveTextContent('Approvals need the broker — you are offline.'));
    expect(byId('approve-req_demo4')).toBeDisabled();
    expect(byId('deny-req_demo4')).toBeDisabled();
    await user.click(byId('approve-req_demo4'));
    expect(backend.callsTo('approve')).toEqual([]);

    backend.setOnline(true);
    await waitFor(() => expect(queryId('approvals-offline')).toBeNull());
    expect(byId('approve-req_demo4')).toBeEnabled();
  });
});
