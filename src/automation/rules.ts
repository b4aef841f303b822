/**
 * What each trigger and executor computes, as pure functions of their meta, state and inputs.
 * The engine (engine.ts) decides when they run and where results go.
 *
 * Thresholds are edge-triggered with hysteresis: a HighThreshold fires when the value rises above
 * `threshold` and is armed again only once the value has fallen to `threshold - hysteresis`, so a
 * value hovering at the threshold does not make it chatter. A LowThreshold mirrors that. A fresh
 * trigger (first value seen, or just moved to another server) is armed, so a value already past
 * the threshold fires once: the executors it drives are expected to be idempotent (set AC on).
 */

import { Cron } from 'croner';
import { type Expr, evaluate, parseFormula, type Value } from './formula.ts';

export interface ThresholdMeta {
  threshold: number;
  hysteresis?: number;
}

export function thresholdStep(
  kind: 'HighThreshold' | 'LowThreshold',
  meta: ThresholdMeta,
  armed: boolean | undefined,
  value: number,
): { fire: boolean; armed: boolean } {
  const hysteresis = meta.hysteresis ?? 0;
  const isArmed = armed ?? true;
  if (kind === 'HighThreshold') {
    if (isArmed && value > meta.threshold) return { fire: true, armed: false };
    return { fire: false, armed: isArmed || value <= meta.threshold - hysteresis };
  }
  if (isArmed && value < meta.threshold) return { fire: true, armed: false };
  return { fire: false, armed: isArmed || value >= meta.threshold + hysteresis };
}

export type ComputeOp = 'average' | 'min' | 'max' | 'sum' | 'count' | 'stddev';

/** Aggregates numbers; `count` counts them, the others need at least one. */
export function compute(
  op: ComputeOp,
  values: readonly number[],
): { ok: true; value: number } | { ok: false; error: string } {
  if (op === 'count') return { ok: true, value: values.length };
  if (values.length === 0) return { ok: false, error: 'no values to compute over' };
  const sum = values.reduce((s, v) => s + v, 0);
  switch (op) {
    case 'sum':
      return { ok: true, value: sum };
    case 'average':
      return { ok: true, value: sum / values.length };
    // Not Math.min(...values): spreading a long window of history overflows the call stack.
    case 'min':
      return { ok: true, value: values.reduce((m, v) => Math.min(m, v)) };
    case 'max':
      return { ok: true, value: values.reduce((m, v) => Math.max(m, v)) };
    case 'stddev': {
      const mean = sum / values.length;
      return { ok: true, value: Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length) };
    }
  }
}

export type Gate = 'AND' | 'OR' | 'NOT' | 'XOR' | 'NAND' | 'NOR' | 'XNOR';

/** A logic gate over its inputs (XOR and XNOR by parity, for any number of inputs). */
export function logicGate(
  gate: Gate,
  inputs: readonly boolean[],
): { ok: true; value: boolean } | { ok: false; error: string } {
  if (inputs.length === 0) return { ok: false, error: 'a logic gate needs inputs' };
  if (gate === 'NOT') {
    if (inputs.length !== 1) return { ok: false, error: 'NOT takes exactly one input' };
    return { ok: true, value: !inputs[0] };
  }
  const and = inputs.every(Boolean);
  const or = inputs.some(Boolean);
  const odd = inputs.filter(Boolean).length % 2 === 1;
  const value = { AND: and, OR: or, XOR: odd, NAND: !and, NOR: !or, XNOR: !odd }[gate];
  return { ok: true, value };
}

/** A value as a gate input: true, a non-zero number, or "on"/"true"/"1". */
export function truthy(value: unknown): boolean {
  if (typeof value === 'string') return ['on', 'true', '1', 'yes'].includes(value.toLowerCase());
  return Boolean(value);
}

/** A value as a number for thresholds and aggregates, or undefined. */
export function numeric(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  return undefined;
}

/** Calculation: a parsed formula over named inputs, cached by text. */
const parsed = new Map<string, ReturnType<typeof parseFormula>>();

export function calculate(
  formula: string,
  inputs: Record<string, Value>,
): { ok: true; value: Value } | { ok: false; error: string } {
  let expr = parsed.get(formula);
  if (!expr) {
    expr = parseFormula(formula);
    if (parsed.size > 1000) parsed.clear();
    parsed.set(formula, expr);
  }
  if (!expr.ok) return { ok: false, error: `formula: ${expr.error}` };
  return evaluate(expr.value as Expr, inputs);
}

/** Why a cron pattern is not valid, or undefined. */
export function cronProblem(pattern: string, timezone?: string): string | undefined {
  try {
    const cron = new Cron(pattern, { paused: true, ...(timezone ? { timezone } : {}) });
    // A paused Cron checks only the pattern; the timezone is first used for the next run.
    cron.nextRun();
    cron.stop();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Fills `{{name}}` placeholders from `vars` (dotted paths allowed: `{{source.name}}`). Strings are
 * inserted as they are, anything else as JSON; an unknown name becomes empty.
 */
export function renderTemplate(template: string, vars: Record<string, unknown>): string {
  return template.replace(/\{\{\s*([\w.]+)\s*\}\}/g, (_, path: string) => {
    let value: unknown = vars;
    for (const part of path.split('.')) {
      value =
        value !== null && typeof value === 'object' && Object.hasOwn(value, part)
          ? (value as Record<string, unknown>)[part]
          : undefined;
    }
    if (value === undefined) return '';
    return typeof value === 'string' ? value : JSON.stringify(value);
  });
}
