/**
 * The selected node: its place and owner, its live value and history (data points), what it last
 * did (triggers and executors), and what can be done with it: set a value, fire, create a child,
 * rename, edit meta, delete. Every write goes to the server that serves the page, which forwards
 * it to the node's owner; the API's error messages are shown as they come.
 */

import { useEffect, useRef, useState } from 'preact/hooks';
import { createNode, deleteNode, fireNode, retireServer, setValue, updateNode } from './api.js';
import { RANGES, SeriesChart } from './chart.js';
import { meshSummary } from './mesh-graph.js';
import {
  ago,
  ancestors,
  CHILD_TYPES,
  formatRtt,
  pathOf,
  routeOf,
  select,
  serverName,
  serverState,
  state,
  TRIGGER_TYPES,
  toast,
  treeIndex,
} from './store.js';
import { html, Icon, kindOf, LiveValue, NodeLink, runCount, useTick, useTopic, useValue } from './view.js';

/** Runs a write; on failure shows the API's message and returns undefined. */
async function attempt(setError, write, done) {
  setError('');
  try {
    const result = await write();
    if (done) toast(done, 'ok');
    return result ?? true;
  } catch (err) {
    const message =
      err.code && !/^(HTTP_|NETWORK|NOT_)/.test(err.code) ? `${err.message} (${err.code})` : err.message;
    setError(message);
    return undefined;
  }
}

export function NodeDetail() {
  useTopic('select', 'tree');
  const id = state.selected;
  if (!id) return html`<${Overview} />`;
  const node = state.nodes.get(id);
  if (!node) {
    return html`<div class="detail empty-detail">
      <p>This node is gone: it was deleted${state.conn.status === 'live' ? '' : ', or the page is out of date'}.</p>
      <button class="ghost" onClick=${() => select(null)}>Back</button>
    </div>`;
  }
  return html`<${Detail} key=${id} node=${node} />`;
}

function Overview() {
  useTopic('mesh', 'activity', 'self');
  const s = meshSummary();
  let points = 0;
  let automations = 0;
  const latest = [];
  for (const node of state.nodes.values()) {
    if (node.type === 'DataPoint') {
      points++;
      if (node.value !== undefined) latest.push(node);
    } else if (node.type !== 'Server' && node.type !== 'Project') automations++;
  }
  latest.sort((a, b) => (a.updatedAt < b.updatedAt ? 1 : -1));
  latest.length = Math.min(latest.length, 8);
  return html`<div class="detail overview">
    <div class="stats">
      <div><b>${s.online}<small>/${s.total}</small></b><span>servers online</span></div>
      <div><b>${points}</b><span>data points</span></div>
      <div><b>${automations}</b><span>triggers & executors</span></div>
      <div><b>${state.eventRate}</b><span>changes / s</span></div>
    </div>
    <p class="hint">
      Select a server or node in the tree (or a server in the graph) to see its live value and
      history, set values, and create, rename or delete nodes. Any server's nodes can be changed
      from here: the write goes to the server that owns them.
    </p>
    ${state.self ? html`<button class="primary start" onClick=${() => select(state.self.id)}>Start on ${state.self.name}</button>` : null}
    ${
      latest.length
        ? html`<section>
            <h3>Latest changes</h3>
            <ul class="latest">
              ${latest.map(
                (n) => html`<li key=${n.id} onClick=${() => select(n.id)}>
                  <${Icon} type="DataPoint" />
                  <span class="latest-name">${pathOf(n.id).slice(1).join(' › ')}</span>
                  <span class="chip">${serverName(n.owner)}</span>
                  <span class="latest-val"><${LiveValue} id=${n.id} />${n.meta?.unit ? html`<span class="unit">${n.meta.unit}</span>` : null}</span>
                </li>`,
              )}
            </ul>
          </section>`
        : null
    }
  </div>`;
}

