import { screen, waitFor, within } from '@testing-library/svelte';
import { render } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import App from '../App.svelte';
import { createFakeBackend, signedOutSnapshot } from '../lib/fake';
import { checkBrokerUrls, splitBrokerUrls } from '../lib/urls';
import { byId, queryId } from './helpers';

describe('Broker URL lists (the rules the backend applies again)', () => {
  it('splits on lines, commas and spaces, trims a trailing slash and keeps the order', () => {
    expect(splitBrokerUrls('https://a.example\n https://b.example, https://c.example,,\n')).toEqual([
      'https://a.example', 'https://b.example', 'https://c.example',
    ]);
    expect(checkBrokerUrls('https://a.example/\nhttp://127.0.0.1:7878')).toEqual({
      urls: ['https://a.example', 'http://127.0.0.1:7878'], errors: [],
    });
  });

  it('needs https off this machine, and names the URL at fault', () => {
    const c = checkBrokerUrls('https://a.example\nhttp://b.example');
    expect(c.errors).toHaveLength(1);
    expect(c.errors[0]).toMatch(/^URL 2 \(http:\/\/b\.example\): The broker URL must start with https:\/\//);
    for (const ok of ['http://localhost:3000', 'http://127.0.0.2', 'http://[::1]:8080', 'https://10.0.0.5:8443']) {
      expect(checkBrokerUrls(ok).errors, ok).toEqual([]);
    }
    for (const bad of ['http://10.0.0.5', 'http://localhost.evil.example', 'http://127.0.0.1.nip.io', 'ftp://a.example', 'not-a-url']) {
      expect(checkBrokerUrls(bad).errors, bad).toHaveLength(1);
    }
  });

  it('refuses duplicates however they are spelled, and more than 8', () => {
    for (const dup of ['https://a.example/', 'https://A.example', 'https://a.example:443']) {
      expect(checkBrokerUrls(`https://a.example\n${dup}`).errors).toEqual([
        `URL 2 (${dup}) is the same as URL 1: list each broker URL once.`,
      ]);
    }
    const nine = Array.from({ length: 9 }, (_, i) => `https://fd${i}.example.com`).join('\n');
    expect(checkBrokerUrls(nine).errors[0]).toContain('At most 8 broker URLs');
    expect(checkBrokerUrls('').errors[0]).toContain('Enter the broker URL');
  });
});

describe('Sign-in with several broker URLs', () => {
  async function signedOut() {
    const backend = createFakeBackend(signedOutSnapshot());
    const user = userEvent.setup();
    render(App, { props: { backend } });
    await screen.findByTestId('signin-url');
    return { backend, user };
  }

  it('sends the URLs in order, one per line, and shows the one in use', async () => {
    const { backend, user } = await signedOut();
    await user.type(byId('signin-url'), 'https://fd-a.example.com{Enter}https://fd-b.example.com/');
    await user.type(byId('signin-token'), 'fd_tok_123');
    await user.click(byId('signin-submit'));
    expect(backend.callsTo('signIn')).toEqual([[['https://fd-a.example.com', 'https://fd-b.example.com'], 'fd_tok_123']]);
    await screen.findByTestId('nav-bundles');
    expect(byId('broker-in-use')).toHaveTextContent('fd-a.example.com · URL 1 of 2');
    expect(byId('broker-in-use').title).toContain('1. https://fd-a.example.com  (in use)');
    expect(byId('broker-in-use').title).toContain('2. https://fd-b.example.com');
    expect(byId('broker-in-use')).not.toHaveClass('failover');
  });

  it('shows what is wrong with a URL under the field as it is typed, and sends nothing', async () => {
    const { backend, user } = await signedOut();
    const field = byId('signin-url');
    await user.type(field, 'https://fd-a.example.com{Enter}http://fd-b.example.com');
    expect(queryId('signin-url-errors')).toBeNull(); // not while typing the first time
    await user.click(byId('signin-token'));
    const errors = await screen.findByTestId('signin-url-errors');
    expect(errors).toHaveTextContent('URL 2 (http://fd-b.example.com): The broker URL must start with https://');
    expect(field).toHaveAttribute('aria-invalid', 'true');
    await user.type(byId('signin-token'), 'tok');
    await user.click(byId('signin-submit'));
    expect(backend.callsTo('signIn')).toEqual([]);
    // Fixing it clears the message at once.
    await user.clear(field);
    await user.type(field, 'https://fd-a.example.com{Enter}https://fd-a.example.com/');
    expect(byId('signin-url-errors')).toHaveTextContent('URL 2 (https://fd-a.example.com/) is the same as URL 1');
    await user.clear(field);
    await user.type(field, 'https://fd-a.example.com{Enter}https://fd-b.example.com');
    expect(queryId('signin-url-errors')).toBeNull();
    expect(field).toHaveAttribute('aria-invalid', 'false');
  });

  it('uses the next URL when the first does not answer', async () => {
    const { user } = await signedOut();
    await user.type(byId('signin-url'), 'https://unreachable-a.example.com{Enter}https://fd-b.example.com');
    await user.type(byId('signin-token'), 'tok');
    await user.click(byId('signin-submit'));
    await screen.findByTestId('nav-bundles');
    expect(byId('broker-in-use')).toHaveTextContent('fd-b.example.com · URL 2 of 2');
    expect(byId('broker-in-use')).toHaveClass('failover');
  });

  it('says readably when a URL is another broker', async () => {
    const { user } = await signedOut();
    await user.type(byId('signin-url'), 'https://fd-a.example.com{Enter}https://other-broker.example.com');
    await user.type(byId('signin-token'), 'tok');
    await user.click(byId('signin-submit'));
    expect(await screen.findByTestId('signin-error')).toHaveTextContent(
      'https://other-broker.example.com presents the broker signing key',
    );
    expect(queryId('nav-bundles')).toBeNull();
  });

  it('the status bar follows a failover, and signing in again offers the same list', async () => {
    const { backend, user } = await signedOut();
    await user.type(byId('signin-url'), 'https://fd-a.example.com{Enter}https://fd-b.example.com{Enter}https://fd-c.example.com');
    await user.type(byId('signin-token'), 'tok');
    await user.click(byId('signin-submit'));
    await screen.findByTestId('nav-bundles');
    backend.failOver('https://fd-c.example.com');
    await waitFor(() => expect(byId('broker-in-use')).toHaveTextContent('fd-c.example.com · URL 3 of 3'));
    expect(within(byId('broker-in-use')).getByTestId('broker-url-position')).toHaveTextContent('· URL 3 of 3');
    expect(byId('broker-in-use')).toHaveClass('failover');
    expect(queryId('offline-banner')).toBeNull();
    await user.click(byId('account-menu'));
    await user.click(byId('sign-out'));
    await user.click(byId('signout-confirm'));
    const field = await screen.findByTestId('signin-url');
    expect((field as HTMLTextAreaElement).value).toBe(
      'https://fd-a.example.com\nhttps://fd-b.example.com\nhttps://fd-c.example.com',
    );
  });

  it('one URL shows as before, in full', async () => {
    const { user } = await signedOut();
    await user.type(byId('signin-url'), 'https://fd.example.com');
    await user.type(byId('signin-token'), 'tok');
    await user.click(byId('signin-submit'));
    await screen.findByTestId('nav-bundles');
    expect(byId('broker-in-use')).toHaveTextContent(/^https:\/\/fd\.example\.com$/);
    expect(queryId('broker-url-position')).toBeNull();
  });
});
