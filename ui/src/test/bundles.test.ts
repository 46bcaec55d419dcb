import { fireEvent, screen, waitFor, within } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import { byId, queryId, renderApp, toastSays } from './helpers';

const rowOrder = () =>
  screen.getAllByTestId(/^bundle-(?!search)/).map((el) => el.dataset.testid!.replace(/^bundle-/, ''));

describe('Bundles view', () => {
  it('shows each bundle with its terms', async () => {
    await renderApp();
    const row = byId('bundle-prod-db-write');
    expect(row).toHaveTextContent('Production database (write)');
    expect(row).toHaveTextContent('max 4h');
    expect(row).toHaveTextContent('approvals: 1');
    expect(row).toHaveTextContent('justification required');
    expect(row).toHaveTextContent('ticket required');
    expect(row).toHaveTextContent('postgres');
    expect(byId('bundle-prod-db-read')).toHaveTextContent('automatic');
    expect(byId('bundle-prod-db-read')).not.toHaveTextContent('BREAK GLASS');
    expect(byId('bundle-k8s-prod-admin')).toHaveTextContent('BREAK GLASS');
  });

  it('search filters by name, title, description and tags', async () => {
    const { user } = await renderApp();
    const search = byId('bundle-search');
    await user.type(search, 'kubernetes');
    expect(rowOrder()).toEqual(['k8s-prod-admin']);
    await user.clear(search);
    await user.type(search, 'refunds'); // description only
    expect(rowOrder()).toEqual(['billing-console']);
    await user.clear(search);
    await user.type(search, 'ssh'); // tag and name
    expect(rowOrder()).toEqual(['staging-ssh']);
    await user.clear(search);
    await user.type(search, 'postgres prod'); // tags, both words
    expect(rowOrder().sort()).toEqual(['prod-db-read', 'prod-db-write']);
    await user.clear(search);
    await user.type(search, 'nothing-like-this');
    expect(queryId('bundle-prod-db-read')).toBeNull();
    expect(screen.getByText(/No bundle matches/)).toBeInTheDocument();
  });

  it('lists favourites first and toggles them through the backend', async () => {
    const { user, backend } = await renderApp((s) => { s.favourites = ['billing-console']; });
    expect(rowOrder()[0]).toBe('billing-console');
    expect(byId('fav-billing-console')).toHaveAttribute('aria-pressed', 'true');
    expect(byId('fav-staging-ssh')).toHaveAttribute('aria-pressed', 'false');

    await user.click(byId('fav-staging-ssh'));
    expect(backend.callsTo('setFavourite')).toEqual([['staging-ssh', true]]);
    // Favourites keep the backend's order among themselves, and so does everything
    // else; break glass (k8s-prod-admin) comes last all the same.
    await waitFor(() => expect(rowOrder()).toEqual([
      'staging-ssh', 'billing-console', 'prod-db-read', 'prod-db-write', 'k8s-prod-admin',
    ]));

    await user.click(byId('fav-billing-console'));
    expect(backend.callsTo('setFavourite')[1]).toEqual(['billing-console', false]);
    await waitFor(() => expect(rowOrder()).toEqual([
      'staging-ssh', 'prod-db-read', 'prod-db-write', 'billing-console', 'k8s-prod-admin',
    ]));
  });

  it('one click requests a bundle that needs nothing typed, with only {bundle}', async () => {
    // No live grant of prod-db-read here (the demo has one: see the duplicates tests).
    const { user, backend } = await renderApp((s) => { s.grants = []; });
    await user.click(byId('request-prod-db-read'));
    expect(backend.callsTo('requestBundle')).toEqual([[{ bundle: 'prod-db-read' }]]);
    expect(queryId('request-form')).toBeNull();
    await toastSays('Production database (read-only) is active');
  });

  it('opens the form when a justification and ticket are needed, and submits the values', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('request-prod-db-write'));
    expect(backend.callsTo('requestBundle')).toEqual([]);
    const form = byId('request-form');
    expect(byId('request-duration')).toHaveValue(60);
    expect(byId('request-justification')).toHaveFocus();

    // Required fields are checked before anything is sent.
    await user.click(byId('request-submit'));
    expect(backend.callsTo('requestBundle')).toEqual([]);
    expect(within(form).getByRole('alert')).toHaveTextContent('justification is required');

    await user.clear(byId('request-duration'));
    await user.type(byId('request-duration'), '45');
    await user.type(byId('request-justification'), 'Fix stuck order 4411');
    await user.type(byId('request-ticket'), 'OPS-1');
    await user.click(byId('request-submit'));
    expect(backend.callsTo('requestBundle')).toEqual([[{
      bundle: 'prod-db-write', duration_secs: 2700, justification: 'Fix stuck order 4411', ticket: 'OPS-1',
    }]]);
    await waitFor(() => expect(queryId('request-form')).toBeNull());
    await toastSays('waiting for 1 approval');
  });

  it('shows the ticket field only when the flow needs one', async () => {
    const { user } = await renderApp();
    await user.click(byId('request-k8s-prod-admin'));
    expect(byId('request-form')).toBeInTheDocument();
    expect(byId('request-duration')).toHaveValue(30);
    expect(queryId('request-ticket')).toBeNull();
    await user.keyboard('{Escape}');
    expect(queryId('request-form')).toBeNull();
  });

  it('keeps the form open and shows the backend error when the request fails', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('request-k8s-prod-admin'));
    await user.type(byId('request-justification'), 'incident 42');
    backend.failNext('requestBundle', { code: 'forbidden', message: 'You are not on call for this bundle.' });
    await user.click(byId('request-submit'));
    await toastSays('You are not on call for this bundle.');
    expect(byId('request-form')).toBeInTheDocument();
  });

  it('says it is queued, in one sentence, when the request went to the outbox', async () => {
    const { user, backend } = await renderApp((s) => {
      s.status.online = false;
      s.status.offline_since = new Date().toISOString();
    });
    await user.click(byId('request-staging-ssh'));
    await toastSays(/^Request Staging SSH is queued and will be sent when the broker is back \(it cannot be reached now\)\.$/);
    expect(backend.state.outbox).toHaveLength(1);
    await user.click(byId('nav-access'));
    const id = backend.state.outbox[0].id;
    await waitFor(() => expect(byId(`outbox-${id}`)).toHaveTextContent('Queued — will be sent when the broker is back'));
  });

  it('does not send the same request twice on a double click', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const { backend, user } = await renderApp(undefined, (b) => ({
      ...b, requestBundle: async (r) => { const res = b.requestBundle(r); await gate; return res; },
    }));
    const button = byId('request-staging-ssh');
    await fireEvent.click(button);
    expect(button).toBeDisabled();
    expect(button).toHaveTextContent('Requesting…');
    await fireEvent.click(button);
    await user.keyboard('{Control>}k{/Control}');
    await user.type(byId('quick-input'), 'staging');
    await user.keyboard('{Enter}');
    release();
    await toastSays('Staging SSH is active');
    expect(backend.callsTo('requestBundle')).toHaveLength(1);
    // Active now: the button offers its credentials instead of a second grant.
    await waitFor(() => expect(byId('request-staging-ssh')).toHaveTextContent('Credentials'));
    expect(byId('request-staging-ssh')).toBeEnabled();
  });
});

