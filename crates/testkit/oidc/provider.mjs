// A real OpenID Provider (panva's certified `oidc-provider`) for Firedoor's SSO
// tests, started by crates/testkit/src/oidc.rs:
//
//   node provider.mjs CONFIG.json
//
// CONFIG.json: { "port": N, "users": [{ "name", "password", "groups": [] }],
//                "keys_file": "PATH", "clients": [{ "client_id", "redirect_uris" }] }
//
// - every client is a public native client (token_endpoint_auth_method none, PKCE
//   required, loopback redirect with any port per RFC 8252);
// - a user logs in on a plain HTML form, then consents on a second one (a test
//   submits both as a browser would, with the cookies the provider sets);
// - the signing key is read from keys_file (a private JWKS); if the file is missing a
//   fresh RSA key with a new `kid` is made and written there, so the harness
//   rotates the key by deleting the file and restarting.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${cfg.port}`;

if (!existsSync(cfg.keys_file)) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  jwk.kid = randomBytes(8).toString('hex');
  jwk.alg = 'RS256';
  jwk.use = 'sig';
  writeFileSync(cfg.keys_file, JSON.stringify({ keys: [jwk] }), { mode: 0o600 });
}
const jwks = JSON.parse(readFileSync(cfg.keys_file, 'utf8'));

const users = new Map(cfg.users.map((u) => [u.name, u]));

const provider = new Provider(issuer, {
  clients: cfg.clients.map((c) => ({
    client_id: c.client_id,
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: c.redirect_uris,
  })),
  jwks,
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  // Put the scopes' claims in the ID token itself (the broker reads only it).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => true },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    const u = users.get(id);
    if (!u) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: u.name, name: u.name, groups: u.groups };
      },
    };
  },
});
provider.proxy = false;

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, title, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`);
}

function loginForm(uid, error) {
  return `${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<input name="username" autocomplete="username"><input name="password" type="password">
<button type="submit">Sign in</button></form>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10000) throw new Error('form too large');
  }
  return Object.fromEntries(new URLSearchParams(body));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return page(res, 400, 'Wrong interaction', '');
  const { prompt, params } = details;
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') return page(res, 200, 'Sign in', loginForm(uid));
    return page(res, 200, 'Allow access', `<p>${escape(params.client_id)} asks for: ${escape(params.scope)}</p>
<form method="post" action="/interaction/${escape(uid)}/confirm"><button type="submit">Allow</button></form>`);
  }
  if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
    const form = await readForm(req);
    const u = users.get(form.username);
    if (!u || u.password !== form.password) {
      return page(res, 401, 'Sign in', loginForm(uid, 'Wrong user name or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: u.name } }, { mergeWithLastSubmission: false });
  }
  if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
    await readForm(req);
    const { Grant } = provider;
    const grant = details.grantId
      ? await Grant.find(details.grantId)
      : new Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  return page(res, 400, 'Unexpected step', `<p>${escape(prompt.name)}</p>`);
}

const callback = provider.callback();
const server = createServer((req, res) => {
  const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm))?$/.exec(req.url.split('?')[0]);
  if (m) {
    interaction(req, res, m[1], m[2]).catch((e) => {
      if (!res.headersSent) page(res, 400, 'Interaction failed', `<p>${escape(e.message)}</p>`);
    });
    return;
  }
  callback(req, res);
});
server.listen(cfg.port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer} (kid ${jwks.keys[0].kid})`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The harness holds our stdin: when it goes away (the test binary ended), so do we.
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
