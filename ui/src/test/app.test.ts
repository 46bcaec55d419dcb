import { render, screen, waitFor } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import App from '../App.svelte';
import type { Backend } from '../lib/backend';
import { createFakeBackend, demoSnapshot, signedOutSnapshot } from '../lib/fake';
import type { Snapshot } from '../lib/types';
import { bundle, byId, queryId, renderApp, toastSays } from './helpers';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

describe('Start-up', () => {
  it('renders the cached snapshot first, before any live update or network call', async () => {
    const fake = createFakeBackend(demoSnapshot());
    const never = new Promise<() => void>(() => {});
    // Live updates never connect: the cache must still show.
    const backend: Backend = { ...fake, onSnapshot: () => never, onOpen: () => never, onLink: () => never };
    render(App, { props: { backend } });
    expect(await screen.findByTestId('bundle-prod-db-read')).toHaveTextContent('Production database (read-only)');
    expect(fake.calls[0].method).toBe('snapshot');
    const methods = new Set(fake.calls.map((c) => c.method));
    expect([...methods].sort()).toEqual(['snapshot', 'uiReady']);
    expect(byId('current-user')).toHaveTextContent('alice');
  });

  it('calls uiReady once, after the first snapshot is on screen, and marks the body ready', async () => {
    const fake = createFakeBackend(demoSnapshot());
    const snap = deferred<Snapshot>();
    let readyAt: boolean | null = null;
    const backend: Backend = {
      ...fake,
      snapshot: () => snap.promise,
      uiReady: () => {
        readyAt = !!document.querySelector('[data-testid="bundle-prod-db-read"]');
        return fake.uiReady();
      },
    };
    render(App, { props: { backend } });
    await new Promise((r) => setTimeout(r, 20));
    expect(fake.callsTo('uiReady')).toHaveLength(0);
    expect(document.body.dataset.ready).toBeUndefined();
    snap.resolve(JSON.parse(JSON.stringify(fake.state)));
    await waitFor(() => expect(document.body.dataset.ready).toBe('1'));
    expect(readyAt).toBe(true);
    fake.emit();
    fake.emit();
    await new Promise((r) => setTimeout(r, 20));
    expect(fake.callsTo('uiReady')).toHaveLength(1);
  });

  it('onSnapshot replaces the whole state', async () => {
    const { backend } = await renderApp();
    expect(byId('approvals-count')).toHaveTextContent('2');
    backend.state.bundles = [bundle('brand-new', {}, { title: 'Brand new bundle' })];
    backend.state.approvals = [];
    backend.state.status.user = 'alice@corp';
    backend.emit();
    await waitFor(() => expect(byId('bundle-brand-new')).toHaveTextContent('Brand new bundle'));
    expect(queryId('bundle-prod-db-read')).toBeNull();
    expect(byId('approvals-count')).toHaveTextContent(/^0$/);
    expect(byId('current-user')).toHaveTextContent('alice@corp');
  });

  it('a live snapshot that arrives before the cache read is not overwritten by it', async () => {
    const fake = createFakeBackend(demoSnapshot());
    const stale = JSON.parse(JSON.stringify(fake.state)) as Snapshot;
    const snap = deferred<Snapshot>();
    const backend: Backend = { ...fake, snapshot: () => snap.promise };
    render(App, { props: { backend } });
    await waitFor(() => expect(fake.listenerCount()).toBe(1));
    fake.state.bundles = [bundle('fresh')];
    fake.emit();
    snap.resolve(stale);
    await waitFor(() => expect(byId('bundle-fresh')).toBeInTheDocument());
    expect(queryId('bundle-prod-db-read')).toBeNull();
  });

  it('onOpen switches to the view and highlights the item', async () => {
    const { backend } = await renderApp();
    backend.open({ view: 'approvals', id: 'req_demo5' });
    await waitFor(() => expect(byId('approval-req_demo5')).toHaveClass('highlight'));
    expect(byId('approval-req_demo4')).not.toHaveClass('highlight');
    expect(byId('nav-approvals')).toHaveAttribute('aria-current', 'page');
    backend.open({ view: 'access' });
    await waitFor(() => expect(byId('grant-grt_demo1')).toBeInTheDocument());
  });

  it('shows a readable error when the local cache cannot be read, and retries', async () => {
    const fake = createFakeBackend(demoSnapshot());
    fake.failNext('snapshot', { code: 'cache', message: 'The local cache is locked by another Firedoor window.' });
    const user = userEvent.setup();
    render(App, { props: { backend: fake } });
    expect(await screen.findByTestId('load-error')).toHaveTextContent('The local cache is locked by another Firedoor window.');
    await user.click(screen.getByRole('button', { name: 'Try again' }));
    expect(await screen.findByTestId('bundle-prod-db-read')).toBeInTheDocument();
    expect(document.body.dataset.ready).toBe('1');
  });
});

