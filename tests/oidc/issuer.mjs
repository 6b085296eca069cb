// Test issuer for hoop's identity tests: the real npm `oidc-provider` (discovery, JWKS, signed
// JWTs) served over HTTPS on loopback, plus token request endpoints shaped like the CI services'
// that mint through it:
//   GET  /gh/token?audience=A            Authorization: Bearer <request token>  -> {"value": jwt}
//   POST /ado/oidctoken?api-version=7.1&serviceConnectionId=ID   (same bearer)  -> {"oidcToken": jwt}
// Test control (plain HTTP on --admin-port, loopback only):
//   POST /admin/job    {request_token, sub, claims, alg?, service_connection?, aud?}
//   POST /admin/mint   {request_token, aud}            -> {token}
//   POST /admin/rotate {drop_old}                       -> {kid}   (new RSA signing key first)
//   GET  /admin/stats                                   -> request counters
// Usage: node issuer.mjs --port N --admin-port M --cert PEM --key PEM --ca PEM
// (prints {"ready": issuer} once both listen)

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: opt } = parseArgs({
  options: {
    port: { type: 'string' },
    'admin-port': { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
  },
});
const issuer = `https://127.0.0.1:${opt.port}`;
const ca = fs.readFileSync(opt.ca);
const CLIENT_SECRET = crypto.randomBytes(24).toString('hex');

let serial = 0;
function newKey(kty) {
  serial += 1;
  const { privateKey } = kty === 'EC'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `${kty.toLowerCase()}-${serial}`, use: 'sig', alg: kty === 'EC' ? 'ES256' : 'RS256' };
}

let rsaKeys = [newKey('RSA')];
const ecKey = newKey('EC');
const jobs = new Map(); // request token -> job
const stats = { gh: 0, ado: 0, jwks: 0, discovery: 0, mint: 0 };

function build() {
  const subs = [...new Set([...jobs.values()].map((j) => j.sub))];
  return new Provider(issuer, {
    clients: subs.map((sub) => ({
      client_id: sub,
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    })),
    jwks: { keys: [...rsaKeys, ecKey] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:hoop:token',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx) => {
          const job = jobs.get(ctx.get('x-job'));
          return {
            scope: '',
            audience: ctx.get('x-aud'),
            accessTokenFormat: 'jwt',
            accessTokenTTL: 600,
            jwt: { sign: { alg: job?.alg || 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: (ctx) => jobs.get(ctx.get('x-job'))?.claims,
  });
}

let provider = build();

// client_credentials against our own token endpoint, over the same verified TLS a client uses
function mint(requestToken, aud) {
  const job = jobs.get(requestToken);
  stats.mint += 1;
  const body = new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: job.sub,
    client_secret: CLIENT_SECRET,
  }).toString();
  return new Promise((resolve, reject) => {
    const req = https.request(`${issuer}/token`, {
      method: 'POST',
      ca,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-job': requestToken,
        'x-aud': aud,
      },
    }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => {
        const doc = JSON.parse(data);
        if (doc.access_token) resolve(doc.access_token);
        else reject(new Error(data));
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

function readBody(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(data ? JSON.parse(data) : {}));
  });
}

function send(res, status, doc) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(doc));
}

function bearerJob(req) {
  const m = /^bearer (.+)$/i.exec(req.headers.authorization || '');
  return m && jobs.has(m[1]) ? m[1] : null;
}

async function admin(req, res) {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/admin/job' && req.method === 'POST') {
    const job = await readBody(req);
    jobs.set(job.request_token, job);
    provider = build();
    return send(res, 200, { ok: true });
  }
  if (url.pathname === '/admin/mint' && req.method === 'POST') {
    const { request_token: t, aud } = await readBody(req);
    return send(res, 200, { token: await mint(t, aud) });
  }
  if (url.pathname === '/admin/rotate' && req.method === 'POST') {
    const { drop_old: dropOld } = await readBody(req);
    const k = newKey('RSA');
    rsaKeys = dropOld ? [k] : [k, ...rsaKeys];
    provider = build();
    return send(res, 200, { kid: k.kid });
  }
  if (url.pathname === '/admin/stats') return send(res, 200, stats);
  return send(res, 404, { message: 'no such admin route' });
}

async function route(req, res) {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/gh/token' && req.method === 'GET') {
    stats.gh += 1;
    const t = bearerJob(req);
    if (!t) return send(res, 401, { message: 'bad request token' });
    return send(res, 200, { count: 1, value: await mint(t, url.searchParams.get('audience') || issuer) });
  }
  if (url.pathname === '/ado/oidctoken' && req.method === 'POST') {
    stats.ado += 1;
    const t = bearerJob(req);
    if (!t) return send(res, 401, { message: 'bad access token' });
    const job = jobs.get(t);
    if (url.searchParams.get('api-version') !== '7.1'
      || url.searchParams.get('serviceConnectionId') !== job.service_connection) {
      return send(res, 404, { message: 'no such service connection' });
    }
    return send(res, 200, { oidcToken: await mint(t, job.aud || 'api://AzureADTokenExchange') });
  }
  if (url.pathname === '/jwks') stats.jwks += 1;
  if (url.pathname === '/.well-known/openid-configuration') stats.discovery += 1;
  return provider.callback()(req, res);
}

const server = https.createServer({
  cert: fs.readFileSync(opt.cert),
  key: fs.readFileSync(opt.key),
}, (req, res) => {
  route(req, res).catch((e) => send(res, 500, { error: String(e) }));
});
const adminServer = http.createServer((req, res) => {
  admin(req, res).catch((e) => send(res, 500, { error: String(e) }));
});
server.listen(Number(opt.port), '127.0.0.1', () => {
  adminServer.listen(Number(opt['admin-port']), '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ ready: issuer })}\n`);
  });
});
