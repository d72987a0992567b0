/**
 * A deployment's current state, folded from its events: what the server's
 * `deployment.snapshot` carries, computed the same way on the client.
 *
 * The rules are the project's (`contract/state.py` on the server), written
 * down once as data in `conformance/state.json`, which the tests run through
 * this class:
 *
 * - **Order.** Events are folded in `seq` order (the client's sequencing
 *   guarantees it) and the later event wins: `seq` order is the producer's
 *   emission order, while a producer's `timestamp` is only a claim (the
 *   server clamps it), so it orders nothing. A `seq` at or below the last
 *   one folded is a duplicate and is ignored.
 * - **Status ranks.** Within an attempt a status only moves forward:
 *   `pending` < `deploying` < terminal (`succeeded`, `failed`, `cancelled`)
 *   for the deployment; `pending` < `deploying` < `deployed` / `failed` /
 *   `cancelled` for a stack; between two of the same rank the later wins.
 * - **Attempts.** The first event starts attempt 1. A non-terminal
 *   `deployment.status` after a terminal one starts attempt `n + 1`, with
 *   fresh stacks, `current_layer`, `log_counts` and `recent_logs`
 *   (`total_layers` is kept unless named).
 * - **Dates.** `updated_at` / `started_at` are the timestamps of the latest
 *   event / the attempt's first event, as given.
 * - **Layers.** A status without `current_layer` / `total_layers` keeps the
 *   last known values.
 * - **Logs.** `log_counts` per level; `recent_logs` the latest
 *   {@link RECENT_LOGS}, oldest first.
 * - **Other types** only move `updated_at` and `environment`.
 * - **Bounds** ({@link LIMITS}): every text is cut to a size in bytes of its
 *   JSON encoding ({@link cut}), an attempt keeps at most `max_stacks`
 *   stacks (events about further ones are counted in
 *   `dropped_stack_events`), `log_counts` at most `max_log_levels` levels
 *   besides `other`; integers outside 0 to 2^53 - 1 and negative or
 *   non-finite durations are ignored. So a snapshot fits in 128 KB.
 *
 * - **The attempt's outcome.** A `deployment.status` carrying
 *   `error_message` / `duration_seconds` (the producer's final status) sets
 *   the attempt's; a status without them keeps them; a re-run starts without.
 *
 * Beyond the snapshot's fields, the state keeps what a view wants and the
 * snapshot does not carry, by the same later-event-wins rule: each stack's
 * `resources_done`. {@link DeploymentState.toSnapshot} leaves it out.
 *
 * Pure TypeScript, no I/O and no DOM.
 */

import { type AnyDeploymentEvent, type DeploymentStatus, type JsonObject, type JsonValue, type SnapshotMessage } from "./protocol.js";
import {
  ENVIRONMENT_BYTES,
  ERROR_MESSAGE_BYTES,
  LEVEL_BYTES,
  LOG_MESSAGE_BYTES,
  LOG_MESSAGE_CHARS as GENERATED_LOG_MESSAGE_CHARS,
  MAX_INTEGER,
  MAX_LOG_LEVELS,
  MAX_STACKS,
  OTHER_LEVEL,
  RECENT_LOGS as GENERATED_RECENT_LOGS,
  SNAPSHOT_BYTES,
  STACK_NAME_BYTES,
  STACK_STATUS as GENERATED_STACK_STATUS,
  TERMINAL_STATUSES,
  TIMESTAMP_BYTES,
} from "./protocol.generated.js";

/**
 * The limits every implementation applies: `conformance/state.json`'s
 * `limits`, generated into ./protocol.generated.ts by tools/gen_protocol.py
 * (a limit is the constant named like its key, upper-cased). Sizes of texts
 * are bytes of their compact JSON encoding in UTF-8 (see {@link cut}).
 */