describe('Quick switcher', () => {
  it('Ctrl+K opens it, typing filters, arrows move, Enter requests', async () => {
    const { user, backend } = await renderApp();
    expect(queryId('quick-switcher')).toBeNull();
    await user.keyboard('{Control>}k{/Control}');
    const input = byId('quick-input');
    expect(input).toHaveFocus();
    await user.type(input, 'prod');
    const options = within(byId('quick-switcher')).getAllByRole('option');
    expect(options.map((o) => o.dataset.testid)).toEqual([
      'quick-item-prod-db-read', 'quick-item-prod-db-write', 'quick-item-k8s-prod-admin',
    ]);
    expect(options[0]).toHaveAttribute('aria-selected', 'true');
    await user.keyboard('{ArrowDown}{ArrowDown}{ArrowUp}');
    expect(options[1]).toHaveAttribute('aria-selected', 'true');
    await user.keyboard('{Enter}');
    // prod-db-write needs a justification: the form opens instead of sending.
    expect(queryId('quick-switcher')).toBeNull();
    expect(byId('request-form')).toBeInTheDocument();
    expect(backend.callsTo('requestBundle')).toEqual([]);
  });

  it('Enter requests a one-click bundle right away; Cmd+K works too', async () => {
    const { user, backend } = await renderApp();
    await user.keyboard('{Meta>}k{/Meta}');
    await user.type(byId('quick-input'), 'stag');
    await user.keyboard('{Enter}');
    expect(backend.callsTo('requestBundle')).toEqual([[{ bundle: 'staging-ssh' }]]);
    expect(queryId('quick-switcher')).toBeNull();
    await toastSays('Staging SSH is active');
  });

  it('Escape closes it without requesting', async () => {
    const { user, backend } = await renderApp();
    await user.keyboard('{Control>}k{/Control}');
    await user.type(byId('quick-input'), 'prod');
    await user.keyboard('{Escape}');
    expect(queryId('quick-switcher')).toBeNull();
    expect(backend.callsTo('requestBundle')).toEqual([]);
  });
});