describe('Status bar', () => {
  it('shows user, broker and DEMO, and no offline banner while online', async () => {
    await renderApp();
    expect(byId('current-user')).toHaveTextContent('alice');
    expect(byId('demo-badge')).toHaveTextContent('DEMO');
    expect(queryId('offline-banner')).toBeNull();
    expect(screen.getByText('demo://in-process')).toBeInTheDocument();
  });

  it('has no DEMO badge and no broker switch for a real broker', async () => {
    await renderApp((s) => { s.status.demo = false; s.status.broker_url = 'https://fd.example.com'; });
    expect(queryId('demo-badge')).toBeNull();
    expect(queryId('demo-broker-toggle')).toBeNull();
  });

  it('demo: "Pull the cable" stops the built-in broker, "Plug it back in" starts it', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('demo-broker-toggle'));
    expect(backend.callsTo('demoBroker')).toEqual([[false]]);
    await waitFor(() => expect(byId('offline-banner')).toHaveTextContent('demo: stopped from the app'));
    expect(byId('demo-broker-toggle')).toHaveTextContent('Plug it back in');
    await user.click(byId('demo-broker-toggle'));
    expect(backend.callsTo('demoBroker')).toEqual([[false], [true]]);
    await waitFor(() => expect(queryId('offline-banner')).toBeNull());
    expect(byId('demo-broker-toggle')).toHaveTextContent('Pull the cable');
  });

  it('shows "Offline since HH:MM · last synced HH:MM" and the last error', async () => {
    const since = new Date(2026, 4, 1, 14, 2, 10).toISOString();
    const synced = new Date(2026, 4, 1, 14, 1, 55).toISOString();
    await renderApp((s) => {
      Object.assign(s.status, { online: false, offline_since: since, last_synced_at: synced, last_error: 'connection refused' });
    });
    const banner = byId('offline-banner');
    expect(banner.querySelector('.offline-text')).toHaveTextContent(/^Offline since 14:02 · last synced 14:01$/);
    expect(banner).toHaveTextContent(/^Offline since 14:02 · last synced 14:01 — connection refused$/);
  });

  it('says "never synced" when it never was', async () => {
    const since = new Date(2026, 4, 1, 9, 5).toISOString();
    await renderApp((s) => {
      Object.assign(s.status, { online: false, offline_since: since, last_synced_at: null, last_error: null });
    });
    expect(byId('offline-banner')).toHaveTextContent(/^Offline since 09:05 · never synced$/);
  });

  it('the banner comes and goes with live status', async () => {
    const { backend } = await renderApp();
    backend.setOnline(false);
    await waitFor(() => expect(byId('offline-banner')).toHaveTextContent('Offline since'));
    backend.setOnline(true);
    await waitFor(() => expect(queryId('offline-banner')).toBeNull());
  });

  it('Sync now resyncs; its failure is shown readably', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('sync-now'));
    expect(backend.callsTo('resync')).toHaveLength(1);
    await toastSays('Synced with the broker.');
    backend.failNext('resync', { code: 'offline', message: 'Could not reach https://fd.example.com: timed out.' });
    await user.click(byId('sync-now'));
    await toastSays('Could not reach https://fd.example.com: timed out.');
    expect(byId('toast').closest('[role="alert"]')).not.toBeNull();
  });

  it('turns a non-BackendError rejection into a readable message', async () => {
    const { user } = await renderApp(undefined, (b) => ({
      ...b, resync: () => Promise.reject(new Error('IPC channel closed')),
    }));
    await user.click(byId('sync-now'));
    await toastSays('IPC channel closed');
  });
});

