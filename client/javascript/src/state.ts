/**
 * A deployment's current state, folded from its events: what the server's
 * `deployment.snapshot` carries, computed the same way on the client.
 *
 * The rules are the project's (`handlers/state.py` on the server), written
 * down once as data in `conformance/state.json`, which the tests run through
 * this class:
 *
 * - **Order.** Events are folded in `seq` order (the client's sequencing
 *   guarantees it), but `seq` order is not always the order things happened
 *   in, so each field remembers the *key* of the event that set it: the
 *   producer's `timestamp` (epoch milliseconds; a missing or unreadable one
 *   sorts first), then `seq`. A field only takes a value from a newer key.
 * - **Status ranks.** `pending` < `deploying` < terminal (`succeeded`,
 *   `failed`, `cancelled`) for the deployment; `pending` < `deploying` <
 *   `deployed` / `failed` / `cancelled` for a stack. A status only moves
 *   forward; between two of the same rank the newer key wins.
 * - **Attempts.** The first event starts attempt 1. A non-terminal
 *   `deployment.status` newer than a terminal one starts attempt `n + 1`,
 *   with fresh stacks, `current_layer`, `log_counts` and `recent_logs`
 *   (`total_layers` is kept unless named). An event older than the running
 *   attempt's start belongs to an earlier one: it only moves `updated_at`.
 * - **Layers.** A status without `current_layer` / `total_layers` keeps the
 *   last known values.
 * - **Logs.** `log_counts` per level; `recent_logs` the latest
 *   {@link RECENT_LOGS} by key, oldest first, each message cut to
 *   {@link LOG_MESSAGE_CHARS} characters.
 * - **Other types** only move `updated_at` and `environment`.
 *
 * Beyond the snapshot's fields, the state keeps two things a view wants and
 * the snapshot does not carry, by the same newest-key rule: the attempt's
 * terminal `error_message` / `duration_seconds` and each stack's
 * `resources_done`. {@link DeploymentState.toSnapshot} leaves them out.
 *
 * Pure TypeScript, no I/O and no DOM.
 */

import { type AnyDeploymentEvent, type DeploymentStatus, type JsonObject, type JsonValue, type SnapshotMessage } from "./protocol.js";

/** How many of the attempt's latest log lines the state keeps (the server's limit). */
export const RECENT_LOGS = 50;
/** Longest message kept in `recent_logs` (the server keeps the state in one item). */
export const LOG_MESSAGE_CHARS = 500;

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
  stacks: Record<string, StackSnapshot>;
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
  /** It belongs to an earlier attempt: only `updated_at` may have moved. */
  | "late"
  /** Folded into the running attempt. */
  | "folded"
  /** It started a new attempt (fresh stacks, layer and logs), then was folded. */
  | "new-attempt";

/** `[epoch ms or null, seq]`: how two events that set one field are ordered (null sorts first). */
type Key = readonly [number | null, number];

const NEVER: Key = [null, -1];
const TERMINAL = new Set<string>(["succeeded", "failed", "cancelled"]);
const DEPLOYMENT_RANK: Record<string, number> = { pending: 0, deploying: 1, succeeded: 2, failed: 2, cancelled: 2 };
const STACK_RANK: Record<string, number> = { pending: 0, deploying: 1, deployed: 2, failed: 2, cancelled: 2 };
/** The stack status each stack event type sets. */
const STACK_STATUS: Record<string, StackStatus> = {
  "stack.started": "deploying",
  "stack.progress": "deploying",
  "stack.deployed": "deployed",
  "stack.failed": "failed",
  "stack.cancelled": "cancelled",
};

/** Whether an event type changes a stack (and which status it sets). */
export function stackStatusOf(type: string): StackStatus | undefined {
  return Object.hasOwn(STACK_STATUS, type) ? STACK_STATUS[type] : undefined;
}