export const LIMITS = Object.freeze({
  /** Log lines `recent_logs` keeps: the attempt's latest. */
  recent_logs: GENERATED_RECENT_LOGS as number,
  log_message_bytes: LOG_MESSAGE_BYTES as number,
  error_message_bytes: ERROR_MESSAGE_BYTES as number,
  stack_name_bytes: STACK_NAME_BYTES as number,
  environment_bytes: ENVIRONMENT_BYTES as number,
  level_bytes: LEVEL_BYTES as number,
  timestamp_bytes: TIMESTAMP_BYTES as number,
  /** Stacks an attempt keeps; events about further ones are counted in `dropped_stack_events`. */
  max_stacks: MAX_STACKS as number,
  /** Levels `log_counts` keeps besides `other_level`, which counts the rest. */
  max_log_levels: MAX_LOG_LEVELS as number,
  other_level: OTHER_LEVEL as string,
  /** Largest integer read (2^53 - 1: larger ones are not exact in every implementation). */
  max_integer: MAX_INTEGER as number,
  /** API Gateway's limit on one message, which a snapshot always fits in. */
  snapshot_bytes: SNAPSHOT_BYTES as number,
});

/** How many of the attempt's latest log lines the state keeps (the server's limit; generated from conformance/protocol.json). */
export const RECENT_LOGS: number = GENERATED_RECENT_LOGS;
/** Longest message kept in `recent_logs`, in bytes of its JSON encoding (so at most as many characters; generated). */
export const LOG_MESSAGE_CHARS: number = GENERATED_LOG_MESSAGE_CHARS;

/** A stack's status in the state. */
export type StackStatus = "pending" | "deploying" | "deployed" | "failed" | "cancelled";

/** One stack, as the snapshot shows it. */
export interface StackSnapshot {
  status: StackStatus;
  layer: number | null;
  environment: string | null;
  resource_count: number | null;
  duration_seconds: number | null;
  error_message: string | null;
}

/** One `log.created` line, as `recent_logs` holds it. */
export interface LogEntry {
  level: string;
  message: string;
  stack_name: string | null;
  seq: number;
  timestamp: string | null;
}

/** The `data` of a `deployment.snapshot` (docs/protocol.md). */
export interface DeploymentSnapshotData {
  status: DeploymentStatus;
  attempt: number;
  current_layer: number | null;
  total_layers: number | null;
  started_at: string | null;
  updated_at: string | null;
  environment: string | null;
  /** Why the attempt ended: the latest `deployment.status` that carried an `error_message`. */
  error_message: string | null;
  /** How long the attempt took: the latest `deployment.status` that carried a `duration_seconds`. */
  duration_seconds: number | null;
  stacks: Record<string, StackSnapshot>;
  /** The attempt's stack events about stacks beyond the first `max_stacks` (those are not kept). */
  dropped_stack_events: number;
  log_counts: Record<string, number>;
  recent_logs: LogEntry[];
}

/** A stack in the state: the snapshot's fields plus what a view wants besides. */
export interface StackState extends StackSnapshot {
  readonly name: string;
  /** Resources done so far (from `stack.progress`); not part of the snapshot. */
  resources_done: number | null;
}

/** What {@link DeploymentState.apply} did with an event. */
export type FoldResult =
  /** Its `seq` is already folded in (a duplicate, or covered by the starting snapshot). */
  | "stale"
  /** Folded into the running attempt. */
  | "folded"
  /** It started a new attempt (fresh stacks, layer and logs), then was folded. */
  | "new-attempt";

const TERMINAL: ReadonlySet<string> = new Set<string>(TERMINAL_STATUSES);
const DEPLOYMENT_RANK: Record<string, number> = { pending: 0, deploying: 1, succeeded: 2, failed: 2, cancelled: 2 };
const STACK_RANK: Record<string, number> = { pending: 0, deploying: 1, deployed: 2, failed: 2, cancelled: 2 };
/** The stack status each stack event type sets (generated from conformance/protocol.json; typed here, so a status outside StackStatus fails to compile). */
const STACK_STATUS: Readonly<Record<string, StackStatus>> = GENERATED_STACK_STATUS;

/** Whether an event type changes a stack (and which status it sets). */
export function stackStatusOf(type: string): StackStatus | undefined {
  return Object.hasOwn(STACK_STATUS, type) ? STACK_STATUS[type] : undefined;
}

/**
 * An ISO 8601 timestamp as epoch milliseconds, UTC when it names no zone (as
 * the server reads it: `Date.parse` alone would take such a time as local);
 * null when unreadable. For display only: times order nothing.
 */
