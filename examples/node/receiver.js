// A receiver for hookgate's deliveries, signed with sign = "standard".
//
// Node's built-in http and crypto only: no npm packages. Each request's
// webhook-signature is checked against an HMAC-SHA256 of
// "<webhook-id>.<webhook-timestamp>.<raw body>" keyed with the base64-decoded part
// of the whsec_ secret (the Standard Webhooks scheme), and webhook-timestamp must be
// within five minutes of this machine's clock. webhook-id is the idempotency key:
// hookgate delivers at least once, so an id can arrive again (a retry after a
// timeout, a replay); it is answered 200 without being processed twice.
//
//     WEBHOOK_SECRET=whsec_... PORT=5000 node receiver.js
//
// Prints one line per request on stdout:
//     accepted id=msg_... type=order.created attempt=1
//     duplicate id=msg_...
//     rejected id=msg_... status=401 reason=...
//     failed id=msg_... error=...          (process() threw: answered 500, retried)
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');

const MAX_BODY = 1024 * 1024; // hookgate's default server.max_body
const TOLERANCE_S = 5 * 60;
// Ids remembered in memory, oldest forgotten first. A real service records the id
// in its database, in the same transaction as the work the webhook causes (a
// unique constraint on it), so a duplicate is refused even after a restart.
const SEEN_MAX = 100000;

// Your work goes here: it runs once per event id (throw to have it retried).
function processEvent(eventId, eventType, payload) {}

class VerificationError extends Error {}

// Throws VerificationError unless the headers sign exactly these body bytes.
function verify(key, headers, body, nowS) {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (!id || !timestamp || !signatures) {
    throw new VerificationError('missing webhook-id, webhook-timestamp or webhook-signature');
  }
  if (!/^\d+$/.test(timestamp)) {
    throw new VerificationError('webhook-timestamp is not unix seconds');
  }
  if (Math.abs(nowS - Number(timestamp)) > TOLERANCE_S) {
    throw new VerificationError('webhook-timestamp is more than 5 minutes away');
  }
  const expected = crypto
    .createHmac('sha256', key)
    .update(`${id}.${timestamp}.`)
    .update(body)
    .digest();
  // Space-separated "v1,<base64>" entries: several during a secret rotation.
  for (const entry of signatures.split(' ')) {
    const [version, value] = entry.split(',', 2);
    if (version !== 'v1' || !value) continue;
    const given = Buffer.from(value, 'base64');
    if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) return;
  }
  throw new VerificationError('no matching signature');
}

// The webhook ids already processed, bounded (a Map iterates oldest first).
class SeenIds {
  constructor(limit) {
    this.ids = new Map();
    this.limit = limit;
  }

  // True the first time an id is seen: the caller processes it.
  claim(id) {
    if (this.ids.has(id)) return false;
    this.ids.set(id, true);
    if (this.ids.size > this.limit) this.ids.delete(this.ids.keys().next().value);
    return true;
  }

  // Processing failed: forget the id so that hookgate's retry is processed.
  release(id) {
    this.ids.delete(id);
  }
}

function answer(res, status, payload) {
  const data = JSON.stringify(payload);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(data),
  });
  res.end(data);
}

// [id, type, payload] of each event a verified request carries.
function eventsOf(headers, body) {
  if (headers['hookgate-batch-size']) {
    // batch_max > 1: webhook-id names the batch and each event has its own id;
    // a retried batch may regroup events, so deduplicate per event.
    return JSON.parse(body).events.map((e) => [e.id, e.type || '-', JSON.stringify(e.payload)]);
  }
  return [[headers['webhook-id'], headers['hookgate-event-type'] || '-', body]];
}

function receive(seen, headers, eventId, eventType, payload) {
  if (!seen.claim(eventId)) {
    console.log(`duplicate id=${eventId}`);
    return true;
  }
  try {
    processEvent(eventId, eventType, payload);
  } catch (err) {
    seen.release(eventId);
    console.log(`failed id=${eventId} error=${err}`);
    return false;
  }
  console.log(`accepted id=${eventId} type=${eventType} attempt=${headers['hookgate-attempt'] || '-'}`);
  return true;
}

function handle(key, seen, req, res, body) {
  const id = req.headers['webhook-id'] || '-';
  try {
    // Verify the exact bytes received, before parsing anything.
    verify(key, req.headers, body, Math.floor(Date.now() / 1000));
  } catch (err) {
    if (!(err instanceof VerificationError)) throw err;
    console.log(`rejected id=${id} status=401 reason=${err.message}`);
    answer(res, 401, { error: 'invalid_signature' });
    return;
  }
  for (const [eventId, eventType, payload] of eventsOf(req.headers, body)) {
    if (!receive(seen, req.headers, eventId, eventType, payload)) {
      answer(res, 500, { error: 'processing_failed' }); // hookgate retries
      return;
    }
  }
  answer(res, 200, { status: 'ok' });
}

function main() {
  const secret = process.env.WEBHOOK_SECRET || '';
  if (!secret.startsWith('whsec_')) {
    console.error("receiver: set WEBHOOK_SECRET to the destination's whsec_... secret");
    process.exit(2);
  }
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const seen = new SeenIds(SEEN_MAX);
  const host = process.env.HOST || '127.0.0.1';
  const port = Number(process.env.PORT || 5000);

  const server = http.createServer((req, res) => {
    if (req.method !== 'POST') {
      answer(res, 405, { error: 'method_not_allowed' });
      return;
    }
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        answer(res, 413, { error: 'payload_too_large' });
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_BODY) return;
      try {
        handle(key, seen, req, res, Buffer.concat(chunks));
      } catch (err) {
        console.log(`failed id=${req.headers['webhook-id'] || '-'} error=${err}`);
        answer(res, 500, { error: 'internal_error' }); // hookgate retries
      }
    });
  });
  server.listen(port, host, () => {
    console.log(`listening host=${host} port=${server.address().port}`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
  process.on('SIGINT', () => server.close(() => process.exit(0)));
}

main();
