/**
 * The shoal dashboard, served by every peer at /. It asks once for the server's API key (kept in
 * localStorage), opens the live stream, reads the state of the mesh, and from then on follows the
 * stream. When the stream drops it reconnects with backoff and reads the state again; the mesh
 * graph and the peers' round-trip times are re-read every few seconds and soon after a peer event.
 */

import { render } from 'preact';
import { useState } from 'preact/hooks';
import { ApiError, api, apiKey, onUnauthorized, stream } from './api.js';
import { NodeDetail } from './detail.js';
import { EventLog } from './log.js';
import { MeshGraph, meshSummary } from './mesh-graph.js';
import { PeersTable } from './peers.js';
import {
  applyEvent,
  beginSnapshot,
  dismiss,
  formatRtt,
  loadNodes,
  onTopic,
  setConn,
  setMesh,
  setPeers,
  setSelf,
  state,
  toast,
} from './store.js';
import { NodeTree } from './tree.js';
import { html, useTick, useTopic } from './view.js';

/** How often the graph and the peers table are re-read (their RTTs change without events). */
const POLL_MS = 2000;
/** A burst of peer events leads to one re-read this long after the first. */
const PEER_DEBOUNCE_MS = 150;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// The connection: stream, snapshot, polling

let retries = 0;
let retryTimer = 0;

function connect() {
  clearTimeout(retryTimer);
  setConn('connecting', 0, state.conn.error);
  stream.open(apiKey.get());
}

function reconnectLater(reason) {
  const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** retries) * (0.8 + Math.random() * 0.4);
  retries++;
  setConn('down', Date.now() + delay, reason);
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, delay);
}

function askForKey(message) {
  stream.close();
  clearTimeout(retryTimer);
  apiKey.clear();
  setConn('key', 0, message);
}

stream.handlers = {
  onHello() {
    retries = 0;
    setConn('live');
    void loadSnapshot();
  },
  onEvent(event) {
    applyEvent(event);
    if (event.type === 'peer' || event.type === 'retired') refreshSoon();
  },
  onDown: reconnectLater,
  onRefused: () => askForKey('This server refused the key. Enter it again.'),
};
onUnauthorized(() => askForKey('This server refused the key. Enter it again.'));

async function loadSnapshot() {
  const since = beginSnapshot();
  try {
    const [server, peers, mesh, nodes] = await Promise.all([
      api('GET', '/api/v1/server'),
      api('GET', '/api/v1/peers'),
      api('GET', '/api/v1/mesh'),
      api('GET', '/api/v1/nodes'),
    ]);
    setSelf(server);
    setPeers(peers.peers);
    setMesh(mesh);
    loadNodes(nodes.nodes, since);
    document.title = `${server.name} · shoal`;
  } catch (err) {
    if (err.status !== 401) toast(`Could not read the mesh: ${err.message}`);
  }
}

async function refreshMesh() {
  if (state.conn.status !== 'live') return;
  try {
    const [mesh, peers] = await Promise.all([api('GET', '/api/v1/mesh'), api('GET', '/api/v1/peers')]);
    setMesh(mesh);
    setPeers(peers.peers);
  } catch {
    // The stream notices a server that went away; polling stays quiet.
  }
}

let refreshTimer = 0;
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = 0;
    void refreshMesh();
  }, PEER_DEBOUNCE_MS);
}

setInterval(() => {
  if (!document.hidden) void refreshMesh();
}, POLL_MS);
window.addEventListener('online', () => state.conn.status === 'down' && connect());

// On a narrow screen the details are below the tree: bring them into view when a node is picked.
const narrow = matchMedia('(max-width: 900px)');
onTopic('select', () => {
  if (narrow.matches && state.selected)
    document.getElementById('detail')?.scrollIntoView({ behavior: 'smooth' });
});

// ---------------------------------------------------------------------------------------------
// The page

