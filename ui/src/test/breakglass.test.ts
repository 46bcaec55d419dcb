import { fireEvent, screen, waitFor, within } from '@testing-library/svelte';
import { tick } from 'svelte';
import { describe, expect, it, vi } from 'vitest';
import { DEMO_BROKER_FINGERPRINT, DEMO_PASSPHRASE, demoBreakGlass, demoSecret } from '../lib/fake';
import type { Snapshot, UnlockResult } from '../lib/types';
import { byId, queryId, renderApp, toastSays } from './helpers';

const H = 3_600_000;
const MASK = '••••••••••';
const ROOT_SECRET = demoSecret('prod-db-root', 4);

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((res) => { resolve = res; });
  return { promise, resolve };
}

const offline = (s: Snapshot) => {
  Object.assign(s.status, { online: false, offline_since: new Date().toISOString(), last_error: 'connection refused' });
};
const unenrolled = (s: Snapshot) => { s.break_glass = demoBreakGlass(Date.now(), false); };

/** Lets the fake backend's promises settle while fake timers are installed. */
async function settle() {
  for (let i = 0; i < 5; i++) await vi.advanceTimersByTimeAsync(0);
}

describe('Break glass: enrolment', () => {
  it('explains the passphrase and checks length and confirmation before calling the backend', async () => {
    const { user, backend } = await renderApp(unenrolled);
    await user.click(byId('nav-breakglass'));
    expect(byId('nav-breakglass')).toHaveAttribute('aria-current', 'page');
    expect(byId('enrol-card')).toHaveTextContent('needs a local unlock passphrase');
    expect(byId('enrol-card')).toHaveTextContent('a copied disk holds no key, and anyone using your logged-in session still needs the passphrase');
    // The pinned broker key is shown before enrolment too, to be compared out of band.
    expect(byId('broker-fingerprint')).toHaveTextContent(backend.state.break_glass.device.broker_fingerprint!);
    expect(screen.getByLabelText(/^Unlock passphrase/)).toBe(byId('enrol-passphrase'));
    expect(screen.getByLabelText('Confirm passphrase')).toBe(byId('enrol-confirm'));
    expect(byId('enrol-passphrase')).toHaveAttribute('type', 'password');

    await user.click(byId('enrol-submit'));
    expect(byId('enrol-error')).toHaveTextContent('The passphrase must be at least 12 characters.');

    await user.type(byId('enrol-passphrase'), 'short');
    await user.type(byId('enrol-confirm'), 'short');
    await user.click(byId('enrol-submit'));
    expect(byId('enrol-error')).toHaveTextContent('at least 12 characters');

    await user.clear(byId('enrol-passphrase'));
    await user.clear(byId('enrol-confirm'));
    await user.type(byId('enrol-passphrase'), 'long enough one');
    await user.type(byId('enrol-confirm'), 'long enough two');
    await user.click(byId('enrol-submit'));
    expect(byId('enrol-error')).toHaveTextContent('The two passphrases do not match.');
    expect(backend.callsTo('enrolDevice')).toEqual([]);

    // The backend's own refusal is shown as it says it.
    await user.clear(byId('enrol-passphrase'));
    await user.clear(byId('enrol-confirm'));
    await user.type(byId('enrol-passphrase'), 'passwordpassword');
    await user.type(byId('enrol-confirm'), 'passwordpassword');
    await user.click(byId('enrol-submit'));
    expect(backend.callsTo('enrolDevice')).toEqual([['passwordpassword']]);
    await waitFor(() => expect(byId('enrol-error'))
      .toHaveTextContent(/^This passphrase is too easy to guess \(strength 0 of 4; .*This is a very common password\. Add another word or two\./));
    expect(byId('enrol-card')).toBeInTheDocument();
  });

  // Attack: a long-enough but guessable passphrase. Its strength is judged (zxcvbn in
  // Rust) and the feedback is shown while it is typed, not only after a refusal.
  it('shows the strength feedback while the passphrase is typed', async () => {
    const { user, backend } = await renderApp(unenrolled);
    await user.click(byId('nav-breakglass'));
    expect(queryId('passphrase-feedback')).toBeNull();
    await user.type(byId('enrol-passphrase'), 'passwordpassword');
    await waitFor(() => expect(byId('passphrase-feedback'))
      .toHaveTextContent('Strength 0 of 4: too easy to guess. This is a very common password. Add another word or two.'));
    expect(byId('passphrase-feedback')).toHaveClass('warn-text');
    await user.clear(byId('enrol-passphrase'));
    await user.type(byId('enrol-passphrase'), 'staple battery horse');
    await waitFor(() => expect(byId('passphrase-feedback')).toHaveTextContent(/^Strength 4 of 4: good\.$/));
    expect(backend.callsTo('passphraseStrength').at(-1)).toEqual(['staple battery horse']);
    expect(backend.callsTo('enrolDevice')).toEqual([]);
  });

  it('shows an offline enrolment error readably', async () => {
    const { user, backend } = await renderApp((s) => { unenrolled(s); offline(s); });
    await user.click(byId('nav-breakglass'));
    expect(byId('enrol-card')).toHaveTextContent('needs a connection');
    await user.type(byId('enrol-passphrase'), 'staple battery horse');
    await user.type(byId('enrol-confirm'), 'staple battery horse');
    await user.click(byId('enrol-submit'));
    await waitFor(() => expect(byId('enrol-error'))
      .toHaveTextContent('Enrolling this device needs the broker, which is unreachable right now.'));
    expect(backend.state.break_glass.device.enrolled).toBe(false);
  });

  it('shows a busy state while the keys are wrapped, then the enrolled device', async () => {
    const gate = deferred<void>();
    const { user, backend } = await renderApp(unenrolled, (b) => ({
      ...b, enrolDevice: (p) => gate.promise.then(() => b.enrolDevice(p)),
    }));
    await user.click(byId('nav-breakglass'));
    await user.type(byId('enrol-passphrase'), 'staple battery horse');
    await user.type(byId('enrol-confirm'), 'staple battery horse');
    await user.click(byId('enrol-submit'));
    expect(byId('enrol-submit')).toHaveAttribute('aria-disabled', 'true');
    expect(byId('enrol-submit')).toHaveTextContent('Enrolling…');
    expect(byId('enrol-submit')).toHaveFocus();
    expect(byId('enrol-passphrase')).toHaveAttribute('readonly');
    await user.click(byId('enrol-submit')); // a second click while busy does nothing
    expect(backend.callsTo('enrolDevice')).toHaveLength(0); // still waiting at the gate
    gate.resolve();
    await waitFor(() => expect(byId('broker-fingerprint')).toHaveTextContent(DEMO_BROKER_FINGERPRINT));
    expect(backend.callsTo('enrolDevice')).toEqual([['staple battery horse']]);
    expect(queryId('enrol-card')).toBeNull();
    expect(queryId('enrol-error')).toBeNull();
    expect(byId('device-name')).toHaveTextContent('alice-laptop');
    expect(byId('device-id')).toHaveTextContent(backend.state.break_glass.device.device_id!);
    // Seven days from "just now", floored: 7 if the view renders in the same millisecond as the seal, else 6.
    expect(byId('freshness-prod-db-root')).toHaveTextContent(/^sealed just now, valid [67] more days$/);
    await toastSays('This device is enrolled for offline break glass.');
  });

  it('the nav says "set up" until the device is enrolled, then counts waiting records', async () => {
    const { user, backend } = await renderApp(unenrolled);
    expect(byId('breakglass-setup')).toHaveTextContent('set up');
    await user.click(byId('nav-breakglass'));
    await user.type(byId('enrol-passphrase'), 'staple battery horse');
    await user.type(byId('enrol-confirm'), 'staple battery horse');
    await user.click(byId('enrol-submit'));
    await waitFor(() => expect(queryId('breakglass-setup')).toBeNull());
    backend.state.break_glass.device.pending_records = 2;
    backend.emit();
    await waitFor(() => expect(byId('nav-breakglass')).toHaveTextContent(/Break glass\s*2/));
  });
});

describe('Break glass: device and sealed credentials', () => {
  it('shows the device, the pinned broker key and each envelope with its freshness', async () => {
    const { user } = await renderApp((s) => {
      const now = Date.now();
      s.break_glass.credentials.push(
        {
          name: 'vault-unseal', title: 'Vault unseal key', description: '', version: 1,
          sealed_at: new Date(now - H).toISOString(), not_before: new Date(now + 2 * H + 30_000).toISOString(),
          not_after: new Date(now + 7 * 24 * H).toISOString(), state: 'not_yet_valid', problem: null,
        },
        {
          name: 'ldap-admin', title: 'LDAP admin', description: '', version: 9,
          sealed_at: new Date(now - H).toISOString(), not_before: new Date(now - H).toISOString(),
          not_after: new Date(now + 6 * 24 * H).toISOString(), state: 'invalid',
          problem: 'signature does not match the pinned broker key',
        },
      );
    });
    await user.click(byId('nav-breakglass'));
    expect(byId('device-name')).toHaveTextContent('alice-laptop');
    expect(byId('device-id')).toHaveTextContent('dev_7f3a9c');
    expect(byId('broker-fingerprint')).toHaveTextContent(DEMO_BROKER_FINGERPRINT);
    expect(queryId('pending-records')).toBeNull();
    expect(queryId('chain-error')).toBeNull();
    expect(queryId('lockout')).toBeNull();

    const root = byId('sealed-prod-db-root');
    expect(root).toHaveTextContent('Production database root');
    expect(root).toHaveTextContent('prod-db-root');
    expect(root).toHaveTextContent('v4');
    expect(byId('freshness-prod-db-root')).toHaveTextContent(/^sealed 3 h ago, valid 6 more days$/);
    expect(byId('freshness-k8s-breakglass')).toHaveTextContent(/^sealed 2 days ago, valid 4 more days$/);
    expect(byId('freshness-aws-root')).toHaveTextContent(/^expired 2 days ago — connect to refresh$/);
    expect(byId('freshness-vault-unseal')).toHaveTextContent(/^not valid yet — becomes valid in 2 h$/);
    expect(byId('freshness-ldap-admin'))
      .toHaveTextContent(/^refused: signature does not match the pinned broker key$/);
    expect(screen.getAllByTestId(/^sealed-/)).toHaveLength(5);
  });

  it('online, every envelope goes through the broker; offline, only valid ones open', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-breakglass'));
    for (const name of ['prod-db-root', 'k8s-breakglass', 'aws-root']) {
      expect(byId(`unlock-${name}`)).toHaveTextContent(/^Break glass \(online, alerts security\)$/);
      expect(byId(`unlock-${name}`)).toBeEnabled();
    }
    backend.setOnline(false);
    await waitFor(() => expect(byId('unlock-prod-db-root')).toHaveTextContent(/^Unlock offline$/));
    expect(byId('unlock-prod-db-root')).toBeEnabled();
    expect(byId('unlock-k8s-breakglass')).toBeEnabled();
    expect(byId('unlock-aws-root')).toHaveTextContent(/^Unlock offline$/);
    expect(byId('unlock-aws-root')).toBeDisabled();
  });

  it('says so when there are no sealed credentials', async () => {
    const { user } = await renderApp((s) => { s.break_glass.credentials = []; });
    await user.click(byId('nav-breakglass'));
    expect(screen.getByText(/No sealed credentials on this device yet/)).toBeInTheDocument();
    expect(screen.queryAllByTestId(/^sealed-/)).toHaveLength(0);
  });

  it('shows pending unlock records and a broken audit chain loudly', async () => {
    const { user, backend } = await renderApp((s) => {
      s.break_glass.device.pending_records = 2;
      s.break_glass.device.chain_ok = false;
      s.break_glass.device.chain_error = 'Record #7 is missing: record #8 points to a different hash.';
    });
    await user.click(byId('nav-breakglass'));
    expect(byId('pending-records')).toHaveTextContent(/^2 unlock records waiting to reach the broker$/);
    const alarm = byId('chain-error');
    expect(alarm).toHaveAttribute('role', 'alert');
    expect(alarm).toHaveTextContent('Record #7 is missing: record #8 points to a different hash.');

    backend.state.break_glass.device.pending_records = 1;
    backend.state.break_glass.device.chain_ok = true;
    backend.state.break_glass.device.chain_error = null;
    backend.emit();
    await waitFor(() => expect(byId('pending-records')).toHaveTextContent(/^1 unlock record waiting to reach the broker$/));
    expect(queryId('chain-error')).toBeNull();
  });

  it('counts a lock-out down live on the device clock and disables unlocking meanwhile', async () => {
    const NOW = Date.now();
    // The lock-out is set with this device's clock: the broker offset does not apply.
    const { backend } = await renderApp((s) => {
      s.status.clock_offset_ms = 5000;
      s.break_glass.device.failed_attempts = 5;
      s.break_glass.device.locked_until = new Date(NOW + (14 * 60 + 8) * 1000).toISOString();
    });
    vi.useFakeTimers({ now: NOW });
    await fireEvent.click(byId('nav-breakglass'));
    await tick();
    expect(byId('lockout')).toHaveTextContent('locked for 14 min 8 s more');
    expect(byId('unlock-prod-db-root')).toBeDisabled();
    expect(byId('unlock-k8s-breakglass')).toBeDisabled();
    await vi.advanceTimersByTimeAsync(1000);
    expect(byId('lockout')).toHaveTextContent('locked for 14 min 7 s more');
    await vi.advanceTimersByTimeAsync(14 * 60_000);
    expect(byId('lockout')).toHaveTextContent('locked for 7 s more');
    await vi.advanceTimersByTimeAsync(7000);
    expect(queryId('lockout')).toBeNull();
    expect(byId('unlock-prod-db-root')).toBeEnabled();
    expect(backend.callsTo('unlockSecret')).toEqual([]);
  });
});

