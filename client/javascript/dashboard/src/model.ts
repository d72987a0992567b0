/**
 * The dashboard's picture of one deployment.
 *
 * Its state is the client's {@link DeploymentState}: the project's folding
 * rules (the server's `contract/state.py`, checked against
 * `conformance/state.json`), so the page shows exactly what a
 * `deployment.snapshot` says — events in `seq` order, the later one wins
 * (a producer's clock orders nothing), status ranks, re-runs as attempts
 * with fresh stacks, layer and logs, and the same limits. What the page
 * adds is presentation: layers with a state each, a progress fraction, and
 * a log pane that keeps more lines than the snapshot's latest 50, in `seq`
 * order.
 *
 * Where the picture starts: a fresh page subscribes without `since` and
 * starts from the snapshot that follows the ack; the client then delivers
 * every later event once, in `seq` order. The model is *anchored* once it
 * knows everything up to its `seq` (it adopted a snapshot, or it folded
 * from seq 1). An event that arrives before that (a live event can overtake
 * the ack's snapshot) is folded provisionally and kept; when the snapshot
 * comes, the model restarts from it and folds the kept events after its
 * `seq`. An anchored model ignores later snapshots: after a reconnect the
 * client asks with `since`, and the replay brings exactly the missing events.
 *
 * Each stack's resources are the view's own fold, not the snapshot's: the
 * `resources` entries of its `stack.progress` events (the steps that started
 * or ended since the previous one), the later entry of a resource winning.
 * The snapshot does not carry them, so a page that started from one lists
 * the resources of the events it folded since (and of those it kept while
 * waiting for the snapshot).
 *
 * Pure TypeScript, no DOM: the view renders it, the tests check it in Node.
 */

import {
  type AnyDeploymentEvent,
  type JsonValue,
  type DeploymentStatus,
  DeploymentState,
  epochMs,
  type FoldResult,
  type LogEntry,
  logEntryOf,
  parseSnapshotData,
  type SnapshotMessage,
  stackStatusOf,
  type StackStatus,
} from "../../src/index.js";

/** Log lines kept for the pane (the oldest go beyond this). */
export const MAX_LOG_LINES = 5_000;
/** Events kept while the model is not anchored, to fold again on top of the snapshot. */
const MAX_UNANCHORED = 10_000;
/** Resources kept per stack (the oldest finished ones go beyond this). */
export const MAX_RESOURCES_PER_STACK = 5_000;

/** A resource step's status in a `stack.progress`'s `resources` entry. */
export type ResourceStatus = "running" | "done" | "failed";
const RESOURCE_STATUSES = new Set<string>(["running", "done", "failed"]);

/** One resource of a stack, as its latest `resources` entry says. */
export interface ResourceView {
  name: string;
  type: string;
  /** Pulumi's step operation (`create`, `update`, `same`, …). */
  operation: string;
  status: ResourceStatus;
  /** How long its step took (done or failed; absent when the producer did not see it start). */
  durationSeconds: number | undefined;
  /** When it was first reported running (the producer's time, epoch ms), for a running one's duration. */
  startedAt: number | undefined;
  /** The `seq` of the event that last changed it. */
  seq: number;
  /** Order of its latest change among all the stack's entries (the last finished is the highest). */
  changed: number;
}

/** A stack's resources: counts by status and the list in the order they first appeared. */
export interface StackResources {
  resources: ResourceView[];
  running: number;
  done: number;
  failed: number;
}

export interface StackView {
  name: string;
  state: StackStatus;
  layer: number | undefined;
  environment: string | undefined;
  /** Seconds the stack took (deployed or failed). */
  durationSeconds: number | undefined;
  /** Resources of a deployed stack. */
  resourceCount: number | undefined;
  /** Resources done so far while deploying. */
  resourcesDone: number | undefined;
  error: string | undefined;
  /**
   * The attempt ended while this stack was still pending or deploying (a cancelled run, or a
   * failure elsewhere): it will not move on, and no figure of it keeps counting.
   */
  stopped: boolean;
}