describe('Sign in / out', () => {
  async function signedOut() {
    const backend = createFakeBackend(signedOutSnapshot());
    const user = userEvent.setup();
    render(App, { props: { backend } });
    await screen.findByTestId('signin-url');
    return { backend, user };
  }

  it('shows the sign-in form when signed out, and the app after signing in', async () => {
    const { backend, user } = await signedOut();
    expect(queryId('nav-bundles')).toBeNull();
    await user.type(byId('signin-url'), 'https://fd.example.com');
    await user.type(byId('signin-token'), 'fd_tok_123');
    await user.click(byId('signin-submit'));
    expect(backend.callsTo('signIn')).toEqual([[['https://fd.example.com'], 'fd_tok_123']]);
    expect(await screen.findByTestId('nav-bundles')).toBeInTheDocument();
    expect(byId('bundle-prod-db-read')).toBeInTheDocument();
    expect(queryId('demo-badge')).toBeNull();
  });

  it('shows a wrong token readably and stays on the form', async () => {
    const { user } = await signedOut();
    await user.type(byId('signin-url'), 'https://fd.example.com');
    await user.type(byId('signin-token'), 'wrong');
    await user.click(byId('signin-submit'));
    expect(await screen.findByTestId('signin-error')).toHaveTextContent('The broker rejected this API token.');
    expect(queryId('nav-bundles')).toBeNull();
  });

  it('shows an unreachable broker readably', async () => {
    const { user } = await signedOut();
    await user.type(byId('signin-url'), 'https://unreachable.example.com');
    await user.type(byId('signin-token'), 'tok');
    await user.click(byId('signin-submit'));
    expect(await screen.findByTestId('signin-error'))
      .toHaveTextContent('Could not reach https://unreachable.example.com: connection refused.');
  });

  it('asks for the fields before calling the backend', async () => {
    const { user, backend } = await signedOut();
    await user.click(byId('signin-submit'));
    expect(byId('signin-error')).toHaveTextContent('Enter the broker URL');
    expect(backend.callsTo('signIn')).toEqual([]);
  });

  it('signs in with SSO through the browser', async () => {
    const { backend, user } = await signedOut();
    await user.type(byId('signin-url'), 'https://fd.example.com');
    await user.click(byId('signin-sso'));
    expect(backend.callsTo('signInSso')).toEqual([[['https://fd.example.com']]]);
    expect(backend.callsTo('signIn')).toEqual([]);
    expect(await screen.findByTestId('nav-bundles')).toBeInTheDocument();
  });

  it('says readably when the broker has no SSO', async () => {
    const { backend, user } = await signedOut();
    await user.type(byId('signin-url'), 'https://nosso.example.com');
    await user.click(byId('signin-sso'));
    expect(await screen.findByTestId('signin-error')).toHaveTextContent('single sign-on is not configured');
    expect(backend.callsTo('signInSso')).toHaveLength(1);
    expect(queryId('nav-bundles')).toBeNull();
  });

  it('shows why the app signed itself out when the sign-in ended', async () => {
    const snap = signedOutSnapshot();
    snap.status.session_ended = 'Your sign-in ended; sign in again.';
    const backend = createFakeBackend(snap);
    render(App, { props: { backend } });
    expect(await screen.findByTestId('signin-ended')).toHaveTextContent('Your sign-in ended; sign in again.');
  });

  it('signs out back to the form', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('account-menu'));
    await user.click(byId('sign-out'));
    await user.click(byId('signout-confirm'));
    expect(backend.callsTo('signOut')).toHaveLength(1);
    expect(await screen.findByTestId('signin-url')).toBeInTheDocument();
    expect(queryId('nav-bundles')).toBeNull();
  });
});

describe('Keyboard', () => {
  it('Alt+1..5 switches views and / focuses the search', async () => {
    const { user } = await renderApp();
    await user.keyboard('{Alt>}5{/Alt}');
    expect(byId('nav-breakglass')).toHaveAttribute('aria-current', 'page');
    expect(screen.getByRole('heading', { level: 1, name: 'Break glass' })).toBeInTheDocument();
    await user.keyboard('{Alt>}6{/Alt}');
    expect(byId('nav-breakglass')).toHaveAttribute('aria-current', 'page');
    await user.keyboard('{Alt>}4{/Alt}');
    expect(byId('nav-approvals')).toHaveAttribute('aria-current', 'page');
    await user.keyboard('{Alt>}2{/Alt}');
    expect(byId('nav-access')).toHaveAttribute('aria-current', 'page');
    await user.keyboard('/');
    await waitFor(() => expect(byId('bundle-search')).toHaveFocus());
    expect(byId('nav-bundles')).toHaveAttribute('aria-current', 'page');
  });
});

