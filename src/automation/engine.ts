/**
 * The automation engine of one server: it runs the triggers and executors placed here
 * (placement.ts), wakes them when their sources change (wiring.ts), and computes what they do
 * (rules.ts). Every server sees every node and value, so any server can run any job; the writes a
 * job makes go to the owners of their targets like any other write.
 *
 * Firing: a trigger that fires tells every server, by a flooded `auto` message, and each server
 * runs the executors it hosts that the trigger wakes. Executors woken by a data point run on its
 * changes. Runs of one executor never overlap: a wake during a run schedules one more run, which
 * reads the latest values (so a burst of changes costs a run or two, and the last value always
 * gets its run). Thresholds see every value, in order.
 *
 * Run state (runner, runs, last run, result, error) is kept by every server from the flooded
 * messages and shown as the node's `state` in the API; it is not stored, so it costs no writes
 * and a job can report its state even while its owner is away.
 */

import { Cron } from 'croner';
import type { Clock } from '../clock.ts';
import type { EventBus, ShoalEvent } from '../events.ts';
import type { AutoMessage } from '../link/messages.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { NodeType } from '../store/node-types.ts';
import type { ShoalNode, Store } from '../store/store.ts';
import { Placement, type PlacementMode } from './placement.ts';
import {
  type ComputeOp,
  calculate,
  compute,
  type Gate,
  logicGate,
  numeric,
  renderTemplate,
  type ThresholdMeta,
  thresholdStep,
  truthy,
} from './rules.ts';
import { deliver } from './webhook.ts';
import { inputsOf, isAutomation, jobsOnLoops, sourcesOf, targetsOf } from './wiring.ts';

/** What a job last did, as the API shows it in the node's `state`. */
export interface RunState {
  runner: string;
  /** Runs of an executor, or fires of a trigger, on that runner. */
  runs: number;
  lastRun: string;
  ok: boolean;
  result?: unknown;
  error?: string;
  [key: string]: unknown;
}

export interface EngineDeps {
  selfId: string;
  store: Store;
  /** Writes a data point's value wherever its owner is. */
  setValue: (id: string, value: unknown) => Promise<unknown>;
  events: EventBus;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /** Servers now live (connected) and how many are known. */
  membership: () => { live: string[]; known: number };
  /** Sends an `auto` message to the mesh (see Mesh.flood). */
  flood: (message: AutoMessage, from?: string) => void;
}

export interface EngineOptions {
  settleMs: number;
  startupMs: number;
  /** Run state of a job is sent to the mesh at most this often (fires always go at once). */
  stateIntervalMs: number;
  /** Values older than this when they arrive (catching up after a partition) fire no trigger. */
  maxEventAgeMs: number;
  webhookBackoffMs: number;
}

interface Job {
  node: ShoalNode;
  sources: string[];
  here: boolean;
  armed?: boolean;
  cron?: Cron;
  silence?: ReturnType<typeof setTimeout>;
  busy: boolean;
  again: boolean;
  wake?: Wake;
  runs: number;
}

interface Wake {
  source?: ShoalNode;
  payload?: unknown;
}

const SEEN_MESSAGES = 10_000;

export class AutomationEngine {
  readonly #deps: EngineDeps;
  readonly #options: EngineOptions;
  readonly #placement: Placement;
  readonly #jobs = new Map<string, Job>();
  readonly #bySource = new Map<string, Set<string>>();
  /** The jobs on a wiring loop (`#onLoop`), worked out again after the wiring changes. */
  #loops: Set<string> | undefined;
  readonly #states = new Map<string, RunState>();
  readonly #seen = new Set<string>();
  readonly #dirty = new Set<string>();
  #seq = 0;
  #stateTimer: ReturnType<typeof setTimeout> | undefined;
  #settleTimer: ReturnType<typeof setTimeout> | undefined;
  #unsubscribe: (() => void) | undefined;
  #running = false;

