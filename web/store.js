/**
 * The dashboard's state: everything the page knows about the mesh, filled from an API snapshot and
 * kept current by the live stream, and the frame scheduler that turns bursts of events into at
 * most one render per animation frame.
 *
 * Contract:
 * - Events only change plain data here and mark what changed. `flush()` runs once per animation
 *   frame and tells the listeners: topic listeners (tree, mesh, peers, log, …) re-render with
 *   preact; value listeners write straight to the DOM, so a new value never re-renders the tree;
 *   point listeners (charts) get every value received since the last frame, none coalesced.
 * - A node change is applied only when it is newer than what is held (`version` is the owner's
 *   sequence number of the node's last change), so a snapshot and the stream may arrive in any
 *   order and a change is never applied twice.
 * - A value change keeps the node object (its fields are updated in place); any other change
 *   replaces it. Tree rows compare nodes by identity, so only rows whose node was renamed, moved
 *   or re-typed render again.
 */

/** Mirrors src/store/node-types.ts: where each type may hang. */
export const TRIGGER_TYPES = [
  'HighThreshold',
  'LowThreshold',
  'CronTimer',
  'SilentAlarm',
  'IncomingWebHook',
  'Button',
];
export const EXECUTOR_TYPES = ['Calculation', 'Compute', 'LogicGate', 'OutgoingWebHook', 'SetValue'];
export const CHILD_TYPES = {
  Server: ['Project', 'DataPoint', ...TRIGGER_TYPES, ...EXECUTOR_TYPES],
  Project: ['Project', 'DataPoint', ...TRIGGER_TYPES, ...EXECUTOR_TYPES],
  DataPoint: [...TRIGGER_TYPES, ...EXECUTOR_TYPES],
  ...Object.fromEntries(TRIGGER_TYPES.map((t) => [t, EXECUTOR_TYPES])),
};

/** How many log entries are kept. */
const LOG_MAX = 400;

export const state = {
  /** This server (GET /api/v1/server), or null before the first snapshot. */
  self: null,
  /** Every node the mesh knows, by id. */
  nodes: new Map(),
  /** The other servers as this one sees them (GET /api/v1/peers and peer events), by id. */
  peers: new Map(),
  /** GET /api/v1/mesh: servers and the links between them. */
  mesh: { servers: [], links: [] },
  /** Node events per second of the last second, by owner; and the total. */
  rates: new Map(),
  eventRate: 0,
  /** The event log, oldest first. */
  log: [],
  /** The stream: 'connecting' | 'live' | 'down'; `retryAt` (ms) when down. */
  conn: { status: 'connecting', retryAt: 0, error: '' },
  /** The selected node's id, or null. */
  selected: null,
  /** Messages for the user: {id, kind: 'error'|'ok', text}. */
  toasts: [],
  /** Changes whenever the tree's shape (not a value) changes. */
};

// ---------------------------------------------------------------------------------------------
// Frame scheduler and listeners

const topicListeners = new Map();
const valueListeners = new Map();
const pointListeners = new Map();
const dirtyTopics = new Set();
let dirtyValues = new Set();
let pendingPoints = new Map();
let frame = 0;

function schedule() {
  if (frame === 0) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = 0;
  const values = dirtyValues;
  const points = pendingPoints;
  dirtyValues = new Set();
  pendingPoints = new Map();
  for (const id of values) {
    const listeners = valueListeners.get(id);
    if (!listeners) continue;
    const node = state.nodes.get(id);
    for (const listener of listeners) listener(node);
  }
  for (const [id, list] of points) {
    for (const listener of pointListeners.get(id) ?? []) listener(list);
  }
  const topics = [...dirtyTopics];
  dirtyTopics.clear();
  for (const topic of topics) for (const listener of topicListeners.get(topic) ?? []) listener();
}

function listen(map, key, listener) {
  let set = map.get(key);
  if (!set) {
    set = new Set();
    map.set(key, set);
  }
  set.add(listener);
  return () => {
    set.delete(listener);
    if (set.size === 0 && map.get(key) === set) map.delete(key);
  };
}