function Detail({ node }) {
  const path = ancestors(node.id).slice(0, -1);
  const kind = kindOf(node.type);
  const ownerState = serverState(node.owner);
  return html`<div class="detail" data-detail-id=${node.id}>
    <nav class="crumbs" aria-label="path">
      ${path.map((p) => html`<${NodeLink} id=${p.id}>${p.name}<//><span>›</span>`)}
    </nav>
    <${Title} node=${node} />
    <div class="facts">
      <span class="tag">${node.type}</span>
      ${
        node.type === 'Server'
          ? html`<span><i class=${`swatch state-${ownerState}`}></i>${ownerState === 'self' ? 'this server' : ownerState}</span>`
          : html`<span>owned by <${NodeLink} id=${node.owner}><i class=${`swatch state-${ownerState}`}></i>${serverName(node.owner)}<//></span>`
      }
      <${Updated} node=${node} />
      <span class="mono muted" title="id">${node.id}</span>
    </div>
    ${ownerState === 'disconnected' ? html`<p class="note warn">${serverName(node.owner)} is offline: this is its last known state, and writes to it fail until it is back.</p>` : null}
    ${node.type === 'DataPoint' ? html`<${PointView} node=${node} />` : null}
    ${kind === 'trigger' || kind === 'executor' ? html`<${AutomationView} node=${node} />` : null}
    ${node.type === 'Server' ? html`<${ServerView} node=${node} />` : null}
    ${CHILD_TYPES[node.type] ? html`<${CreateForm} parent=${node} />` : null}
    ${node.type === 'Server' ? null : html`<${MetaEditor} node=${node} />`}
    ${node.type === 'Server' ? null : html`<${DeleteButton} node=${node} />`}
    ${node.type === 'Server' && !['self', 'connected', 'connecting'].includes(ownerState) ? html`<${ForgetButton} node=${node} />` : null}
  </div>`;
}

function Title({ node }) {
  const [editing, setEditing] = useState(false);
  const [name, setName] = useState(node.name);
  const [error, setError] = useState('');
  const input = useRef(null);
  useEffect(() => {
    if (editing) input.current?.select();
  }, [editing]);
  const save = async (e) => {
    e.preventDefault();
    const trimmed = name.trim();
    if (trimmed === node.name) return setEditing(false);
    if (await attempt(setError, () => updateNode(node.id, { name: trimmed }))) setEditing(false);
  };
  const startRename = () => {
    setName(node.name);
    setEditing(true);
  };
  if (!editing) {
    return html`<div class="title">
      <${Icon} type=${node.type} />
      <h2 class="node-name">${node.name}</h2>
      ${
        node.type === 'Server'
          ? null
          : html`<button class="ghost small rename" onClick=${startRename}>Rename</button>`
      }
    </div>`;
  }
  return html`<form class="title editing" onSubmit=${save}>
    <${Icon} type=${node.type} />
    <input ref=${input} class="rename-input" aria-label="new name" value=${name} maxLength="256" required
      onInput=${(e) => setName(e.currentTarget.value)} onKeyDown=${(e) => e.key === 'Escape' && setEditing(false)} />
    <button class="primary small" type="submit">Save</button>
    <button class="ghost small" type="button" onClick=${() => setEditing(false)}>Cancel</button>
    ${error ? html`<p class="form-error">${error}</p>` : null}
  </form>`;
}

function Updated({ node }) {
  useTick(1000);
  useValue(node.id);
  return html`<span class="muted" title=${node.updatedAt}>changed ${ago(Date.parse(node.updatedAt))}</span>`;
}

function PointView({ node }) {
  const [range, setRange] = useState(RANGES[0].ms);
  const kind = node.meta?.kind ?? 'number';
  return html`
    <div class="bigvalue">
      <${LiveValue} id=${node.id} class="big" />
      ${node.meta?.unit ? html`<span class="unit">${node.meta.unit}</span>` : null}
      <span class="tag subtle">${kind}</span>
    </div>
    <${SetValueForm} node=${node} kind=${kind} />
    <section class="history">
      <div class="section-head">
        <h3>History</h3>
        <div class="segmented" role="group" aria-label="time range">
          ${RANGES.map((r) => html`<button class=${r.ms === range ? 'on' : ''} onClick=${() => setRange(r.ms)}>${r.label}</button>`)}
        </div>
      </div>
      <${SeriesChart} node=${node} rangeMs=${range} />
    </section>`;
}

function SetValueForm({ node, kind }) {
  const [text, setText] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const send = async (value) => {
    setBusy(true);
    const ok = await attempt(setError, () => setValue(node.id, value));
    setBusy(false);
    if (ok && kind !== 'boolean') setText('');
  };
  const submit = (e) => {
    e.preventDefault();
    let value;
    if (kind === 'number') {
      value = Number(text.trim().replace(',', '.'));
      if (text.trim() === '' || !Number.isFinite(value)) return setError('Enter a number, like 21.5');
    } else if (kind === 'json') {
      try {
        value = JSON.parse(text);
      } catch (err) {
        return setError(`Not JSON: ${err.message}`);
      }
    } else value = text;
    void send(value);
  };
  if (kind === 'boolean') {
    return html`<div class="set-value">
      <div class="segmented big" role="group" aria-label="set value">
        <button disabled=${busy} onClick=${() => send(false)}>Off</button>
        <button disabled=${busy} onClick=${() => send(true)}>On</button>
      </div>
      ${error ? html`<p class="form-error">${error}</p>` : null}
    </div>`;
  }
  return html`<form class="set-value" onSubmit=${submit}>
    ${
      kind === 'json'
        ? html`<textarea name="value" rows="3" placeholder='{"any": "JSON"}' value=${text} onInput=${(e) => setText(e.currentTarget.value)}></textarea>`
        : html`<input name="value" aria-label="new value" autocomplete="off"
            inputmode=${kind === 'number' ? 'decimal' : 'text'}
            placeholder=${kind === 'number' ? 'New value, e.g. 21.5' : 'New value'}
            value=${text} onInput=${(e) => setText(e.currentTarget.value)} />`
    }
    <button class="primary" type="submit" disabled=${busy}>${busy ? 'Setting…' : 'Set value'}</button>
    ${error ? html`<p class="form-error">${error}</p>` : null}
  </form>`;
}

function AutomationView({ node }) {
  const [error, setError] = useState('');
  useTick(1000);
  useValue(node.id);
  const s = node.state;
  const refs = ['target', 'prefer'].filter((k) => typeof node.meta?.[k] === 'string');
  return html`<section class="automation">
    ${
      s
        ? html`<div class=${`runbox ${s.ok === false ? 'bad' : 'ok'}`}>
            <b>${s.ok === false ? 'Failed' : 'OK'}</b>
            <span>${runCount(node)} on ${serverName(s.runner)}</span>
            <span class="muted">last ${ago(Date.parse(s.lastRun))}</span>
            ${s.error ? html`<p class="mono">${s.error}</p>` : null}
            ${s.result !== undefined && !s.error ? html`<p class="mono">result: ${JSON.stringify(s.result)}</p>` : null}
          </div>`
        : html`<p class="muted">Has not run yet.</p>`
    }
    <dl class="meta">
      ${Object.entries(node.meta ?? {}).map(
        ([k, v]) =>
          html`<dt>${k}</dt><dd class="mono">${refs.includes(k) && state.nodes.has(v) ? html`<${NodeLink} id=${v}>${pathOf(v).join(' › ')}<//>` : JSON.stringify(v)}</dd>`,
      )}
    </dl>
    ${
      TRIGGER_TYPES.includes(node.type)
        ? html`<button class="primary" onClick=${() => attempt(setError, () => fireNode(node.id), `${node.name} fired`)}>Fire now</button>`
        : null
    }
    ${error ? html`<p class="form-error">${error}</p>` : null}
  </section>`;
}

function ServerView({ node }) {
  useTopic('peers', 'activity');
  const self = state.self?.id === node.id ? state.self : null;
  const peer = state.peers.get(node.id);
  const below = treeIndex().below.get(node.id) ?? 0;
  let owned = 0;
  for (const n of state.nodes.values()) if (n.owner === node.id && n.type !== 'Server') owned++;
  const rows = [
    [
      'Address',
      self ? `${location.hostname}:${self.port}` : peer?.address ? `${peer.address}:${peer.port}` : '–',
    ],
    ['Round trip', self ? '–' : peer?.state === 'connected' ? formatRtt(peer.rttMs) : '–'],
    ['Route', self ? '–' : (routeOf(peer) ?? 'unreachable')],
    ['Model', (self ?? peer)?.model ?? node.meta?.model ?? '–'],
    ['System', (self ?? peer)?.os ?? node.meta?.os ?? '–'],
    ['Version', (self ?? peer)?.version ?? node.meta?.version ?? '–'],
    ['Nodes', `${below} under it · ${owned} owned`],
    ['Changes', `${state.rates.get(node.id) ?? 0} / s`],
  ];
  const url = !self && peer?.address ? `http://${peer.address}:${peer.port}/` : null;
  return html`<dl class="meta server-facts">
      ${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}
    </dl>
    ${url ? html`<p><a href=${url} target="_blank" rel="noopener">Open ${node.name}'s dashboard ↗</a></p>` : null}`;
}

