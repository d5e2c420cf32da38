// KNHK proof bundles checked in the browser with WebCrypto (SHA-256, Ed25519): nothing is trusted to the server.
// The same checks, in the same order, as knhk.proof.bundle.verify_bundle (docs/console.md):
//   1. the entry's payload = canonical JSON (RFC 8785 on the ledger's domain) of its fields without id and sig;
//      id = hex SHA-256(payload); key_id names the bundle's public key; sig = Ed25519 over the payload;
//   2. the checkpoint is a C2SP signed note whose signature line (key hash = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4])
//      verifies over its body; its origin ends in knhk/<log> and its size is the bundle's tree size;
//   3. the RFC 9162 inclusion proof leads from SHA-256(0x00 ‖ payload) at leaf_index to the checkpoint's root.
'use strict';

const enc = new TextEncoder();

class Failed extends Error {}

function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');
}

function unhex(text, what, size) {
  if (typeof text !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(text)) throw new Failed(`${what} is not lowercase hex text`);
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(text.substr(i * 2, 2), 16);
  if (size !== undefined && out.length !== size) throw new Failed(`${what} is ${out.length} bytes, expected ${size}`);
  return out;
}

function unbase64(text, what) {
  let raw;
  try {
    raw = atob(text);
  } catch (e) {
    throw new Failed(`checkpoint ${what} is not base64`);
  }
  const out = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  if (btoa(raw) !== text) throw new Failed(`checkpoint ${what} is not canonical base64`);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

// Canonical JSON on the ledger's domain: strings, safe integers, booleans, null, arrays, objects; keys sorted by
// UTF-16 code units (JavaScript's own string order), no whitespace; JSON.stringify's string form is RFC 8785's.
function canonical(value) {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new Failed(`number ${value} is outside the ledger's integers`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  throw new Failed(`value of type ${typeof value} is outside the ledger's JSON`);
}

async function ed25519(publicKey, message, signature) {
  const key = await crypto.subtle.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
  return crypto.subtle.verify({ name: 'Ed25519' }, key, signature, message);
}

async function keyId(publicKey) {
  return hex(await sha256(publicKey)).slice(0, 16);
}

async function checkEntry(bundle, publicKey) {
  const entry = bundle.entry;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new Failed('bundle entry is not an object');
  const fields = { ...entry };
  delete fields.id;
  delete fields.sig;
  const payload = enc.encode(canonical(fields));
  if (hex(await sha256(payload)) !== entry.id) throw new Failed('entry id is not the SHA-256 of its payload');
  if (entry.key_id !== (await keyId(publicKey))) throw new Failed("entry key_id does not name the bundle's public key");
  if (!(await ed25519(publicKey, payload, unhex(entry.sig, 'entry sig', 64)))) {
    throw new Failed("entry signature does not verify with the bundle's public key");
  }
  return payload;
}

async function checkCheckpoint(note, publicKey, log, size) {
  if (typeof note !== 'string') throw new Failed('checkpoint is not signed-note text');
  const split = note.indexOf('\n\n');
  if (split < 0) throw new Failed('checkpoint has no blank line before its signatures');
  const body = note.slice(0, split + 1);
  const lines = body.split('\n').slice(0, -1);
  if (lines.length < 3) throw new Failed('checkpoint body needs origin, tree size and root hash lines');
  const [origin, sizeText, rootText] = lines;
  if (!/^[^\s+]+$/.test(origin)) throw new Failed('checkpoint origin line is empty or contains spaces');
  if (!/^(0|[1-9][0-9]{0,19})$/.test(sizeText)) throw new Failed(`checkpoint tree size ${sizeText} is not a decimal number`);
  const root = unbase64(rootText, 'root hash');
  if (root.length !== 32) throw new Failed('checkpoint root hash is not 32 bytes');
  const sigs = note.slice(split + 2);
  if (!sigs.endsWith('\n')) throw new Failed('checkpoint signature block does not end in a newline');
  const want = (await sha256(concat(enc.encode(origin), Uint8Array.of(0x0a, 0x01), publicKey))).slice(0, 4);
  let verified = false;
  for (const line of sigs.slice(0, -1).split('\n')) {
    if (!line.startsWith('\u2014 ')) throw new Failed('checkpoint signature line does not start with an em dash');
    const rest = line.slice(2);
    const space = rest.indexOf(' ');
    const name = space < 0 ? rest : rest.slice(0, space);
    const raw = unbase64(space < 0 ? '' : rest.slice(space + 1), 'signature');
    if (raw.length < 5) throw new Failed('checkpoint signature is too short');
    if (name === origin && hex(raw.slice(0, 4)) === hex(want)) {
      if (!(await ed25519(publicKey, enc.encode(body), raw.slice(4)))) {
        throw new Failed("checkpoint signature does not verify with the log's public key");
      }
      verified = true;
      break;
    }
  }
  if (!verified) throw new Failed("checkpoint carries no signature by the log's public key");
  if (!origin.endsWith(`knhk/${log}`)) throw new Failed(`checkpoint origin ${origin} is not the log ${log}`);
  if (Number(sizeText) !== size) throw new Failed(`checkpoint covers ${sizeText} entries, bundle says ${size}`);
  return { origin, root };
}

// RFC 9162 §2.1.3.2: verifying an inclusion proof.
async function provesInclusion(leaf, index, size, proof, root) {
  if (index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(concat(Uint8Array.of(1), p, r));
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = await sha256(concat(Uint8Array.of(1), r, p));
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && hex(r) === hex(root);
}

async function verifyBundle(bundle) {
  if (typeof bundle !== 'object' || bundle === null || Array.isArray(bundle)) throw new Failed('bundle is not a JSON object');
  const missing = ['log', 'entry', 'leaf_index', 'tree_size', 'inclusion_proof', 'checkpoint', 'public_key']
    .filter((f) => !(f in bundle));
  if (missing.length) throw new Failed(`bundle lacks fields: ${missing.join(', ')}`);
  const publicKey = unhex(bundle.public_key, 'public_key', 32);
  const payload = await checkEntry(bundle, publicKey);
  const { log, leaf_index: index, tree_size: size } = bundle;
  if (bundle.entry.log !== log) throw new Failed("entry log differs from the bundle's log");
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || bundle.entry.seq !== index) {
    throw new Failed("leaf_index must be the entry's seq");
  }
  const { origin, root } = await checkCheckpoint(bundle.checkpoint, publicKey, log, size);
  if (!Array.isArray(bundle.inclusion_proof)) throw new Failed('inclusion_proof is not a list');
  const proof = bundle.inclusion_proof.map((h) => unhex(h, 'inclusion proof hash', 32));
  const leaf = await sha256(concat(Uint8Array.of(0), payload));
  if (!(await provesInclusion(leaf, index, size, proof, root))) {
    throw new Failed("inclusion proof does not lead to the checkpoint's root hash");
  }
  return {
    log, seq: index, tree_size: size, origin, root_hash: hex(root), key_id: bundle.entry.key_id,
    proved: [
      'entry id is the SHA-256 of its canonical payload',
      'entry signature verifies with the public key (Ed25519, WebCrypto)',
      'checkpoint is a signed note by the same key',
      `entry is leaf ${index} of the ${size}-entry tree whose root the checkpoint commits to (RFC 9162)`,
    ],
  };
}

window.knhkKeyId = keyId;
window.knhkVerifyBundle = verifyBundle;

function show(out, ok, title, lines) {
  out.replaceChildren();
  out.className = ok ? 'verdict verified' : 'verdict failed';
  out.dataset.result = ok ? 'verified' : 'failed';
  const head = document.createElement('p');
  head.className = 'verdict-title';
  head.textContent = title;
  out.append(head);
  const list = document.createElement('ul');
  for (const line of lines) {
    const item = document.createElement('li');
    item.textContent = line;
    list.append(item);
  }
  out.append(list);
  out.focus();
}

async function run(text, out) {
  let bundle;
  try {
    bundle = JSON.parse(text);
  } catch (e) {
    show(out, false, 'Failed: the bundle is not JSON', [String(e.message)]);
    return;
  }
  try {
    const result = await verifyBundle(bundle);
    show(out, true, `Verified in this browser: ${result.log} entry ${result.seq}`, [
      ...result.proved, `checkpoint origin ${result.origin}, root ${result.root_hash}`, `signing key ${result.key_id}`,
    ]);
  } catch (e) {
    show(out, false, 'Failed: this bundle does not verify', [e instanceof Failed ? e.message : `error: ${e}`]);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  const area = document.getElementById('bundle');
  const out = document.getElementById('verdict');
  if (!area || !out) return;
  const fetchButton = document.getElementById('fetch-verify');
  if (fetchButton) {
    fetchButton.addEventListener('click', async () => {
      const response = await fetch(fetchButton.dataset.url, { headers: { accept: 'application/json' }, credentials: 'same-origin' });
      if (!response.ok) {
        show(out, false, 'Failed: the bundle could not be fetched', [`HTTP ${response.status}`]);
        return;
      }
      area.value = JSON.stringify(await response.json(), null, 2);
      await run(area.value, out);
    });
  }
  const again = document.getElementById('verify-text');
  if (again) again.addEventListener('click', () => run(area.value, out));
  const file = document.getElementById('bundle-file');
  if (file) {
    file.addEventListener('change', async () => {
      if (file.files && file.files[0]) {
        area.value = await file.files[0].text();
        await run(area.value, out);
      }
    });
  }
});