  constructor(deps: EngineDeps, options: EngineOptions) {
    this.#deps = deps;
    this.#options = options;
    this.#placement = new Placement(deps.selfId, deps.clock.now(), options);
    deps.metrics.gauge(
      'shoal_automation_jobs',
      'Automation jobs (triggers and executors), by where they run.',
      ['where'],
      () => {
        let here = 0;
        for (const job of this.#jobs.values()) if (job.here) here++;
        return [
          [{ where: 'here' }, here],
          [{ where: 'elsewhere' }, this.#jobs.size - here],
        ];
      },
    );
  }

  start(): void {
    this.#running = true;
    for (const node of this.#deps.store.nodes()) if (isAutomation(node.type)) this.#index(node);
    this.#unsubscribe = this.#deps.events.subscribe((event) => this.#onEvent(event));
    this.reconcile();
  }

  stop(): void {
    this.#running = false;
    this.#unsubscribe?.();
    clearTimeout(this.#stateTimer);
    clearTimeout(this.#settleTimer);
    for (const job of this.#jobs.values()) this.#halt(job);
  }

  /** The run state of a job, as last heard from its runner. */
  stateOf(id: string): RunState | undefined {
    return this.#states.get(id);
  }

  /** Where a job runs now, as this server sees it. */
  runnerOf(id: string): string | undefined {
    const job = this.#jobs.get(id);
    return job ? this.#placement.runnerOf(placementOf(job.node)) : undefined;
  }

  /** Fires a trigger from outside: a Button press, an incoming webhook, or by hand. */
  fire(id: string, payload?: unknown): void {
    const job = this.#jobs.get(id);
    if (!job) return;
    this.#fire(job, payload);
  }

  /** An `auto` message from peer `from`. */
  receive(from: string, message: AutoMessage): void {
    const key = `${message.origin}/${message.seq}`;
    if (this.#seen.has(key)) return;
    this.#remember(key);
    this.#deps.flood(message, from);
    // A late message must not hide a newer state of the same job.
    const known = this.#states.get(message.id);
    const state = message.state as RunState;
    if (!known || String(state.lastRun) >= String(known.lastRun)) this.#states.set(message.id, state);
    this.#deps.events.publish({
      type: 'automation',
      nodeId: message.id,
      fire: message.fire,
      state: message.state,
    });
    if (message.fire) this.#wakeFrom(message.id, { payload: (message.state as RunState).result });
  }

  /** Looks again at where every job runs; called when peers come and go. */
  reconcile(): void {
    if (!this.#running) return;
    const now = this.#deps.clock.now();
    const { live, known } = this.#deps.membership();
    this.#placement.update(live, known, now);
    for (const job of this.#jobs.values()) {
      const here = this.#placement.runsHere(placementOf(job.node), now);
      if (here === job.here) continue;
      job.here = here;
      if (here) this.#begin(job);
      else this.#halt(job);
      this.#deps.log.info(
        { job: job.node.id, name: job.node.name, here },
        here ? 'automation job runs here' : 'automation job runs elsewhere',
      );
    }
    // Jobs won but still settling start when the view has been stable long enough.
    clearTimeout(this.#settleTimer);
    const settles = this.#placement.settlesAt();
    if (settles > now) {
      this.#settleTimer = setTimeout(() => this.reconcile(), settles - now + 1);
      this.#settleTimer.unref();
    }
  }

  // --- The jobs ------------------------------------------------------------------------------

  #index(node: ShoalNode): void {
    this.#unindex(node.id);
    this.#loops = undefined;
    const parentType = node.parent
      ? (this.#deps.store.node(node.parent)?.type as NodeType | undefined)
      : undefined;
    const job: Job = {
      node,
      sources: sourcesOf(node, parentType),
      here: false,
      busy: false,
      again: false,
      runs: 0,
    };
    this.#jobs.set(node.id, job);
    for (const source of job.sources) {
      let set = this.#bySource.get(source);
      if (!set) {
        set = new Set();
        this.#bySource.set(source, set);
      }
      set.add(node.id);
    }
  }

  #unindex(id: string): void {
    const job = this.#jobs.get(id);
    if (!job) return;
    this.#halt(job);
    for (const source of job.sources) this.#bySource.get(source)?.delete(id);
    this.#jobs.delete(id);
    this.#loops = undefined;
  }

  /** Starts what a job needs while it runs here: timers of cron and silence triggers. */
  #begin(job: Job): void {
    const meta = job.node.meta;
    job.armed = undefined;
    if (job.node.type === 'CronTimer') {
      try {
        job.cron = new Cron(
          String(meta.cron),
          { ...(typeof meta.timezone === 'string' ? { timezone: meta.timezone } : {}) },
          () => this.#fire(job, new Date().toISOString()),
        );
      } catch (err) {
        this.#record(job, { ok: false, error: `cron: ${(err as Error).message}` }, false);
      }
    }
    if (job.node.type === 'SilentAlarm') {
      const last = job.sources.map((s) => this.#deps.store.node(s)?.updatedAt).find(Boolean);
      const age = last ? this.#deps.clock.now() - Date.parse(last) : 0;
      this.#armSilence(job, Math.max(0, Number(meta.maxAgeMs) - age));
    }
  }

  #halt(job: Job): void {
    job.cron?.stop();
    job.cron = undefined;
    clearTimeout(job.silence);
    job.silence = undefined;
  }

  #armSilence(job: Job, ms: number): void {
    clearTimeout(job.silence);
    job.silence = setTimeout(() => {
      job.silence = undefined;
      if (job.here) this.#fire(job, { silentForMs: Number(job.node.meta.maxAgeMs) });
    }, ms);
    job.silence.unref();
  }

  #onEvent(event: ShoalEvent): void {
    if (event.type === 'peer' || event.type === 'retired') {
      this.reconcile();
      return;
    }
    if (event.type !== 'node') return;
    const node = event.node;
    if (event.op === 'create' || event.op === 'update') this.#rewireChildren(node);
    if (isAutomation(node.type)) {
      if (event.op === 'delete') {
        this.#unindex(node.id);
        this.#states.delete(node.id);
      } else if (event.op !== 'value') {
        this.#index(node);
        this.reconcile();
      }
      return;
    }
    // A new value of a node some jobs watch (most values reach no job: nothing more to do).
    const watchers = event.op === 'value' ? this.#bySource.get(node.id) : undefined;
    if (!watchers) return;
    const fresh = this.#deps.clock.now() - Date.parse(node.updatedAt) <= this.#options.maxEventAgeMs;
    for (const id of watchers) {
      const job = this.#jobs.get(id);
      if (job?.here) this.#sourceChanged(job, node, fresh);
    }
  }

  /**
   * Default sources depend on the parent's type, and ops of different owners arrive in any order:
   * jobs indexed before their parent arrived are wired again when it does.
   */
  #rewireChildren(parent: ShoalNode): void {
    const stale = [...this.#jobs.values()].filter(
      (job) =>
        job.node.parent === parent.id && sourcesOf(job.node, parent.type).join() !== job.sources.join(),
    );
    for (const job of stale) this.#index(job.node);
    if (stale.length > 0) this.reconcile();
  }

  /** A source of a job took a new value. */
  #sourceChanged(job: Job, source: ShoalNode, fresh: boolean): void {
    switch (job.node.type) {
      case 'HighThreshold':
      case 'LowThreshold': {
        const value = numeric(source.value);
        if (value === undefined) return;
        const step = thresholdStep(
          job.node.type,
          job.node.meta as unknown as ThresholdMeta,
          job.armed,
          value,
        );
        job.armed = step.armed;
        if (step.fire && fresh) this.#fire(job, value);
        return;
      }
      case 'SilentAlarm':
        this.#armSilence(job, Number(job.node.meta.maxAgeMs));
        return;
      case 'CronTimer':
      case 'Button':
      case 'IncomingWebHook':
        if (fresh) this.#fire(job, source.value);
        return;
      default:
        this.#schedule(job, { source });
    }
  }

