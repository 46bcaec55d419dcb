// Issue 13, "access": active bundles, no silent duplicates, copy in one action,
// break glass never the default match, the offline credentials error.
import { screen, waitFor, within } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import { byId, grant, queryId, renderApp, toastSays } from './helpers';
import { connectionCommand, alertAudienceText, breakGlassLast, leftText } from '../lib/format';
import type { CredentialItem } from '../lib/types';

const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();
const H = 3600_000;
const MIN = 60_000;

/** The demo with one live grant of staging-ssh, 1 h 58 min 30 s left. */
const withStagingActive = (s: import('../lib/types').Snapshot) => {
  s.grants = [grant('st', inMs(H + 58 * MIN + 30_000), { bundle: 'staging-ssh', bundle_title: 'Staging SSH' })];
};

const qsOrder = () =>
  screen.getAllByTestId(/^quick-item-/).map((el) => el.dataset.testid!.replace(/^quick-item-/, ''));
const rowOrder = () =>
  screen.getAllByTestId(/^bundle-(?!search)/).map((el) => el.dataset.testid!.replace(/^bundle-/, ''));

describe('Active bundles and duplicates', () => {
  it('marks an active bundle "active · 1:58 left" in Bundles and in Ctrl+K', async () => {
    const { user } = await renderApp(withStagingActive);
    expect(byId('active-staging-ssh')).toHaveTextContent(/^active · 1:58 left$/);
    expect(queryId('active-prod-db-write')).toBeNull();
    expect(byId('request-staging-ssh')).toHaveTextContent('Credentials');
    await user.keyboard('{Control>}k{/Control}');
    expect(byId('quick-active-staging-ssh')).toHaveTextContent(/^active · 1:58 left$/);
    expect(queryId('quick-active-prod-db-write')).toBeNull();
  });

  it('Enter or a click on an active bundle opens its credentials, never a second grant', async () => {
    const { user, backend } = await renderApp(withStagingActive);
    // Bundles: the button.
    await user.click(byId('request-staging-ssh'));
    await waitFor(() => expect(byId('creds-modal')).toHaveTextContent('Credentials · Staging SSH'));
    expect(backend.callsTo('credentials')).toEqual([['grt_st']]);
    await user.keyboard('{Escape}');
    await waitFor(() => expect(queryId('creds-modal')).toBeNull());
    // Ctrl+K, type, Enter.
    await user.keyboard('{Control>}k{/Control}');
    await user.type(byId('quick-input'), 'staging');
    await user.keyboard('{Enter}');
    await waitFor(() => expect(byId('creds-modal')).toBeInTheDocument());
    await user.keyboard('{Escape}');
    await waitFor(() => expect(queryId('creds-modal')).toBeNull());
    // Bundles search, Enter.
    await user.type(byId('bundle-search'), 'staging');
    await user.keyboard('{Enter}');
    await waitFor(() => expect(byId('creds-modal')).toBeInTheDocument());
    expect(backend.callsTo('requestBundle')).toEqual([]);
  });

  it('a second grant needs the explicit "Request another…", whose form says access is live', async () => {
    const { user, backend } = await renderApp(withStagingActive);
    await user.click(byId('another-staging-ssh'));
    const form = byId('request-form');
    expect(byId('request-another')).toHaveTextContent('You already have Staging SSH until');
    expect(byId('request-another')).toHaveTextContent('grt_st');
    expect(backend.callsTo('requestBundle')).toEqual([]);
    await user.click(within(form).getByTestId('request-submit'));
    await waitFor(() => expect(backend.callsTo('requestBundle')).toHaveLength(1));
    expect(backend.callsTo('requestBundle')[0][0]).toMatchObject({ bundle: 'staging-ssh' });
  });

  it('Extend on an active bundle extends its grant', async () => {
    const { user } = await renderApp(withStagingActive);
    await user.click(byId('extend-bundle-staging-ssh'));
    expect(byId('extend-dialog')).toHaveTextContent('Staging SSH');
  });

  it('the revoke dialog names the grant, its id and its end time', async () => {
    const end = new Date(Date.now() + 42 * MIN);
    const { user } = await renderApp((s) => {
      s.grants = [
        grant('a', end.toISOString(), { bundle: 'staging-ssh', bundle_title: 'Staging SSH' }),
        grant('b', inMs(3 * H), { bundle: 'staging-ssh', bundle_title: 'Staging SSH' }),
      ];
    });
    await user.click(byId('nav-access'));
    await user.click(byId('revoke-grt_a'));
    const text = byId('confirm-grant').textContent!;
    const hhmm = `${String(end.getHours()).padStart(2, '0')}:${String(end.getMinutes()).padStart(2, '0')}`;
    expect(text).toContain('Staging SSH');
    expect(text).toContain('grt_a');
    // With the date when it ends tomorrow (the test run after 23:18).
    expect(text).toMatch(new RegExp(`end at (\\d{4}-\\d{2}-\\d{2} )?${hhmm}`));
    expect(text).toMatch(/4[12] min left/);
    expect(byId('confirm-others')).toHaveTextContent('Only this grant: your other grant of Staging SSH stays.');
  });
});

