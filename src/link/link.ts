/**
 * One authenticated, encrypted link to another peer over a WebSocket (path /mesh/v1), either
 * direction. It runs the handshake (handshake.ts) within `handshakeTimeoutMs`, then carries sealed
 * frames (crypto.ts), pings when its owner calls `heartbeat()` (the mesh does, for all links at
 * once, every `heartbeatIntervalMs`), measures the RTT from the echoes, and declares the link dead
 * when nothing arrived for `failureTimeoutMs`. It knows nothing of the mesh: it reports up,
 * message and closed to its handler.
 */

import { performance } from 'node:perf_hooks';
import type { WebSocket } from 'ws';
import type { Cancel, Clock } from '../clock.ts';
import { FrameOpener, FrameSealer } from '../crypto.ts';
import type { Logger } from '../log.ts';
import type { Metrics, Tally } from '../metrics.ts';
import {
  type DialerState,
  dialerFinish,
  dialerHello,
  type HandshakeParty,
  type HandshakeRejection,
  type LinkKeys,
  type ListenerState,
  listenerFinish,
  listenerRespond,
} from './handshake.ts';
import { encodeMessage, type LinkMessage, parseMessage } from './messages.ts';

/** WebSocket close codes of the mesh protocol, so the other side can count why. APPEND ONLY. */
export const CloseCode = {
  malformed: 4000,
  version: 4001,
  cluster: 4002,
  auth: 4003,
  self: 4004,
  busy: 4005,
  handshake_timeout: 4006,
  timeout: 4007,
  bye: 4008,
  duplicate: 4009,
  superseded: 4010,
  stopping: 4011,
  retired: 4012,
} as const;
export type CloseReason = keyof typeof CloseCode | 'closed' | 'error' | 'too_large';
const REASON_OF_CODE = new Map<number, CloseReason>(
  Object.entries(CloseCode).map(([reason, code]) => [code, reason as CloseReason]),
);

export interface LinkHandler {
  up(link: Link): void;
  message(link: Link, message: LinkMessage): void;
  closed(link: Link, reason: CloseReason): void;
}

export interface LinkDeps {
  clock: Clock;
  keys: LinkKeys;
  self: HandshakeParty;
  metrics: Pick<Metrics, 'handshakesRejected' | 'framesRejected' | 'linkBytes' | 'linkFrames' | 'tally'>;
  log: Logger;
  handler: LinkHandler;
}

export interface LinkOptions {
  heartbeatIntervalMs: number;
  failureTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** Bytes queued on the socket above which the link reports itself congested. */
  sendBufferBytes: number;
}

type Phase =
  | { name: 'dialer-hello'; state: DialerState }
  | { name: 'listener-hello' }
  | { name: 'listener-proof'; state: ListenerState }
  | { name: 'up'; sealer: FrameSealer; opener: FrameOpener }
  | { name: 'closed' };

/**
 * The smoothed RTT after heartbeat `n` (counted from 1) measured `sample` (ms): the mean of the
 * samples so far for the first eight, then an eighth of the way from the last value to the sample
 * (RFC 6298's SRTT), to a hundredth of a ms. (A first sample taken while the peer was busy
 * linking would otherwise take some 25 heartbeats to fade.)
 */
export function smoothRtt(last: number | undefined, sample: number, n: number): number {
  const smoothed = last === undefined ? sample : last + (sample - last) / Math.min(Math.max(n, 1), 8);
  return Math.round(smoothed * 100) / 100;
}

export class Link {
  readonly direction: 'inbound' | 'outbound';
  /** The address the other side is reached at (its source address for inbound links). */
  readonly remoteAddress: string;
  remote: HandshakeParty | undefined;
  /**
   * Round-trip time in milliseconds, smoothed over the heartbeats as TCP smooths it (RFC 6298:
   * each sample moves it an eighth of the way), so that one ping answered late by a busy event
   * loop does not show as the link's RTT, nor make the peer announce new RTTs to the whole mesh.
   * The end that does not ping takes what the pinging end measured.
   */
  rttMs: number | undefined;
  /** When the last frame arrived (clock ms). */
  lastRxAt: number;
  upAt: number | undefined;

  readonly #ws: WebSocket;
  readonly #deps: LinkDeps;
  readonly #options: LinkOptions;
  #phase: Phase;
  /** Heartbeats answered so far (see `smoothRtt`). */
  #rttSamples = 0;
  #handshakeTimer: Cancel;
  #watchdogTimer: Cancel | undefined;
  /** The link's byte and frame counts, made when it comes up, closed when it closes. */
  #counters: Record<'tx' | 'rx', { bytes: Tally; frames: Tally }> | undefined;