/**
 * An ISO 8601 timestamp as epoch milliseconds, UTC when it names no zone (as
 * the server reads it: `Date.parse` alone would take such a time as local);
 * null when unreadable.
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

function newer(key: Key, than: Key | undefined): boolean {
  const other = than ?? NEVER;
  const a = key[0] ?? -1;
  const b = other[0] ?? -1;
  return a !== b ? a > b : key[1] > other[1];
}

function isInt(value: JsonValue | undefined): value is number {
  return typeof value === "number" && Number.isInteger(value);
}

function asInt(value: JsonValue | undefined): number | null {
  return isInt(value) ? value : null;
}

function asNumber(value: JsonValue | undefined): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function asText(value: JsonValue | undefined): string | null {
  return typeof value === "string" && value !== "" ? value : null;
}

/** The `recent_logs` entry of a `log.created` event (what the server stores). */
export function logEntryOf(event: AnyDeploymentEvent): LogEntry {
  const data = event.data;
  const message = data["message"];
  return {
    level: asText(data["level"]) ?? "info",
    message: (typeof message === "string" ? message : "").slice(0, LOG_MESSAGE_CHARS),
    stack_name: asText(data["stack_name"]),
    seq: event.seq,
    timestamp: asText(event.timestamp),
  };
}

/** The ordering key of a log line. */
function logKey(line: LogEntry): Key {
  return [epochMs(line.timestamp), line.seq];
}

/** A field's value with the key of the event that set it. */
class Fields {
  readonly keys = new Map<string, Key>();

  /** Records that `name` was set by `key` if `value` is known and `key` is newer; returns whether to set it. */
  take(name: string, value: unknown, key: Key): boolean {
    if (value === null || value === undefined || !newer(key, this.keys.get(name))) {
      return false;
    }
    this.keys.set(name, key);
    return true;
  }
}

