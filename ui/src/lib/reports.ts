// issue 14: report. Whether the signed-in user may read reports (an admin), asked of
// the backend once per backend and user, and only when a view offers a report.
import type { Backend } from './backend';

const asked = new WeakMap<Backend, Map<string, Promise<boolean>>>();

export function reportsAllowed(backend: Backend, user: string | null | undefined): Promise<boolean> {
  if (!user) return Promise.resolve(false);
  let byUser = asked.get(backend);
  if (!byUser) asked.set(backend, (byUser = new Map()));
  let answer = byUser.get(user);
  if (!answer) {
    answer = backend.reportsAllowed().catch(() => false);
    // A refusal while offline is asked again next time.
    answer.then((v) => { if (!v) byUser.delete(user); }, () => byUser.delete(user));
    byUser.set(user, answer);
  }
  return answer;
}