export interface LogLine {
  seq: number;
  timestamp: string | undefined;
  /** The producer's level (`info`, `warning`, …; any other string is kept as given). */
  level: string;
  message: string;
  stackName: string | undefined;
}

export type LayerState = "pending" | "active" | "done" | "failed" | "cancelled" | "skipped";

/** Why the server will not show this deployment (a refused subscribe, e.g. `forbidden`). */
export interface Refusal {
  code: string;
  message: string;
}

/** What the page draws above the progress bar when an attempt did not succeed. */
export interface EndBanner {
  status: "failed" | "cancelled";
  text: string;
}

/** The log pane's filter: a stack (undefined: all) and a text that a line's message, stack or level contains. */
export interface LogFilter {
  stack: string | undefined;
  text: string;
}

export interface LayerView {
  number: number;
  state: LayerState;
  stacks: StackView[];
}

export class DeploymentModel {
  readonly deploymentId: string;
  /** Distinct events folded by this page (a snapshot's history is not counted: it was not replayed). */
  eventCount = 0;
  /** The `seq` of the snapshot the picture started from (undefined when it started from events). */
  snapshotSeq: number | undefined;
  /** Events of types the dashboard does not draw, by type. */
  readonly otherEvents = new Map<string, number>();

  #state: DeploymentState;
  #anchored = false;
  /** Events folded before the model was anchored, in order. */
  #unanchored: AnyDeploymentEvent[] = [];
  #logs: LogLine[] = [];
  #logsRevision = 0;
  #refusal: Refusal | undefined;
  /** Per stack: its resources by `type` and `name` (a Map keeps the order they first appeared). */
  #resources = new Map<string, Map<string, ResourceView>>();
  #resourcesRevision = 0;
  #resourceChanges = 0;

  constructor(deploymentId: string) {
    this.deploymentId = deploymentId;
    this.#state = new DeploymentState(deploymentId);
  }

  /** The folded state (the snapshot's fields and the view's extras). */
  get state(): DeploymentState {
    return this.#state;
  }

  /**
   * Folds one event (the client delivers them once each, in `seq` order);
   * returns whether the picture may have changed.
   */
  apply(event: AnyDeploymentEvent): boolean {
    if (event.deployment_id !== this.deploymentId || event.seq <= this.#state.seq) {
      return false;
    }
    if (this.#anchored && event.seq !== this.#state.seq + 1) {
      // The client skipped a hole it could not fill: what is missing is unknown until a snapshot says.
      this.#anchored = false;
    }
    if (!this.#anchored && this.#state.seq === 0 && event.seq === 1) {
      this.#anchored = true; // nothing came before seq 1
    }
    if (!this.#anchored) {
      this.#unanchored.push(event);
      if (this.#unanchored.length > MAX_UNANCHORED) {
        this.#unanchored.shift();
      }
    }
    this.eventCount += 1;
    this.#fold(event);
    return true;
  }

