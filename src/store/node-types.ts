/**
 * The node tree: what types of node there are, where each may hang, and what its `meta` holds.
 *
 * Every server is a `Server` node owned by itself, at the root (its id is the server's id).
 * Projects and data points hang under a server or a project; triggers watch a data point (or hang
 * under a project); executors hang under a trigger, a data point or a project. Only data points
 * carry a value. `meta` is checked against the type's schema; fields a type does not define are
 * kept, so a newer peer's additions survive a round trip through an older one.
 */

import Type, { type Static, type TSchema } from 'typebox';
import Compile from 'typebox/compile';

export const NODE_TYPES = [
  'Server',
  'Project',
  'DataPoint',
  'HighThreshold',
  'LowThreshold',
  'CronTimer',
  'SilentAlarm',
  'IncomingWebHook',
  'Button',
  'Calculation',
  'Compute',
  'LogicGate',
  'OutgoingWebHook',
  'SetValue',
] as const;
export type NodeType = (typeof NODE_TYPES)[number];

export const TRIGGER_TYPES: readonly NodeType[] = [
  'HighThreshold',
  'LowThreshold',
  'CronTimer',
  'SilentAlarm',
  'IncomingWebHook',
  'Button',
];
export const EXECUTOR_TYPES: readonly NodeType[] = [
  'Calculation',
  'Compute',
  'LogicGate',
  'OutgoingWebHook',
  'SetValue',
];

/** The types a node of each type may hang under; an empty list means: only at the root. */
export const PARENT_TYPES: Record<NodeType, readonly NodeType[]> = {
  Server: [],
  Project: ['Server', 'Project'],
  DataPoint: ['Server', 'Project'],
  HighThreshold: ['DataPoint', 'Project', 'Server'],
  LowThreshold: ['DataPoint', 'Project', 'Server'],
  CronTimer: ['DataPoint', 'Project', 'Server'],
  SilentAlarm: ['DataPoint', 'Project', 'Server'],
  IncomingWebHook: ['DataPoint', 'Project', 'Server'],
  Button: ['DataPoint', 'Project', 'Server'],
  Calculation: [...TRIGGER_TYPES, 'DataPoint', 'Project', 'Server'],
  Compute: [...TRIGGER_TYPES, 'DataPoint', 'Project', 'Server'],
  LogicGate: [...TRIGGER_TYPES, 'DataPoint', 'Project', 'Server'],
  OutgoingWebHook: [...TRIGGER_TYPES, 'DataPoint', 'Project', 'Server'],
  SetValue: [...TRIGGER_TYPES, 'DataPoint', 'Project', 'Server'],
};

const Id = Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' });
const Ids = Type.Array(Id, { maxItems: 256 });
const Placement = Type.Optional(Type.Union([Type.Literal('owner'), Type.Literal('any')]));
const Wiring = {
  /** Nodes whose changes wake this one (see src/automation/wiring.ts for the defaults). */
  sources: Type.Optional(Ids),
  /** Where it runs: on its owner (default) or on any one live server (rendezvous hashing). */
  placement: Placement,
  /** With placement "any": the server that takes the job whenever it is live. */
  prefer: Type.Optional(Id),
};
const open = { additionalProperties: true } as const;

export const DataPointKind = Type.Union([
  Type.Literal('number'),
  Type.Literal('boolean'),
  Type.Literal('string'),
  Type.Literal('json'),
]);
export type DataPointKind = Static<typeof DataPointKind>;

