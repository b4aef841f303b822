/**
 * What every view of the dashboard builds on: htm bound to preact, hooks that re-render a
 * component when a store topic changes, `memo` (preact/compat's, which is not vendored), the
 * live-value cell that the store writes to directly, and the node-type icons.
 */

import htm from 'htm';
import { h } from 'preact';
import { useEffect, useLayoutEffect, useReducer, useRef } from 'preact/hooks';
import { EXECUTOR_TYPES, formatValue, onTopic, onValue, select, state, TRIGGER_TYPES } from './store.js';

export const html = htm.bind(h);

/** Re-renders the component in the frame after any of `topics` was marked. */
export function useTopic(...topics) {
  const [, force] = useReducer((n) => n + 1, 0);
  const key = topics.join('|');
  useEffect(() => {
    const offs = key.split('|').map((topic) => onTopic(topic, force));
    return () => {
      for (const off of offs) off();
    };
  }, [key]);
}

/** Re-renders the component in the frame after node `id`'s value or state changed. */
export function useValue(id) {
  const [, force] = useReducer((n) => n + 1, 0);
  useEffect(() => onValue(id, force), [id]);
}

/**
 * Re-renders the component after `topic` was marked, at most once every `ms`: for views that
 * change with every event but that nobody reads faster than that (the event log).
 */
export function useTopicThrottled(topic, ms) {
  const [, force] = useReducer((n) => n + 1, 0);
  useEffect(() => {
    let timer = 0;
    const off = onTopic(topic, () => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = 0;
        force();
      }, ms);
    });
    return () => {
      off();
      clearTimeout(timer);
    };
  }, [topic, ms]);
}

/** Re-renders the component every `ms` (for "5 s ago" texts). */
export function useTick(ms) {
  const [, force] = useReducer((n) => n + 1, 0);
  useEffect(() => {
    const timer = setInterval(force, ms);
    return () => clearInterval(timer);
  }, [ms]);
}

function shallowDiffers(next) {
  for (const key in next) if (next[key] !== this.props[key]) return true;
  for (const key in this.props) if (!(key in next)) return true;
  return false;
}

/** A component that renders again only when a prop changes (by identity) or its own state does. */
export function memo(render) {
  function Memo(props) {
    this.shouldComponentUpdate = shallowDiffers;
    return render(props);
  }
  Memo.displayName = `Memo(${render.name})`;
  return Memo;
}

/** Writes a node's value into a cell; only touches the DOM when the text changes. */
function paintValue(el, node) {
  const text = formatValue(node?.value);
  const textNode = el.firstChild;
  if (textNode) {
    if (textNode.data === text) return;
    textNode.data = text;
  } else el.textContent = text;
  if (typeof node?.value === 'boolean') el.dataset.on = String(node.value);
  // Alternating the animation's name restarts it without a forced layout.
  el.className = el.className.endsWith(' flash-a')
    ? `${el.dataset.base} flash-b`
    : `${el.dataset.base} flash-a`;
}

/**
 * A node's live value. The store writes it straight to the DOM in its frame, so a value never
 * re-renders any component; `data-value-id` lets tests and the benchmark find it.
 */
export function LiveValue({ id, class: className = '' }) {
  const ref = useRef(null);
  useLayoutEffect(() => {
    const el = ref.current;
    const node = state.nodes.get(id);
    el.textContent = formatValue(node?.value);
    if (typeof node?.value === 'boolean') el.dataset.on = String(node.value);
    return onValue(id, (n) => paintValue(el, n));
  }, [id]);
  const base = `live ${className}`;
  return html`<span class=${base} data-base=${base} data-value-id=${id} ref=${ref}></span>`;
}

/** "12 fires" for a trigger, "12 runs" for an executor. */
export const runCount = (node) =>
  `${node.state?.runs ?? 0} ${TRIGGER_TYPES.includes(node.type) ? 'fires' : 'runs'}`;

/** "12 runs · ok" for an automation node, kept current like a live value. */
export function LiveRunState({ id }) {
  const ref = useRef(null);
  useLayoutEffect(() => {
    const el = ref.current;
    const paint = (node) => {
      const s = node?.state;
      el.textContent = s ? runCount(node) : 'idle';
      el.dataset.ok = s ? String(s.ok !== false) : '';
    };
    paint(state.nodes.get(id));
    return onValue(id, paint);
  }, [id]);
  return html`<span class="runstate" ref=${ref}></span>`;
}

const ICON_PATHS = {
  Server: 'M3 4h14v5H3zM3 11h14v5H3zM6 6.5h.01M6 13.5h.01',
  Project: 'M2.5 5.5a1 1 0 0 1 1-1h4l2 2h7a1 1 0 0 1 1 1v8a1 1 0 0 1-1 1h-13a1 1 0 0 1-1-1z',
  DataPoint: 'M3 14l4-5 3 3 4-6 3 4',
  trigger: 'M11 2 4 11h5l-1 7 7-9h-5z',
  executor: 'M10 3v3M10 14v3M3 10h3M14 10h3M5 5l2 2M13 13l2 2M15 5l-2 2M7 13l-2 2',
};

export function kindOf(type) {
  if (TRIGGER_TYPES.includes(type)) return 'trigger';
  if (EXECUTOR_TYPES.includes(type)) return 'executor';
  return type;
}

export function Icon({ type }) {
  const kind = kindOf(type);
  const d = ICON_PATHS[kind] ?? ICON_PATHS.DataPoint;
  return html`<svg class=${`icon icon-${kind}`} viewBox="0 0 20 20" aria-hidden="true"><path d=${d} /></svg>`;
}

/** A link that selects node `id`. */
export function NodeLink({ id, children }) {
  const go = (e) => {
    e.preventDefault();
    select(id);
  };
  return html`<a href=${`#${id}`} onClick=${go}>${children}</a>`;
}
