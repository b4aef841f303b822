/**
 * The servers of the mesh as a table, as the server that serves the page sees them: state and
 * since when, address, round-trip time, route (direct or through which peer), and metadata.
 */

import { ago, collator, formatRtt, routeOf, select, state } from './store.js';
import { html, useTick, useTopic } from './view.js';

const STATE_TEXT = {
  self: 'this server',
  connected: 'connected',
  connecting: 'connecting',
  disconnected: 'offline',
};

export function PeersTable() {
  useTopic('peers', 'self', 'select');
  useTick(1000);
  const self = state.self;
  const rows = [...state.peers.values()].sort((a, b) => collator.compare(a.name, b.name));
  const now = Date.now();
  return html`<div class="table-wrap">
    <table class="peers">
      <thead>
        <tr>
          <th>Server</th><th>State</th><th>Address</th><th class="num">RTT</th><th>Route</th>
          <th>Model</th><th>System</th><th>Version</th><th>Last seen</th>
        </tr>
      </thead>
      <tbody>
        ${
          self &&
          html`<tr data-peer=${self.id} data-state="self" class=${state.selected === self.id ? 'selected' : ''} onClick=${() => select(self.id)}>
            <td><i class="swatch state-self"></i><b>${self.name}</b></td>
            <td>this server</td>
            <td class="mono">${location.hostname}:${self.port}</td>
            <td class="num">–</td><td>–</td>
            <td>${self.model}</td><td>${self.os}</td><td>${self.version}</td><td>now</td>
          </tr>`
        }
        ${rows.map(
          (p) => html`<tr
            key=${p.id}
            data-peer=${p.id}
            data-state=${p.state}
            class=${`state-row-${p.state}${state.selected === p.id ? ' selected' : ''}`}
            onClick=${() => select(p.id)}
          >
            <td><i class=${`swatch state-${p.state}`}></i><b>${p.name}</b></td>
            <td title=${p.since}>${STATE_TEXT[p.state] ?? p.state} <span class="muted">${ago(Date.parse(p.since), now).replace(' ago', '')}</span></td>
            <td class="mono">${p.address ? `${p.address}:${p.port}` : '–'}</td>
            <td class="num">${p.state === 'connected' ? formatRtt(p.rttMs) : '–'}</td>
            <td>${routeOf(p) ?? '–'}</td>
            <td>${p.model}</td><td>${p.os}</td><td>${p.version}</td>
            <td title=${p.lastSeen ?? ''}>${p.lastSeen ? ago(Date.parse(p.lastSeen), now) : 'never'}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${self && rows.length === 0 ? html`<p class="empty">No other server yet. Start one with the same cluster secret on this LAN.</p>` : null}
  </div>`;
}