interface MutableStack extends StackState {
  readonly fields: Fields;
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
  #stacks = new Map<string, MutableStack>();
  #logCounts = new Map<string, number>();
  #recentLogs: LogEntry[] = [];
  readonly #fields = new Fields();

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
  /** The earliest producer time of the running attempt. */
  get startedAt(): string | null {
    return this.#startedAt;
  }
  /** The newest producer time of any event. */
  get updatedAt(): string | null {
    return this.#updatedAt;
  }
  get environment(): string | null {
    return this.#environment;
  }
  /** The attempt's terminal `error_message`, when a status carried one (not in the snapshot). */
  get errorMessage(): string | null {
    return this.#errorMessage;
  }
  /** The attempt's `duration_seconds`, when a status carried one (not in the snapshot). */
  get durationSeconds(): number | null {
    return this.#durationSeconds;
  }
  /** Whether the running attempt has ended (succeeded, failed or cancelled). */
  get terminal(): boolean {
    return TERMINAL.has(this.#status);
  }
  /** The attempt's stacks, in the order they first appeared. */
  get stacks(): ReadonlyMap<string, Readonly<StackState>> {
    return this.#stacks;
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
    if (event.deployment_id !== this.deploymentId || event.seq <= this.#seq) {
      return "stale";
    }
    this.#seq = event.seq;
    const data = event.data;
    const timestamp = asText(event.timestamp);
    const key: Key = [epochMs(timestamp), event.seq];
    const fields = this.#fields;
    if (timestamp !== null && newer(key, fields.keys.get("updated_at"))) {
      this.#updatedAt = timestamp;
      fields.keys.set("updated_at", key);
    }

    const status = event.type === "deployment.status" ? data["status"] : undefined;
    const known = typeof status === "string" && Object.hasOwn(DEPLOYMENT_RANK, status);
    let result: FoldResult = "folded";
    if (
      this.#attempt === 0 ||
      (known && !TERMINAL.has(status) && TERMINAL.has(this.#status) && newer(key, fields.keys.get("status")))
    ) {
      this.#newAttempt(key, timestamp);
      result = "new-attempt";
    } else if (this.#attempt > 1 && newer(fields.keys.get("attempt") ?? NEVER, key)) {
      return "late"; // an earlier attempt's event, arriving late
    }

    const startedKey = fields.keys.get("started_at");
    if (timestamp !== null && (this.#startedAt === null || (startedKey !== undefined && newer(startedKey, key)))) {
      this.#startedAt = timestamp;
      fields.keys.set("started_at", key);
    }
    const environment = asText(data["environment"]);
    if (fields.take("environment", environment, key)) {
      this.#environment = environment;
    }

    if (event.type === "deployment.status") {
      this.#foldStatus(known ? (status as DeploymentStatus) : null, data, key);
    } else {
      const stackStatus = stackStatusOf(event.type);
      if (stackStatus !== undefined) {
        this.#foldStack(stackStatus, data, key);
      } else if (event.type === "log.created") {
        this.#foldLog(logEntryOf(event), key);
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
      stacks,
      log_counts: Object.fromEntries(this.#logCounts),
      recent_logs: this.#recentLogs.map((line) => ({ ...line })),
    };
  }

  // -- folding ---------------------------------------------------------------------------------

  #newAttempt(key: Key, timestamp: string | null): void {
    this.#attempt += 1;
    this.#status = "pending";
    this.#currentLayer = null;
    this.#stacks = new Map();
    this.#logCounts = new Map();
    this.#recentLogs = [];
    this.#startedAt = timestamp;
    this.#errorMessage = null;
    this.#durationSeconds = null;
    const keys = this.#fields.keys;
    for (const name of ["status", "current_layer", "started_at", "error_message", "duration_seconds"]) {
      keys.delete(name);
    }
    keys.set("attempt", key);
    if (timestamp !== null) {
      keys.set("started_at", key);
    }
  }

  #foldStatus(status: DeploymentStatus | null, data: JsonObject, key: Key): void {
    const fields = this.#fields;
    if (status !== null) {
      const rank = DEPLOYMENT_RANK[status] ?? 0;
      const current = DEPLOYMENT_RANK[this.#status] ?? 0;
      if (rank > current || (rank === current && newer(key, fields.keys.get("status")))) {
        this.#status = status;
        fields.keys.set("status", key);
      }
    }
    const layer = asInt(data["current_layer"]);
    if (fields.take("current_layer", layer, key)) {
      this.#currentLayer = layer;
    }
    const total = asInt(data["total_layers"]);
    if (fields.take("total_layers", total, key)) {
      this.#totalLayers = total;
    }
    // Not in the snapshot: what a view shows of a finished attempt.
    const error = asText(data["error_message"]);
    if (fields.take("error_message", error, key)) {
      this.#errorMessage = error;
    }
    const duration = asNumber(data["duration_seconds"]);
    if (fields.take("duration_seconds", duration, key)) {
      this.#durationSeconds = duration;
    }
  }

  #foldStack(status: StackStatus, data: JsonObject, key: Key): void {
    const name = asText(data["stack_name"]);
    if (name === null) {
      return;
    }
    let stack = this.#stacks.get(name);
    if (stack === undefined) {
      stack = newStack(name);
      this.#stacks.set(name, stack);
    }
    const rank = STACK_RANK[status] ?? 0;
    const current = STACK_RANK[stack.status] ?? 0;
    if (rank > current || (rank === current && newer(key, stack.fields.keys.get("status")))) {
      stack.status = status;
      stack.fields.keys.set("status", key);
    }
    const layer = asInt(data["layer"]);
    if (stack.fields.take("layer", layer, key)) {
      stack.layer = layer;
    }
    const environment = asText(data["environment"]);
    if (stack.fields.take("environment", environment, key)) {
      stack.environment = environment;
    }
    const resources = asInt(data["resource_count"]);
    if (stack.fields.take("resource_count", resources, key)) {
      stack.resource_count = resources;
    }
    const duration = asNumber(data["duration_seconds"]);
    if (stack.fields.take("duration_seconds", duration, key)) {
      stack.duration_seconds = duration;
    }
    const error = asText(data["error_message"]);
    if (stack.fields.take("error_message", error, key)) {
      stack.error_message = error;
    }
    const done = asInt(data["resources_done"]);
    if (stack.fields.take("resources_done", done, key)) {
      stack.resources_done = done;
    }
  }

  #foldLog(line: LogEntry, key: Key): void {
    this.#logCounts.set(line.level, (this.#logCounts.get(line.level) ?? 0) + 1);
    const logs = this.#recentLogs;
    let position = logs.length;
    while (position > 0 && newer(logKey(logs[position - 1] as LogEntry), key)) {
      position -= 1;
    }
    logs.splice(position, 0, line);
    if (logs.length > RECENT_LOGS) {
      logs.splice(0, logs.length - RECENT_LOGS);
    }
  }

  /**
   * Takes a snapshot as the starting point. The snapshot does not say which
   * event set each field, so every field it gives a value is taken as set at
   * the snapshot's horizon (its `updated_at`, at its `seq`): a later event
   * changes it only when newer than everything the snapshot summarised,
   * which is what it would do on the server unless producers' clocks
   * disagree. Fields it leaves null, `started_at` and the attempt's start
   * are exact: any event may fill the former, and the latter two are times
   * the snapshot gives.
   */
  #adopt(seq: number, data: DeploymentSnapshotData): void {
    this.#seq = seq;
    this.#status = data.status;
    this.#attempt = data.attempt;
    this.#currentLayer = data.current_layer;
    this.#totalLayers = data.total_layers;
    this.#startedAt = data.started_at;
    this.#updatedAt = data.updated_at;
    this.#environment = data.environment;
    const horizon: Key = [epochMs(data.updated_at), seq];
    const keys = this.#fields.keys;
    keys.clear();
    if (data.updated_at !== null) {
      keys.set("updated_at", horizon);
    }
    // The attempt's start is its started_at: no event of the attempt is older.
    keys.set("attempt", [epochMs(data.started_at), seq]);
    if (data.started_at !== null) {
      keys.set("started_at", [epochMs(data.started_at), seq]);
    }
    const known: [string, unknown][] = [
      ["current_layer", data.current_layer],
      ["total_layers", data.total_layers],
      ["environment", data.environment],
    ];
    // A pending status may never have been set by an event: any status can follow it.
    if (data.status !== "pending") {
      keys.set("status", horizon);
    }
    for (const [name, value] of known) {
      if (value !== null) {
        keys.set(name, horizon);
      }
    }
    this.#stacks = new Map();
    for (const [name, snapshot] of Object.entries(data.stacks)) {
      const stack = newStack(name);
      Object.assign(stack, snapshot);
      for (const field of ["status", "layer", "environment", "resource_count", "duration_seconds", "error_message"] as const) {
        if (stack[field] !== null && !(field === "status" && stack.status === "pending")) {
          stack.fields.keys.set(field, horizon);
        }
      }
      this.#stacks.set(name, stack);
    }
    this.#logCounts = new Map(Object.entries(data.log_counts));
    this.#recentLogs = data.recent_logs.map((line) => ({ ...line }));
  }
}

function newStack(name: string): MutableStack {
  return {
    name,
    status: "pending",
    layer: null,
    environment: null,
    resource_count: null,
    duration_seconds: null,
    error_message: null,
    resources_done: null,
    fields: new Fields(),
  };
}

/**
 * A snapshot's `data` read defensively: a field of the wrong type takes its
 * "nothing known" value, so a newer server's additions or a damaged field
 * never break a view.
 */
export function parseSnapshotData(data: JsonObject): DeploymentSnapshotData {
  const status = data["status"];
  const stacks: Record<string, StackSnapshot> = {};
  const rawStacks = data["stacks"];
  if (isObject(rawStacks)) {
    for (const [name, raw] of Object.entries(rawStacks)) {
      if (!isObject(raw)) {
        continue;
      }
      const stackStatus = raw["status"];
      stacks[name] = {
        status: typeof stackStatus === "string" && Object.hasOwn(STACK_RANK, stackStatus) ? (stackStatus as StackStatus) : "pending",
        layer: asInt(raw["layer"]),
        environment: asText(raw["environment"]),
        resource_count: asInt(raw["resource_count"]),
        duration_seconds: asNumber(raw["duration_seconds"]),
        error_message: asText(raw["error_message"]),
      };
    }
  }
  const logCounts: Record<string, number> = {};
  const rawCounts = data["log_counts"];
  if (isObject(rawCounts)) {
    for (const [level, count] of Object.entries(rawCounts)) {
      if (isInt(count) && count >= 0) {
        logCounts[level] = count;
      }
    }
  }
  const recentLogs: LogEntry[] = [];
  const rawLogs = data["recent_logs"];
  if (Array.isArray(rawLogs)) {
    for (const raw of rawLogs) {
      if (isObject(raw) && isInt(raw["seq"])) {
        const message = raw["message"];
        recentLogs.push({
          level: asText(raw["level"]) ?? "info",
          message: typeof message === "string" ? message : "",
          stack_name: asText(raw["stack_name"]),
          seq: raw["seq"],
          timestamp: asText(raw["timestamp"]),
        });
      }
    }
  }
  const attempt = asInt(data["attempt"]);
  return {
    status: typeof status === "string" && Object.hasOwn(DEPLOYMENT_RANK, status) ? (status as DeploymentStatus) : "pending",
    attempt: attempt !== null && attempt >= 0 ? attempt : 0,
    current_layer: asInt(data["current_layer"]),
    total_layers: asInt(data["total_layers"]),
    started_at: asText(data["started_at"]),
    updated_at: asText(data["updated_at"]),
    environment: asText(data["environment"]),
    stacks,
    log_counts: logCounts,
    recent_logs: recentLogs,
  };
}

function isObject(value: JsonValue | undefined): value is { [key: string]: JsonValue } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
