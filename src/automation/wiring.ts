/**
 * How automation nodes are wired: the nodes whose changes wake a node (sources), the nodes whose
 * values it reads (inputs) and the nodes it writes (targets), all by id, anywhere in the mesh.
 *
 * Default sources, when `meta.sources` is not given:
 * - HighThreshold, LowThreshold, SilentAlarm: their parent data point.
 * - CronTimer, Button, IncomingWebHook: none; time, a press or an HTTP call fires them.
 * - An executor under a trigger: the trigger (it runs when the trigger fires). Under a data
 *   point: the data point (it runs on every change). Elsewhere: its inputs, so a Compute over
 *   three rooms runs when any of them changes.
 *
 * A wiring loop (a node whose writes wake, through any chain, the node itself) would run forever;
 * `findLoop` finds one before such a node is stored, and the API refuses it.
 */

import { EXECUTOR_TYPES, type NodeType, TRIGGER_TYPES } from '../store/node-types.ts';

/** The parts of a node wiring looks at. */
export interface Wired {
  id: string;
  type: NodeType;
  parent: string | null;
  meta: Record<string, unknown>;
}

export const AUTOMATION_TYPES: readonly NodeType[] = [...TRIGGER_TYPES, ...EXECUTOR_TYPES];

export function isAutomation(type: NodeType): boolean {
  return AUTOMATION_TYPES.includes(type);
}

const ids = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];

export function inputsOf(node: Wired): string[] {
  const inputs = node.meta.inputs;
  if (node.type === 'Calculation') {
    return inputs && typeof inputs === 'object' && !Array.isArray(inputs)
      ? Object.values(inputs as Record<string, unknown>).filter((v): v is string => typeof v === 'string')
      : [];
  }
  if (node.type === 'Compute' || node.type === 'LogicGate') return ids(inputs);
  return [];
}

export function targetsOf(node: Wired): string[] {
  return typeof node.meta.target === 'string' ? [node.meta.target] : [];
}

export function sourcesOf(node: Wired, parentType: NodeType | undefined): string[] {
  if (Array.isArray(node.meta.sources)) return ids(node.meta.sources);
  switch (node.type) {
    case 'HighThreshold':
    case 'LowThreshold':
    case 'SilentAlarm':
      return parentType === 'DataPoint' && node.parent ? [node.parent] : [];
    case 'CronTimer':
    case 'Button':
    case 'IncomingWebHook':
      return [];
    default:
      if (node.parent && parentType && (TRIGGER_TYPES.includes(parentType) || parentType === 'DataPoint')) {
        return [node.parent];
      }
      return inputsOf(node);
  }
}

/**
 * A loop through `candidate` in the wiring of `nodes` (with `candidate` in place of any node of
 * its id), as the list of ids around it, or undefined. Edges: a source wakes the node it feeds,
 * and a node writes its targets.
 */
export function findLoop(nodes: readonly Wired[], candidate: Wired): string[] | undefined {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  byId.set(candidate.id, candidate);
  const next = new Map<string, string[]>();
  const edge = (from: string, to: string): void => {
    next.set(from, [...(next.get(from) ?? []), to]);
  };
  for (const node of byId.values()) {
    if (!isAutomation(node.type)) continue;
    const parentType = node.parent ? byId.get(node.parent)?.type : undefined;
    for (const source of sourcesOf(node, parentType)) edge(source, node.id);
    for (const target of targetsOf(node)) edge(node.id, target);
  }
  // Depth-first from the candidate, looking for a way back to it.
  const path: string[] = [candidate.id];
  const seen = new Set<string>();
  const walk = (id: string): boolean => {
    for (const to of next.get(id) ?? []) {
      if (to === candidate.id) return true;
      if (seen.has(to)) continue;
      seen.add(to);
      path.push(to);
      if (walk(to)) return true;
      path.pop();
    }
    return false;
  };
  return walk(candidate.id) ? [...path, candidate.id] : undefined;
}

/** A node of the wiring as a running engine holds it: what wakes it, and what it writes. */
export interface WiredJob {
  id: string;
  sources: readonly string[];
  targets: readonly string[];
}

/**
 * The ids of the jobs on some wiring loop, all at once: the strongly connected components of
 * more than one node, or of one that wakes itself (Tarjan's algorithm, with a stack of its own
 * rather than recursion, so a long chain cannot overflow the call stack). The API refuses a
 * loop (`findLoop`), but two servers can each take half of one at the same moment.
 */
export function jobsOnLoops(jobs: readonly WiredJob[]): Set<string> {
  const next = new Map<string, string[]>();
  const edge = (from: string, to: string): void => {
    let list = next.get(from);
    if (!list) {
      list = [];
      next.set(from, list);
    }
    list.push(to);
  };
  for (const job of jobs) {
    for (const source of job.sources) edge(source, job.id);
    for (const target of job.targets) edge(job.id, target);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const looping = new Set<string>();
  let counter = 0;
  for (const start of next.keys()) {
    if (index.has(start)) continue;
    // Frames of the depth-first walk: a node and how many of its edges it has followed.
    const frames: [string, number][] = [[start, 0]];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (frames.length > 0) {
      const frame = frames[frames.length - 1]!;
      const [node, followed] = frame;
      const edges = next.get(node) ?? [];
      if (followed < edges.length) {
        frame[1]++;
        const to = edges[followed]!;
        if (!index.has(to)) {
          index.set(to, counter);
          low.set(to, counter++);
          stack.push(to);
          onStack.add(to);
          frames.push([to, 0]);
        } else if (onStack.has(to)) {
          low.set(node, Math.min(low.get(node)!, index.get(to)!));
        }
        continue;
      }
      frames.pop();
      const parent = frames[frames.length - 1]?.[0];
      if (parent !== undefined) low.set(parent, Math.min(low.get(parent)!, low.get(node)!));
      if (low.get(node) !== index.get(node)) continue;
      // `node` roots a component: everything above it on the stack.
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || edges.includes(node)) for (const id of component) looping.add(id);
    }
  }
  return looping;
}