  /**
   * Takes a `deployment.snapshot` as the starting point when the model does
   * not know its history yet; returns whether it did.
   */
  applySnapshot(snapshot: SnapshotMessage): boolean {
    if (snapshot.deployment_id !== this.deploymentId || this.#anchored) {
      return false;
    }
    const data = parseSnapshotData(snapshot.data);
    this.#state = new DeploymentState(this.deploymentId, { seq: snapshot.seq, data });
    this.snapshotSeq = snapshot.seq;
    this.#anchored = true;
    this.#logs = data.recent_logs.map(toLine);
    this.#logsRevision += 1;
    this.otherEvents.clear();
    // The snapshot carries no resources: keep those the kept events gave the snapshot's stacks
    // (folding the later ones again changes nothing, the later entry wins either way).
    for (const name of [...this.#resources.keys()]) {
      if (!this.#state.stacks.has(name)) {
        this.#resources.delete(name);
      }
    }
    this.#resourcesRevision += 1;
    const kept = this.#unanchored;
    this.#unanchored = [];
    for (const event of kept) {
      if (event.seq > snapshot.seq) {
        this.#fold(event);
      }
    }
    return true;
  }

  /**
   * Whether a snapshot says the server's history is behind what this page folded: its `seq`
   * below ours. A consistent history only grows (an event is stored before it is sent), so
   * the stack lost its history (a local stack restarted) or the id was reused after its
   * events expired. What the page shows belongs to a history that no longer exists: it must
   * start again from a fresh subscription (the client's own position, `since`, is as stale).
   */
  historyWentBack(snapshot: SnapshotMessage): boolean {
    return snapshot.deployment_id === this.deploymentId && snapshot.seq < this.#state.seq;
  }

  #fold(event: AnyDeploymentEvent): void {
    const result: FoldResult = this.#state.apply(event);
    if (result === "new-attempt") {
      this.#logs = [];
      this.#logsRevision += 1;
      this.#resources.clear();
      this.#resourcesRevision += 1;
    }
    if (result !== "folded" && result !== "new-attempt") {
      return;
    }
    if (event.type === "log.created") {
      this.#addLog(toLine(logEntryOf(event)));
    } else if (event.type === "stack.progress") {
      this.#foldResources(event);
    } else if (event.type !== "deployment.status" && stackStatusOf(event.type) === undefined) {
      this.otherEvents.set(event.type, (this.otherEvents.get(event.type) ?? 0) + 1);
    }
  }

