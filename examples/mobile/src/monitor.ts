/**
 * The app's model, without React and without React Native: the deployment
 * list, the deployment being watched (a `DeploymentState` started from the
 * server's snapshot and folded event by event), and the connection's
 * lifecycle around the app going to the background and coming back.
 *
 * A phone app must not keep a socket open in the background (the OS
 * suspends it anyway, and a connection kept up there costs battery and
 * server fan-out for nobody). `pause()` closes it; `resume()` opens a fresh
 * client and subscribes again *without* `since`: the server answers with the
 * deployment's snapshot (its whole state, folded through the latest event)
 * and live events from there, so a phone that slept through a thousand log
 * lines gets one message, not a replay of all of them. A reconnect *while*
 * active (a network change) is the client's own business: it resumes with
 * `since`, as every client of the project does.
 */

import {
  CloudWebSocketClient,
  type ConnectionState,
  DeploymentState,
  type DeploymentSummary,
  type SnapshotMessage,
  type WebSocketConstructor,
} from "./cloudws";
import type { Session } from "./session";

/** How the app's connection stands: the client's states, or `paused` while the app is in the background. */
export type Connection = ConnectionState | "paused";

/** What the screens show; a new object after every change (for `useSyncExternalStore`). */
export interface MonitorView {
  connection: Connection;
  /** The recent deployments, newest first (asked on start, on return, and every `listInterval` while the list is shown). */
  deployments: readonly DeploymentSummary[];
  /** The deployment on screen, if one is open. */
  selected: string | null;
  /** Its state (from the latest snapshot, then its events); `null` until the snapshot arrives. */
  state: DeploymentState | null;
  /** Bumped on every change of `state` (the object itself is folded in place). */
  version: number;
  /** Why something the user asked for failed (a refused subscription, a refused token). */
  error: string | null;
  /** Background → foreground cycles so far. */
  resumes: number;
  /** Events folded since the last snapshot: after a resume, only what happened after it. */
  eventsSinceSnapshot: number;
}

export interface MonitorOptions {
  /** The WebSocket implementation: React Native's and browsers' global by default (`ws` in the Node tests). */
  WebSocket?: WebSocketConstructor;
  /** Milliseconds between refreshes of the list while it is shown (0: only on start, on return and on the way back to it). */
  listInterval?: number;
  /** How many deployments the list asks for. */
  listLimit?: number;
}

const DEFAULT_LIST_INTERVAL = 5_000;
const DEFAULT_LIST_LIMIT = 50;

