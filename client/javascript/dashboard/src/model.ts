/**
 * The dashboard's picture of one deployment, built from its events.
 *
 * Every event is applied idempotently: applying one twice changes nothing,
 * and a late arrival never regresses the picture (transport order is best
 * effort). A stack's state only moves forward — started/progress, then
 * deployed or failed — and between two states of the same rank the one with
 * the newer producer timestamp wins (seq breaks ties). The deployment's status
 * follows the same rule (pending < deploying < terminal) and its layer never
 * goes back.
 *
 * Pure TypeScript, no DOM: the view renders it, the tests check it in Node.
 */

import {
  type AnyDeploymentEvent,
  type DeploymentStatus,
  DEPLOYMENT_STATUSES,
  type JsonObject,
  LOG_LEVELS,
  type LogLevel,
  isTerminalStatus,
} from "../../src/index.js";

export type StackState = "running" | "deployed" | "failed";

export interface StackView {
  name: string;
  state: StackState;
  layer: number | undefined;
  environment: string | undefined;
  /** Seconds the stack took (deployed or failed). */
  durationSeconds: number | undefined;
  /** Resources of a deployed stack. */
  resourceCount: number | undefined;
  /** Resources done so far while running. */
  resourcesDone: number | undefined;
  error: string | undefined;
  startedAt: string | undefined;
  /** The seq of the event that set the state (and first seen, for a stable order). */
  stateSeq: number;
  firstSeq: number;
  /** Ordering key of the state: (rank, time, seq). */
  stateKey: OrderKey;
}

export interface LogLine {
  seq: number;
  timestamp: string | undefined;
  level: LogLevel;
  message: string;
  stackName: string | undefined;
}

export type LayerState = "pending" | "active" | "done" | "failed" | "skipped";

export interface LayerView {
  number: number;
  state: LayerState;
  stacks: StackView[];
}

interface OrderKey {
  rank: number;
  time: number;
  seq: number;
}

const STACK_RANK: Record<StackState, number> = { running: 1, deployed: 2, failed: 2 };
const STATUS_RANK: Record<DeploymentStatus, number> = {
  pending: 0,
  deploying: 1,
  succeeded: 2,
  failed: 2,
  cancelled: 2,
};

export class DeploymentModel {
  readonly deploymentId: string;
  status: DeploymentStatus | undefined;
  currentLayer: number | undefined;
  totalLayers: number | undefined;
  error: string | undefined;
  durationSeconds: number | undefined;
  startedAt: string | undefined;
  lastTimestamp: string | undefined;
  /** Highest seq applied, and how many distinct events were. */
  lastSeq = 0;
  eventCount = 0;
  readonly stacks = new Map<string, StackView>();
  readonly logs: LogLine[] = [];
  /** Events of types the dashboard does not draw, by type. */
  readonly otherEvents = new Map<string, number>();

  #statusKey: OrderKey = { rank: -1, time: -Infinity, seq: -1 };
  readonly #seen = new Set<string>();

  constructor(deploymentId: string) {
    this.deploymentId = deploymentId;
  }

  /** Applies one event; returns false when it was already applied (or is not this deployment's). */
  apply(event: AnyDeploymentEvent): boolean {
    if (event.deployment_id !== this.deploymentId) {
      return false;
    }
    const identity = event.event_id ?? `seq:${event.seq}`;
    if (this.#seen.has(identity) || this.#seen.has(`seq:${event.seq}`)) {
      return false;
    }
    this.#seen.add(identity);
    this.#seen.add(`seq:${event.seq}`);
    this.eventCount += 1;
    this.lastSeq = Math.max(this.lastSeq, event.seq);
    if (event.timestamp !== undefined) {
      if (this.startedAt === undefined || event.timestamp < this.startedAt) {
        this.startedAt = event.timestamp;
      }
      if (this.lastTimestamp === undefined || event.timestamp > this.lastTimestamp) {
        this.lastTimestamp = event.timestamp;
      }
    }
    const data = event.data;
    switch (event.type) {
      case "deployment.status":
        this.#applyStatus(event, data);
        break;
      case "stack.started":
      case "stack.progress":
        this.#applyStack(event, data, "running");
        break;
      case "stack.deployed":
        this.#applyStack(event, data, "deployed");
        break;
      case "stack.failed":
        this.#applyStack(event, data, "failed");
        break;
      case "log.created":
        this.#applyLog(event, data);
        break;
      default:
        this.otherEvents.set(event.type, (this.otherEvents.get(event.type) ?? 0) + 1);
    }
    return true;
  }