const TEMPLATE_ID = '00000000-0000-0000-0000-000000000000';

/** A starting meta for a new node of `type` under `parent`, to be edited. */
function metaTemplate(type, parent) {
  const source = parent.type === 'DataPoint' ? parent.id : TEMPLATE_ID;
  switch (type) {
    case 'HighThreshold':
    case 'LowThreshold':
      return { threshold: 25, hysteresis: 0.5 };
    case 'CronTimer':
      return { cron: '0 */5 * * * *' };
    case 'SilentAlarm':
      return { maxAgeMs: 60_000 };
    case 'IncomingWebHook':
      return { path: 'my-hook' };
    case 'Calculation':
      return { formula: 'x * 2', inputs: { x: source }, target: TEMPLATE_ID };
    case 'Compute':
      return { op: 'average', inputs: [source], target: TEMPLATE_ID };
    case 'LogicGate':
      return { gate: 'AND', inputs: [source], target: TEMPLATE_ID };
    case 'OutgoingWebHook':
      return { url: 'http://example.lan/hook', method: 'POST', body: '{"value": {{value}}}' };
    case 'SetValue':
      return { target: TEMPLATE_ID, value: 1 };
    default:
      return {};
  }
}

const TYPE_LABEL = { DataPoint: 'Data point' };

