/**
 * The mesh as a live graph: every server on a ring (this one at the top, the others by name, so a
 * server keeps its place while others come and go), every link that both of its ends report, with
 * its round-trip time. Servers are coloured by state (offline: grey) and show how many node
 * events per second they are the owner of. Hovering or selecting a server brings out its links.
 */

import { useEffect, useRef, useState } from 'preact/hooks';
import { collator, formatRtt, select, serverName, state } from './store.js';
import { html, useTopic } from './view.js';

/** Links slower than these (ms) are drawn amber, then red. */
const RTT_SLOW = 10;
const RTT_BAD = 50;

/** Room above and below the outermost servers for their labels, px; the least height, px. */
const LABEL_ROOM = 62;
const MIN_HEIGHT = 180;
/** Below this width (px) labels are centred under their servers. */
const NARROW = 560;

const rttClass = (ms) => (ms == null ? 'unknown' : ms < RTT_SLOW ? 'fast' : ms < RTT_BAD ? 'slow' : 'bad');

function layout(servers, width, height) {
  const selfId = state.self?.id;
  const ordered = [...servers].sort((a, b) =>
    a.id === selfId ? -1 : b.id === selfId ? 1 : collator.compare(a.name, b.name) || (a.id < b.id ? -1 : 1),
  );
  const n = ordered.length;
  const cx = width / 2;
  const cy = height / 2 + 4;
  // On a narrow screen labels go under the servers (centred), so the ring can be wider.
  const rx = Math.max(40, width / 2 - (width < NARROW ? 52 : 110));
  const ry = Math.max(40, height / 2 - 58);
  const places = new Map();
  ordered.forEach((server, i) => {
    const angle = -Math.PI / 2 + (i * 2 * Math.PI) / Math.max(n, 1);
    const x = n === 1 ? cx : cx + rx * Math.cos(angle);
    const y = n === 1 ? cy : cy + ry * Math.sin(angle);
    places.set(server.id, { x, y, angle: n === 1 ? Math.PI / 2 : angle });
  });
  return places;
}

function median(values) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export function meshSummary() {
  const servers = state.mesh.servers;
  const online = servers.filter((s) => s.state === 'self' || s.state === 'connected').length;
  const rtts = state.mesh.links.map((l) => l.rttMs).filter((r) => r != null);
  return { total: servers.length, online, links: state.mesh.links.length, rtt: median(rtts) };
}