  /** A `stack.progress`'s `resources` entries, each over the resource's previous one; malformed ones are skipped. */
  #foldResources(event: AnyDeploymentEvent): void {
    const stackName = event.data["stack_name"];
    const entries = event.data["resources"];
    // A stack beyond the state's limit is not shown, nor are its resources.
    if (typeof stackName !== "string" || !Array.isArray(entries) || !this.#state.stacks.has(stackName)) {
      return;
    }
    let stack = this.#resources.get(stackName);
    if (stack === undefined) {
      stack = new Map();
      this.#resources.set(stackName, stack);
    }
    const at = epochMs(event.timestamp) ?? undefined;
    for (const entry of entries) {
      const step = resourceOf(entry);
      if (step === undefined) {
        continue;
      }
      const key = `${step.type}\u0000${step.name}`;
      const previous = stack.get(key);
      // Still the step it was running: it started when first reported (an update after a
      // create in the same run starts again).
      const sameStep = previous !== undefined && previous.status === "running" && previous.operation === step.operation;
      this.#resourceChanges += 1;
      stack.set(key, {
        ...step,
        startedAt: sameStep ? previous.startedAt : step.status === "running" ? at : undefined,
        seq: event.seq,
        changed: this.#resourceChanges,
      });
    }
    if (stack.size > MAX_RESOURCES_PER_STACK) {
      for (const [key, resource] of stack) {
        if (stack.size <= MAX_RESOURCES_PER_STACK) {
          break;
        }
        if (resource.status !== "running") {
          stack.delete(key);
        }
      }
    }
    this.#resourcesRevision += 1;
  }

  #addLog(line: LogLine): void {
    // Events come in seq order, so a line always goes last: the pane is appended to.
    const logs = this.#logs;
    logs.push(line);
    if (logs.length > MAX_LOG_LINES) {
      logs.splice(0, logs.length - MAX_LOG_LINES);
      this.#logsRevision += 1;
    }
  }

  // -- what the page reads -----------------------------------------------------------------------

  /**
   * The server refused to show this deployment (its subscription is dropped); the page
   * says why and what to do instead of waiting for events that will not come.
   */
  refuse(code: string, message: string): void {
    this.#refusal = { code, message };
  }

  get refusal(): Refusal | undefined {
    return this.#refusal;
  }

  /** The last `seq` folded in (or the snapshot's). */
  get lastSeq(): number {
    return this.#state.seq;
  }
  get status(): DeploymentStatus {
    return this.#state.status;
  }
  get attempt(): number {
    return this.#state.attempt;
  }
  get currentLayer(): number | undefined {
    return this.#state.currentLayer ?? undefined;
  }
  get totalLayers(): number | undefined {
    return this.#state.totalLayers ?? undefined;
  }
  get startedAt(): string | undefined {
    return this.#state.startedAt ?? undefined;
  }
  get lastTimestamp(): string | undefined {
    return this.#state.updatedAt ?? undefined;
  }
  get durationSeconds(): number | undefined {
    return this.#state.durationSeconds ?? undefined;
  }
  get terminal(): boolean {
    return this.#state.terminal;
  }

  /**
   * Why a failed or cancelled attempt ended: its status's `error_message`,
   * else (a picture started from a snapshot, which does not carry it) the
   * failed stacks and their errors.
   */
  get error(): string | undefined {
    const given = this.#state.errorMessage;
    if (given !== null) {
      return given;
    }
    const failed = this.stackList.filter((stack) => stack.state === "failed");
    if (failed.length === 0) {
      return undefined;
    }
    return failed
      .map((stack) => `stack ${stack.name} failed${stack.layer === undefined ? "" : ` in layer ${stack.layer}`}${stack.error === undefined ? "" : `: ${stack.error}`}`)
      .join("; ");
  }

  /**
   * How long the attempt has run, in seconds: a finished one its status's `duration_seconds`,
   * else from its `started_at` to its `updated_at`; a running one from `started_at` to `now`
   * (never less than the events already span). Producers' clocks, not when the page opened:
   * a page opened late or reloaded shows the same figure. `running` says it still counts.
   */
  elapsed(now: number): { seconds: number; running: boolean } | undefined {
    const started = epochMs(this.startedAt);
    const updated = epochMs(this.lastTimestamp);
    if (this.terminal) {
      if (this.durationSeconds !== undefined) {
        return { seconds: this.durationSeconds, running: false };
      }
      return started === null || updated === null ? undefined : { seconds: Math.max(0, (updated - started) / 1000), running: false };
    }
    if (started === null) {
      return undefined;
    }
    const until = Math.max(now, updated ?? now);
    return { seconds: Math.max(0, (until - started) / 1000), running: true };
  }

  /**
   * The banner of an attempt that failed or was cancelled: why (its `error_message`, else
   * its failed stacks), and for a cancelled one also the stacks it stopped.
   */
  get banner(): EndBanner | undefined {
    const status = this.status;
    if (this.attempt === 0 || (status !== "failed" && status !== "cancelled")) {
      return undefined;
    }
    const reason = this.error;
    if (status === "failed") {
      return { status, text: `Deployment failed: ${reason ?? "no reason was reported"}` };
    }
    const stopped = this.stackList.filter((stack) => stack.stopped).map((stack) => stack.name);
    const parts = [`Deployment cancelled${reason === undefined ? " (no reason was reported)" : `: ${reason}`}`];
    if (stopped.length > 0) {
      parts.push(`stopped while deploying: ${stopped.join(", ")}`);
    }
    return { status, text: parts.join("; ") };
  }

  /** How many of the attempt's log lines the page does not hold (before the snapshot's latest lines, or beyond the pane's limit). */
  get logLinesNotHeld(): number {
    let total = 0;
    for (const count of this.logCounts.values()) {
      total += count;
    }
    return Math.max(0, total - this.#logs.length);
  }

  /** The names of the stacks that have log lines or cards, in order of first appearance. */
  get logStacks(): string[] {
    const names = new Set(this.#state.stacks.keys());
    for (const line of this.#logs) {
      if (line.stackName !== undefined) {
        names.add(line.stackName);
      }
    }
    return [...names];
  }

  /** The attempt's log lines the page holds, oldest first (in seq order). */
  get logs(): readonly LogLine[] {
    return this.#logs;
  }

  /** Changes whenever lines were replaced or dropped from the front (so the pane is redrawn, not appended to). */
  get logsRevision(): number {
    return this.#logsRevision;
  }

  /** A stack's resources as its `stack.progress` events listed them (empty when none did). */
  resources(stackName: string): StackResources {
    const resources = [...(this.#resources.get(stackName)?.values() ?? [])];
    const result: StackResources = { resources, running: 0, done: 0, failed: 0 };
    for (const resource of resources) {
      result[resource.status] += 1;
    }
    return result;
  }

  /** Changes whenever any stack's resources changed (so a view redraws them only then). */
  get resourcesRevision(): number {
    return this.#resourcesRevision;
  }

  /** The log lines the page holds of one stack, oldest first. */
  stackLogs(stackName: string): LogLine[] {
    return this.#logs.filter((line) => line.stackName === stackName);
  }

  /** The attempt's events about stacks beyond the state's limit (those stacks are not shown). */
  get droppedStackEvents(): number {
    return this.#state.droppedStackEvents;
  }

  /** The attempt's `log.created` count per level (all of them, not only the lines held). */
  get logCounts(): ReadonlyMap<string, number> {
    return this.#state.logCounts;
  }

  /** The attempt's stacks in the order they first appeared. */
  get stackList(): StackView[] {
    return [...this.#state.stacks.values()].map((stack) => ({
      name: stack.name,
      state: stack.status,
      layer: stack.layer ?? undefined,
      environment: stack.environment ?? undefined,
      durationSeconds: stack.duration_seconds ?? undefined,
      resourceCount: stack.resource_count ?? undefined,
      resourcesDone: stack.resources_done ?? undefined,
      error: stack.error_message ?? undefined,
      stopped: this.#state.terminal && (stack.status === "pending" || stack.status === "deploying"),
    }));
  }

  /** The stack named so, if the attempt has it. */
  stack(name: string): StackView | undefined {
    return this.stackList.find((stack) => stack.name === name);
  }

  count(state: StackStatus): number {
    let n = 0;
    for (const stack of this.#state.stacks.values()) {
      if (stack.status === state) {
        n += 1;
      }
    }
    return n;
  }

  /** Layers 1…total (or as many as stacks name), each with its stacks and a state. */
  get layers(): LayerView[] {
    const stacks = this.stackList;
    let total = this.totalLayers ?? 0;
    for (const stack of stacks) {
      total = Math.max(total, stack.layer ?? 0);
    }
    const current = this.currentLayer ?? 0;
    const layers: LayerView[] = [];
    for (let number = 1; number <= total; number += 1) {
      const own = stacks.filter((s) => s.layer === number);
      layers.push({ number, stacks: own, state: this.#layerState(number, current, own) });
    }
    return layers;
  }

  /** Stacks whose events named no layer. */
  get unlayeredStacks(): StackView[] {
    return this.stackList.filter((s) => s.layer === undefined);
  }

  /** Fraction of the attempt done, 0…1, from the layers (or stacks when no layers are known). */
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
        } else if (layer.state === "active" || layer.state === "failed" || layer.state === "cancelled") {
          const finished = layer.stacks.filter((s) => isFinished(s.state)).length;
          done += layer.stacks.length > 0 ? (finished / layer.stacks.length) * 0.99 : 0;
        }
      }
      return Math.min(1, done / layers.length);
    }
    const stacks = this.stackList;
    return stacks.length === 0 ? 0 : stacks.filter((s) => isFinished(s.state)).length / stacks.length;
  }

  #layerState(number: number, current: number, stacks: StackView[]): LayerState {
    if (stacks.some((s) => s.state === "failed")) {
      return "failed";
    }
    // A cancelled run's layer is cancelled, not failed: nothing in it went wrong.
    if (stacks.some((s) => s.state === "cancelled") || (this.status === "cancelled" && stacks.some((s) => s.stopped))) {
      return "cancelled";
    }
    if (this.status === "cancelled" && number === current && !(stacks.length > 0 && stacks.every((s) => s.state === "deployed"))) {
      return "cancelled";
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
    if (number === current || stacks.some((s) => s.state === "deploying")) {
      return "active";
    }
    return allDeployed ? "done" : "pending";
  }
}