function CreateForm({ parent }) {
  useTopic('mesh');
  const types = CHILD_TYPES[parent.type];
  const [open, setOpen] = useState(false);
  const [type, setType] = useState(types.includes('DataPoint') ? 'DataPoint' : types[0]);
  const [name, setName] = useState('');
  const [kind, setKind] = useState('number');
  const [unit, setUnit] = useState('');
  const [owner, setOwner] = useState(parent.owner);
  const [meta, setMeta] = useState('{}');
  const [error, setError] = useState('');
  const choose = (t) => {
    setType(t);
    setMeta(JSON.stringify(metaTemplate(t, parent), null, 2));
  };
  const start = (t) => {
    choose(t);
    setOpen(true);
  };
  const submit = async (e) => {
    e.preventDefault();
    let body = { type, name: name.trim(), parent: parent.id, owner };
    if (type === 'DataPoint') body.meta = { kind, ...(unit.trim() ? { unit: unit.trim() } : {}) };
    else if (type !== 'Project') {
      try {
        body = { ...body, meta: JSON.parse(meta) };
      } catch (err) {
        return setError(`meta is not JSON: ${err.message}`);
      }
    }
    const created = await attempt(setError, () => createNode(body), `created ${body.name}`);
    if (created?.id) {
      setName('');
      setOpen(false);
      select(created.id);
    }
  };
  if (!open) {
    return html`<div class="create-actions">
      ${types.includes('Project') ? html`<button class="ghost" onClick=${() => start('Project')}>+ Project</button>` : null}
      ${types.includes('DataPoint') ? html`<button class="ghost" onClick=${() => start('DataPoint')}>+ Data point</button>` : null}
      <button class="ghost" onClick=${() => start(types.find((t) => t !== 'Project' && t !== 'DataPoint'))}>+ Automation</button>
    </div>`;
  }
  const servers = state.mesh.servers.length
    ? state.mesh.servers
    : [{ id: parent.owner, name: serverName(parent.owner) }];
  return html`<form class="create" onSubmit=${submit}>
    <h3>New node under ${parent.name}</h3>
    <div class="grid-form">
      <label>Type
        <select value=${type} onChange=${(e) => choose(e.currentTarget.value)}>
          ${types.map((t) => html`<option value=${t}>${TYPE_LABEL[t] ?? t}</option>`)}
        </select>
      </label>
      <label>Name<input name="name" required maxLength="256" value=${name} placeholder=${type === 'Project' ? 'garden' : 'soil moisture'} onInput=${(e) => setName(e.currentTarget.value)} /></label>
      ${
        type === 'DataPoint'
          ? html`<label>Kind
              <select value=${kind} onChange=${(e) => setKind(e.currentTarget.value)}>
                <option value="number">number</option><option value="boolean">boolean</option>
                <option value="string">string</option><option value="json">json</option>
              </select>
            </label>
            <label>Unit<input name="unit" maxLength="32" value=${unit} placeholder="°C, %, W…" onInput=${(e) => setUnit(e.currentTarget.value)} /></label>`
          : null
      }
      <label>Owner
        <select value=${owner} onChange=${(e) => setOwner(e.currentTarget.value)}>
          ${servers.map((s) => html`<option value=${s.id}>${s.name}${s.state === 'disconnected' ? ' (offline)' : ''}</option>`)}
        </select>
      </label>
    </div>
    ${
      type !== 'DataPoint' && type !== 'Project'
        ? html`<label class="block">meta (JSON)<textarea class="mono" rows="5" value=${meta} onInput=${(e) => setMeta(e.currentTarget.value)}></textarea></label>`
        : null
    }
    <div class="form-actions">
      <button class="primary" type="submit">Create</button>
      <button class="ghost" type="button" onClick=${() => setOpen(false)}>Cancel</button>
    </div>
    ${error ? html`<p class="form-error">${error}</p>` : null}
  </form>`;
}

