/**
 * Reading the configuration: file → YAML text → document → checked PinholeConfig.
 *
 * Errors (PinholeError, callers switch on `code`):
 *  - ERR_CONFIG_READ     the file could not be read; details.errno is the code (ENOENT, EACCES, ...);
 *  - ERR_CONFIG_YAML     not well-formed YAML (or a YAML feature we refuse: several documents,
 *                        unknown tags, non-scalar keys); the message starts `<source>:<line>:<column>:`;
 *  - ERR_CONFIG_INVALID  well-formed, but not a valid configuration.
 *
 * ERR_CONFIG_INVALID messages read `<source>: <field>: <what is wrong>`, e.g.
 * `pinhole.yaml: connections[1].vxlan.vni: must be an integer 0..16777215`. The message names the
 * first problem; details.errors lists all of them as { field, message } (plus line and column
 * when the document came from text), details.field is the first one's field.
 */
import { readFile } from 'node:fs/promises';
import { isCollection, isPair, isScalar, LineCounter, parseDocument, visit, type Document } from 'yaml';

import { PinholeError } from '../sys/index.ts';
import { checkConfig, checkConnection, type ConfigIssue, type ConnectionConfig, type PinholeConfig } from './schema.ts';

const DEFAULT_SOURCE = 'config';

export interface ConfigErrorEntry {
  /** Field path, e.g. `connections[1].vxlan.vni`; '' for the document itself. */
  field: string;
  message: string;
  line?: number;
  column?: number;
}

/** `['connections', 1, 'vxlan']` → `connections[1].vxlan`; odd keys are quoted: `uplink["a b"]`. */
export function formatField(path: readonly (string | number)[], prefix = ''): string {
  let out = prefix;
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(p)}]`;
  }
  return out;
}

function invalid(source: string, entries: ConfigErrorEntry[]): PinholeError {
  const first = entries[0];
  const where = first.field ? `${source}: ${first.field}` : source;
  return new PinholeError('ERR_CONFIG_INVALID', `${where}: ${first.message}`, {
    details: { source, field: first.field, errors: entries },
  });
}

function entriesOf(issues: ConfigIssue[], prefix = ''): ConfigErrorEntry[] {
  return issues.map((i) => ({ field: formatField(i.path, prefix), message: i.message }));
}

/** Validates an already-parsed object (e.g. JSON from the API). */
export function validateConfig(value: unknown, source = DEFAULT_SOURCE): PinholeConfig {
  const r = checkConfig(value);
  if (!r.ok) throw invalid(source, entriesOf(r.issues));
  return r.value;
}

/**
 * Validates one connection on its own: its fields, not how it fits with the others (names,
 * interfaces, tunnels) — validate the whole resulting config for that. `field` prefixes the
 * field paths in messages (`connection.vxlan.vni`).
 */
export function validateConnection(value: unknown, field = 'connection'): ConnectionConfig {
  const r = checkConnection(value);
  if (!r.ok) {
    const entries = entriesOf(r.issues, field);
    const first = entries[0];
    throw new PinholeError('ERR_CONFIG_INVALID', `${first.field}: ${first.message}`, {
      details: { field: first.field, errors: entries },
    });
  }
  return r.value;
}

function yamlError(
  source: string,
  message: string,
  line: number | undefined,
  column: number | undefined,
  all: ConfigErrorEntry[],
): PinholeError {
  const where = line === undefined ? source : `${source}:${line}:${column}`;
  return new PinholeError('ERR_CONFIG_YAML', `${where}: ${message}`, {
    details: { source, line, column, errors: all },
  });
}

type Ranged = { range?: [number, number, number] | null } | null | undefined;

/**
 * Where the node at `path` starts; for a path that is not in the document (a missing key), where
 * its deepest existing parent starts.
 */
function positionOf(doc: Document, lc: LineCounter, path: readonly (string | number)[]): { line: number; column: number } | undefined {
  let node: unknown = doc.contents;
  let at = (node as Ranged)?.range?.[0];
  for (const seg of path) {
    if (!isCollection(node)) break;
    let next: unknown;
    let keyAt: number | undefined;
    if (typeof seg === 'number') next = node.items[seg];
    else {
      const pair = node.items.find((it) => isPair(it) && isScalar(it.key) && it.key.value === seg);
      if (!isPair(pair)) break;
      keyAt = (pair.key as Ranged)?.range?.[0];
      next = pair.value;
    }
    at = keyAt ?? (next as Ranged)?.range?.[0] ?? at; // a key's own position reads best
    node = next;
  }
  if (at === undefined) return undefined;
  const { line, col } = lc.linePos(at);
  return { line, column: col };
}

/**
 * Parses and validates YAML text (YAML 1.2 core schema: `yes` is a string, `0x10` a number).
 * `source` names the file in messages.
 */
export function parseConfig(text: string, source = DEFAULT_SOURCE): PinholeConfig {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });

  const problems = [...doc.errors, ...doc.warnings].map((e) => {
    const pos = lc.linePos(e.pos[0]);
    return { field: '', message: e.message, line: pos.line, column: pos.col };
  });
  // Mapping keys must be scalars: a list or mapping as a key would be stringified into a key
  // nobody can write (and yaml warns on the process).
  visit(doc, {
    Pair(_, pair) {
      if (isCollection(pair.key)) {
        const pos = lc.linePos(pair.key.range?.[0] ?? 0);
        problems.push({
          field: '',
          message: 'a mapping key must be a plain value, not a list or mapping',
          line: pos.line,
          column: pos.col,
        });
      }
    },
  });
  if (problems.length) {
    problems.sort((a, b) => a.line - b.line || a.column - b.column);
    const p = problems[0];
    throw yamlError(source, p.message, p.line, p.column, problems);
  }

  let value: unknown;
  try {
    value = doc.toJS();
  } catch (err) {
    // Unresolved aliases and alias expansion beyond yaml's limit (a "billion laughs" document).
    throw yamlError(source, (err as Error).message, undefined, undefined, []);
  }

  const r = checkConfig(value);
  if (r.ok) return r.value;
  const entries = r.issues.map((i): ConfigErrorEntry => {
    const e: ConfigErrorEntry = { field: formatField(i.path), message: i.message };
    const pos = positionOf(doc, lc, i.path);
    if (pos) Object.assign(e, pos);
    return e;
  });
  throw invalid(source, entries);
}

/** Reads and parses a configuration file; messages name it by `path`. */
export async function loadConfig(path: string): Promise<PinholeConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code;
    throw new PinholeError('ERR_CONFIG_READ', `read config ${path}: ${errno ?? (err as Error).message}`, {
      cause: err,
      details: { path, errno },
    });
  }
  return parseConfig(text, path);
}