describe('Copy in one action', () => {
  it('the "access active" toast copies the secret, the user and a psql command', async () => {
    const { user, backend } = await renderApp((s) => { s.grants = []; });
    await user.click(byId('request-staging-ssh'));
    await toastSays('Staging SSH is active');
    const g = backend.state.grants.find((x) => x.bundle === 'staging-ssh')!;
    await user.click(byId('toast-copy-secret'));
    await toastSays(/^Secret of Staging SSH copied \(the first of 2/);
    expect(backend.callsTo('copySecret')).toEqual([[`pg-S3cret-${g.id.slice(-4)}`]]);
  });

  it('the toast copies user and command; its first button has the focus for Enter', async () => {
    const { user, backend } = await renderApp((s) => { s.grants = []; });
    await user.keyboard('{Control>}k{/Control}');
    await user.keyboard('st');
    await user.keyboard('{Enter}');
    await toastSays('Staging SSH is active');
    await waitFor(() => expect(byId('toast-copy-secret')).toHaveFocus());
    const g = backend.state.grants.find((x) => x.bundle === 'staging-ssh')!;
    // Ctrl+K, s, t, Enter, Enter: 5 keystrokes from the Bundles view to the secret.
    await user.keyboard('{Enter}');
    await waitFor(() => expect(backend.callsTo('copySecret')).toEqual([[`pg-S3cret-${g.id.slice(-4)}`]]));
  });

  it('copies user, secret and command from the grant row in My access', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-access'));
    await user.click(byId('grant-copy-grt_demo1-user'));
    await waitFor(() => expect(backend.callsTo('copySecret')).toEqual([['fd_alice_emo1']]));
    await user.click(byId('grant-copy-grt_demo1-command'));
    await waitFor(() => expect(backend.callsTo('copySecret')[1]).toEqual(
      ['psql "postgresql://fd_alice_emo1@db.prod.internal:5432/orders"'],
    ));
    await toastSays(/^Command of Production database \(read-only\) copied/);
    await user.click(byId('grant-copy-grt_demo1-secret'));
    await waitFor(() => expect(backend.callsTo('copySecret')[2]).toEqual(['pg-S3cret-emo1']));
    // Only live grants have copy buttons.
    expect(queryId('grant-copy-grt_demo0-secret')).toBeNull();
  });

  it('Ctrl+K on an active bundle: Ctrl+C the secret, Ctrl+B the user, Ctrl+Shift+C the command, or a click', async () => {
    const { user, backend } = await renderApp();
    const open = async () => {
      await user.keyboard('{Control>}k{/Control}');
      await user.keyboard('prod-db-read');
      expect(byId('quick-hint')).toHaveTextContent('is active');
    };
    await open();
    await user.keyboard('{Control>}c{/Control}');
    await waitFor(() => expect(backend.callsTo('copySecret')).toEqual([['pg-S3cret-emo1']]));
    expect(queryId('quick-switcher')).toBeNull();
    await open();
    await user.keyboard('{Control>}b{/Control}');
    await waitFor(() => expect(backend.callsTo('copySecret')[1]).toEqual(['fd_alice_emo1']));
    await open();
    await user.keyboard('{Control>}{Shift>}c{/Shift}{/Control}');
    await waitFor(() => expect(backend.callsTo('copySecret')[2]).toEqual(
      ['psql "postgresql://fd_alice_emo1@db.prod.internal:5432/orders"'],
    ));
    await open();
    await user.click(byId('quick-copy-prod-db-read-user'));
    await waitFor(() => expect(backend.callsTo('copySecret')).toHaveLength(4));
    // A click on a copy button copies; it does not also open the credentials.
    expect(queryId('creds-modal')).toBeNull();
    // Ctrl+C on a bundle that is not active copies nothing.
    await user.keyboard('{Control>}k{/Control}');
    await user.keyboard('billing');
    await user.keyboard('{Control>}c{/Control}');
    expect(backend.callsTo('copySecret')).toHaveLength(4);
    expect(backend.callsTo('requestBundle')).toEqual([]);
  });

  it('builds connection commands from the fields the broker returns', () => {
    const item = (over: Partial<CredentialItem>): CredentialItem => ({
      integration: 'x', kind: 'postgres', resource: 'orders', username: 'fd_bob_1', secret: 's3cret',
      host: 'db.internal', port: 5432, note: null, ...over,
    });
    expect(connectionCommand(item({}))).toBe('psql "postgresql://fd_bob_1@db.internal:5432/orders"');
    expect(connectionCommand(item({ username: 'a b@c', resource: 'my db' })))
      .toBe('psql "postgresql://a%20b%40c@db.internal:5432/my%20db"');
    expect(connectionCommand(item({ host: '::1', port: 5433 }))).toBe('psql "postgresql://fd_bob_1@[::1]:5433/orders"');
    expect(connectionCommand(item({ kind: 'mysql', port: 3306 }))).toBe('mysql -h db.internal -P 3306 -u fd_bob_1 -p orders');
    expect(connectionCommand(item({ kind: 'ssh', username: 'oncall', host: 'web-1', port: null, secret: '' })))
      .toBe('ssh oncall@web-1');
    expect(connectionCommand(item({ kind: 'ssh', username: 'oncall', host: 'web-1', port: 2222 }))).toBe('ssh -p 2222 oncall@web-1');
    expect(connectionCommand(item({ kind: 'demo', host: null, port: null }))).toBeNull();
    expect(connectionCommand(item({ host: null }))).toBeNull();
    // Never the secret.
    for (const k of ['postgres', 'mysql', 'ssh']) expect(connectionCommand(item({ kind: k }))).not.toContain('s3cret');
  });

  it('says so when a grant has no command to copy', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-access'));
    backend.credentials = async (id) => ({
      grant_id: id as `grt_${string}`, expires_at: inMs(H),
      items: [{ integration: 'demo', kind: 'demo', resource: 'app', username: 'u', secret: 's', host: null, port: null, note: null }],
    });
    // The fake is wrapped by nothing here, so the component calls the replaced method.
    await user.click(byId('grant-copy-grt_demo1-command'));
    await toastSays('has no connection command');
    expect(backend.callsTo('copySecret')).toEqual([]);
    // Known now: the row offers what the grant has, and no command.
    await waitFor(() => expect(queryId('grant-copy-grt_demo1-command')).toBeNull());
    expect(byId('grant-copy-grt_demo1-secret')).toBeInTheDocument();
    expect(byId('grant-copy-grt_demo1-user')).toBeInTheDocument();
  });
});

