/**
 * src/config.ts: precedence flags > env > file > defaults, JSON and YAML files, refusals that name
 * the field, list and port parsing, HOST:PORT, and the rule that every default is documented.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import {
  type Config,
  ConfigSchema,
  DEFAULTS,
  ENV_VARS,
  loadConfig,
  parseHostPort,
  parseSetting,
  testDefaults,
  validateConfig,
} from '../../src/config.ts';
import { ShoalError } from '../../src/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'shoal-config-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

function file(extension: string, content: string): string {
  const path = join(dir, `config-${++files}${extension}`);
  writeFileSync(path, content);
  return path;
}

/** Asserts `fn` throws SHOAL_BAD_CONFIG with a message matching `pattern`. */
function refuses(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ShoalError, `a ShoalError, not ${String(err)}`);
    assert.equal(err.code, 'SHOAL_BAD_CONFIG');
    assert.match(err.message, pattern);
    assert.equal(err.exitCode, 2);
    return true;
  });
}

describe('loadConfig', () => {
  test('with no sources it is exactly DEFAULTS, and DEFAULTS is valid', () => {
    assert.deepEqual(loadConfig(), DEFAULTS);
    assert.deepEqual(validateConfig({ ...DEFAULTS }), DEFAULTS);
  });

  test('testDefaults() on top of DEFAULTS is a valid config', () => {
    assert.doesNotThrow(() => validateConfig({ ...DEFAULTS, ...testDefaults() }));
  });

  test('precedence: flags > env > file > defaults, field by field', () => {
    const configFile = file(
      '.json',
      JSON.stringify({ name: 'from-file', port: 1001, beaconPort: 2001, logLevel: 'warn' }),
    );
    const env = { SHOAL_NAME: 'from-env', SHOAL_PORT: '1002' };
    const flags = { name: 'from-flags' };
    const all = loadConfig({ file: configFile, env, flags });
    assert.equal(all.name, 'from-flags');
    assert.equal(all.port, 1002);
    assert.equal(all.beaconPort, 2001);
    assert.equal(all.logLevel, 'warn');
    assert.equal(all.heartbeatIntervalMs, DEFAULTS.heartbeatIntervalMs);
    assert.equal(loadConfig({ file: configFile, env }).name, 'from-env');
    assert.equal(loadConfig({ file: configFile }).name, 'from-file');
    assert.equal(loadConfig({ file: configFile }).port, 1001);
  });

  test('flags left undefined and empty environment variables do not override', () => {
    const config = loadConfig({
      env: { SHOAL_NAME: 'from-env', SHOAL_HOST: '' },
      flags: { name: undefined, port: 1234 },
    });
    assert.equal(config.name, 'from-env');
    assert.equal(config.host, DEFAULTS.host);
    assert.equal(config.port, 1234);
  });

  test('every environment variable sets its field', () => {
    const env = {
      SHOAL_NAME: 'n',
      SHOAL_HOST: '127.0.0.1',
      SHOAL_PORT: '8000',
      SHOAL_BEACON_PORT: '9000',
      SHOAL_BEACON_TARGETS: '10.0.0.255',
      SHOAL_DATA: '/var/lib/shoal',
      SHOAL_SECRET: 's3cret-s3cret-s3cret',
      SHOAL_SECRET_FILE: '/etc/shoal/secret',
      SHOAL_PEERS: 'a:1',
      SHOAL_LOG_LEVEL: 'debug',
    } satisfies Record<keyof typeof ENV_VARS, string>;
    const config = loadConfig({ env });
    assert.deepEqual(Object.fromEntries(Object.values(ENV_VARS).map((field) => [field, config[field]])), {
      name: 'n',
      host: '127.0.0.1',
      port: 8000,
      beaconPort: 9000,
      beaconTargets: ['10.0.0.255'],
      dataDir: '/var/lib/shoal',
      secret: 's3cret-s3cret-s3cret',
      secretFile: '/etc/shoal/secret',
      peers: ['a:1'],
      logLevel: 'debug',
    });
  });

  test('SHOAL_PEERS and SHOAL_BEACON_TARGETS are comma lists; blanks and spaces are dropped', () => {
    const config = loadConfig({
      env: {
        SHOAL_PEERS: ' 10.0.0.7:7420, nas.lan:7420 ,,[fd00::1]:7420,',
        SHOAL_BEACON_TARGETS: '192.168.1.255,10.0.0.255',
      },
    });
    assert.deepEqual(config.peers, ['10.0.0.7:7420', 'nas.lan:7420', '[fd00::1]:7420']);
    assert.deepEqual(config.beaconTargets, ['192.168.1.255', '10.0.0.255']);
    assert.deepEqual(parseSetting('peers', ' , ', 'SHOAL_PEERS'), []);
  });

  test('ports from text must be numbers; the variable is named', () => {
    refuses(() => loadConfig({ env: { SHOAL_PORT: 'eighty' } }), /SHOAL_PORT: "eighty" is not a port number/);
    refuses(() => loadConfig({ env: { SHOAL_BEACON_PORT: '-1' } }), /SHOAL_BEACON_PORT/);
    refuses(() => loadConfig({ env: { SHOAL_PORT: '1.5' } }), /SHOAL_PORT/);
    assert.equal(parseSetting('port', ' 8080 ', '--port'), 8080);
    refuses(() => loadConfig({ env: { SHOAL_PORT: '70000' } }), /config field "port"/);
  });

  test('a JSON file and a YAML file (.yaml, .yml, or no extension) are read alike', () => {
    const settings = {
      name: 'garage',
      port: 7500,
      peers: ['10.0.0.7:7420'],
      multicast: false,
      beaconJitter: 0.1,
    };
    const yaml = 'name: garage\nport: 7500\npeers:\n  - 10.0.0.7:7420\nmulticast: false\nbeaconJitter: 0.1\n';
    const expected = { ...DEFAULTS, ...settings };
    assert.deepEqual(loadConfig({ file: file('.json', JSON.stringify(settings)) }), expected);
    assert.deepEqual(loadConfig({ file: file('.yaml', yaml) }), expected);
    assert.deepEqual(loadConfig({ file: file('.yml', `# comment\n${yaml}`) }), expected);
    assert.deepEqual(loadConfig({ file: file('', yaml) }), expected);
    assert.deepEqual(loadConfig({ file: file('.JSON', JSON.stringify(settings)) }), expected);
  });

  test('an empty file is no settings', () => {
    assert.deepEqual(loadConfig({ file: file('.yaml', '') }), DEFAULTS);
    assert.deepEqual(loadConfig({ file: file('.yaml', '# nothing yet\n') }), DEFAULTS);
  });

  test('a missing, unparsable or non-object file is refused, naming the file', () => {
    const missing = join(dir, 'missing.json');
    refuses(() => loadConfig({ file: missing }), new RegExp(`config file ${missing}`));
    refuses(() => loadConfig({ file: file('.json', '{"name": ') }), /config file .*\.json/);
    refuses(() => loadConfig({ file: file('.yaml', 'name: [unclosed') }), /config file/);
    refuses(() => loadConfig({ file: file('.yaml', '- a\n- b\n') }), /must hold an object of settings/);
    refuses(() => loadConfig({ file: file('.json', '42') }), /must hold an object of settings/);
  });

  test('an unknown key is refused, naming it, from a file or flags', () => {
    refuses(
      () => loadConfig({ file: file('.json', JSON.stringify({ beaconIntervalMS: 100 })) }),
      /^config field "beaconIntervalMS \(unknown setting\)": must not have additional properties$/,
    );
    refuses(() => loadConfig({ file: file('.yaml', 'colour: blue\n') }), /colour \(unknown setting\)/);
    refuses(() => validateConfig({ ...DEFAULTS, extra: 1 }), /extra \(unknown setting\)/);
  });

  test('out-of-range and wrongly typed values are refused, naming the field', () => {
    const cases: [Partial<Record<keyof Config, unknown>>, string][] = [
      [{ port: 65536 }, 'port'],
      [{ port: -1 }, 'port'],
      [{ port: 80.5 }, 'port'],
      [{ beaconPort: 0 }, 'beaconPort'],
      [{ name: '' }, 'name'],
      [{ name: 'x'.repeat(65) }, 'name'],
      [{ beaconJitter: 1.5 }, 'beaconJitter'],
      [{ reconnectJitter: -0.1 }, 'reconnectJitter'],
      [{ beaconIntervalMs: 10 }, 'beaconIntervalMs'],
      [{ beaconClockWindowMs: 999 }, 'beaconClockWindowMs'],
      [{ replayCacheSize: 15 }, 'replayCacheSize'],
      [{ maxFrameBytes: 1024 }, 'maxFrameBytes'],
      [{ peerTtlMs: 8 * 24 * 3600 * 1000 }, 'peerTtlMs'],
      [{ logLevel: 'verbose' }, 'logLevel'],
      [{ multicast: 'yes' }, 'multicast'],
      [{ peers: ['no-port'] }, 'peers.0'],
      [{ peers: ['10.0.0.7:7420', 'fd00::1:7420'] }, 'peers.1'],
      [{ beaconTargets: [''] }, 'beaconTargets.0'],
    ];
    for (const [flags, field] of cases) {
      refuses(() => loadConfig({ flags }), new RegExp(`config field "${field.replace('.', '\\.')}"`));
    }
  });

  test('settings that contradict each other are refused, naming the field to change', () => {
    refuses(
      () => loadConfig({ flags: { heartbeatIntervalMs: 500, failureTimeoutMs: 999 } }),
      /config field "failureTimeoutMs": must be at least twice heartbeatIntervalMs/,
    );
    assert.doesNotThrow(() => loadConfig({ flags: { heartbeatIntervalMs: 500, failureTimeoutMs: 1000 } }));
    refuses(
      () => loadConfig({ flags: { reconnectBaseMs: 2000, reconnectMaxMs: 1000 } }),
      /config field "reconnectMaxMs": must not be below reconnectBaseMs/,
    );
  });
});

