/**
 * The memory floor of shoal's stack: a program that holds, at rest, what every peer holds before
 * any code of shoal's own runs, and nothing else. The mesh bench (scenarios.ts, `idle`) bundles it
 * as the product is bundled (scripts/build.mjs), starts it with the product's Node flags next to
 * the idle peers, and reports its RSS, so the idle-peer target reads against what Node 20 and the
 * runtime dependencies in package.json cost by themselves.
 *
 * What it does, each with the package a peer uses for it: an HTTP server on 127.0.0.1 (fastify,
 * logging through pino) with one route validated by a typebox schema, its OpenAPI document
 * (@fastify/swagger), a WebSocket route (@fastify/websocket, ws) and the dashboard's files
 * (@fastify/static); an SQLite database in WAL
 * mode (better-sqlite3); a UDP socket on 127.0.0.1 (node:dgram); Prometheus metrics with the
 * process metrics (prom-client); an HKDF key and one AES-GCM seal (node:crypto); a command line
 * (commander), a YAML document (yaml) and a schedule (croner). It sends nothing anywhere.
 *
 * Usage: node [flags] stack-floor.mjs DIR WEB: the database goes in DIR (the caller's, removed by it),
 * the files served are those in WEB. Prints `ready` once listening.
 */

import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import Database from 'better-sqlite3';
import { Command } from 'commander';
import { Cron } from 'croner';
import Fastify from 'fastify';
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import Type from 'typebox';
import { parse } from 'yaml';

const program = new Command().argument('<dir>').argument('<web>').parse(process.argv);
const [dir, web] = program.args as [string, string];
const settings = parse('name: floor\nport: 0\n') as { name: string; port: number };

const db = new Database(join(dir, 'floor.db'));
db.pragma('journal_mode = WAL');
db.exec('CREATE TABLE IF NOT EXISTS nodes (id TEXT PRIMARY KEY, state TEXT NOT NULL)');
db.prepare('INSERT OR REPLACE INTO nodes VALUES (?, ?)').run('floor', JSON.stringify(settings));

const registry = new Registry();
collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 1000 });

const key = Buffer.from(hkdfSync('sha256', randomBytes(32), Buffer.alloc(0), 'floor', 32));
const cipher = createCipheriv('aes-256-gcm', key, randomBytes(12));
cipher.update('floor');
cipher.final();

const app = Fastify({ loggerInstance: pino({ level: 'warn' }) });
await app.register(swagger, { openapi: { openapi: '3.0.3', info: { title: 'floor', version: '0' } } });
await app.register(websocket);
await app.register(fastifyStatic, { root: web });
app.get(
  '/api/v1/nodes/:id',
  { schema: { params: Type.Object({ id: Type.String({ maxLength: 64 }) }) } },
  async (request) =>
    db.prepare('SELECT state FROM nodes WHERE id = ?').get((request.params as { id: string }).id),
);
app.get('/metrics', async () => registry.metrics());
app.get('/api/v1/openapi.json', async () => app.swagger());
app.get('/api/v1/stream', { websocket: true }, (socket) => socket.close());
await app.listen({ host: '127.0.0.1', port: settings.port });

const udp = createSocket('udp4');
await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
new Cron('*/5 * * * * *', () => {
  db.prepare('SELECT count(*) FROM nodes').get();
});
console.log('ready');