  get terminal(): boolean {
    return isTerminalStatus(this.status);
  }

  /** Stacks in the order they first appeared. */
  get stackList(): StackView[] {
    return [...this.stacks.values()].sort((a, b) => a.firstSeq - b.firstSeq);
  }

  count(state: StackState): number {
    let n = 0;
    for (const stack of this.stacks.values()) {
      if (stack.state === state) {
        n += 1;
      }
    }
    return n;
  }

  /** Layers 1…total (or as many as stacks name), each with its stacks and a state. */
  get layers(): LayerView[] {
    let total = this.totalLayers ?? 0;
    for (const stack of this.stacks.values()) {
      total = Math.max(total, stack.layer ?? 0);
    }
    const current = this.currentLayer ?? 0;
    const layers: LayerView[] = [];
    for (let number = 1; number <= total; number += 1) {
      const stacks = this.stackList.filter((s) => s.layer === number);
      layers.push({ number, stacks, state: this.#layerState(number, current, stacks) });
    }
    return layers;
  }

  /** Stacks whose events named no layer. */
  get unlayeredStacks(): StackView[] {
    return this.stackList.filter((s) => s.layer === undefined);
  }

  /** Fraction of the deployment done, 0…1, from the layers (or stacks when no layers are known). */
  get progress(): number {
    if (this.status === "succeeded") {
      return 1;
    }
    const layers = this.layers;
    if (layers.length > 0) {
      let done = 0;
      for (const layer of layers) {
        if (layer.state === "done") {
          done += 1;
        } else if (layer.state === "active" || layer.state === "failed") {
          const finished = layer.stacks.filter((s) => s.state !== "running").length;
          done += layer.stacks.length > 0 ? (finished / layer.stacks.length) * 0.99 : 0;
        }
      }
      return Math.min(1, done / layers.length);
    }
    const stacks = this.stacks.size;
    return stacks === 0 ? 0 : (stacks - this.count("running")) / stacks;
  }

  #layerState(number: number, current: number, stacks: StackView[]): LayerState {
    if (stacks.some((s) => s.state === "failed")) {
      return "failed";
    }
    const allDeployed = stacks.length > 0 && stacks.every((s) => s.state === "deployed");
    if (this.status === "succeeded" || (allDeployed && number < current)) {
      return "done";
    }
    if (number < current && stacks.length === 0) {
      return "done";
    }
    if (this.terminal) {
      return allDeployed ? "done" : number > current || stacks.length === 0 ? "skipped" : "failed";
    }
    if (number === current || stacks.some((s) => s.state === "running")) {
      return "active";
    }
    return allDeployed ? "done" : "pending";
  }

  #applyStatus(event: AnyDeploymentEvent, data: JsonObject): void {
    const status = data["status"];
    if (typeof status !== "string" || !(DEPLOYMENT_STATUSES as readonly string[]).includes(status)) {
      return;
    }
    const typed = status as DeploymentStatus;
    const layer = count(data["current_layer"]);
    if (layer !== undefined) {
      this.currentLayer = Math.max(this.currentLayer ?? 0, layer); // the layer never goes back
    }
    const total = count(data["total_layers"]);
    if (total !== undefined) {
      this.totalLayers = total;
    }
    const key = orderKey(STATUS_RANK[typed], event);
    if (!newer(key, this.#statusKey)) {
      return;
    }
    this.#statusKey = key;
    this.status = typed;
    const error = data["error_message"];
    if (typeof error === "string") {
      this.error = error;
    }
    const duration = seconds(data["duration_seconds"]);
    if (duration !== undefined) {
      this.durationSeconds = duration;
    }
  }

  #applyStack(event: AnyDeploymentEvent, data: JsonObject, state: StackState): void {
    const name = data["stack_name"];
    if (typeof name !== "string" || name === "") {
      return;
    }
    let stack = this.stacks.get(name);
    if (stack === undefined) {
      stack = {
        name,
        state,
        layer: undefined,
        environment: undefined,
        durationSeconds: undefined,
        resourceCount: undefined,
        resourcesDone: undefined,
        error: undefined,
        startedAt: undefined,
        stateSeq: -1,
        firstSeq: event.seq,
        stateKey: { rank: -1, time: -Infinity, seq: -1 },
      };
      this.stacks.set(name, stack);
    }
    stack.firstSeq = Math.min(stack.firstSeq, event.seq);
    stack.layer ??= count(data["layer"]);
    const environment = data["environment"];
    if (stack.environment === undefined && typeof environment === "string") {
      stack.environment = environment;
    }
    if (event.type === "stack.started" && event.timestamp !== undefined) {
      stack.startedAt = event.timestamp;
    }
    const done = count(data["resources_done"]);
    if (done !== undefined) {
      stack.resourcesDone = Math.max(stack.resourcesDone ?? 0, done);
    }
    const key = orderKey(STACK_RANK[state], event);
    if (!newer(key, stack.stateKey)) {
      return; // a late arrival: never regress
    }
    stack.stateKey = key;
    stack.stateSeq = event.seq;
    stack.state = state;
    if (state === "running") {
      return;
    }
    stack.durationSeconds = seconds(data["duration_seconds"]) ?? stack.durationSeconds;
    if (state === "deployed") {
      stack.resourceCount = count(data["resource_count"]) ?? stack.resourceCount;
      stack.error = undefined;
    } else {
      const error = data["error_message"];
      stack.error = typeof error === "string" ? error : "unknown error";
    }
  }