function MetaEditor({ node }) {
  const [text, setText] = useState(() => JSON.stringify(node.meta ?? {}, null, 2));
  const [error, setError] = useState('');
  const save = async (e) => {
    e.preventDefault();
    let meta;
    try {
      meta = JSON.parse(text);
    } catch (err) {
      return setError(`Not JSON: ${err.message}`);
    }
    await attempt(setError, () => updateNode(node.id, { meta }), 'meta saved');
  };
  // Read the meta afresh on opening (a click, not the toggle event, which comes later).
  return html`<details class="meta-editor">
    <summary onClick=${() => setText(JSON.stringify(node.meta ?? {}, null, 2))}>Edit meta</summary>
    <form onSubmit=${save}>
      <textarea class="mono" rows="6" value=${text} onInput=${(e) => setText(e.currentTarget.value)}></textarea>
      <button class="ghost" type="submit">Save meta</button>
      ${error ? html`<p class="form-error">${error}</p>` : null}
    </form>
  </details>`;
}

/**
 * A destructive action behind a second click: the first button asks `question`, which stays
 * for 5 s; `act` runs on the second click, and `then` once it succeeded.
 */
function DangerButton({ label, title = '', question, act, done, then }) {
  const [confirming, setConfirming] = useState(false);
  const [error, setError] = useState('');
  useEffect(() => {
    if (!confirming) return;
    const timer = setTimeout(() => setConfirming(false), 5000);
    return () => clearTimeout(timer);
  }, [confirming]);
  const go = async () => {
    if (await attempt(setError, act, done)) then();
  };
  return html`<div class="danger">
    ${
      confirming
        ? html`<button class="danger-button" onClick=${go}>${question}</button>
            <button class="ghost" onClick=${() => setConfirming(false)}>Keep it</button>`
        : html`<button class="ghost danger-text" onClick=${() => setConfirming(true)} title=${title}>${label}</button>`
    }
    ${error ? html`<p class="form-error">${error}</p>` : null}
  </div>`;
}

/**
 * Retires an offline server that is gone for good (DELETE /api/v1/peers/:id): its nodes go
 * everywhere and it is refused from then on. The server refuses this while the other is connected.
 */
function ForgetButton({ node }) {
  return html`<${DangerButton}
    label="Forget this server…"
    title="For a server that is gone for good: a copy of it started later is refused"
    question=${`Forget ${node.name} and delete its nodes everywhere?`}
    act=${() => retireServer(node.id)}
    done=${`${node.name} retired from the mesh`}
    then=${() => select(null)}
  />`;
}

function DeleteButton({ node }) {
  const below = treeIndex().below.get(node.id) ?? 0;
  const parent = node.parent;
  return html`<${DangerButton}
    label="Delete…"
    question=${`Delete ${node.name}${below ? ` and ${below} nodes under it` : ''}?`}
    act=${() => deleteNode(node.id)}
    done=${`deleted ${node.name}`}
    then=${() => select(parent)}
  />`;
}
