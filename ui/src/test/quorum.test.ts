// issue 14: quorum. The two-person unlock flow in the Break glass view, on the fake
// backend: a secret that needs two people cannot be unlocked alone; the request is
// shown as text and QR code; the other person's release is pasted; too few shares and
// a release for another request are refused as the backend says; the secret shows.
import { waitFor } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import { DEMO_PASSPHRASE, demoSecret } from '../lib/fake';
import type { Snapshot } from '../lib/types';
import { byId, queryId, renderApp } from './helpers';

const withQuorum = (s: Snapshot) => {
  const c = { ...s.break_glass.credentials[0], name: 'vault-root', title: 'Vault root token', quorum: 2 };
  s.break_glass.credentials.push(c);
};

describe('Break glass: two-person unlock', () => {
  it('asks, releases, refuses what does not fit and opens with two shares', async () => {
    const { user, backend } = await renderApp(withQuorum);
    await user.click(byId('nav-breakglass'));
    // One person cannot unlock it directly.
    expect(byId('unlock-vault-root')).toBeDisabled();
    expect(byId('unlock-vault-root')).toHaveAttribute('title', 'Needs 2 people: use the two-person unlock below.');

    await user.type(byId('quorum-reason'), 'INC-7 vault sealed');
    await user.type(byId('quorum-pass'), DEMO_PASSPHRASE);
    await user.click(byId('quorum-ask-submit'));
    await waitFor(() => expect((byId('quorum-request-text') as HTMLTextAreaElement).value).toMatch(/^firedoor-unlock-request:v1:/));
    expect(byId('quorum-request-qr').getAttribute('src')).toMatch(/^data:image\/svg\+xml;base64,/);
    expect(backend.callsTo('quorumRequest')).toEqual([['vault-root', 'INC-7 vault sealed', DEMO_PASSPHRASE]]);
    const requestText = (byId('quorum-request-text') as HTMLTextAreaElement).value;

    // Without the other share nothing opens.
    await user.type(byId('quorum-pass'), DEMO_PASSPHRASE);
    await user.click(byId('quorum-ask-submit'));
    await waitFor(() => expect(byId('quorum-ask-error')).toHaveTextContent('1 of 2 shares'));
    expect(queryId('quorum-result')).toBeNull();

    // The other person (here the same fake) checks and releases.
    await user.click(byId('quorum-incoming'));
    await user.paste(requestText);
    await user.click(byId('quorum-inspect'));
    await waitFor(() => expect(byId('quorum-seen')).toHaveTextContent('INC-7 vault sealed'));
    await user.type(byId('quorum-release-pass'), DEMO_PASSPHRASE);
    await user.click(byId('quorum-release-submit'));
    await waitFor(() => expect((byId('quorum-release-text') as HTMLTextAreaElement).value).toMatch(/^firedoor-share-release:v1:/));
    const releaseText = (byId('quorum-release-text') as HTMLTextAreaElement).value;

    // A release for another request is refused.
    await user.click(byId('quorum-releases'));
    await user.paste('firedoor-share-release:v1:someotherrequest');
    await user.type(byId('quorum-pass'), DEMO_PASSPHRASE);
    await user.click(byId('quorum-ask-submit'));
    await waitFor(() => expect(byId('quorum-ask-error')).toHaveTextContent('The release answers another unlock request.'));

    // The right one opens it, masked until revealed.
    await user.clear(byId('quorum-releases'));
    await user.click(byId('quorum-releases'));
    await user.paste(releaseText);
    await user.type(byId('quorum-pass'), DEMO_PASSPHRASE);
    await user.click(byId('quorum-ask-submit'));
    await waitFor(() => expect(byId('quorum-result')).toHaveTextContent('shares of bob'));
    expect(byId('quorum-secret')).toHaveTextContent('••••••••••');
    await user.click(byId('quorum-reveal'));
    const v = backend.state.break_glass.credentials.find((c) => c.name === 'vault-root')!.version;
    expect(byId('quorum-secret')).toHaveTextContent(demoSecret('vault-root', v));
    expect(byId('quorum-pass')).toHaveValue('');
  }, 30_000);
});
