import { render, screen, waitFor } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { expect } from 'vitest';
import App from '../App.svelte';
import type { Backend } from '../lib/backend';
import { createFakeBackend, demoSnapshot, type FakeBackend } from '../lib/fake';
import type { Bundle, Grant, Snapshot } from '../lib/types';

/** Renders the whole app on a fake backend and waits until the first snapshot is shown. */
export async function renderApp(
  edit: (s: Snapshot) => void = () => {},
  wrap: (b: FakeBackend) => Backend = (b) => b,
) {
  const snap = demoSnapshot();
  edit(snap);
  const backend = createFakeBackend(snap);
  const user = userEvent.setup();
  const result = render(App, { props: { backend: wrap(backend) } });
  await waitFor(() => expect(document.body.dataset.ready).toBe('1'));
  return { backend, user, ...result };
}

export const byId = (id: string) => screen.getByTestId(id);
export const queryId = (id: string) => screen.queryByTestId(id);

export function bundle(name: string, over: Partial<Bundle['terms']> = {}, extra: Partial<Bundle> = {}): Bundle {
  return {
    name,
    title: `Title of ${name}`,
    description: `Description of ${name}`,
    tags: [],
    resources: [],
    terms: {
      flow: 'f', approvals: 0, default_duration_secs: 3600, max_duration_secs: 4 * 3600,
      justification_required: false, ticket_required: false, pending_ttl_secs: 600, break_glass: false,
      ...over,
    },
    ...extra,
  };
}

/** A grant `grt_<name>` (its request `req_<name>`). */
export function grant(name: string, expiresAt: string, over: Partial<Grant> = {}): Grant {
  return {
    id: `grt_${name}`, request_id: `req_${name}`, bundle: 'prod-db-read', bundle_title: 'Production database (read-only)',
    holder: 'alice', state: 'active', activated_at: new Date(Date.now() - 60_000).toISOString(),
    expires_at: expiresAt, ended_at: null, end_reason: null, ended_by: null, last_error: null,
    attempts: 0, next_attempt_at: null, ssh: false, ...over,
  };
}

/** Resolves when the toast shows text containing `text`. */
export async function toastSays(text: string | RegExp) {
  await waitFor(() => expect(byId('toast').textContent).toMatch(text));
}
