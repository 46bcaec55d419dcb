// The broker URLs of a sign-in, checked as the user types. The same rules as the
// backend's (crates/client/src/trust.rs: check_broker_urls), which checks them again
// at sign-in: this copy only makes the messages appear before anything is sent.

export const MAX_BROKER_URLS = 8;

export interface UrlListCheck {
  /** The URLs, trimmed, without a trailing slash, in order (the first is the primary). */
  urls: string[];
  /** One message per problem, each naming its URL when there are several. */
  errors: string[];
}

/** One URL per line (commas and spaces separate too). */
export function splitBrokerUrls(text: string): string[] {
  return text.split(/[\s,]+/).filter(Boolean);
}

function isLoopback(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::1';
}

/** Why one broker URL is refused, or null. */
export function checkBrokerUrl(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url.trim());
  } catch {
    return `'${url}' is not a broker URL; it looks like https://firedoor.example.com`;
  }
  if (u.protocol === 'https:') return null;
  if (u.protocol === 'http:') {
    if (isLoopback(u.hostname)) return null;
    return 'The broker URL must start with https:// (plain http:// is only allowed for a broker on this machine, '
      + `such as http://127.0.0.1). Use https://${u.host}.`;
  }
  return `The broker URL must start with https:// (not ${u.protocol}//).`;
}

/** Checks what was typed: 1 to 8 URLs, each acceptable, none twice. */
export function checkBrokerUrls(text: string): UrlListCheck {
  const list = splitBrokerUrls(text);
  const errors: string[] = [];
  if (list.length === 0) {
    return { urls: [], errors: ['Enter the broker URL, for example https://firedoor.example.com.'] };
  }
  if (list.length > MAX_BROKER_URLS) {
    errors.push(`At most ${MAX_BROKER_URLS} broker URLs, please (${list.length} given): list the replicas of one broker.`);
  }
  const many = list.length > 1;
  const seen: string[] = [];
  list.forEach((url, i) => {
    const problem = checkBrokerUrl(url);
    if (problem) {
      errors.push(many ? `URL ${i + 1} (${url}): ${problem}` : problem);
      seen.push('');
      return;
    }
    const same = new URL(url).href.replace(/\/+$/, '');
    const j = seen.indexOf(same);
    if (j >= 0) errors.push(`URL ${i + 1} (${url}) is the same as URL ${j + 1}: list each broker URL once.`);
    seen.push(same);
  });
  return { urls: list.map((u) => u.replace(/\/+$/, '')), errors };
}

/** The host (and port) of a URL, for compact display. */
export function hostOf(url: string): string {
  try {
    return new URL(url).host || url;
  } catch {
    return url;
  }
}