  #applyLog(event: AnyDeploymentEvent, data: JsonObject): void {
    const level = data["level"];
    const message = data["message"];
    const stackName = data["stack_name"];
    const line: LogLine = {
      seq: event.seq,
      timestamp: event.timestamp,
      level: typeof level === "string" && (LOG_LEVELS as readonly string[]).includes(level) ? (level as LogLevel) : "info",
      message: typeof message === "string" ? message : JSON.stringify(message ?? ""),
      stackName: typeof stackName === "string" ? stackName : undefined,
    };
    // Keep seq order even if a caller applies out of order (the client never does).
    let index = this.logs.length;
    while (index > 0 && (this.logs[index - 1]?.seq ?? 0) > line.seq) {
      index -= 1;
    }
    this.logs.splice(index, 0, line);
  }
}

function orderKey(rank: number, event: AnyDeploymentEvent): OrderKey {
  const time = event.timestamp === undefined ? Number.NaN : Date.parse(event.timestamp);
  return { rank, time: Number.isNaN(time) ? -Infinity : time, seq: event.seq };
}

function newer(candidate: OrderKey, current: OrderKey): boolean {
  if (candidate.rank !== current.rank) {
    return candidate.rank > current.rank;
  }
  if (candidate.time !== current.time) {
    return candidate.time > current.time;
  }
  return candidate.seq >= current.seq;
}

function count(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : undefined;
}

function seconds(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/** "4m 05s", "58s", "1h 02m". */
export function formatDuration(totalSeconds: number | undefined): string {
  if (totalSeconds === undefined) {
    return "";
  }
  const s = Math.round(totalSeconds);
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  }
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