describe('Break glass is never the default match', () => {
  it('Ctrl+K lists break glass last unless the query names it', async () => {
    const { user } = await renderApp((s) => { s.favourites = ['k8s-prod-admin']; });
    await user.keyboard('{Control>}k{/Control}');
    // A favourite all the same: not first.
    expect(qsOrder()[0]).not.toBe('k8s-prod-admin');
    expect(qsOrder().at(-1)).toBe('k8s-prod-admin');
    // "pro" is in its name: still after every other match.
    await user.keyboard('pro');
    expect(qsOrder().at(-1)).toBe('k8s-prod-admin');
    expect(qsOrder()[0]).toBe('prod-db-read');
    expect(byId('quick-item-k8s-prod-admin')).toHaveTextContent('alerts security');
    // Named exactly: first, and Enter opens its form (never a one-click request).
    await user.clear(byId('quick-input'));
    await user.keyboard('k8s-prod-admin');
    expect(qsOrder()[0]).toBe('k8s-prod-admin');
    await user.clear(byId('quick-input'));
    await user.keyboard('Kubernetes prod cluster admin');
    expect(qsOrder()[0]).toBe('k8s-prod-admin');
  });

  it('/ db Enter does not open the break-glass form', async () => {
    const { user, backend } = await renderApp((s) => {
      s.grants = [];
      s.bundles[2].tags.push('db');
    });
    await user.keyboard('/');
    await user.keyboard('db');
    expect(rowOrder().at(-1)).toBe('k8s-prod-admin');
    await user.keyboard('{Enter}');
    await waitFor(() => expect(backend.callsTo('requestBundle')).toEqual([[{ bundle: 'prod-db-read' }]]));
    expect(queryId('request-form')).toBeNull();
  });

  it('Bundles search lists break glass last unless named, labelled "alerts security"', async () => {
    const { user } = await renderApp();
    expect(rowOrder().at(-1)).toBe('k8s-prod-admin');
    expect(byId('bundle-k8s-prod-admin')).toHaveTextContent('alerts security');
    await user.type(byId('bundle-search'), 'prod');
    expect(rowOrder().at(-1)).toBe('k8s-prod-admin');
    await user.clear(byId('bundle-search'));
    await user.type(byId('bundle-search'), 'k8s-prod-admin');
    expect(rowOrder()[0]).toBe('k8s-prod-admin');
  });

  it('the break-glass form says who will be alerted', async () => {
    const { user } = await renderApp((s) => {
      s.bundles[2].terms.alerts = { users: ['dave'], groups: ['security'], oncall: [], admins: true };
    });
    await user.click(byId('request-k8s-prod-admin'));
    expect(byId('request-alerts')).toHaveTextContent('alerts group security, dave and every admin right away');
    await user.keyboard('{Escape}');
    // A form that is not break glass says nothing of it.
    await user.click(byId('request-prod-db-write'));
    expect(queryId('request-alerts')).toBeNull();
  });

  it('orders and words the audience', () => {
    expect(alertAudienceText({ users: [], groups: ['security'], oncall: [], admins: true })).toBe('group security and every admin');
    expect(alertAudienceText({ users: [], groups: ['a', 'b'], oncall: ['payments'], admins: false }))
      .toBe('groups a, b and whoever is on call for payments');
    expect(alertAudienceText(undefined)).toContain('did not say who');
    const b = (name: string, bg: boolean) => ({
      name, title: name.toUpperCase(), description: '', tags: [], resources: [],
      terms: { flow: 'f', approvals: 0, default_duration_secs: 60, max_duration_secs: 60, justification_required: false, ticket_required: false, pending_ttl_secs: 60, break_glass: bg },
    });
    const list = [b('x', true), b('y', false), b('z', true), b('w', false)];
    expect(breakGlassLast(list, '').map((x) => x.name)).toEqual(['y', 'w', 'x', 'z']);
    expect(breakGlassLast(list, 'Z').map((x) => x.name)).toEqual(['z', 'y', 'w', 'x']);
    expect(leftText(H + 58 * MIN + 59_000)).toBe('1:58');
    expect(leftText(12 * MIN + 5_000)).toBe('12 min');
    expect(leftText(40_000)).toBe('40 s');
  });
});

describe('Offline credentials', () => {
  it('points to Break glass and goes there', async () => {
    const { user, backend } = await renderApp();
    backend.setOnline(false);
    await user.click(byId('nav-access'));
    await user.click(byId('creds-grt_demo1'));
    await waitFor(() => expect(byId('creds-error')).toHaveTextContent('Break glass (Alt+5) opens sealed emergency credentials offline'));
    await user.click(byId('creds-breakglass'));
    expect(queryId('creds-modal')).toBeNull();
    expect(byId('nav-breakglass')).toHaveAttribute('aria-current', 'page');
  });

  it('a copy offline says the same', async () => {
    const { user, backend } = await renderApp();
    backend.setOnline(false);
    await user.click(byId('nav-access'));
    await user.click(byId('grant-copy-grt_demo1-secret'));
    await toastSays('Break glass (Alt+5)');
    expect(backend.callsTo('copySecret')).toEqual([]);
  });
});
