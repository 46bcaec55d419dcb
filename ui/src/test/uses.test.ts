// issue 14: uses — after reconnecting, the person who unlocked is asked to
// classify each break-glass use; security sees everyone's open uses.
import { screen, waitFor } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import { DEMO_PASSPHRASE, demoUse } from '../lib/fake';
import type { Snapshot } from '../lib/types';
import { byId, queryId, renderApp, toastSays } from './helpers';

const offline = (s: Snapshot) => {
  Object.assign(s.status, { online: false, offline_since: new Date().toISOString(), last_error: 'connection refused' });
};

describe('Break glass: classifying each use', () => {
  it('after reconnecting, asks the person who unlocked offline to classify it, and checks the form', async () => {
    const { user, backend } = await renderApp(offline);
    await user.click(byId('nav-breakglass'));
    await user.click(byId('unlock-prod-db-root'));
    await user.type(byId('unlock-reason'), 'orders failing (INC-991)');
    await user.type(byId('unlock-passphrase'), DEMO_PASSPHRASE);
    await user.click(byId('unlock-submit'));
    await screen.findByTestId('unlock-result');
    await user.click(byId('unlock-close'));
    // Offline: nothing to classify yet (the broker has not heard of it).
    expect(queryId('classify-uses')).toBeNull();
    expect(backend.callsTo('breakGlassUses')).toEqual([]);

    backend.setOnline(true);
    const card = await screen.findByTestId('classify-uses');
    expect(card).toHaveTextContent('Classify your break-glass use');
    expect(backend.uses).toHaveLength(1);
    const id = backend.uses[0].id;
    expect(byId(`use-${id}`)).toHaveTextContent('prod-db-root v4, offline');
    expect(byId(`use-rotation-${id}`)).toHaveTextContent('rotates at');

    // Nothing chosen; other without a note; incident without its id: said at once.
    await user.click(byId(`use-submit-${id}`));
    expect(byId(`use-error-${id}`)).toHaveTextContent('Choose drill, incident or other.');
    await user.click(byId(`use-kind-${id}-other`));
    await user.click(byId(`use-submit-${id}`));
    expect(byId(`use-error-${id}`)).toHaveTextContent('Say in a note what the use was.');
    await user.click(byId(`use-kind-${id}-incident`));
    await user.click(byId(`use-submit-${id}`));
    expect(byId(`use-error-${id}`)).toHaveTextContent('Give the incident’s id');
    expect(backend.callsTo('classifyUse')).toEqual([]);

    await user.type(byId(`use-incident-${id}`), 'INC-991');
    await user.click(byId(`use-submit-${id}`));
    await toastSays('Classified: prod-db-root v4 as incident.');
    expect(backend.callsTo('classifyUse')).toEqual([[id, 'incident', 'INC-991', undefined]]);
    expect(queryId('classify-uses')).toBeNull();
    expect(backend.uses[0]).toMatchObject({ open: false, kind: 'incident', incident: 'INC-991', classified_by: 'alice' });
  }, 30_000);

  it('an online unlock is a use to classify too; the broker\'s refusal is shown', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-breakglass'));
    await user.click(byId('unlock-k8s-breakglass'));
    await user.type(byId('unlock-reason'), 'cluster on fire');
    await user.type(byId('unlock-passphrase'), DEMO_PASSPHRASE);
    await user.click(byId('unlock-submit'));
    await screen.findByTestId('unlock-result');
    await user.click(byId('unlock-close'));
    // The view asks the broker when it is shown (and after each sync or change).
    await user.click(byId('nav-access'));
    await user.click(byId('nav-breakglass'));
    await screen.findByTestId('classify-uses');
    const id = backend.uses[0].id;
    expect(backend.uses[0].mode).toBe('online');
    backend.failNext('classifyUse', { code: 'forbidden', message: 'this use is classified already' });
    await user.click(byId(`use-kind-${id}-drill`));
    await user.click(byId(`use-submit-${id}`));
    await waitFor(() => expect(byId(`use-error-${id}`)).toHaveTextContent('this use is classified already'));
    expect(byId('classify-uses')).toBeInTheDocument();
    await user.type(byId(`use-note-${id}`), 'quarterly drill');
    await user.click(byId(`use-submit-${id}`));
    await waitFor(() => expect(queryId('classify-uses')).toBeNull());
    expect(backend.callsTo('classifyUse').at(-1)).toEqual([id, 'drill', undefined, 'quarterly drill']);
  }, 30_000);

  it('security sees every open use (others\' too) and may classify them; others see only their own', async () => {
    const { user, backend } = await renderApp();
    const bobs = demoUse({ user: 'bob', secret: 'aws-root', version: 2, reason: 'root login for billing' });
    backend.uses.push(bobs);
    // alice is not security: bob's use is not shown to her.
    await user.click(byId('nav-breakglass'));
    await waitFor(() => expect(backend.callsTo('breakGlassUses').length).toBeGreaterThan(0));
    expect(queryId('open-uses')).toBeNull();
    expect(queryId('classify-uses')).toBeNull();

    backend.security.push('alice');
    backend.emit();
    await user.click(byId('nav-access'));
    await user.click(byId('nav-breakglass'));
    const card = await screen.findByTestId('open-uses');
    expect(card).toHaveTextContent('Open break-glass uses');
    expect(byId(`use-${bobs.id}`)).toHaveTextContent('aws-root v2, offline');
    expect(byId(`use-${bobs.id}`)).toHaveTextContent('by bob');
    await user.click(byId(`use-kind-${bobs.id}-other`));
    await user.type(byId(`use-note-${bobs.id}`), 'misuse: shared with a contractor');
    await user.click(byId(`use-submit-${bobs.id}`));
    await waitFor(() => expect(queryId('open-uses')).toBeNull());
    expect(backend.uses[0]).toMatchObject({ open: false, kind: 'other', note: 'misuse: shared with a contractor', classified_by: 'alice' });
  }, 30_000);
});