export function epochMs(timestamp: unknown): number | null {
  if (typeof timestamp !== "string" || timestamp === "") {
    return null;
  }
  // A time of day with no zone after it is UTC (a date alone already parses as UTC midnight).
  const hasTime = /\d{2}:\d{2}/.test(timestamp);
  const zoned = !hasTime || /(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$/.test(timestamp) ? timestamp : `${timestamp}Z`;
  const ms = Date.parse(zoned);
  return Number.isNaN(ms) ? null : ms;
}

/** Bytes one code point takes in compact JSON written as UTF-8 (non-ASCII unescaped), as the server writes it. */
function charBytes(code: number): number {
  if (code === 0x22 || code === 0x5c || code === 0x08 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d) {
    return 2; // \" \\ \b \t \n \f \r
  }
  if (code < 0x20) {
    return 6; // \u00XX
  }
  if (code < 0x80) {
    return 1;
  }
  if (code < 0x800) {
    return 2;
  }
  return code < 0x10000 ? 3 : 4;
}

/**
 * `text` cut to at most `limit` bytes of JSON (UTF-8, quotes not counted),
 * at a code point boundary, exactly as the server cuts it (it counts code
 * points, not UTF-16 units: an emoji is one character of 4 bytes). A lone
 * surrogate becomes U+FFFD, as on the server.
 */
export function cut(text: string, limit: number): string {
  let size = 0;
  let kept = "";
  for (const char of text) {
    let code = char.codePointAt(0) ?? 0xfffd;
    let piece = char;
    if (code >= 0xd800 && code <= 0xdfff) {
      code = 0xfffd;
      piece = "\ufffd";
    }
    size += charBytes(code);
    if (size > limit) {
      break;
    }
    kept += piece;
  }
  return kept;
}

function asInt(value: JsonValue | undefined): number | null {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : null;
}

function asSeconds(value: JsonValue | undefined): number | null {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 && (!Number.isInteger(value) || Number.isSafeInteger(value)) ? value : null;
}

function asText(value: JsonValue | undefined, limit: number): string | null {
  if (typeof value !== "string" || value === "") {
    return null;
  }
  const kept = cut(value, limit);
  return kept === "" ? null : kept;
}

/** The `recent_logs` entry of a `log.created` event (what the server stores). */
export function logEntryOf(event: AnyDeploymentEvent): LogEntry {
  const data = event.data;
  const message = data["message"];
  return {
    level: asText(data["level"], LIMITS.level_bytes) ?? "info",
    message: typeof message === "string" ? cut(message, LIMITS.log_message_bytes) : "",
    stack_name: asText(data["stack_name"], LIMITS.stack_name_bytes),
    seq: event.seq,
    timestamp: asText(event.timestamp, LIMITS.timestamp_bytes),
  };
}

/** Counts `count` lines of `level`: under its own name while there is room, else under `other`. */
function countLevel(counts: Map<string, number>, level: string, count: number): void {
  let key = level;
  if (!counts.has(level) && level !== LIMITS.other_level) {
    let named = 0;
    for (const name of counts.keys()) {
      if (name !== LIMITS.other_level) {
        named += 1;
      }
    }
    if (named >= LIMITS.max_log_levels) {
      key = LIMITS.other_level;
    }
  }
  counts.set(key, (counts.get(key) ?? 0) + count);
}

/**
 * One deployment's state; give it every event in `seq` order, each once
 * (the client's delivery does that), and read it or turn it into the
 * snapshot's shape.
 */
export class DeploymentState {
  readonly deploymentId: string;
  #seq = 0;
  #status: DeploymentStatus = "pending";
  #attempt = 0;
  #currentLayer: number | null = null;
  #totalLayers: number | null = null;
  #startedAt: string | null = null;
  #updatedAt: string | null = null;
  #environment: string | null = null;
  #errorMessage: string | null = null;
  #durationSeconds: number | null = null;
  #stacks = new Map<string, StackState>();
  #droppedStackEvents = 0;
  #logCounts = new Map<string, number>();
  #recentLogs: LogEntry[] = [];

  /**
   * @param deploymentId the deployment whose events are folded (others are ignored).
   * @param start a snapshot to start from (its `seq` and `data`); without it, "nothing reported yet".
   */
  constructor(deploymentId: string, start?: { seq: number; data: DeploymentSnapshotData }) {
    this.deploymentId = deploymentId;
    if (start !== undefined) {
      this.#adopt(start.seq, start.data);
    }
  }

  /** The state a `deployment.snapshot` describes, ready to fold the events after its `seq`. */
  static fromSnapshot(message: SnapshotMessage): DeploymentState {
    return new DeploymentState(message.deployment_id, { seq: message.seq, data: parseSnapshotData(message.data) });
  }

  /** The last `seq` folded in (or the starting snapshot's); 0 before any. */
  get seq(): number {
    return this.#seq;
  }
  get status(): DeploymentStatus {
    return this.#status;
  }
  /** 0 before any event; 1 for the first run, `n + 1` for each re-run. */
  get attempt(): number {
    return this.#attempt;
  }
  get currentLayer(): number | null {
    return this.#currentLayer;
  }
  get totalLayers(): number | null {
    return this.#totalLayers;
  }
  /** The time of the running attempt's first event (as the server clamped it). */
  get startedAt(): string | null {
    return this.#startedAt;
  }
  /** The time of the latest event (as the server clamped it). */
  get updatedAt(): string | null {
    return this.#updatedAt;
  }
  get environment(): string | null {
    return this.#environment;
  }
  /** Why the attempt ended: the `error_message` of its latest status that carried one. */
  get errorMessage(): string | null {
    return this.#errorMessage;
  }
  /** How long the attempt took: the `duration_seconds` of its latest status that carried one. */
  get durationSeconds(): number | null {
    return this.#durationSeconds;
  }
  /** Whether the running attempt has ended (succeeded, failed or cancelled). */
  get terminal(): boolean {
    return TERMINAL.has(this.#status);
  }
  /** The attempt's stacks (at most `LIMITS.max_stacks`), in the order they first appeared. */
  get stacks(): ReadonlyMap<string, Readonly<StackState>> {
    return this.#stacks;
  }
  /** The attempt's stack events about stacks beyond the first `LIMITS.max_stacks` (not kept). */
  get droppedStackEvents(): number {
    return this.#droppedStackEvents;
  }
  /** The attempt's `log.created` count per level. */
  get logCounts(): ReadonlyMap<string, number> {
    return this.#logCounts;
  }
  /** The attempt's latest {@link RECENT_LOGS} log lines, oldest first. */
  get recentLogs(): readonly LogEntry[] {
    return this.#recentLogs;
  }

  /**
   * Folds one event. Give events in `seq` order: one at or below {@link seq}
   * is taken as already folded (`"stale"`) and changes nothing.
   */
  apply(event: AnyDeploymentEvent): FoldResult {
    if (event.deployment_id !== this.deploymentId || asInt(event.seq) === null || event.seq <= this.#seq) {
      return "stale";
    }
    this.#seq = event.seq;
    const data = event.data;
    const timestamp = asText(event.timestamp, LIMITS.timestamp_bytes);
    if (timestamp !== null) {
      this.#updatedAt = timestamp;
    }

    const given = event.type === "deployment.status" ? data["status"] : undefined;
    const status = typeof given === "string" && Object.hasOwn(DEPLOYMENT_RANK, given) ? (given as DeploymentStatus) : null;
    let result: FoldResult = "folded";
    if (this.#attempt === 0 || (status !== null && !TERMINAL.has(status) && TERMINAL.has(this.#status))) {
      this.#newAttempt(timestamp);
      result = "new-attempt";
    }
    if (this.#startedAt === null) {
      this.#startedAt = timestamp;
    }
    this.#environment = asText(data["environment"], LIMITS.environment_bytes) ?? this.#environment;

    if (event.type === "deployment.status") {
      this.#foldStatus(status, data);
    } else {
      const stackStatus = stackStatusOf(event.type);
      if (stackStatus !== undefined) {
        this.#foldStack(stackStatus, data);
      } else if (event.type === "log.created") {
        this.#foldLog(logEntryOf(event));
      }
    }
    return result;
  }

  /** The state in the snapshot's shape (what the server would send at {@link seq}). */
  toSnapshot(): DeploymentSnapshotData {
    const stacks: Record<string, StackSnapshot> = {};
    for (const [name, stack] of this.#stacks) {
      stacks[name] = {
        status: stack.status,
        layer: stack.layer,
        environment: stack.environment,
        resource_count: stack.resource_count,
        duration_seconds: stack.duration_seconds,
        error_message: stack.error_message,
      };
    }
    return {
      status: this.#status,
      attempt: this.#attempt,
      current_layer: this.#currentLayer,
      total_layers: this.#totalLayers,
      started_at: this.#startedAt,
      updated_at: this.#updatedAt,
      environment: this.#environment,
      error_message: this.#errorMessage,
      duration_seconds: this.#durationSeconds,
      stacks,
      dropped_stack_events: this.#droppedStackEvents,
      log_counts: Object.fromEntries(this.#logCounts),
      recent_logs: this.#recentLogs.map((line) => ({ ...line })),
    };
  }

  // -- folding ---------------------------------------------------------------------------------

  #newAttempt(timestamp: string | null): void {
    this.#attempt += 1;
    this.#status = "pending";
    this.#currentLayer = null;
    this.#startedAt = timestamp;
    this.#stacks = new Map();
    this.#droppedStackEvents = 0;
    this.#logCounts = new Map();
    this.#recentLogs = [];
    this.#errorMessage = null;
    this.#durationSeconds = null;
  }

  #foldStatus(status: DeploymentStatus | null, data: JsonObject): void {
    if (status !== null && (DEPLOYMENT_RANK[status] ?? 0) >= (DEPLOYMENT_RANK[this.#status] ?? 0)) {
      this.#status = status;
    }
    this.#currentLayer = asInt(data["current_layer"]) ?? this.#currentLayer;
    this.#totalLayers = asInt(data["total_layers"]) ?? this.#totalLayers;
    // The producer's final status says why the attempt ended and how long it took.
    this.#errorMessage = asText(data["error_message"], LIMITS.error_message_bytes) ?? this.#errorMessage;
    this.#durationSeconds = asSeconds(data["duration_seconds"]) ?? this.#durationSeconds;
  }

  #foldStack(status: StackStatus, data: JsonObject): void {
    const name = asText(data["stack_name"], LIMITS.stack_name_bytes);
    if (name === null) {
      return;
    }
    let stack = this.#stacks.get(name);
    if (stack === undefined) {
      if (this.#stacks.size >= LIMITS.max_stacks) {
        this.#droppedStackEvents += 1;
        return;
      }
      stack = newStack(name);
      this.#stacks.set(name, stack);
    }
    if ((STACK_RANK[status] ?? 0) >= (STACK_RANK[stack.status] ?? 0)) {
      stack.status = status;
    }
    stack.layer = asInt(data["layer"]) ?? stack.layer;
    stack.environment = asText(data["environment"], LIMITS.environment_bytes) ?? stack.environment;
    stack.resource_count = asInt(data["resource_count"]) ?? stack.resource_count;
    stack.duration_seconds = asSeconds(data["duration_seconds"]) ?? stack.duration_seconds;
    stack.error_message = asText(data["error_message"], LIMITS.error_message_bytes) ?? stack.error_message;
    stack.resources_done = asInt(data["resources_done"]) ?? stack.resources_done;
  }

  #foldLog(line: LogEntry): void {
    countLevel(this.#logCounts, line.level, 1);
    const logs = this.#recentLogs;
    logs.push(line);
    if (logs.length > RECENT_LOGS) {
      logs.splice(0, logs.length - RECENT_LOGS);
    }
  }

  /** Takes a snapshot as the starting point: it is the fold of every event through its `seq`, exactly. */
  #adopt(seq: number, data: DeploymentSnapshotData): void {
    this.#seq = seq;
    this.#status = data.status;
    this.#attempt = data.attempt;
    this.#currentLayer = data.current_layer;
    this.#totalLayers = data.total_layers;
    this.#startedAt = data.started_at;
    this.#updatedAt = data.updated_at;
    this.#environment = data.environment;
    this.#errorMessage = data.error_message;
    this.#durationSeconds = data.duration_seconds;
    this.#stacks = new Map();
    for (const [name, snapshot] of Object.entries(data.stacks)) {
      this.#stacks.set(name, { ...newStack(name), ...snapshot });
    }
    this.#droppedStackEvents = data.dropped_stack_events;
    this.#logCounts = new Map(Object.entries(data.log_counts));
    this.#recentLogs = data.recent_logs.map((line) => ({ ...line }));
  }
}

function newStack(name: string): StackState {
  return {
    name,
    status: "pending",
    layer: null,
    environment: null,
    resource_count: null,
    duration_seconds: null,
    error_message: null,
    resources_done: null,
  };
}

/**
 * A snapshot's `data` read defensively and within {@link LIMITS}: a field of
 * the wrong type takes its "nothing known" value, so a newer server's
 * additions or a damaged field never break a view.
 */
export function parseSnapshotData(data: JsonObject): DeploymentSnapshotData {
  const status = data["status"];
  const stacks: Record<string, StackSnapshot> = {};
  const rawStacks = data["stacks"];
  if (isObject(rawStacks)) {
    for (const [rawName, raw] of Object.entries(rawStacks)) {
      const name = asText(rawName, LIMITS.stack_name_bytes);
      if (name === null || !isObject(raw) || Object.hasOwn(stacks, name) || Object.keys(stacks).length >= LIMITS.max_stacks) {
        continue;
      }
      const stackStatus = raw["status"];
      stacks[name] = {
        status: typeof stackStatus === "string" && Object.hasOwn(STACK_RANK, stackStatus) ? (stackStatus as StackStatus) : "pending",
        layer: asInt(raw["layer"]),
        environment: asText(raw["environment"], LIMITS.environment_bytes),
        resource_count: asInt(raw["resource_count"]),
        duration_seconds: asSeconds(raw["duration_seconds"]),
        error_message: asText(raw["error_message"], LIMITS.error_message_bytes),
      };
    }
  }
  const counts = new Map<string, number>();
  const rawCounts = data["log_counts"];
  if (isObject(rawCounts)) {
    for (const [rawLevel, count] of Object.entries(rawCounts)) {
      const level = asText(rawLevel, LIMITS.level_bytes);
      const number = asInt(count);
      if (level !== null && number !== null && number > 0) {
        countLevel(counts, level, number);
      }
    }
  }
  const recentLogs: LogEntry[] = [];
  const rawLogs = data["recent_logs"];
  if (Array.isArray(rawLogs)) {
    for (const raw of rawLogs) {
      if (isObject(raw)) {
        const seq = asInt(raw["seq"]);
        if (seq === null) {
          continue;
        }
        const message = raw["message"];
        recentLogs.push({
          level: asText(raw["level"], LIMITS.level_bytes) ?? "info",
          message: typeof message === "string" ? cut(message, LIMITS.log_message_bytes) : "",
          stack_name: asText(raw["stack_name"], LIMITS.stack_name_bytes),
          seq,
          timestamp: asText(raw["timestamp"], LIMITS.timestamp_bytes),
        });
      }
    }
  }
  recentLogs.sort((a, b) => a.seq - b.seq);
  return {
    status: typeof status === "string" && Object.hasOwn(DEPLOYMENT_RANK, status) ? (status as DeploymentStatus) : "pending",
    attempt: asInt(data["attempt"]) ?? 0,
    current_layer: asInt(data["current_layer"]),
    total_layers: asInt(data["total_layers"]),
    started_at: asText(data["started_at"], LIMITS.timestamp_bytes),
    updated_at: asText(data["updated_at"], LIMITS.timestamp_bytes),
    environment: asText(data["environment"], LIMITS.environment_bytes),
    error_message: asText(data["error_message"], LIMITS.error_message_bytes),
    duration_seconds: asSeconds(data["duration_seconds"]),
    stacks,
    dropped_stack_events: asInt(data["dropped_stack_events"]) ?? 0,
    log_counts: Object.fromEntries(counts),
    recent_logs: recentLogs.slice(-RECENT_LOGS),
  };
}

function isObject(value: JsonValue | undefined): value is { [key: string]: JsonValue } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