/** Calls `listener()` in the next frame after `topic` was marked; returns the unsubscribe. */
export const onTopic = (topic, listener) => listen(topicListeners, topic, listener);
/** Calls `listener(node)` in the next frame after node `id`'s value or state changed. */
export const onValue = (id, listener) => listen(valueListeners, id, listener);
/** Calls `listener([{t, value}])` with the values of `id` received since the last frame. */
export const onPoints = (id, listener) => listen(pointListeners, id, listener);

function mark(topic) {
  dirtyTopics.add(topic);
  schedule();
}

function markValue(id) {
  dirtyValues.add(id);
  schedule();
}

// ---------------------------------------------------------------------------------------------
// The node tree

/** Orders names as people expect ("sensor 2" before "sensor 10"), in every list of the page. */
export const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
const TYPE_RANK = { Server: 0, Project: 1, DataPoint: 2 };
const rank = (type) => TYPE_RANK[type] ?? (TRIGGER_TYPES.includes(type) ? 3 : 4);

function compareNodes(a, b) {
  if (a.type === 'Server' && b.type === 'Server' && state.self) {
    if (a.id === state.self.id) return -1;
    if (b.id === state.self.id) return 1;
  }
  return rank(a.type) - rank(b.type) || collator.compare(a.name, b.name) || (a.id < b.id ? -1 : 1);
}

let index = null;

/**
 * The tree as lists of children (sorted: projects, data points, triggers, executors, each by
 * name) by parent id ('' for the root), and the number of nodes under each node.
 */
export function treeIndex() {
  if (index) return index;
  const children = new Map();
  for (const node of state.nodes.values()) {
    const key = node.parent ?? '';
    const list = children.get(key);
    if (list) list.push(node);
    else children.set(key, [node]);
  }
  for (const list of children.values()) list.sort(compareNodes);
  const below = new Map();
  const count = (id) => {
    let n = 0;
    for (const child of children.get(id) ?? []) n += 1 + count(child.id);
    below.set(id, n);
    return n;
  };
  for (const root of children.get('') ?? []) count(root.id);
  index = { children, below };
  return index;
}

/** The tree changed: `treeIndex()` makes a new index (a new object, which views memoize on). */
function treeChanged() {
  index = null;
  mark('tree');
}

/** The nodes from the root down to node `id` (as far up as this page knows them). */
export function ancestors(id) {
  const nodes = [];
  for (let node = state.nodes.get(id), hops = 0; node && hops < 64; hops++) {
    nodes.push(node);
    node = node.parent ? state.nodes.get(node.parent) : undefined;
  }
  return nodes.reverse();
}

/** The names from the root down to node `id`. */
export function pathOf(id) {
  return ancestors(id).map((node) => node.name);
}

/** The name of server `id`, or a short form of its id when it is not known. */
export function serverName(id) {
  if (state.self?.id === id) return state.self.name;
  return state.peers.get(id)?.name ?? state.nodes.get(id)?.name ?? `${String(id).slice(0, 8)}…`;
}

/** How a peer is reached: 'direct', 'via NAME', or undefined when it is not reachable. */
export function routeOf(peer) {
  if (peer?.route == null) return undefined;
  return peer.route === 'direct' ? 'direct' : `via ${serverName(peer.route)}`;
}

/** 'self' | 'connected' | 'connecting' | 'disconnected' | 'unknown' for a server id. */
export function serverState(id) {
  if (state.self?.id === id) return 'self';
  return state.peers.get(id)?.state ?? meshServer(id)?.state ?? 'unknown';
}

const meshServer = (id) => state.mesh.servers.find((s) => s.id === id);

// ---------------------------------------------------------------------------------------------
// Snapshots and events

/** Node ids that events changed, with the snapshot epoch they arrived in. */
const touched = new Map();
/** Versions at which nodes were deleted, so an older snapshot cannot bring them back. */
const tombstones = new Map();
let epoch = 0;

/** Call before fetching a node snapshot; pass the result to `loadNodes`. */
export function beginSnapshot() {
  return ++epoch;
}

/** Replaces the nodes with a snapshot fetched since `beginSnapshot()` returned `since`. */
export function loadNodes(nodes, since) {
  const next = new Map();
  for (const node of nodes) {
    const held = state.nodes.get(node.id);
    if (held && held.version > node.version) next.set(node.id, held);
    else if (!((tombstones.get(node.id) ?? -1) >= node.version)) next.set(node.id, node);
  }
  // Nodes the stream brought after the snapshot was asked for are newer than it.
  for (const [id, held] of state.nodes) {
    if (!next.has(id) && (touched.get(id) ?? -1) >= since) next.set(id, held);
  }
  for (const [id, at] of touched) if (at < since) touched.delete(id);
  state.nodes = next;
  for (const id of valueListeners.keys()) dirtyValues.add(id);
  if (state.selected && !next.has(state.selected)) mark('select');
  treeChanged();
  mark('resync');
}

