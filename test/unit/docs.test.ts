/** The README's tables and the code agree: every error code and every setting, with its default. */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { DEFAULTS } from '../../src/config.ts';
import { ERRORS, ShoalError } from '../../src/errors.ts';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

function tableRows(firstHeader: string): string[][] {
  const lines = readme.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`| ${firstHeader} |`));
  assert.ok(start >= 0, `README has a table headed "${firstHeader}"`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(
      line
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim()),
    );
  }
  return rows;
}

test('the README lists every error code with its status and exit code, and nothing else', () => {
  const rows = tableRows('code');
  const documented = new Map(rows.map((r) => [r[0]!.replaceAll('`', ''), r]));
  assert.deepEqual([...documented.keys()].sort(), Object.keys(ERRORS).sort());
  for (const [code, spec] of Object.entries(ERRORS)) {
    const row = documented.get(code)!;
    assert.equal(Number(row[1]), spec.status, `${code} status`);
    assert.equal(Number(row[2]), spec.exit, `${code} exit code`);
  }
});

test('every error code is a ShoalError with its registered status', () => {
  for (const code of Object.keys(ERRORS) as (keyof typeof ERRORS)[]) {
    const err = new ShoalError(code);
    assert.equal(err.code, code);
    assert.equal(err.status, ERRORS[code].status);
    assert.deepEqual(err.toJSON(), { error: { code, message: ERRORS[code].message } });
  }
});

test('the README lists every setting with its default', () => {
  const rows = tableRows('field');
  const documented = new Map(rows.map((r) => [r[0]!.replaceAll('`', ''), r[1]!.replaceAll('`', '')]));
  assert.deepEqual([...documented.keys()].sort(), Object.keys(DEFAULTS).sort());
  for (const [field, value] of Object.entries(DEFAULTS)) {
    const shown = documented.get(field)!;
    if (field === 'name') assert.equal(shown, 'the hostname');
    else if (field === 'secret' || field === 'secretFile') assert.equal(shown, 'none');
    else if (Array.isArray(value)) assert.ok(shown.startsWith('[]'), `${field}: ${shown}`);
    else assert.equal(shown, String(value), `default of ${field}`);
  }
});
