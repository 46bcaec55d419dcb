// issue 14: report. Admins open the report of a grant or an incident: the broker's
// Markdown with a copy button, and the HTML page saved to a file.
import { waitFor } from '@testing-library/svelte';
import { describe, expect, it } from 'vitest';
import { byId, queryId, renderApp } from './helpers';

describe('Reports', () => {
  it('are not offered to people who are not admins', async () => {
    const { user, backend } = await renderApp();
    await user.click(byId('nav-access'));
    await waitFor(() => expect(backend.callsTo('reportsAllowed').length).toBeGreaterThan(0));
    expect(byId('grant-grt_demo0')).toBeInTheDocument();
    expect(queryId('report-grt_demo0')).toBeNull();
  });

  it('show an admin the Markdown of a grant, copy it, save the HTML, and open another', async () => {
    const { user, backend } = await renderApp(
      () => {},
      (b) => { b.reportsAdmin = true; return b; },
    );
    await user.click(byId('nav-access'));
    await user.click(await waitFor(() => byId('report-grt_demo0')));
    const md = await waitFor(() => byId('report-md'));
    expect(md.textContent).toMatch(/^# Firedoor report: grant grt_demo0\n/);
    expect(md.textContent).toContain('access provisioned for');
    expect(backend.callsTo('report')).toEqual([['grant', 'grt_demo0', 'md']]);

    await user.click(byId('report-copy'));
    expect(byId('report-note')).toHaveTextContent('Markdown copied.');
    expect(await navigator.clipboard.readText()).toBe(md.textContent);

    await user.click(byId('report-save'));
    await waitFor(() => expect(byId('report-note')).toHaveTextContent(
      'Saved /home/demo/Downloads/firedoor-report-grant-grt_demo0.html'));
    expect(backend.savedReports).toEqual(['/home/demo/Downloads/firedoor-report-grant-grt_demo0.html']);

    // Another id: the broker's answer is shown, not a stale report.
    await user.clear(byId('report-id'));
    await user.type(byId('report-id'), 'grt_nope');
    await user.click(byId('report-open'));
    await waitFor(() => expect(byId('report-error')).toHaveTextContent('no such grant'));
    expect(queryId('report-md')).toBeNull();
  });

  it('say plainly when the broker refuses (not an admin any more)', async () => {
    const { user, backend } = await renderApp(
      () => {},
      (b) => { b.reportsAdmin = true; return b; },
    );
    await user.click(byId('nav-access'));
    const open = await waitFor(() => byId('report-grt_demo0'));
    backend.reportsAdmin = false;
    await user.click(open);
    await waitFor(() => expect(byId('report-error')).toHaveTextContent('Reports are for admins.'));
  });
});
