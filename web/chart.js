/**
 * A data point's recent history as a uPlot chart that follows the live values: the history is
 * read once from /series, then every value the stream brings is appended (at most one redraw per
 * frame) and the window slides with the clock. Numbers are drawn as a line, booleans as steps;
 * strings and JSON as a list of the latest values.
 */

import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api } from './api.js';
import { formatValue, onPoints, onTopic } from './store.js';
import { html } from './view.js';

export const RANGES = [
  { label: '5 min', ms: 5 * 60_000 },
  { label: '1 h', ms: 3_600_000 },
  { label: '24 h', ms: 86_400_000 },
];
/** /series answers the oldest points of a range first, at most this many per page. */
const PAGE = 10_000;
/** The shortest time axis, s: the few values of a new data point are not squeezed into a corner. */
const MIN_SPAN_S = 10;
/** The most points read for one chart. */
const MAX_POINTS = 50_000;

/** Points of `id` since `from` (ms), oldest first, paging forward through /series. */
async function readSeries(id, from) {
  const points = [];
  let since = from;
  while (points.length < MAX_POINTS) {
    const page = await api(
      'GET',
      `/api/v1/nodes/${encodeURIComponent(id)}/series?from=${new Date(since).toISOString()}&limit=${PAGE}`,
    );
    for (const p of page.points) points.push({ t: Date.parse(p.t), value: p.value });
    if (!page.more) break;
    // The next page starts after the last point's millisecond.
    since = points[points.length - 1].t + 1;
  }
  return points;
}

const numeric = (v) => (typeof v === 'number' ? v : typeof v === 'boolean' ? (v ? 1 : 0) : null);

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export function SeriesChart({ node, rangeMs }) {
  const kind = node.meta?.kind ?? 'number';
  return kind === 'number' || kind === 'boolean'
    ? html`<${LineChart} id=${node.id} kind=${kind} unit=${node.meta?.unit ?? ''} rangeMs=${rangeMs} />`
    : html`<${RecentValues} id=${node.id} rangeMs=${rangeMs} />`;
}

function LineChart({ id, kind, unit, rangeMs }) {
  const box = useRef(null);
  const [status, setStatus] = useState('loading');
  useEffect(() => {
    let plot = null;
    let closed = false;
    let xs = [];
    let ys = [];
    let queued = [];
    let loaded = false;
    /** The range up to now, or less while the history is shorter (but at least MIN_SPAN_S). */
    const span = () => {
      const now = Date.now() / 1000;
      const history = xs.length ? (now - xs[0]) * 1.1 : Number.POSITIVE_INFINITY;
      return { min: now - Math.min(rangeMs / 1000, Math.max(MIN_SPAN_S, history)), max: now };
    };
    const trim = () => {
      const min = Date.now() / 1000 - rangeMs / 1000;
      let drop = 0;
      while (drop < xs.length - 1 && xs[drop] < min) drop++;
      if (drop > 0) {
        xs = xs.slice(drop);
        ys = ys.slice(drop);
      }
    };
    const append = (points) => {
      for (const p of points) {
        const x = p.t / 1000;
        if (xs.length && x < xs[xs.length - 1]) continue;
        xs.push(x);
        ys.push(numeric(p.value));
      }
    };
    const redraw = () => {
      if (!plot) return;
      trim();
      plot.batch(() => {
        plot.setData([xs, ys], false);
        plot.setScale('x', span());
      });
    };
    const offPoints = onPoints(id, (points) => {
      if (!loaded) {
        queued.push(...points);
        return;
      }
      append(points);
      redraw();
      setStatus(xs.length ? 'ok' : 'empty');
    });
    const load = async () => {
      loaded = false;
      queued = [];
      setStatus((s) => (s === 'ok' ? s : 'loading'));
      try {
        const points = await readSeries(id, Date.now() - rangeMs);
        if (closed) return;
        xs = [];
        ys = [];
        append(points);
        append(queued);
        loaded = true;
        if (!plot) create();
        redraw();
        setStatus(xs.length ? 'ok' : 'empty');
      } catch (err) {
        if (!closed) setStatus(`error: ${err.message}`);
      }
    };
    const create = () => {
      const accent = cssVar('--accent') || '#2f6fed';
      const muted = cssVar('--muted') || '#888';
      const grid = cssVar('--grid') || 'rgba(128,128,128,.15)';
      const axis = {
        stroke: muted,
        grid: { stroke: grid, width: 1 },
        ticks: { stroke: grid, width: 1, size: 4 },
        font: '11px system-ui, sans-serif',
      };
      plot = new uPlot(
        {
          width: box.current.clientWidth || 400,
          height: 220,
          padding: [12, 28, 0, 0],
          cursor: { drag: { x: false, y: false }, points: { size: 7 } },
          legend: { show: false },
          scales: { x: { time: true }, y: kind === 'boolean' ? { range: [-0.1, 1.1] } : { auto: true } },
          series: [
            {},
            {
              label: 'value',
              stroke: accent,
              width: 2,
              fill: `${accent}22`,
              points: { show: (u) => xs.length < 60 && u.width > 0, size: 5 },
              ...(kind === 'boolean' ? { paths: uPlot.paths.stepped({ align: 1 }) } : {}),
            },
          ],
          axes: [
            axis,
            {
              ...axis,
              size: 56,
              values: (_u, ticks) =>
                kind === 'boolean'
                  ? ticks.map((t) => (t === 1 ? 'on' : t === 0 ? 'off' : ''))
                  : ticks.map((t) => `${formatValue(t)}${unit ? ` ${unit}` : ''}`),
            },
          ],
        },
        [xs, ys],
        box.current,
      );
    };
    void load();
    // After a reconnect the history may have a gap: read it again.
    const offResync = onTopic('resync', () => void load());
    const tick = setInterval(redraw, 1000);
    const resize = new ResizeObserver(([entry]) => {
      const w = Math.round(entry.contentRect.width);
      if (plot && w > 0 && w !== plot.width) plot.setSize({ width: w, height: 220 });
    });
    resize.observe(box.current);
    return () => {
      closed = true;
      offPoints();
      offResync();
      clearInterval(tick);
      resize.disconnect();
      plot?.destroy();
    };
  }, [id, kind, unit, rangeMs]);
  return html`<div class="chart">
    <div class="chart-box" ref=${box}></div>
    ${status === 'ok' ? null : html`<p class="chart-note muted">${status === 'loading' ? 'Loading history…' : status === 'empty' ? 'No values in this range yet.' : status}</p>`}
  </div>`;
}

function RecentValues({ id, rangeMs }) {
  const [points, setPoints] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    let closed = false;
    let list = [];
    readSeries(id, Date.now() - rangeMs).then(
      (loaded) => {
        if (closed) return;
        list = loaded.slice(-20).reverse();
        setPoints(list);
      },
      (err) => setError(err.message),
    );
    const off = onPoints(id, (fresh) => {
      list = [...fresh.slice().reverse(), ...list].slice(0, 20);
      setPoints(list);
    });
    return () => {
      closed = true;
      off();
    };
  }, [id, rangeMs]);
  if (error) return html`<p class="chart-note muted">${error}</p>`;
  if (!points) return html`<p class="chart-note muted">Loading history…</p>`;
  if (points.length === 0) return html`<p class="chart-note muted">No values in this range yet.</p>`;
  return html`<ol class="recent">
    ${points.map((p) => html`<li key=${p.t}><time>${new Date(p.t).toLocaleTimeString()}</time><code>${formatValue(p.value)}</code></li>`)}
  </ol>`;
}