function isFinished(state: StackStatus): boolean {
  return state === "deployed" || state === "failed" || state === "cancelled";
}

/** A `resources` entry as the protocol gives it (docs/asyncapi.yaml `ResourceStep`), or undefined. */
function resourceOf(entry: JsonValue): Omit<ResourceView, "startedAt" | "seq" | "changed"> | undefined {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    return undefined;
  }
  const { name, type, operation, status, duration_seconds: duration } = entry;
  if (typeof name !== "string" || typeof status !== "string" || !RESOURCE_STATUSES.has(status)) {
    return undefined;
  }
  return {
    name,
    type: typeof type === "string" ? type : "",
    operation: typeof operation === "string" ? operation : "",
    status: status as ResourceStatus,
    durationSeconds: typeof duration === "number" && Number.isFinite(duration) && duration >= 0 ? duration : undefined,
  };
}

/**
 * The order a live table shows resources in: what is under way first (the longest running on
 * top), then the finished ones, the last finished first — what moves is at the top, however
 * many resources the stack has.
 */
export function liveOrder(resources: readonly ResourceView[]): ResourceView[] {
  const running = resources.filter((resource) => resource.status === "running");
  const finished = resources.filter((resource) => resource.status !== "running").sort((a, b) => b.changed - a.changed);
  return [...running, ...finished];
}