describe('Error boundary', () => {
  it('shows a readable fallback instead of a blank view when rendering fails, and recovers', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    const { backend, user } = await renderApp((s) => {
      // Malformed data from a buggy backend: a bundle without terms.
      (s.bundles[0] as unknown as { terms: unknown }).terms = undefined;
    });
    expect(byId('crash')).toHaveTextContent('Something went wrong in the window');
    expect(byId('crash')).toHaveTextContent("Cannot read properties of undefined (reading 'break_glass')");
    expect(logged).toHaveBeenCalled();
    // The rest of the window still works.
    expect(byId('current-user')).toHaveTextContent('alice');
    await user.click(byId('nav-access'));
    expect(byId('grant-grt_demo1')).toBeInTheDocument();
    expect(queryId('crash')).toBeNull();

    backend.state.bundles.splice(0, 1);
    backend.emit();
    await user.click(byId('nav-bundles'));
    expect(await screen.findByTestId('bundle-prod-db-write')).toBeInTheDocument();
    expect(queryId('crash')).toBeNull();
  });

  it('"Reload view" retries the failed view', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    const { backend, user } = await renderApp((s) => {
      (s.bundles[0] as unknown as { terms: unknown }).terms = undefined;
    });
    expect(byId('crash')).toBeInTheDocument();
    backend.state.bundles.splice(0, 1);
    backend.emit();
    await user.click(screen.getByRole('button', { name: 'Reload view' }));
    expect(await screen.findByTestId('bundle-prod-db-write')).toBeInTheDocument();
  });
});

describe('On call', () => {
  it('shows the schedules I am on call for, with until when, in the status bar', async () => {
    const snap = demoSnapshot();
    const until = new Date(Date.now() + 2 * 3600_000).toISOString();
    snap.status.oncall = [{ schedule: 'payments-primary', title: 'Payments primary', until, as_of: null, stale: false }];
    const fake = createFakeBackend(snap);
    render(App, { props: { backend: fake } });
    const line = await screen.findByTestId('oncall');
    expect(line.textContent).toMatch(/^On call: Payments primary until (Sun|Mon|Tue|Wed|Thu|Fri|Sat) \d\d:\d\d$/);
  });

  it('shows nothing when I am not on call', async () => {
    const fake = createFakeBackend(demoSnapshot());
    render(App, { props: { backend: fake } });
    await screen.findByTestId('current-user');
    expect(queryId('oncall')).toBeNull();
  });
});

describe('Incidents', () => {
  it('offers the responder what an open incident opens, requests it for the incident, and labels the grant', async () => {
    const snap = demoSnapshot();
    snap.incidents = [
      {
        id: 'inc_1', source: 'monitoring', external_id: 'abc', rule: 'db-down', title: 'prod-db down',
        url: null, state: 'open', opened_at: new Date().toISOString(), resolved_at: null,
        bundles: ['prod-db-read'], responder: true,
      },
      {
        id: 'inc_2', source: 'monitoring', external_id: 'def', rule: 'other', title: 'not mine',
        url: null, state: 'open', opened_at: new Date().toISOString(), resolved_at: null,
        bundles: ['prod-db-read'], responder: false,
      },
    ];
    // No live grant of prod-db-read yet (with one, the button shows its credentials).
    snap.grants = [];
    const fake = createFakeBackend(snap);
    render(App, { props: { backend: fake } });
    const banner = await screen.findByTestId('incident-inc_1');
    expect(banner.textContent).toContain('Incident: prod-db down');
    expect(queryId('incident-inc_2')).toBeNull();
    await userEvent.click(byId('incident-request-inc_1-prod-db-read'));
    await waitFor(() => expect(fake.calls.some((c) => c.method === 'requestBundle')).toBe(true));
    const call = fake.calls.find((c) => c.method === 'requestBundle')!;
    expect(call.args[0]).toMatchObject({ bundle: 'prod-db-read', incident: 'inc_1', justification: 'Incident: prod-db down' });
    await userEvent.click(byId('nav-access'));
    const label = await waitFor(() => {
      const el = document.querySelector('[data-testid^="grant-incident-"]');
      expect(el).not.toBeNull();
      return el!;
    });
    expect(label.textContent).toBe('Incident: prod-db down');
  });
});

describe('Global shortcut', () => {
  it('onOpen "quick" (the global shortcut) opens the quick switcher over any dialog', async () => {
    const { backend } = await renderApp();
    expect(queryId('quick-switcher')).toBeNull();
    backend.open({ view: 'quick' });
    await waitFor(() => expect(byId('quick-switcher')).toBeInTheDocument());
    expect(byId('quick-input')).toBeInTheDocument();
  });

  it('does nothing while signed out', async () => {
    const fake = createFakeBackend(signedOutSnapshot());
    render(App, { props: { backend: fake } });
    await screen.findByTestId('signin-url');
    fake.open({ view: 'quick' });
    await new Promise((r) => setTimeout(r, 50));
    expect(queryId('quick-switcher')).toBeNull();
  });
});
