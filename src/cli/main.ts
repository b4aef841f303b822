#!/usr/bin/env -S node --max-semi-space-size=1 --no-memory-reducer
/**
 * The `shoal` command. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config, with a
 * one-line message naming the flag or field and what is wrong.
 */

import { Command, CommanderError, Option } from 'commander';
import { parseTime } from '../clock.ts';
import { type Config, DEFAULTS, parseSetting } from '../config.ts';
import { isShoalError, ShoalError } from '../errors.ts';
import { EVENT_TYPES } from '../events.ts';
import { VERSION } from '../version.ts';
import { demo } from './demo.ts';
import { init } from './init.ts';
import { fire, hook, keys, mesh, metrics, show } from './misc.ts';
import { createNode, deleteNode, getNode, listNodes, series, setValue, updateNode, watch } from './nodes.ts';
import { forget, peers } from './peers.ts';
import { start } from './start.ts';

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

function clientOptions(command: Command): Command {
  return command
    .option('--url <url>', 'URL of a running peer (default http://127.0.0.1:7420, or SHOAL_URL)')
    .option('--api-key <key>', 'API key (default SHOAL_API_KEY, else <data>/admin.key)')
    .option('--data <dir>', 'data directory to read the admin key from (default SHOAL_DATA or ./shoal-data)')
    .option('--json', 'print JSON for scripts');
}