describe('parseHostPort', () => {
  test('splits names, IPv4 and bracketed IPv6', () => {
    assert.deepEqual(parseHostPort('nas.lan:7420'), { host: 'nas.lan', port: 7420 });
    assert.deepEqual(parseHostPort('10.0.0.7:1'), { host: '10.0.0.7', port: 1 });
    assert.deepEqual(parseHostPort('[::1]:65535'), { host: '::1', port: 65535 });
    assert.deepEqual(parseHostPort('[fd00::7:1]:7420'), { host: 'fd00::7:1', port: 7420 });
    assert.deepEqual(parseHostPort('[::ffff:10.0.0.7]:7420'), { host: '::ffff:10.0.0.7', port: 7420 });
  });

  test('refuses what is not HOST:PORT with a port in 1..65535, naming the value', () => {
    for (const bad of [
      'nas.lan',
      'nas.lan:',
      ':7420',
      'nas.lan:0',
      'nas.lan:65536',
      'nas.lan:123456',
      'nas.lan:http',
      'nas.lan:-1',
      '::1:7420',
      '[::1]',
      '[::1]7420',
      'nas lan:7420',
      ' nas.lan:7420',
      '',
    ]) {
      refuses(
        () => parseHostPort(bad),
        new RegExp(`peer "${bad.replace(/[[\]]/g, '\\$&')}": must be HOST:PORT`),
      );
    }
  });

  test('property: any domain or IPv4 with any valid port round-trips; the schema agrees', () => {
    const isValid = (value: string): boolean => {
      try {
        validateConfig({ ...DEFAULTS, peers: [value] });
        return true;
      } catch {
        return false;
      }
    };
    fc.assert(
      fc.property(fc.oneof(fc.domain(), fc.ipV4()), fc.integer({ min: 1, max: 65535 }), (host, port) => {
        assert.deepEqual(parseHostPort(`${host}:${port}`), { host, port });
        assert.ok(isValid(`${host}:${port}`));
      }),
    );
  });
});

