/**
 * The checks an automation node must pass before it is stored, beyond its meta schema: formulas
 * that parse and name only their inputs, targets that are data points, cron patterns that parse,
 * and no wiring loops. They run where the write is taken, against that server's copy of the tree.
 */

import type { ShoalNode } from '../store/store.ts';
import { parseFormula, variablesOf } from './formula.ts';
import { cronProblem } from './rules.ts';
import { findLoop, inputsOf, isAutomation, sourcesOf, targetsOf, type Wired } from './wiring.ts';

export function automationProblem(
  candidate: Wired,
  lookup: (id: string) => ShoalNode | undefined,
  everything: () => readonly Wired[],
): string | undefined {
  if (!isAutomation(candidate.type)) return undefined;
  const meta = candidate.meta;
  const mustExist = (ids: string[], what: string, dataPoints: boolean): string | undefined => {
    for (const id of ids) {
      const node = lookup(id);
      if (!node) return `${what}: no node ${id}`;
      if (dataPoints && node.type !== 'DataPoint') return `${what}: ${id} is a ${node.type}, not a DataPoint`;
    }
    return undefined;
  };
  switch (candidate.type) {
    case 'Calculation': {
      const parsed = parseFormula(String(meta.formula));
      if (!parsed.ok) return `meta.formula: ${parsed.error}`;
      const names = new Set(Object.keys((meta.inputs as Record<string, string> | undefined) ?? {}));
      for (const name of variablesOf(parsed.value)) {
        if (!names.has(name))
          return `meta.formula: "${name}" is not one of meta.inputs (${[...names].join(', ') || 'none'})`;
      }
      break;
    }
    case 'Compute':
      if (meta.windowMs !== undefined && inputsOf(candidate).length !== 1) {
        return 'meta.inputs: a Compute over a time window takes exactly one input';
      }
      break;
    case 'LogicGate':
      if (meta.gate === 'NOT' && inputsOf(candidate).length !== 1)
        return 'meta.inputs: NOT takes exactly one input';
      break;
    case 'CronTimer': {
      const problem = cronProblem(
        String(meta.cron),
        typeof meta.timezone === 'string' ? meta.timezone : undefined,
      );
      if (problem) return `meta.cron: ${problem}`;
      break;
    }
    default:
      break;
  }
  const problem =
    mustExist(inputsOf(candidate), 'meta.inputs', false) ??
    mustExist(targetsOf(candidate), 'meta.target', true) ??
    mustExist(Array.isArray(meta.sources) ? sourcesOf(candidate, undefined) : [], 'meta.sources', false);
  if (problem) return problem;
  const loop = findLoop(everything(), candidate);
  if (loop) {
    const name = (id: string): string => (id === candidate.id ? 'this node' : (lookup(id)?.name ?? id));
    return `wiring loop: ${loop.map(name).join(' -> ')} (its writes would wake it again)`;
  }
  return undefined;
}