function KeyDialog() {
  const [key, setKey] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const trimmed = key.trim();
    if (!trimmed) return;
    setBusy(true);
    setError('');
    try {
      await api('GET', '/api/v1/server', undefined, trimmed);
      apiKey.set(trimmed);
      connect();
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? 'That key was refused.' : err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="modal-back">
    <form class="modal key-dialog" onSubmit=${submit}>
      <${Logo} />
      <h1>Connect to ${location.host}</h1>
      ${state.conn.error ? html`<p class="note warn">${state.conn.error}</p>` : null}
      <p>
        Enter this server's API key. It is in <code>admin.key</code> in the server's data directory
        (printed once when the server first started). The key stays in this browser.
      </p>
      <input id="key-input" type="password" autocomplete="current-password" placeholder="API key" aria-label="API key"
        autofocus value=${key} onInput=${(e) => setKey(e.currentTarget.value)} />
      <button class="primary modal-submit" type="submit" disabled=${busy}>${busy ? 'Checking…' : 'Connect'}</button>
      ${error ? html`<p class="form-error">${error}</p>` : null}
    </form>
  </div>`;
}

function Logo() {
  return html`<svg class="logo" viewBox="0 0 32 32" aria-hidden="true">
    <path d="M8 9 24 9 16 24Z" />
    <circle cx="8" cy="9" r="4.5" /><circle cx="24" cy="9" r="4.5" /><circle cx="16" cy="24" r="4.5" />
  </svg>`;
}

function ConnPill() {
  useTopic('conn', 'activity');
  useTick(1000);
  const { status, retryAt } = state.conn;
  const text =
    status === 'live'
      ? `live · ${state.eventRate}/s`
      : status === 'down'
        ? `reconnecting in ${Math.max(0, Math.ceil((retryAt - Date.now()) / 1000))} s`
        : 'connecting…';
  return html`<span class=${`pill conn-${status}`} data-conn=${status}><i></i>${text}</span>`;
}

function Header() {
  useTopic('self');
  const forget = () => askForKey('');
  return html`<header class="top">
    <div class="brand"><${Logo} /><b>shoal</b></div>
    <div class="where">${state.self ? html`on <b>${state.self.name}</b>` : null}</div>
    <${ConnPill} />
    <button class="ghost small" title="forget the API key in this browser" onClick=${forget}>Sign out</button>
  </header>`;
}

function Banner() {
  useTopic('conn', 'peers');
  // Also while a reconnect is being tried, so the banner does not blink with every attempt.
  const lost = state.conn.status === 'down' || (state.conn.status === 'connecting' && retries > 0);
  if (!lost) return null;
  const others = [...state.peers.values()].filter((p) => p.state === 'connected' && p.address);
  return html`<div class="banner">
    <b>Lost the connection to ${state.self?.name ?? location.host}</b>
    <span>(${state.conn.error}). What you see may be out of date.</span>
    <button class="ghost small" onClick=${connect}>Retry now</button>
    ${
      others.length
        ? html`<span class="others">Other servers: ${others.slice(0, 5).map((p) => html`<a href=${`http://${p.address}:${p.port}/`}>${p.name}</a> `)}</span>`
        : null
    }
  </div>`;
}

function MeshHead() {
  useTopic('mesh');
  const s = meshSummary();
  return html`<span class="summary">${s.online} of ${s.total} online · ${s.links} links${s.rtt == null ? '' : ` · median ${formatRtt(s.rtt)}`}</span>`;
}

function Toasts() {
  useTopic('toasts');
  return html`<div class="toasts" aria-live="polite">
    ${state.toasts.map((t) => html`<div key=${t.id} class=${`toast ${t.kind}`} role=${t.kind === 'error' ? 'alert' : 'status'} onClick=${() => dismiss(t.id)}>${t.text}</div>`)}
  </div>`;
}

function App() {
  useTopic('conn');
  if (state.conn.status === 'key') return html`<${KeyDialog} />`;
  return html`
    <${Header} />
    <${Banner} />
    <main class="layout">
      <section class="card area-mesh" id="mesh">
        <header><h2>Mesh</h2><${MeshHead} /></header>
        <${MeshGraph} />
      </section>
      <section class="card area-log" id="log">
        <${EventLog} />
      </section>
      <section class="card area-tree" id="nodes">
        <header><h2>Nodes</h2></header>
        <${NodeTree} />
      </section>
      <section class="card area-detail" id="detail">
        <${NodeDetail} />
      </section>
      <section class="card area-peers" id="servers">
        <header><h2>Servers</h2></header>
        <${PeersTable} />
      </section>
    </main>
    <nav class="tabbar" aria-label="sections">
      <a href="#mesh">Mesh</a><a href="#nodes">Nodes</a><a href="#servers">Servers</a><a href="#log">Events</a>
    </nav>
    <${Toasts} />`;
}

if (apiKey.get()) connect();
else setConn('key', 0, '');
const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