describe('Break glass: unlocking', () => {
  it('offline: records, shows the secret masked, reveals, copies, and hides it after the countdown', async () => {
    const logs = (['log', 'info', 'debug', 'warn', 'error'] as const).map((m) => vi.spyOn(console, m));
    const { user, backend } = await renderApp(offline);
    await user.click(byId('nav-breakglass'));
    await user.click(byId('unlock-prod-db-root'));
    const dialog = byId('unlock-dialog');
    expect(dialog).toHaveTextContent('Production database root');
    expect(dialog).toHaveTextContent('recorded');
    expect(dialog).toHaveTextContent('rotated once the broker sees it');
    expect(byId('unlock-reason')).toHaveFocus();
    expect(screen.getByLabelText('Reason (recorded with the unlock)')).toBe(byId('unlock-reason'));
    expect(within(dialog).getByLabelText('Unlock passphrase')).toHaveAttribute('type', 'password');
    expect(byId('unlock-submit')).toHaveTextContent(/^Unlock offline$/);

    // A reason is required, before anything reaches the backend.
    await user.type(byId('unlock-passphrase'), DEMO_PASSPHRASE);
    await user.click(byId('unlock-submit'));
    expect(byId('unlock-error')).toHaveTextContent('A reason is required');
    expect(backend.callsTo('unlockSecret')).toEqual([]);

    await user.type(byId('unlock-reason'), 'SSO down, orders failing (INC-991)');
    expect(byId('unlock-passphrase')).toHaveValue(DEMO_PASSPHRASE); // kept after the reason check
    vi.useFakeTimers();
    await fireEvent.click(byId('unlock-submit'));
    await settle();
    expect(backend.callsTo('unlockSecret'))
      .toEqual([['prod-db-root', 'SSO down, orders failing (INC-991)', DEMO_PASSPHRASE]]);

    const result = byId('unlock-result');
    expect(result).toHaveTextContent('Production database root');
    expect(result).toHaveTextContent('version 4');
    expect(byId('unlock-mode')).toHaveTextContent(
      /opened offline from the sealed envelope — recorded locally as record #1, uploads when the broker is back/i);
    expect(byId('secret-value')).toHaveTextContent(new RegExp(`^${MASK}$`));
    expect(byId('unlock-dialog')).not.toHaveTextContent(ROOT_SECRET);
    expect(byId('secret-hide-countdown')).toHaveTextContent(/^hides in 60 s$/);
    expect(byId('secret-reveal')).toHaveFocus();

    await fireEvent.click(byId('secret-reveal'));
    expect(byId('secret-value')).toHaveTextContent(new RegExp(`^${ROOT_SECRET}$`));
    expect(byId('secret-reveal')).toHaveTextContent('Hide');
    await fireEvent.click(byId('secret-reveal'));
    expect(byId('secret-value')).toHaveTextContent(new RegExp(`^${MASK}$`));

    await fireEvent.click(byId('secret-copy'));
    await settle();
    expect(backend.callsTo('copySecret')).toEqual([[ROOT_SECRET]]);
    expect(byId('toast')).toHaveTextContent(/^Copied — clipboard clears in 30 s$/);

    await fireEvent.click(byId('secret-reveal'));
    await vi.advanceTimersByTimeAsync(2000);
    expect(byId('secret-hide-countdown')).toHaveTextContent(/^hides in 58 s$/);
    expect(byId('secret-value')).toHaveTextContent(ROOT_SECRET);
    await vi.advanceTimersByTimeAsync(57_000);
    expect(byId('secret-hide-countdown')).toHaveTextContent(/^hides in 1 s$/);
    await vi.advanceTimersByTimeAsync(1000);
    expect(byId('secret-value')).toHaveTextContent(/^Hidden$/);
    expect(queryId('secret-hide-countdown')).toBeNull();
    expect(byId('secret-reveal')).toBeDisabled();
    expect(byId('secret-copy')).toBeDisabled();
    expect(document.body).not.toHaveTextContent(ROOT_SECRET);

    // The record waits for the broker.
    await fireEvent.click(byId('unlock-close'));
    await settle();
    expect(queryId('unlock-dialog')).toBeNull();
    expect(byId('pending-records')).toHaveTextContent(/^1 unlock record waiting to reach the broker$/);

    for (const spy of logs) {
      for (const args of spy.mock.calls) expect(JSON.stringify(args)).not.toContain(ROOT_SECRET);
    }
    expect(window.location.href).not.toContain(ROOT_SECRET);
  });

  it('Escape closes the result and drops the secret', async () => {
    const { user } = await renderApp(offline);
    await user.click(byId('nav-breakglass'));
    await user.click(byId('unlock-k8s-breakglass'));
    await user.type(byId('unlock-reason'), 'cluster on fire');
    await user.type(byId('unlock-passphrase'), DEMO_PASSPHRASE);
    await user.click(byId('unlock-submit'));
    await screen.findByTestId('unlock-result');
    await user.click(byId('secret-reveal'));
    expect(byId('secret-value')).toHaveTextContent(demoSecret('k8s-breakglass', 7));
    await user.keyboard('{Escape}');
    expect(queryId('unlock-dialog')).toBeNull();
    expect(document.body).not.toHaveTextContent(demoSecret('k8s-breakglass', 7));
    expect(byId('unlock-k8s-breakglass')).toHaveFocus();
    // Opening again starts from the form, not the old result.
    await user.click(byId('unlock-k8s-breakglass'));
    expect(queryId('unlock-result')).toBeNull();
    expect(byId('unlock-reason')).toHaveValue('');
  });

  it('shows wrong passphrases verbatim, then the lock-out, which disables unlocking', async () => {
    const { user, backend } = await renderApp(offline);
    await user.click(byId('nav-breakglass'));
    await user.click(byId('unlock-prod-db-root'));
    await user.type(byId('unlock-reason'), 'testing the lock');
    for (let i = 1; i <= 4; i++) {
      await user.type(byId('unlock-passphrase'), `guess ${i}`);
      await user.click(byId('unlock-submit'));
      const left = 5 - i;
      await waitFor(() => expect(byId('unlock-error')).toHaveTextContent(
        `Wrong passphrase. ${left} attempt${left === 1 ? '' : 's'} left before a 15-minute lock-out.`));
      expect(byId('unlock-passphrase')).toHaveValue('');
      expect(queryId('unlock-result')).toBeNull();
    }
    await user.type(byId('unlock-passphrase'), 'guess 5');
    await user.click(byId('unlock-submit'));
    await waitFor(() => expect(byId('unlock-error'))
      .toHaveTextContent('Locked out after 5 wrong passphrases. Try again in 15 min.'));
    await waitFor(() => expect(byId('unlock-submit')).toBeDisabled());
    expect(backend.callsTo('unlockSecret')).toHaveLength(5);

    await user.keyboard('{Escape}');
    expect(byId('lockout')).toHaveTextContent(/locked for 1[45] min( \d+ s)? more/);
    expect(byId('unlock-prod-db-root')).toBeDisabled();
    expect(byId('unlock-k8s-breakglass')).toBeDisabled();
  });

  it('online: goes through the broker, busy meanwhile, and says security was alerted', async () => {
    const gate = deferred<void>();
    const { user, backend } = await renderApp(undefined, (b) => ({
      ...b,
      unlockSecret: (n, r, p): Promise<UnlockResult> => gate.promise.then(() => b.unlockSecret(n, r, p)),
    }));
    await user.click(byId('nav-breakglass'));
    await user.click(byId('unlock-aws-root')); // expired copy: the broker does not need it
    expect(byId('unlock-dialog')).toHaveTextContent('security is alerted');
    expect(byId('unlock-submit')).toHaveTextContent(/^Break glass$/);
    await user.type(byId('unlock-reason'), 'account takeover');
    await user.type(byId('unlock-passphrase'), DEMO_PASSPHRASE);
    await user.click(byId('unlock-submit'));
    expect(byId('unlock-submit')).toHaveTextContent('Unlocking…');
    expect(byId('unlock-submit')).toHaveAttribute('aria-disabled', 'true');
    expect(byId('unlock-form')).toHaveAttribute('aria-busy', 'true');
    await user.click(byId('unlock-submit')); // ignored while busy
    gate.resolve();
    await screen.findByTestId('unlock-result');
    expect(byId('unlock-mode')).toHaveTextContent(/released by the broker — security has been alerted/i);
    expect(byId('unlock-mode')).not.toHaveTextContent('record #');
    expect(byId('secret-value')).toHaveTextContent(new RegExp(`^${MASK}$`));
    expect(backend.callsTo('unlockSecret')).toEqual([['aws-root', 'account takeover', DEMO_PASSPHRASE]]);
    expect(backend.state.break_glass.device.pending_records).toBe(0);
    expect(queryId('pending-records')).toBeNull();
  });

  it('shows a refused envelope verbatim, and drops a result that arrives after closing', async () => {
    const gate = deferred<void>();
    let gated = false;
    const { user, backend } = await renderApp(offline, (b) => ({
      ...b,
      unlockSecret: (n, r, p): Promise<UnlockResult> =>
        (gated ? gate.promise : Promise.resolve()).then(() => b.unlockSecret(n, r, p)),
    }));
    await user.click(byId('nav-breakglass'));
    await user.click(byId('unlock-prod-db-root'));
    await user.type(byId('unlock-reason'), 'incident');
    await user.type(byId('unlock-passphrase'), DEMO_PASSPHRASE);
    backend.failNext('unlockSecret', {
      code: 'envelope_invalid', message: 'Refused: signature does not match the pinned broker key.',
    });
    await user.click(byId('unlock-submit'));
    await waitFor(() => expect(byId('unlock-error'))
      .toHaveTextContent(/^Refused: signature does not match the pinned broker key\.$/));

    gated = true;
    await user.type(byId('unlock-passphrase'), DEMO_PASSPHRASE);
    await user.click(byId('unlock-submit'));
    await user.keyboard('{Escape}');
    expect(queryId('unlock-dialog')).toBeNull();
    gate.resolve();
    await waitFor(() => expect(backend.state.break_glass.device.pending_records).toBe(1));
    await waitFor(() => expect(byId('pending-records')).toBeInTheDocument());
    expect(queryId('unlock-result')).toBeNull();
    expect(document.body).not.toHaveTextContent(ROOT_SECRET);
  });
  it('puts the cursor where the refusal says: the reason, or the passphrase', async () => {
    const { user, backend } = await renderApp(offline);
    await user.click(byId('nav-breakglass'));
    await user.click(byId('unlock-prod-db-root'));
    await user.type(byId('unlock-reason'), 'x');
    await user.type(byId('unlock-passphrase'), DEMO_PASSPHRASE);
    backend.failNext('unlockSecret', { code: 'validation', message: 'Keep the reason under 500 characters.' });
    await user.click(byId('unlock-submit'));
    await waitFor(() => expect(byId('unlock-error')).toHaveTextContent('Keep the reason under 500 characters.'));
    await waitFor(() => expect(byId('unlock-reason')).toHaveFocus());

    await user.type(byId('unlock-passphrase'), 'wrong');
    await user.click(byId('unlock-submit'));
    await waitFor(() => expect(byId('unlock-error')).toHaveTextContent(/^Wrong passphrase\./));
    await waitFor(() => expect(byId('unlock-passphrase')).toHaveFocus());
  });
});

describe('Break glass: a changed broker key', () => {
  const OLD = 'SHA256:3q2+7wZk1n0x8JtQpVd4mL9cR6sYb2uE5hA7fG0iKoM';
  const NEW = 'SHA256:Qm9ndXMgbmV3IGtleSBmcm9tIGFuIGltcG9zdG9yIQ';
  const changed = (s: Snapshot) => {
    s.break_glass.device.broker_key_change = { pinned_fingerprint: OLD, new_fingerprint: NEW, seen_at: new Date().toISOString() };
  };

  // Attack: the broker (or something in its place) presents another signing key. The app
  // never re-pins it silently: it shows both fingerprints to compare, and break glass waits.
  it('shows both fingerprints, stops unlocking, and re-pins only when the user confirms', async () => {
    const { user, backend } = await renderApp(changed);
    await user.click(byId('nav-breakglass'));
    expect(byId('broker-key-change')).toHaveTextContent('The broker’s signing key changed. Break glass is stopped.');
    expect(byId('key-change-pinned')).toHaveTextContent(OLD);
    expect(byId('key-change-new')).toHaveTextContent(NEW);
    expect(byId('broker-key-change')).toHaveTextContent('not with anything the broker shows');
    await expect(backend.unlockSecret('prod-db-root', 'INC-1', DEMO_PASSPHRASE))
      .rejects.toMatchObject({ code: 'broker_key_changed' });

    await user.click(byId('key-change-confirm'));
    await waitFor(() => expect(queryId('broker-key-change')).toBeNull());
    expect(backend.callsTo('confirmBrokerKey')).toEqual([[NEW]]);
    expect(byId('broker-fingerprint')).toHaveTextContent(NEW);
    await toastSays('The broker\'s new key is pinned');
  });

  it('shows a refused confirmation and offers to sign out instead', async () => {
    const { user, backend } = await renderApp(changed, (b) => ({
      ...b,
      confirmBrokerKey: () => Promise.reject({ code: 'fingerprint_mismatch', message: 'The broker’s new key is SHA256:other, not the one confirmed. Compare again.' }),
    }));
    await user.click(byId('nav-breakglass'));
    await user.click(byId('key-change-confirm'));
    await waitFor(() => expect(byId('key-change-error')).toHaveTextContent('Compare again.'));
    expect(byId('key-change-pinned')).toHaveTextContent(OLD);
    await user.click(byId('key-change-signout'));
    await waitFor(() => expect(backend.callsTo('signOut')).toHaveLength(1));
  });
});
