/**
 * The live log of events: peers coming and going, nodes created, changed and deleted, values,
 * triggers firing and executors running. Newest first; kinds can be hidden; pausing freezes the
 * view while events keep being kept (the last 400). The list is redrawn a few times a second.
 */

import { useState } from 'preact/hooks';
import { clearLog, select, state } from './store.js';
import { html, memo, useTopic, useTopicThrottled } from './view.js';

const KINDS = [
  ['peer', 'Peers'],
  ['node', 'Nodes'],
  ['value', 'Values'],
  ['automation', 'Automation'],
];
/** Rows shown at most. */
const SHOWN = 100;
/** The list is redrawn at most this often, ms. */
const LOG_REDRAW_MS = 250;

const time = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hour12: false,
});

const Entry = memo(function Entry({ entry }) {
  return html`<li class=${`entry kind-${entry.kind}${entry.tone ? ` tone-${entry.tone}` : ''}`} onClick=${entry.id ? () => select(entry.id) : undefined}>
    <time>${time.format(entry.at)}.${String(entry.at % 1000).padStart(3, '0')}</time>
    <span class="badge">${entry.kind}</span>
    <span class="text">${entry.text}</span>
  </li>`;
});

export function EventLog() {
  const [hidden, setHidden] = useState(() => new Set());
  const [paused, setPaused] = useState(null);
  // Redrawing the list shifts every row: a few times a second is as fast as anyone reads it, and
  // costs a tenth of redrawing it every frame under a flood of values.
  useTopicThrottled('log', LOG_REDRAW_MS);
  useTopic('activity');
  const source = paused ?? state.log;
  const shown = [];
  for (let i = source.length - 1; i >= 0 && shown.length < SHOWN; i--) {
    if (!hidden.has(source[i].kind)) shown.push(source[i]);
  }
  const toggle = (kind) => {
    const next = new Set(hidden);
    if (next.has(kind)) next.delete(kind);
    else next.add(kind);
    setHidden(next);
  };
  const clear = () => {
    setPaused(null);
    clearLog();
  };
  return html`<div class="log-card">
    <header>
      <h2>Events</h2>
      <span class="summary">${paused ? 'paused' : `${state.eventRate}/s`}</span>
      <span class="spacer"></span>
      <button class="ghost small" onClick=${() => setPaused(paused ? null : [...state.log])}>${paused ? 'Resume' : 'Pause'}</button>
      <button class="ghost small" onClick=${clear}>Clear</button>
    </header>
    <div class="toolbar">
      <div class="chips" role="group" aria-label="show kinds">
        ${KINDS.map(
          ([kind, label]) =>
            html`<button class=${`chip-toggle kind-${kind}${hidden.has(kind) ? '' : ' on'}`} aria-pressed=${!hidden.has(kind)} onClick=${() => toggle(kind)}>${label}</button>`,
        )}
      </div>
    </div>
    <ol class="log" aria-live="off">
      ${shown.map((entry) => html`<${Entry} key=${entry.seq} entry=${entry} />`)}
      ${shown.length === 0 ? html`<li class="empty">No events yet. Changes anywhere in the mesh show up here as they happen.</li>` : null}
    </ol>
  </div>`;
}