  constructor(
    ws: WebSocket,
    direction: 'inbound' | 'outbound',
    remoteAddress: string,
    deps: LinkDeps,
    options: LinkOptions,
  ) {
    this.#ws = ws;
    this.direction = direction;
    this.remoteAddress = remoteAddress;
    this.#deps = deps;
    this.#options = options;
    this.lastRxAt = deps.clock.now();
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer, isBinary: boolean) => this.#receive(data, isBinary));
    ws.on('close', (code: number) =>
      this.#finish(REASON_OF_CODE.get(code) ?? (code === 1009 ? 'too_large' : 'closed')),
    );
    ws.on('error', (err: Error) => {
      this.#deps.log.debug({ err: err.message, remote: remoteAddress }, 'link socket error');
      this.#finish(/max payload/i.test(err.message) ? 'too_large' : 'error');
    });
    this.#handshakeTimer = deps.clock.setTimer(() => {
      if (this.#phase.name !== 'up') this.#abort('handshake_timeout');
    }, options.handshakeTimeoutMs);
    if (direction === 'outbound') {
      const { message, state } = dialerHello(deps.keys, deps.self);
      this.#phase = { name: 'dialer-hello', state };
      ws.send(message);
    } else {
      this.#phase = { name: 'listener-hello' };
    }
  }

  get isUp(): boolean {
    return this.#phase.name === 'up';
  }

  /** True when more than `sendBufferBytes` wait in the socket: senders should hold back. */
  get congested(): boolean {
    return this.#ws.bufferedAmount > this.#options.sendBufferBytes;
  }

  /**
   * Seals and sends one message, or one already encoded by `encodeMessage` (a message for many
   * links is encoded once); false when the link is not up.
   */
  send(message: LinkMessage | Buffer): boolean {
    if (this.#phase.name !== 'up') return false;
    const plaintext = Buffer.isBuffer(message) ? message : encodeMessage(message);
    const frame = this.#phase.sealer.seal(plaintext);
    this.#ws.send(frame);
    this.#count('tx', frame.length);
    return true;
  }

  /** Closes the link, telling the other side why; safe to call twice. */
  close(reason: keyof typeof CloseCode): void {
    if (this.#phase.name === 'closed') return;
    this.#ws.close(CloseCode[reason], reason);
    this.#finish(reason);
  }

  #receive(data: Buffer, isBinary: boolean): void {
    const phase = this.#phase;
    if (phase.name === 'closed') return;
    this.lastRxAt = this.#deps.clock.now();
    if (!isBinary) {
      this.#abort('malformed');
      return;
    }
    switch (phase.name) {
      case 'listener-hello': {
        const step = listenerRespond(this.#deps.keys, this.#deps.self, data);
        if (!step.ok) {
          this.#abort(step.reason);
          return;
        }
        this.#phase = { name: 'listener-proof', state: step.state };
        this.#ws.send(step.message);
        return;
      }
      case 'dialer-hello': {
        const step = dialerFinish(this.#deps.keys, phase.state, data);
        if (!step.ok) {
          this.#abort(step.reason);
          return;
        }
        this.#ws.send(step.message);
        this.#up(step.remote, step.session.send, step.session.receive);
        return;
      }
      case 'listener-proof': {
        const step = listenerFinish(this.#deps.keys, phase.state, data);
        if (!step.ok) {
          this.#abort(step.reason);
          return;
        }
        this.#up(step.remote, step.session.send, step.session.receive);
        return;
      }
      case 'up': {
        this.#count('rx', data.length);
        const plaintext = phase.opener.open(data);
        if (!plaintext) {
          // A frame that fails authentication means tampering or a broken stream: the counter
          // nonces are now out of step, so the link cannot continue.
          this.#deps.metrics.framesRejected.inc({ reason: 'auth' });
          this.#abort('auth');
          return;
        }
        const parsed = parseMessage(plaintext);
        if (!parsed.ok) {
          this.#deps.metrics.framesRejected.inc({ reason: parsed.reason });
          return;
        }
        this.#handle(parsed.message);
        return;
      }
    }
  }

  #handle(message: LinkMessage): void {
    if (message.t === 'ping') {
      this.send({ t: 'pong', ts: message.ts });
      if (message.rtt !== undefined) this.rttMs = message.rtt;
    } else if (message.t === 'pong') {
      this.rttMs = smoothRtt(this.rttMs, performance.now() - message.ts, ++this.#rttSamples);
    } else {
      try {
        this.#deps.handler.message(this, message);
      } catch (err) {
        // A bug of ours, or a message no check foresaw: it must not take the server down.
        this.#deps.metrics.framesRejected.inc({ reason: 'failed' });
        this.#deps.log.error(
          { err, type: message.t, peer: this.remote?.id },
          'a link message could not be handled',
        );
      }
    }
  }

  #up(remote: HandshakeParty, sendKey: Buffer, receiveKey: Buffer): void {
    this.remote = remote;
    this.upAt = this.#deps.clock.now();
    const { metrics } = this.#deps;
    const child = (direction: 'tx' | 'rx') => ({
      bytes: metrics.tally(metrics.linkBytes, { peer: remote.id, direction }),
      frames: metrics.tally(metrics.linkFrames, { peer: remote.id, direction }),
    });
    this.#counters = { tx: child('tx'), rx: child('rx') };
    this.#phase = { name: 'up', sealer: new FrameSealer(sendKey), opener: new FrameOpener(receiveKey) };
    this.#handshakeTimer();
    this.heartbeat();
    this.#watchdog();
    this.#deps.handler.up(this);
  }

  /**
   * Heartbeats: one end of each link (`pingsOn`) pings at every call and tells the other end the
   * RTT it measured; the other end answers. Either end declares the link dead when nothing at all
   * arrived for `failureTimeoutMs`, checked by a timer armed for exactly that deadline.
   */
  heartbeat(): void {
    if (this.#phase.name !== 'up' || !pingsOn(this.#deps.self.id, this.remote!.id)) return;
    this.send({
      t: 'ping',
      ts: performance.now(),
      ...(this.rttMs === undefined ? {} : { rtt: this.rttMs }),
    });
  }

  #watchdog(): void {
    if (this.#phase.name !== 'up') return;
    const silentFor = this.#deps.clock.now() - this.lastRxAt;
    if (silentFor >= this.#options.failureTimeoutMs) {
      this.#abort('timeout');
      return;
    }
    this.#watchdogTimer = this.#deps.clock.setTimer(
      () => this.#watchdog(),
      this.#options.failureTimeoutMs - silentFor,
    );
  }

  #abort(reason: HandshakeRejection | keyof typeof CloseCode): void {
    if (this.#phase.name !== 'up' && this.#phase.name !== 'closed') {
      this.#deps.metrics.handshakesRejected.inc({ reason });
      this.#deps.log.debug(
        { reason, remote: this.remoteAddress, direction: this.direction },
        'link handshake failed',
      );
    }
    this.close(reason);
  }

  #finish(reason: CloseReason): void {
    const wasUp = this.#phase.name === 'up';
    const wasOpen = this.#phase.name !== 'closed';
    if (!wasOpen) return;
    if (!wasUp && reason in CloseCode && this.direction === 'outbound' && isRejection(reason)) {
      // The listener refused our handshake and told us why.
      this.#deps.metrics.handshakesRejected.inc({ reason });
    } else if (!wasUp && reason === 'too_large') {
      // A message over maxFrameBytes before any handshake: no peer of ours sends one.
      this.#deps.metrics.handshakesRejected.inc({ reason });
    }
    this.#phase = { name: 'closed' };
    if (this.#counters)
      for (const { bytes, frames } of Object.values(this.#counters)) {
        bytes.close();
        frames.close();
      }
    this.#handshakeTimer();
    this.#watchdogTimer?.();
    if (this.#ws.readyState === this.#ws.OPEN || this.#ws.readyState === this.#ws.CONNECTING) {
      this.#ws.terminate();
    }
    this.#deps.handler.closed(this, reason);
  }

  #count(direction: 'tx' | 'rx', bytes: number): void {
    const counters = this.#counters!;
    counters[direction].bytes.add(bytes);
    counters[direction].frames.add();
  }
}

/**
 * Whether `self` is the end of its link to `remote` that pings: exactly one of the two, and about
 * half the links of every peer (an order by id alone would leave the lowest id pinging them all).
 */
export function pingsOn(self: string, remote: string): boolean {
  const flip = (self.charCodeAt(self.length - 1) ^ remote.charCodeAt(remote.length - 1)) & 1;
  return self < remote !== (flip === 1);
}

function isRejection(reason: CloseReason): boolean {
  return ['malformed', 'version', 'cluster', 'auth', 'self', 'busy', 'retired'].includes(reason);
}