export function program(): Command {
  const cli = new Command('shoal')
    .description('A self-organizing, self-healing mesh of home-automation and lab servers')
    .version(VERSION)
    // One line, with the code, like every other error of the command (exit 2: main).
    .configureOutput({
      outputError: (text, write) =>
        write(`shoal: SHOAL_BAD_USAGE: ${text.replace(/^error: /, '').trim()} (shoal --help for usage)\n`),
    })
    .exitOverride();

  cli
    .command('init')
    .description(
      'make the data directory and a strong cluster secret, and print how to start servers with it',
    )
    .option('--data <dir>', 'data directory', process.env.SHOAL_DATA ?? DEFAULTS.dataDir)
    .action((opts: { data: string }) => init(opts));

  cli
    .command('start')
    .description('run a peer in the foreground until Ctrl-C, then leave the mesh gracefully')
    .option('--config <file>', 'JSON or YAML config file (flags > env > file > defaults)')
    .option('--port <port>', 'HTTP + WebSocket port (default 7420)')
    .option('--host <address>', 'bind address (default 0.0.0.0)')
    .option('--beacon-port <port>', 'UDP beacon port (default 7421)')
    .option('--beacon-target <address>', 'send beacons here instead of the defaults (repeatable)', collect)
    .option('--data <dir>', 'data directory (default ./shoal-data)')
    .option('--secret <secret>', 'cluster secret (see shoal init)')
    .option('--secret-file <file>', 'file holding the cluster secret')
    .option('--peer <host:port>', 'a server beacons cannot reach (repeatable)', collect)
    .option('--name <name>', 'display name (default the hostname)')
    .addOption(
      new Option('--log-level <level>', 'log level (default info)').choices([
        'fatal',
        'error',
        'warn',
        'info',
        'debug',
        'trace',
        'silent',
      ]),
    )
    .action(async (opts: Record<string, string | string[] | undefined>) => {
      const flags: Partial<Record<keyof Config, unknown>> = {
        port: textFlag(opts.port, 'port', '--port'),
        host: opts.host,
        beaconPort: textFlag(opts.beaconPort, 'beaconPort', '--beacon-port'),
        beaconTargets: opts.beaconTarget,
        dataDir: opts.data,
        secret: opts.secret,
        secretFile: opts.secretFile,
        peers: opts.peer,
        name: opts.name,
        logLevel: opts.logLevel,
      };
      const file = typeof opts.config === 'string' ? opts.config : process.env.SHOAL_CONFIG;
      await start({ flags, env: process.env, ...(file ? { file } : {}) });
    });

  cli
    .command('demo')
    .description('start a mesh of N peers on this machine (loopback only) and print their URLs')
    .option('--peers <n>', 'how many peers', '3')
    .option('--port <port>', 'port of the first peer; the others take the next ones (0: any free)', '7420')
    .option('--beacon-port <port>', 'UDP beacon port', String(DEFAULTS.beaconPort))
    .option('--log-level <level>', 'log level of the peers', 'warn')
    .action(async (opts: { peers: string; port: string; beaconPort: string; logLevel: string }) => {
      await demo({
        peers: wholeNumber(opts.peers, '--peers'),
        port: wholeNumber(opts.port, '--port'),
        beaconPort: wholeNumber(opts.beaconPort, '--beacon-port'),
        logLevel: opts.logLevel,
      });
    });

  clientOptions(cli.command('peers').description('list every peer a running server knows'))
    .option('--retired', 'list the servers retired from the mesh instead')
    .action(
      async (opts: { url?: string; apiKey?: string; data?: string; json?: boolean; retired?: boolean }) => {
        await peers(opts);
      },
    );
  clientOptions(
    cli
      .command('forget')
      .argument('<id>', 'the server id (see shoal peers)')
      .description(
        'retire a server that is gone for good: every server deletes its nodes and refuses it from then on (needs an admin key)',
      ),
  ).action((id: string, opts: { url?: string; apiKey?: string; data?: string; json?: boolean }) =>
    forget(id, opts),
  );

  type Opts = { url?: string; apiKey?: string; data?: string; json?: boolean };
  clientOptions(cli.command('nodes').description('list the node tree of the whole mesh'))
    .option('--type <type>', 'only nodes of this type')
    .option('--owner <id>', 'only nodes owned by this server')
    .option('--parent <id>', 'only children of this node')
    .action((opts: Opts & { type?: string; owner?: string; parent?: string }) => listNodes(opts));
  clientOptions(cli.command('get').argument('<id>').description('show one node')).action(
    (id: string, opts: Opts) => getNode(id, opts),
  );
  clientOptions(
    cli
      .command('set')
      .argument('<id>')
      .argument('<value>', 'JSON (21.5, true, "on") or plain text')
      .description("set a data point's value, wherever its owner is"),
  ).action((id: string, value: string, opts: Opts) => setValue(id, value, opts));
  clientOptions(
    cli
      .command('create')
      .argument('<type>', 'Project, DataPoint, HighThreshold, ...')
      .argument('<name>')
      .description('create a node (owned by this server unless --owner)'),
  )
    .option('--parent <id>', 'the parent node (default the owner server)')
    .option('--owner <id>', 'the server that will own it')
    .option('--meta <json>', 'the meta object, as JSON')
    .option('--value <value>', 'a first value (data points)')
    .action(
      (
        type: string,
        name: string,
        opts: Opts & { parent?: string; owner?: string; meta?: string; value?: string },
      ) => createNode(type, name, opts),
    );
  clientOptions(cli.command('update').argument('<id>').description("change a node's name or meta"))
    .option('--name <name>', 'the new name')
    .option('--meta <json>', 'the new meta object, as JSON')
    .action((id: string, opts: Opts & { name?: string; meta?: string }) => updateNode(id, opts));
  clientOptions(
    cli.command('delete').argument('<id>').description('delete a node and its subtree, mesh-wide'),
  ).action((id: string, opts: Opts) => deleteNode(id, opts));
  clientOptions(cli.command('series').argument('<id>').description("a data point's recorded values"))
    .option('--from <time>', 'ISO 8601 or ms since the epoch')
    .option('--to <time>', 'ISO 8601 or ms since the epoch')
    .option('--limit <n>', 'at most this many values')
    .action((id: string, opts: Opts & { from?: string; to?: string; limit?: string }) => {
      if (opts.limit !== undefined) {
        const limit = wholeNumber(opts.limit, '--limit');
        if (limit < 1 || limit > 100_000)
          throw new ShoalError('SHOAL_BAD_USAGE', `--limit: ${limit} is not from 1 to 100000`);
      }
      for (const [flag, value] of [
        ['--from', opts.from],
        ['--to', opts.to],
      ] as const) {
        if (value !== undefined && parseTime(value) === undefined) {
          throw new ShoalError(
            'SHOAL_BAD_USAGE',
            `${flag}: "${value}" is neither an ISO 8601 time nor ms since the epoch`,
          );
        }
      }
      return series(id, opts);
    });
  clientOptions(
    cli.command('watch').description('print every change in the mesh as it happens (Ctrl-C stops)'),
  )
    .option('--types <list>', `only these event types, comma-separated: ${EVENT_TYPES.join(', ')}`)
    .action((opts: Opts & { types?: string }) => watch(opts));
  clientOptions(cli.command('server').description("this server's metadata")).action((opts: Opts) =>
    show('/api/v1/server', opts),
  );
  clientOptions(cli.command('health').description('is the peer up (no key needed)')).action((opts: Opts) =>
    show('/api/v1/health', opts),
  );
  clientOptions(cli.command('mesh').description('the servers and the links between them, with RTTs')).action(
    (opts: Opts) => mesh(opts),
  );
  clientOptions(cli.command('fire').argument('<id>').description('fire a trigger (press a Button)')).action(
    (id: string, opts: Opts) => fire(id, opts),
  );
  clientOptions(cli.command('hook').argument('<path>').description('call an IncomingWebHook'))
    .option('--body <json>', 'the JSON payload')
    .action((path: string, opts: Opts & { body?: string }) => hook(path, opts));
  clientOptions(
    cli
      .command('keys')
      .argument('[action]', 'list (default), create NAME, or revoke ID', 'list')
      .argument('[name-or-id]')
      .description('list, make or revoke API keys (needs an admin key)'),
  )
    .option('--scope <scope>', 'for create: read (default) or admin')
    .action((action: string, arg: string | undefined, opts: Opts & { scope?: string }) => {
      if (!['list', 'create', 'revoke'].includes(action)) {
        throw new ShoalError('SHOAL_BAD_USAGE', `keys: "${action}" is not list, create or revoke`);
      }
      if (action !== 'list' && !arg)
        throw new ShoalError(
          'SHOAL_BAD_USAGE',
          `keys ${action}: give a ${action === 'create' ? 'name' : 'key id'}`,
        );
      return keys(action as 'list' | 'create' | 'revoke', arg, opts);
    });
  clientOptions(cli.command('metrics').description('the Prometheus metrics of the peer')).action(
    (opts: Opts) => metrics(opts),
  );

  return cli;
}

function textFlag(value: unknown, field: keyof Config, flag: string): unknown {
  return typeof value === 'string' ? parseSetting(field, value, flag) : undefined;
}

function wholeNumber(value: string, flag: string): number {
  if (!/^\d+$/.test(value))
    throw new ShoalError('SHOAL_BAD_USAGE', `${flag}: "${value}" is not a whole number`);
  return Number(value);
}

export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help asked for (--help, `shoal help`) exits 0; help shown for a missing command, 1 from
      // commander, is bad usage: 2, like every other.
      process.exit(err.exitCode === 0 ? 0 : 2);
    }
    if (isShoalError(err)) {
      process.stderr.write(`shoal: ${err.code}: ${err.message}\n`);
      process.exit(err.exitCode);
    }
    process.stderr.write(`shoal: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  }
}

await main(process.argv);