export function setSelf(server) {
  state.self = server;
  mark('self');
  mark('mesh');
  mark('peers');
}

export function setPeers(peers) {
  const before = state.peers;
  state.peers = new Map(peers.map((p) => [p.id, p]));
  mark('peers');
  // The tree shows each owner's state and name; most polls change neither.
  if (peers.length !== before.size || peers.some((p) => treeShowsChange(before.get(p.id), p))) mark('tree');
}

/** True when the tree shows a peer differently after `peer` (its state or name). */
function treeShowsChange(before, peer) {
  return !before || before.state !== peer.state || before.name !== peer.name;
}

let meshText = '';
export function setMesh(mesh) {
  const text = JSON.stringify(mesh);
  if (text === meshText) return;
  meshText = text;
  state.mesh = mesh;
  mark('mesh');
}

/** Applies one event of the stream. */
export function applyEvent(event) {
  const at = Date.parse(event.at) || Date.now();
  if (event.type === 'node') applyNode(event.op, event.node, at);
  else if (event.type === 'peer') applyPeer(event.peer, at);
  else if (event.type === 'automation') applyAutomation(event, at);
  else if (event.type === 'retired') applyRetired(event.server, at);
}

const activity = new Map();
let eventsThisSecond = 0;
setInterval(() => {
  state.rates = new Map(activity);
  state.eventRate = eventsThisSecond;
  activity.clear();
  eventsThisSecond = 0;
  mark('activity');
}, 1000);

function applyNode(op, node, at) {
  eventsThisSecond++;
  activity.set(node.owner, (activity.get(node.owner) ?? 0) + 1);
  const held = state.nodes.get(node.id);
  log(op === 'value' ? 'value' : 'node', at, node, describeNode(op, node, held));
  if (held && held.version >= node.version) return;
  touched.set(node.id, epoch);
  if (op === 'delete') {
    tombstones.set(node.id, node.version);
    if (held) {
      state.nodes.delete(node.id);
      treeChanged();
      if (state.selected === node.id) mark('select');
    }
    return;
  }
  if ((tombstones.get(node.id) ?? -1) >= node.version) return;
  const sameShape =
    held &&
    held.type === node.type &&
    held.name === node.name &&
    held.parent === node.parent &&
    held.owner === node.owner &&
    (op === 'value' || JSON.stringify(held.meta) === JSON.stringify(node.meta));
  if (sameShape) {
    held.value = node.value;
    held.updatedAt = node.updatedAt;
    held.version = node.version;
    if (node.state) held.state = node.state;
  } else {
    state.nodes.set(node.id, node);
    treeChanged();
  }
  if (node.type === 'DataPoint' && 'value' in node && pointListeners.has(node.id)) {
    const point = { t: Date.parse(node.updatedAt) || at, value: node.value };
    const list = pendingPoints.get(node.id);
    if (list) list.push(point);
    else pendingPoints.set(node.id, [point]);
  }
  markValue(node.id);
}

function applyPeer(peer, at) {
  const before = state.peers.get(peer.id);
  state.peers.set(peer.id, peer);
  if (!before || before.state !== peer.state) {
    log(
      'peer',
      at,
      { id: peer.id, owner: peer.id },
      `${peer.name} is ${peer.state}${routeText(peer)}`,
      peer.state === 'disconnected' ? 'bad' : '',
    );
  }
  // Show the change at once; the next GET /api/v1/mesh confirms it.
  const servers = state.mesh.servers.filter((s) => s.id !== peer.id);
  servers.push({ id: peer.id, name: peer.name, state: peer.state });
  const links =
    peer.state === 'connected'
      ? state.mesh.links
      : state.mesh.links.filter((l) => l.a !== peer.id && l.b !== peer.id);
  state.mesh = { servers, links };
  meshText = '';
  mark('mesh');
  mark('peers');
  if (treeShowsChange(before, peer)) mark('tree');
}

