/**
 * The README is the registry of pinhole's stable codes: every error code (`ERR_*`) and every
 * mode-decision reason code (`{ code: 'STALE_PINHOLE_PROGRAM_REPLACED', message }` in `ready`
 * lines and `pinhole status`) that the code under src/ can produce must be named in README.md,
 * word for word. A code added without its line in the README fails here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/**
 * Codes in src/ that are not pinhole's: Node's own codes compared against (the HTTP server's
 * request timeout) and the `ERR_PARSE_ARGS` prefix of node:util parseArgs codes (the README names
 * them as `ERR_PARSE_ARGS_*`).
 */
const FOREIGN = new Set(['ERR_HTTP_REQUEST_TIMEOUT', 'ERR_PARSE_ARGS']);

function sources(dir: string): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith('.ts')) out.push({ path: p.slice(ROOT.length), text: readFileSync(p, 'utf8') });
  }
  return out;
}

const SRC = sources(join(ROOT, 'src'));

/** code → the files that use it. */
function collect(find: (text: string) => Iterable<string>): Map<string, Set<string>> {
  const codes = new Map<string, Set<string>>();
  for (const f of SRC) {
    for (const c of find(f.text)) {
      if (!codes.has(c)) codes.set(c, new Set());
      codes.get(c)!.add(f.path);
    }
  }
  return codes;
}

/** Whether the README names `code` as a whole word (ERR_IFACE is not named by ERR_IFACE_NOT_FOUND). */
function named(code: string): boolean {
  return new RegExp(`(?<![A-Z0-9_])${code}(?![A-Z0-9_])`).test(README);
}

function missing(codes: Map<string, Set<string>>): string[] {
  return [...codes]
    .filter(([c]) => !named(c))
    .map(([c, files]) => `${c} (${[...files].join(', ')})`)
    .sort();
}

/** Every single-quoted 'ERR_...' literal: PinholeError codes, worker error codes, fallbacks. */
const errorCodes = collect(function* (text) {
  for (const m of text.matchAll(/'(ERR_[A-Z0-9_]*[A-Z0-9])'/g)) if (!FOREIGN.has(m[1]!)) yield m[1]!;
});

/** Literals in a `code: ...` property that are not errors or errnos: the decision reasons. */
const reasonCodes = collect(function* (text) {
  for (const m of text.matchAll(/\bcode:\s*([^,\n}]+)/g)) {
    for (const l of m[1]!.matchAll(/'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)'/g)) if (!l[1]!.startsWith('ERR_')) yield l[1]!;
  }
});

test('the scan finds the codes it is meant to (a guard against a regex that matches nothing)', () => {
  for (const c of ['ERR_CLI_USAGE', 'ERR_NETLINK_LOCAL_ADDRESS', 'ERR_NETLINK_BAD_ADDRESS', 'ERR_DATAPLANE_PORT_LOST'])
    assert.ok(errorCodes.has(c), c);
  for (const c of ['FOREIGN_XDP_PROGRAM_KEPT', 'STALE_PINHOLE_PROGRAM_REPLACED', 'MODE_FORCED', 'WORKLOAD_OFFLOAD'])
    assert.ok(reasonCodes.has(c), c);
  assert.ok(errorCodes.size > 100, `${errorCodes.size} error codes`);
  assert.ok(!errorCodes.has('ERR_PARSE_ARGS') && !errorCodes.has('ERR_HTTP_REQUEST_TIMEOUT'));
});

test('every ERR_ code under src/ is named in README.md', () => {
  assert.deepEqual(missing(errorCodes), [], 'document these codes in README.md (the Errors table, or where their command is)');
});

test('every mode-decision reason code under src/ is named in README.md', () => {
  assert.deepEqual(missing(reasonCodes), [], 'document these reason codes in README.md (the reason tables)');
});
