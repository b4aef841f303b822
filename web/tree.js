/**
 * The node tree of every server: servers at the root, then projects, data points, triggers and
 * executors. It is rendered as a flat list of rows, each a memo component that renders again only
 * when its node object, place or state changes; values are live cells the store writes to
 * directly. A filter shows the nodes whose name matches and their ancestors.
 *
 * The rows go in blocks of BLOCK_ROWS, each with `content-visibility: auto`: the browser lays out
 * and paints only the blocks near the screen. Per block, not per row: Chromium watches every
 * such element for how near the screen it is, and with a row each that was, for 2,000 data points,
 * a tenth of a core (measured in bench/dashboard.ts) whenever values changed.
 */

import { useCallback, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { select, serverName, serverState, state, treeIndex } from './store.js';
import { html, Icon, kindOf, LiveRunState, LiveValue, memo, useTopic } from './view.js';

/** Rows per block (see the module comment), and the height of a row in px (style.css `.row`). */
const BLOCK_ROWS = 20;
const ROW_PX = 32;

/** The row after (`step` 1) or before (-1) `row`, across blocks. */
function rowBeside(row, step) {
  const sibling = step > 0 ? 'nextElementSibling' : 'previousElementSibling';
  const edge = step > 0 ? 'firstElementChild' : 'lastElementChild';
  return row[sibling] ?? row.parentElement?.[sibling]?.[edge] ?? null;
}

function flatten(index, query, collapsed) {
  const rows = [];
  let shown = null;
  if (query) {
    shown = new Set();
    for (const node of state.nodes.values()) {
      if (!node.name.toLowerCase().includes(query) && !node.id.startsWith(query)) continue;
      for (let n = node, hops = 0; n && !shown.has(n.id) && hops < 64; hops++) {
        shown.add(n.id);
        n = n.parent ? state.nodes.get(n.parent) : undefined;
      }
    }
  }
  const walk = (node, depth, server) => {
    if (shown && !shown.has(node.id)) return;
    const kids = index.children.get(node.id) ?? [];
    const open = shown !== null || !collapsed.has(node.id);
    rows.push({ node, depth, server, kids: kids.length, open });
    if (open) for (const kid of kids) walk(kid, depth + 1, server);
  };
  for (const root of index.children.get('') ?? []) walk(root, 0, root.id);
  return rows;
}

const Row = memo(function Row({
  node,
  depth,
  server,
  kids,
  open,
  selected,
  ownerState,
  ownerName,
  below,
  onToggle,
}) {
  const stale = ownerState === 'disconnected' || ownerState === 'unknown';
  const kind = kindOf(node.type);
  return html`<div
    class=${`row kind-${kind}${selected ? ' selected' : ''}${stale ? ' stale' : ''}`}
    style=${`--depth:${depth}`}
    role="treeitem"
    aria-level=${depth + 1}
    aria-selected=${selected}
    aria-expanded=${kids > 0 ? open : undefined}
    data-id=${node.id}
    data-type=${node.type}
    tabindex="0"
    onClick=${() => select(node.id)}
    onKeyDown=${(e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        select(node.id);
      } else if ((e.key === 'ArrowRight' && !open) || (e.key === 'ArrowLeft' && open)) {
        if (kids > 0) onToggle(node.id);
      } else if (e.key === 'ArrowDown') rowBeside(e.currentTarget, 1)?.focus();
      else if (e.key === 'ArrowUp') rowBeside(e.currentTarget, -1)?.focus();
    }}
  >
    ${
      kids > 0
        ? html`<button class=${`caret${open ? ' open' : ''}`} aria-label=${open ? 'collapse' : 'expand'} onClick=${(
            e,
          ) => {
            e.stopPropagation();
            onToggle(node.id);
          }}></button>`
        : html`<span class="caret-space"></span>`
    }
    <${Icon} type=${node.type} />
    <span class="name">${node.name}</span>
    ${node.type === 'Server' ? html`<i class=${`swatch state-${ownerState}`} title=${ownerState}></i>` : null}
    ${node.type !== 'Server' && node.owner !== server ? html`<span class="chip" title="owner">${ownerName}</span>` : null}
    ${node.type === 'Server' || (kids > 0 && !open) ? html`<span class="count">${below}</span>` : null}
    ${
      node.type === 'DataPoint'
        ? html`<span class="val"><${LiveValue} id=${node.id} />${node.meta?.unit ? html`<span class="unit">${node.meta.unit}</span>` : null}</span>`
        : kind === 'trigger' || kind === 'executor'
          ? html`<span class="val"><${LiveRunState} id=${node.id} /></span>`
          : null
    }
  </div>`;
});

export function NodeTree() {
  useTopic('tree', 'select');
  const [filter, setFilter] = useState('');
  const [collapsed, setCollapsed] = useState(() => new Set());
  const query = filter.trim().toLowerCase();
  const index = treeIndex();
  const rows = useMemo(() => flatten(index, query, collapsed), [index, query, collapsed]);
  // A row that moves to the next block (a node added above it) is made anew there, and the focus
  // on it would be lost: it is put back on the row's new element.
  const tree = useRef(null);
  const focused = document.activeElement?.closest?.('.tree .row')?.dataset.id;
  useLayoutEffect(() => {
    if (!focused || tree.current?.contains(document.activeElement)) return;
    tree.current?.querySelector(`.row[data-id="${CSS.escape(focused)}"]`)?.focus({ preventScroll: true });
  });
  const toggle = useCallback(
    (id) =>
      setCollapsed((old) => {
        const next = new Set(old);
        if (next.has(id)) next.delete(id);
        else next.add(id);
        return next;
      }),
    [],
  );
  const collapseAll = () =>
    setCollapsed(new Set([...state.nodes.values()].filter((n) => n.type !== 'Server').map((n) => n.id)));
  const expandAll = () => setCollapsed(new Set());
  const total = state.nodes.size;
  const points = useMemo(() => {
    let n = 0;
    for (const node of state.nodes.values()) if (node.type === 'DataPoint') n++;
    return n;
  }, [index]);

  const blocks = [];
  for (let i = 0; i < rows.length; i += BLOCK_ROWS) blocks.push(rows.slice(i, i + BLOCK_ROWS));
  const rowOf = (r) => html`<${Row}
    key=${r.node.id}
    node=${r.node}
    depth=${r.depth}
    server=${r.server}
    kids=${r.kids}
    open=${r.open}
    below=${index.below.get(r.node.id) ?? 0}
    selected=${state.selected === r.node.id}
    ownerState=${serverState(r.node.owner)}
    ownerName=${serverName(r.node.owner)}
    onToggle=${toggle}
  />`;

  return html`<div class="tree-card">
    <div class="toolbar">
      <input
        class="search"
        type="search"
        placeholder=${`Filter ${total} nodes…`}
        aria-label="filter nodes"
        value=${filter}
        onInput=${(e) => setFilter(e.currentTarget.value)}
      />
      <button class="ghost small" onClick=${expandAll} title="expand all">Expand</button>
      <button class="ghost small" onClick=${collapseAll} title="collapse all but servers">Collapse</button>
    </div>
    <div class="tree" role="tree" aria-label="nodes" ref=${tree}>
      ${blocks.map(
        (block, b) =>
          html`<div class="rows" role="none" key=${b} style=${`contain-intrinsic-size: auto ${block.length * ROW_PX}px`}>${block.map(rowOf)}</div>`,
      )}
      ${rows.length === 0 ? html`<p class="empty">${query ? 'Nothing matches.' : 'Loading nodes…'}</p>` : null}
    </div>
    <div class="tree-foot muted">${points} data points · ${total} nodes in the mesh</div>
  </div>`;
}