export const META_SCHEMAS: Record<NodeType, TSchema> = {
  Server: Type.Object(
    {
      port: Type.Optional(Type.Integer()),
      model: Type.Optional(Type.String()),
      version: Type.Optional(Type.String()),
      os: Type.Optional(Type.String()),
      platform: Type.Optional(Type.String()),
    },
    open,
  ),
  Project: Type.Object({ description: Type.Optional(Type.String({ maxLength: 4096 })) }, open),
  DataPoint: Type.Object(
    {
      /** What values it takes (default number). */
      kind: Type.Optional(DataPointKind),
      unit: Type.Optional(Type.String({ maxLength: 32 })),
      /** How long its series keeps values, ms (default Config.seriesRetentionMs). */
      retentionMs: Type.Optional(Type.Integer({ minimum: 1000 })),
    },
    open,
  ),
  HighThreshold: Type.Object(
    { threshold: Type.Number(), hysteresis: Type.Optional(Type.Number({ minimum: 0 })), ...Wiring },
    open,
  ),
  LowThreshold: Type.Object(
    { threshold: Type.Number(), hysteresis: Type.Optional(Type.Number({ minimum: 0 })), ...Wiring },
    open,
  ),
  CronTimer: Type.Object(
    {
      cron: Type.String({ minLength: 1, maxLength: 256 }),
      timezone: Type.Optional(Type.String()),
      ...Wiring,
    },
    open,
  ),
  SilentAlarm: Type.Object({ maxAgeMs: Type.Integer({ minimum: 1 }), ...Wiring }, open),
  IncomingWebHook: Type.Object({ path: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }), ...Wiring }, open),
  Button: Type.Object({ ...Wiring }, open),
  Calculation: Type.Object(
    {
      formula: Type.String({ minLength: 1, maxLength: 4096 }),
      /** The formula's names and the nodes whose values they stand for. */
      inputs: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Id)),
      target: Type.Optional(Id),
      ...Wiring,
    },
    open,
  ),
  Compute: Type.Object(
    {
      op: Type.Enum(['average', 'min', 'max', 'sum', 'count', 'stddev']),
      /** The data points to aggregate; with `windowMs`, one data point over that much history. */
      inputs: Type.Array(Id, { minItems: 1, maxItems: 256 }),
      windowMs: Type.Optional(Type.Integer({ minimum: 1 })),
      target: Type.Optional(Id),
      ...Wiring,
    },
    open,
  ),
  LogicGate: Type.Object(
    {
      gate: Type.Enum(['AND', 'OR', 'NOT', 'XOR', 'NAND', 'NOR', 'XNOR']),
      inputs: Type.Array(Id, { minItems: 1, maxItems: 256 }),
      target: Type.Optional(Id),
      ...Wiring,
    },
    open,
  ),
  OutgoingWebHook: Type.Object(
    {
      url: Type.String({ pattern: '^https?://', maxLength: 2048 }),
      method: Type.Optional(Type.String({ pattern: '^[A-Z]{3,7}$' })),
      headers: Type.Optional(Type.Record(Type.String(), Type.String())),
      /** The body; {{value}}, {{source.id}}, {{source.name}}, {{node.name}}, {{runner}}, {{time}}
       * are filled in. Without one, all of those are sent as JSON. */
      body: Type.Optional(Type.String({ maxLength: 65536 })),
      timeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
      retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 20 })),
      ...Wiring,
    },
    open,
  ),
  SetValue: Type.Object(
    { target: Id, value: Type.Unknown(), ...Wiring },
    { ...open, required: ['target', 'value'] },
  ),
};

const META_CHECKS = new Map(Object.entries(META_SCHEMAS).map(([type, schema]) => [type, Compile(schema)]));

export function isNodeType(value: unknown): value is NodeType {
  return typeof value === 'string' && (NODE_TYPES as readonly string[]).includes(value);
}

/** Why `meta` does not fit the type, or undefined when it does. */
export function metaProblem(type: NodeType, meta: unknown): string | undefined {
  const check = META_CHECKS.get(type)!;
  if (check.Check(meta)) return undefined;
  const [first] = check.Errors(meta);
  const where = first?.instancePath ? `meta${first.instancePath.replaceAll('/', '.')}` : 'meta';
  return `${where}: ${first?.message ?? 'is invalid'} (for a ${type})`;
}

/** Why `value` does not fit a data point of this kind, or undefined when it does. */
export function valueProblem(kind: DataPointKind, value: unknown): string | undefined {
  switch (kind) {
    case 'number':
      return typeof value === 'number' && Number.isFinite(value)
        ? undefined
        : 'value: must be a finite number';
    case 'boolean':
      return typeof value === 'boolean' ? undefined : 'value: must be true or false';
    case 'string':
      return typeof value === 'string' ? undefined : 'value: must be a string';
    case 'json':
      return value === undefined ? 'value: is required' : undefined;
  }
}