describe('DEFAULTS documentation', () => {
  const source = readFileSync(new URL('../../src/config.ts', import.meta.url), 'utf8');

  /** The lines of the DEFAULTS object literal in the source. */
  function defaultsBlock(): string[] {
    const lines = source.split('\n');
    const start = lines.findIndex((l) => l.startsWith('export const DEFAULTS: Config = {'));
    assert.ok(start >= 0, 'DEFAULTS is declared in src/config.ts');
    const end = lines.findIndex((l, i) => i > start && l === '};');
    return lines.slice(start + 1, end);
  }

  test('every field of DEFAULTS is preceded by a /** ... */ doc comment', () => {
    const lines = defaultsBlock();
    const documented = new Map<string, string>();
    for (const [i, line] of lines.entries()) {
      const key = /^ {2}(\w+):/.exec(line)?.[1];
      if (!key) continue;
      let j = i - 1;
      assert.ok(lines[j]?.trimEnd().endsWith('*/'), `${key}: the line before it ends a comment`);
      const comment: string[] = [];
      while (j >= 0 && !lines[j]!.includes('/**')) comment.unshift(lines[j--]!);
      assert.ok(j >= 0 && lines[j]!.trim().startsWith('/**'), `${key}: its comment opens with /**`);
      comment.unshift(lines[j]!);
      const words = comment
        .join(' ')
        .replace(/\/\*\*|\*\/|\*/g, ' ')
        .trim();
      assert.ok(words.length >= 10, `${key}: the comment says something (${JSON.stringify(words)})`);
      documented.set(key, words);
    }
    assert.deepEqual([...documented.keys()].sort(), Object.keys(DEFAULTS).sort());
  });

  test('DEFAULTS has exactly the fields of the schema', () => {
    assert.deepEqual(Object.keys(DEFAULTS).sort(), Object.keys(ConfigSchema.properties).sort());
  });
});