export class DeploymentMonitor {
  readonly #session: Session;
  readonly #WebSocket: WebSocketConstructor | undefined;
  readonly #listInterval: number;
  readonly #listLimit: number;
  readonly #listeners = new Set<() => void>();
  #view: MonitorView = {
    connection: "idle",
    deployments: [],
    selected: null,
    state: null,
    version: 0,
    error: null,
    resumes: 0,
    eventsSinceSnapshot: 0,
  };
  /** The client of the current foreground period; a new one after every resume. */
  #client: CloudWebSocketClient | undefined;
  #listTimer: ReturnType<typeof setInterval> | undefined;

  constructor(session: Session, options: MonitorOptions = {}) {
    this.#session = session;
    this.#WebSocket = options.WebSocket;
    this.#listInterval = options.listInterval ?? DEFAULT_LIST_INTERVAL;
    this.#listLimit = options.listLimit ?? DEFAULT_LIST_LIMIT;
  }

  /** For `useSyncExternalStore`. */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /** For `useSyncExternalStore`. */
  readonly getView = (): MonitorView => this.#view;

  /** Connects (a no-op while connected): lists the deployments and subscribes to the open one. */
  start(): void {
    if (this.#client !== undefined) {
      return;
    }
    const client = new CloudWebSocketClient({
      url: this.#session.outputs.websocket_url,
      token: this.#session.token,
      ...(this.#WebSocket ? { WebSocket: this.#WebSocket } : {}),
    });
    this.#client = client;
    client.on("state", ({ state }) => {
      if (this.#client === client) {
        this.#update({ connection: state });
      }
    });
    client.on("snapshot", (snapshot) => {
      if (this.#client === client) {
        this.#takeSnapshot(snapshot);
      }
    });
    client.on("event", (event) => {
      const state = this.#view.state;
      if (this.#client !== client || event.deployment_id !== this.#view.selected || state === null) {
        return;
      }
      if (state.apply(event) !== "stale") {
        this.#update({ version: this.#view.version + 1, eventsSinceSnapshot: this.#view.eventsSinceSnapshot + 1 });
        this.#showInList();
      }
    });
    client.on("error", (error) => {
      // A refused subscription also rejects its subscribe() (shown from there); this is the rest.
      if (this.#client === client && error.kind === "server" && error.message.action !== "subscribe") {
        this.#update({ error: `${error.message.code}: ${error.message.message}` });
      }
    });
    client.connect().catch((error: unknown) => {
      if (this.#client === client) {
        this.#update({ error: `Cannot connect: ${describe(error)}` });
      }
    });
    this.refreshList();
    if (this.#listInterval > 0) {
      this.#listTimer = setInterval(() => {
        if (this.#view.selected === null) {
          this.refreshList();
        }
      }, this.#listInterval);
    }
    const selected = this.#view.selected;
    if (selected !== null) {
      this.#subscribe(client, selected);
    }
  }

  /** The app went to the background: close the socket; the screen keeps what it showed. */
  async pause(): Promise<void> {
    const client = this.#client;
    if (client === undefined) {
      return;
    }
    this.#client = undefined;
    clearInterval(this.#listTimer);
    this.#update({ connection: "paused" });
    await client.disconnect();
  }

  /** The app is back: a fresh connection, the open deployment from its snapshot, the list again. */
  resume(): void {
    if (this.#client !== undefined) {
      return;
    }
    this.#update({ resumes: this.#view.resumes + 1 });
    this.start();
  }

  /** Shows a deployment: its snapshot, then its live events. */
  open(deploymentId: string): void {
    if (this.#view.selected === deploymentId) {
      return;
    }
    this.#leave();
    this.#update({ selected: deploymentId, state: null, error: null, eventsSinceSnapshot: 0 });
    if (this.#client !== undefined) {
      this.#subscribe(this.#client, deploymentId);
    }
  }

  /** Back to the list. */
  back(): void {
    this.#leave();
    this.#update({ selected: null, state: null, error: null, eventsSinceSnapshot: 0 });
    this.refreshList();
  }

  /** Asks for the list now (answered on the next open connection if there is none). */
  refreshList(): void {
    const client = this.#client;
    client
      ?.listDeployments(this.#listLimit)
      .then((deployments) => {
        if (this.#client === client) {
          this.#update({ deployments: this.#withOpenState(deployments) });
        }
      })
      .catch((error: unknown) => {
        if (this.#client === client) {
          this.#update({ error: `The list failed: ${describe(error)}` });
        }
      });
  }

  /** Closes the connection (sign-out, unmount); `start()` opens a new one. */
  async stop(): Promise<void> {
    await this.pause();
  }

  #subscribe(client: CloudWebSocketClient, deploymentId: string): void {
    // No `since`: the server sends the snapshot and live events, never a replay of the history.
    client.subscribe(deploymentId).catch((error: unknown) => {
      if (this.#client === client && this.#view.selected === deploymentId) {
        this.#update({ error: describe(error) });
      }
    });
  }

  #leave(): void {
    const selected = this.#view.selected;
    if (selected !== null && this.#client !== undefined) {
      this.#client.unsubscribe(selected);
    }
  }

  #takeSnapshot(snapshot: SnapshotMessage): void {
    const current = this.#view.state;
    if (snapshot.deployment_id !== this.#view.selected) {
      return;
    }
    // A snapshot is the fold of every event through its seq: a later one replaces what the
    // screen showed (after a resume, that is everything the background period missed).
    if (current === null || snapshot.seq >= current.seq) {
      const state = DeploymentState.fromSnapshot(snapshot);
      this.#update({ state, version: this.#view.version + 1, eventsSinceSnapshot: 0 });
      this.#showInList();
    }
  }

  /** The open deployment's row follows its live state between list refreshes. */
  #showInList(): void {
    const deployments = this.#withOpenState(this.#view.deployments);
    if (deployments !== this.#view.deployments) {
      this.#update({ deployments });
    }
  }

  #withOpenState(deployments: readonly DeploymentSummary[]): readonly DeploymentSummary[] {
    const state = this.#view.state;
    if (state === null) {
      return deployments;
    }
    const index = deployments.findIndex((row) => row.deployment_id === state.deploymentId);
    const row = deployments[index];
    if (row === undefined || (row.status === state.status && row.attempt === state.attempt && row.current_layer === state.currentLayer)) {
      return deployments;
    }
    const next = [...deployments];
    next[index] = { ...row, status: state.status, attempt: state.attempt, current_layer: state.currentLayer, total_layers: state.totalLayers };
    return next;
  }

  #update(change: Partial<MonitorView>): void {
    this.#view = { ...this.#view, ...change };
    for (const listener of this.#listeners) {
      listener();
    }
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