  #fire(job: Job, payload: unknown): void {
    job.runs++;
    this.#deps.metrics.automationFires.inc({ type: job.node.type });
    this.#record(job, { ok: true, result: payload }, true);
    this.#wakeFrom(job.node.id, { payload });
  }

  /** Wakes the jobs here that a fired trigger feeds. */
  #wakeFrom(triggerId: string, wake: Wake): void {
    for (const id of this.#bySource.get(triggerId) ?? []) {
      const job = this.#jobs.get(id);
      if (!job?.here) continue;
      if (isTrigger(job.node.type)) this.#fire(job, wake.payload);
      else this.#schedule(job, wake);
    }
  }

  /** Runs an executor soon; one more run if it is running now. */
  #schedule(job: Job, wake: Wake): void {
    if (this.#onLoop(job)) return;
    job.wake = wake;
    if (job.busy) {
      job.again = true;
      return;
    }
    job.busy = true;
    setImmediate(() => void this.#run(job));
  }

  /**
   * True when the job is on a wiring loop: its writes would wake it again, for ever. The API
   * refuses a loop, but two servers can each take half of one at the same moment; then no
   * executor on it runs, and each says why, until one of them is rewired or deleted.
   */
  #onLoop(job: Job): boolean {
    this.#loops ??= jobsOnLoops(
      [...this.#jobs.values()].map((j) => ({
        id: j.node.id,
        sources: j.sources,
        targets: targetsOf(j.node),
      })),
    );
    if (!this.#loops.has(job.node.id)) return false;
    const error =
      'wiring loop: its writes wake it again (two servers each took half of it at once); it does not run until a node of the loop is rewired or deleted';
    if (this.#states.get(job.node.id)?.error !== error) this.#record(job, { ok: false, error }, false);
    return true;
  }

  async #run(job: Job): Promise<void> {
    const wake = job.wake ?? {};
    job.again = false;
    const started = this.#deps.clock.now();
    let outcome: { ok: boolean; result?: unknown; error?: string; [k: string]: unknown };
    try {
      outcome = await this.#execute(job, wake);
    } catch (err) {
      outcome = { ok: false, error: (err as Error).message };
    }
    job.runs++;
    this.#deps.metrics.automationRuns.inc({ type: job.node.type, result: outcome.ok ? 'ok' : 'error' });
    this.#record(job, { ...outcome, durationMs: this.#deps.clock.now() - started }, false);
    if (job.again && job.here && this.#running) {
      setImmediate(() => void this.#run(job));
    } else {
      job.busy = false;
    }
  }

  /** What an executor does, by type. */
  async #execute(
    job: Job,
    wake: Wake,
  ): Promise<{ ok: boolean; result?: unknown; error?: string; [k: string]: unknown }> {
    const { store } = this.#deps;
    const meta = job.node.meta;
    const currentValue = (id: string): unknown => store.visibleNode(id)?.value;
    switch (job.node.type) {
      case 'Calculation': {
        const names = (meta.inputs ?? {}) as Record<string, string>;
        const inputs: Record<string, number | boolean> = {};
        for (const [name, id] of Object.entries(names)) {
          const v = currentValue(id);
          if (typeof v === 'number' || typeof v === 'boolean') inputs[name] = v;
        }
        const result = calculate(String(meta.formula), inputs);
        if (!result.ok) return result;
        return this.#write(meta.target, result.value);
      }
      case 'Compute': {
        const ids = inputsOf(job.node);
        let values: number[];
        if (typeof meta.windowMs === 'number' && ids[0]) {
          const now = this.#deps.clock.now();
          values = store
            .series(ids[0], now - meta.windowMs, now, 100_000)
            .map((p) => numeric(p.value))
            .filter((v): v is number => v !== undefined);
        } else {
          values = ids.map((id) => numeric(currentValue(id))).filter((v): v is number => v !== undefined);
        }
        const result = compute(meta.op as ComputeOp, values);
        if (!result.ok) return result;
        return this.#write(meta.target, result.value);
      }
      case 'LogicGate': {
        const result = logicGate(
          meta.gate as Gate,
          inputsOf(job.node).map((id) => truthy(currentValue(id))),
        );
        if (!result.ok) return result;
        return this.#write(meta.target, result.value);
      }
      case 'SetValue':
        return this.#write(meta.target, meta.value);
      case 'OutgoingWebHook': {
        const source = wake.source;
        const vars = {
          value: source?.value ?? wake.payload,
          source: source ? { id: source.id, name: source.name, value: source.value } : undefined,
          node: { id: job.node.id, name: job.node.name },
          runner: this.#deps.selfId,
          time: new Date(this.#deps.clock.now()).toISOString(),
        };
        const method = typeof meta.method === 'string' ? meta.method : 'POST';
        const body = typeof meta.body === 'string' ? renderTemplate(meta.body, vars) : JSON.stringify(vars);
        const headers = {
          'content-type': 'application/json',
          ...((meta.headers as Record<string, string> | undefined) ?? {}),
        };
        const result = await deliver({
          url: String(meta.url),
          method,
          headers,
          body,
          timeoutMs: typeof meta.timeoutMs === 'number' ? meta.timeoutMs : 5000,
          retries: typeof meta.retries === 'number' ? meta.retries : 2,
          backoffMs: this.#options.webhookBackoffMs,
        });
        return result.ok
          ? { ok: true, result: result.status, attempts: result.attempts }
          : { ok: false, error: result.error ?? 'failed', attempts: result.attempts };
      }
      default:
        return { ok: false, error: `${job.node.type} is not an executor` };
    }
  }

  /** Writes a result to a target data point, unless it holds that value already. */
  async #write(target: unknown, value: unknown): Promise<{ ok: boolean; result?: unknown; error?: string }> {
    if (typeof target !== 'string') return { ok: true, result: value };
    const current = this.#deps.store.visibleNode(target);
    if (!current) return { ok: false, result: value, error: `target ${target} does not exist` };
    if (JSON.stringify(current.value) === JSON.stringify(value)) return { ok: true, result: value };
    try {
      await this.#deps.setValue(target, value);
      return { ok: true, result: value };
    } catch (err) {
      return { ok: false, result: value, error: (err as Error).message };
    }
  }

  // --- Run state ----------------------------------------------------------------------------

  #record(
    job: Job,
    outcome: { ok: boolean; result?: unknown; error?: string; [k: string]: unknown },
    fire: boolean,
  ): void {
    const state: RunState = {
      runner: this.#deps.selfId,
      runs: job.runs,
      lastRun: new Date(this.#deps.clock.now()).toISOString(),
      ...outcome,
    };
    this.#states.set(job.node.id, state);
    if (fire) {
      this.#send(job.node.id, true);
      return;
    }
    this.#dirty.add(job.node.id);
    if (!this.#stateTimer) {
      this.#stateTimer = setTimeout(() => {
        this.#stateTimer = undefined;
        for (const id of this.#dirty) this.#send(id, false);
        this.#dirty.clear();
      }, this.#options.stateIntervalMs);
      this.#stateTimer.unref();
    }
  }

  #send(id: string, fire: boolean): void {
    const state = this.#states.get(id);
    if (!state) return;
    const message: AutoMessage = { t: 'auto', origin: this.#deps.selfId, seq: this.#seq++, id, fire, state };
    this.#remember(`${message.origin}/${message.seq}`);
    this.#deps.flood(message);
    this.#deps.events.publish({ type: 'automation', nodeId: id, fire, state });
  }

  #remember(key: string): void {
    this.#seen.add(key);
    if (this.#seen.size > SEEN_MESSAGES) this.#seen.delete(this.#seen.values().next().value!);
  }
}

function isTrigger(type: NodeType): boolean {
  return ['HighThreshold', 'LowThreshold', 'CronTimer', 'SilentAlarm', 'IncomingWebHook', 'Button'].includes(
    type,
  );
}

function placementOf(node: ShoalNode): {
  id: string;
  owner: string;
  placement?: PlacementMode;
  prefer?: string;
} {
  return {
    id: node.id,
    owner: node.owner,
    ...(node.meta.placement === 'any' ? { placement: 'any' as const } : {}),
    ...(typeof node.meta.prefer === 'string' ? { prefer: node.meta.prefer } : {}),
  };
}