export function MeshGraph() {
  useTopic('mesh', 'activity', 'select', 'self');
  const box = useRef(null);
  const [width, setWidth] = useState(640);
  const [hover, setHover] = useState(null);
  useEffect(() => {
    const observer = new ResizeObserver(([entry]) => setWidth(Math.round(entry.contentRect.width) || 640));
    observer.observe(box.current);
    return () => observer.disconnect();
  }, []);

  const { servers, links } = state.mesh;
  const n = servers.length;
  const places = layout(servers, width, Math.round(Math.min(420, Math.max(280, width * 0.5))));
  // Fit the height to what is drawn (three servers leave half the ring empty), labels included.
  let top = Number.POSITIVE_INFINITY;
  let bottom = Number.NEGATIVE_INFINITY;
  for (const p of places.values()) {
    top = Math.min(top, p.y - LABEL_ROOM);
    bottom = Math.max(bottom, p.y + LABEL_ROOM);
  }
  const height = Math.round(Math.max(MIN_HEIGHT, bottom - top));
  const shift = (height - (bottom - top)) / 2 - top;
  for (const p of places.values()) p.y += shift;
  const radius = n <= 8 ? 20 : n <= 16 ? 15 : 11;
  const focus = hover ?? (state.selected && places.has(state.selected) ? state.selected : null);
  const labelAll = links.length <= 6;
  const small = n > 12;

  const lines = [];
  const labels = [];
  for (const link of links) {
    const a = places.get(link.a);
    const b = places.get(link.b);
    if (!a || !b) continue;
    const lit = focus !== null && (link.a === focus || link.b === focus);
    const dim = focus !== null && !lit;
    const cls = `link rtt-${rttClass(link.rttMs)}${lit ? ' lit' : ''}${dim ? ' dim' : ''}${n > 10 ? ' many' : ''}`;
    lines.push(
      html`<line key=${`${link.a}/${link.b}`} class=${cls} data-a=${link.a} data-b=${link.b} x1=${a.x} y1=${a.y} x2=${b.x} y2=${b.y} />`,
    );
    if (labelAll || lit) {
      const text = formatRtt(link.rttMs);
      const x = (a.x + b.x) / 2;
      const y = (a.y + b.y) / 2;
      const w = text.length * 6.4 + 10;
      labels.push(html`<g key=${`l${link.a}/${link.b}`} class="rtt-label" transform=${`translate(${x},${y})`}>
        <rect x=${-w / 2} y="-9" width=${w} height="18" rx="9" /><text y="4">${text}</text>
      </g>`);
    }
  }

  const nodes = servers.map((server) => {
    const p = places.get(server.id);
    const peer = state.peers.get(server.id);
    const rate = state.rates.get(server.id) ?? 0;
    const cos = Math.cos(p.angle);
    const sin = Math.sin(p.angle);
    // Labels sit outside the ring; above the top server, below the bottom one.
    const centred = Math.abs(cos) < 0.35 || width < NARROW;
    const anchor = centred ? 'middle' : cos > 0 ? 'start' : 'end';
    const lx = centred ? 0 : cos * (radius + 8);
    const ly = centred ? (sin < -0.35 ? -(radius + 22) : radius + 16) : sin * (radius + 4) - 4;
    let detail;
    if (server.state === 'self') detail = 'this server';
    else if (server.state === 'connected')
      detail =
        peer?.route && peer.route !== 'direct' ? `via ${serverName(peer.route)}` : formatRtt(peer?.rttMs);
    else if (server.state === 'connecting') detail = 'connecting…';
    else detail = 'offline';
    if (rate > 0 && server.state !== 'disconnected') detail += ` · ${rate}/s`;
    const title = [
      server.name,
      server.state === 'self' ? 'this server' : server.state,
      peer?.address ? `${peer.address}:${peer.port}` : '',
      peer?.version ? `v${peer.version}` : '',
    ]
      .filter(Boolean)
      .join(' · ');
    return html`<g
      key=${server.id}
      class=${`srv state-${server.state}${focus === server.id ? ' focus' : ''}${state.selected === server.id ? ' selected' : ''}`}
      data-id=${server.id}
      data-state=${server.state}
      transform=${`translate(${p.x},${p.y})`}
      onMouseEnter=${() => setHover(server.id)}
      onMouseLeave=${() => setHover(null)}
      onClick=${() => select(server.id)}
    >
      <title>${title}</title>
      ${server.state === 'connecting' ? html`<circle class="pulse" r=${radius} />` : null}
      <circle class="dot" r=${radius} />
      ${rate > 0 && server.state !== 'disconnected' ? html`<circle class="activity" r=${radius + 4} style=${`--rate:${Math.min(1, rate / 50)}`} />` : null}
      <text class="initial" y=${radius > 14 ? 5 : 4}>${initials(server.name)}</text>
      <text class=${`srv-name${small ? ' small' : ''}`} x=${lx} y=${ly} text-anchor=${anchor}>${server.name}</text>
      <text class="srv-detail" x=${lx} y=${ly + (small ? 12 : 14)} text-anchor=${anchor}>${detail}</text>
    </g>`;
  });

  return html`<div class="graph" ref=${box}>
    ${
      n === 0
        ? html`<p class="empty">Waiting for the mesh…</p>`
        : // Two layers: the links below, drawn again only when a link changes; the servers and
          // labels above, whose RTTs and rates change every few seconds. In one picture, each such
          // change had the browser paint again every link across it: with 25 servers, 300 lines.
          html`<div class="graph-canvas">
            <svg class="graph-links" viewBox=${`0 0 ${width} ${height}`} width=${width} height=${height} aria-hidden="true">
              <g class="links">${lines}</g>
            </svg>
            <svg class="graph-top" viewBox=${`0 0 ${width} ${height}`} width=${width} height=${height} role="img" aria-label="the mesh: servers and links">
              <g class="labels">${labels}</g>
              <g class="servers">${nodes}</g>
            </svg>
          </div>`
    }
    <div class="legend">
      <span><i class="swatch state-self"></i>this server</span>
      <span><i class="swatch state-connected"></i>connected</span>
      <span><i class="swatch state-connecting"></i>connecting</span>
      <span><i class="swatch state-disconnected"></i>offline</span>
      <span class="sep"></span>
      <span><i class="bar rtt-fast"></i>${`< ${RTT_SLOW} ms`}</span>
      <span><i class="bar rtt-slow"></i>${`< ${RTT_BAD} ms`}</span>
      <span><i class="bar rtt-bad"></i>slower</span>
    </div>
  </div>`;
}

/** What fits in a server's dot: "KP" for kitchen-pi, "07" for server-07. */
function initials(name) {
  const parts = name.split(/[\s\-_.]+/).filter(Boolean);
  const last = parts[parts.length - 1] ?? '';
  if (parts.length > 1 && /^\d{1,3}$/.test(last)) return last;
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : name.slice(0, 2);
  return letters.toUpperCase();
}