/** A resource's duration: tenths under 10 s (most steps take a few seconds), else as {@link formatDuration}. */
export function formatStepDuration(seconds: number | undefined): string {
  if (seconds === undefined) {
    return "";
  }
  return seconds < 10 ? `${(Math.floor(seconds * 10) / 10).toFixed(1)}s` : formatDuration(seconds);
}

/**
 * How long a resource's step has taken, in seconds: a finished one its own duration, a running
 * one from when it was first reported to `now` (while `ticking`: its stack still deploys).
 */
export function resourceSeconds(resource: ResourceView, now: number, ticking: boolean): number | undefined {
  if (resource.status !== "running") {
    return resource.durationSeconds;
  }
  if (!ticking || resource.startedAt === undefined) {
    return undefined;
  }
  return Math.max(0, (now - resource.startedAt) / 1000);
}

function toLine(entry: LogEntry): LogLine {
  return {
    seq: entry.seq,
    timestamp: entry.timestamp ?? undefined,
    level: entry.level,
    message: entry.message,
    stackName: entry.stack_name ?? undefined,
  };
}

/** Whether a log line passes the pane's filter (the level chips hide lines apart, with CSS). */
export function logLineMatches(line: LogLine, filter: LogFilter): boolean {
  if (filter.stack !== undefined && line.stackName !== filter.stack) {
    return false;
  }
  const text = filter.text.trim().toLowerCase();
  if (text === "") {
    return true;
  }
  return [line.message, line.stackName ?? "", line.level].some((field) => field.toLowerCase().includes(text));
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

/** How long ago a time was, shortly: "12s ago", "4m ago", "3h ago", "2d ago" ("" when unknown). */
export function formatAge(timestamp: string | null | undefined, now: number): string {
  const then = epochMs(timestamp);
  if (then === null) {
    return "";
  }
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 60) {
    return `${seconds}s ago`;
  }
  if (seconds < 3600) {
    return `${Math.floor(seconds / 60)}m ago`;
  }
  if (seconds < 86_400) {
    return `${Math.floor(seconds / 3600)}h ago`;
  }
  return `${Math.floor(seconds / 86_400)}d ago`;
}