/**
 * A server retired from the mesh: gone from the peers, the graph and the tree. Its nodes go here
 * too: the delete events that come for them carry their last version, which the page holds already.
 */
function applyRetired(server, at) {
  state.peers.delete(server.id);
  for (const node of [...state.nodes.values()]) {
    if (node.owner === server.id) state.nodes.delete(node.id);
  }
  treeChanged();
  if (state.selected && !state.nodes.has(state.selected)) mark('select');
  state.mesh = {
    servers: state.mesh.servers.filter((s) => s.id !== server.id),
    links: state.mesh.links.filter((l) => l.a !== server.id && l.b !== server.id),
  };
  meshText = '';
  log(
    'peer',
    at,
    { id: server.id, owner: server.id },
    `${server.name || server.id} was retired from the mesh`,
    'bad',
  );
  mark('mesh');
  mark('peers');
  mark('tree');
}

function applyAutomation(event, at) {
  eventsThisSecond++;
  const node = state.nodes.get(event.nodeId);
  if (node) {
    node.state = event.state;
    markValue(node.id);
  }
  const path = node ? pathOf(node.id).slice(1).join(' › ') : event.nodeId;
  const s = event.state ?? {};
  const text = event.fire
    ? `${path} fired${s.runner ? ` on ${serverName(s.runner)}` : ''}`
    : `${path} ran${s.runner ? ` on ${serverName(s.runner)}` : ''}: ${s.ok === false ? `failed: ${s.error ?? 'error'}` : 'ok'}`;
  log('automation', at, node ?? { id: event.nodeId }, text, s.ok === false ? 'bad' : '');
}

function routeText(peer) {
  if (peer.state !== 'connected') return '';
  if (peer.route && peer.route !== 'direct') return ` (${routeOf(peer)})`;
  return peer.rttMs == null ? '' : ` (${formatRtt(peer.rttMs)})`;
}

function describeNode(op, node, held) {
  const parentPath = node.parent ? pathOf(node.parent).slice(1) : [];
  const path = [...parentPath, node.name].join(' › ');
  switch (op) {
    case 'create':
      return `created ${node.type} ${path}`;
    case 'delete':
      return `deleted ${node.type} ${path}`;
    case 'update':
      return held && held.name !== node.name ? `renamed ${held.name} to ${node.name}` : `changed ${path}`;
    default: {
      const unit = node.meta?.unit ? ` ${node.meta.unit}` : '';
      return `${path} = ${formatValue(node.value)}${unit}`;
    }
  }
}

function log(kind, at, node, text, tone = '') {
  state.log.push({ seq: ++logSeq, kind, at, id: node?.id ?? null, owner: node?.owner ?? null, text, tone });
  if (state.log.length > LOG_MAX) state.log.splice(0, state.log.length - LOG_MAX);
  mark('log');
}
let logSeq = 0;

export function clearLog() {
  state.log = [];
  mark('log');
}

// ---------------------------------------------------------------------------------------------
// The user's side: selection, connection state, messages

export function select(id) {
  if (state.selected === id) return;
  state.selected = id;
  mark('select');
}

export function setConn(status, retryAt = 0, error = '') {
  state.conn = { status, retryAt, error };
  mark('conn');
}

let toastSeq = 0;
/** Shows a message for a few seconds; errors stay a little longer. */
export function toast(text, kind = 'error') {
  const id = ++toastSeq;
  state.toasts = [...state.toasts.slice(-3), { id, kind, text }];
  mark('toasts');
  setTimeout(() => dismiss(id), kind === 'error' ? 8000 : 3000);
}

export function dismiss(id) {
  state.toasts = state.toasts.filter((t) => t.id !== id);
  mark('toasts');
}

// ---------------------------------------------------------------------------------------------
// Presentation of values shared by the tree, the detail panel and the log

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });

/** A value as one short line. */
export function formatValue(value) {
  if (value === undefined || value === null) return '—';
  if (typeof value === 'number') return numberFormat.format(value);
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 59)}…` : text;
}

export function formatRtt(ms) {
  if (ms == null) return '–';
  return `${ms < 1 ? ms.toFixed(2) : ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

/** "now", "5 s ago", "3 min ago", … for a time in ms. */
export function ago(ms, now = Date.now()) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 2) return 'now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}
