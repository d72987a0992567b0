/**
 * `CloudWebSocketClient`: a reconnecting cloud-ws client for browsers and Node.
 *
 * The shape follows partysocket: one options object, everything but the URL
 * optional and merged over {@link DEFAULT}; the URL and token are *providers*
 * called before every connection attempt, so a reconnect always carries a
 * fresh token; messages sent while disconnected are queued and flushed on the
 * next open; the retry counter resets only once a connection stayed up for
 * `minUptime`.
 *
 * This file is the transport: it opens, watches and replaces connections
 * and moves frames. The cloud-ws protocol (docs/protocol.md) is spoken by
 * the I/O-free core in `core.ts`: it splits every frame into its messages,
 * remembers the subscriptions and resubscribes with `since` = the last `seq`
 * after a reconnect, drops duplicates, buffers out-of-order events and
 * releases them in `seq` order, asks again (`since`) when a gap does not
 * fill within `gapTimeout` or a `pong` shows a lost tail (`latest`), and
 * matches replies to requests by `id` (API Gateway may run one connection's
 * frames concurrently, so replies can come back in any order). Application
 * pings keep the connection alive and prove it is.
 */

import { backoffDelay } from "./backoff.js";
import { ClientProtocol, type ProtocolEvents } from "./core.js";
import { Emitter } from "./emitter.js";
import {
  type AnyDeploymentEvent,
  type ClientMessage,
  type DeploymentSummary,
  type EventOf,
  type KnownEventType,
  type SubscribedMessage,
  SUBPROTOCOL,
  TOKEN_SUBPROTOCOL_PREFIX,
} from "./protocol.js";
import { globalWebSocket, OPEN, type WebSocketConstructor, type WebSocketLike } from "./websocket.js";

/** A value, or a function (sync or async) called each time the value is needed. */
export type Provider<T> = T | (() => T | Promise<T>);

/**
 * How the token travels in the handshake. Browsers cannot set headers:
 * `subprotocol` offers `["cloud-ws", "bearer.<jwt>"]` (the server echoes
 * `cloud-ws`); `query` appends `?token=<jwt>` (URLs end up in proxy logs).
 */
export type TokenTransport = "subprotocol" | "query";

/** Tuning knobs; every one has a default in {@link DEFAULT}. Times are milliseconds. */
export interface ClientTuning {
  tokenTransport: TokenTransport;
  /** Upper bound of the first retry's (fully jittered) delay. */
  minReconnectionDelay: number;
  /** No retry waits longer than this. */
  maxReconnectionDelay: number;
  /** Growth of the delay's upper bound per failed attempt. */
  reconnectionDelayGrowFactor: number;
  /** A connection must stay up this long before the retry counter resets. */
  minUptime: number;
  /** A handshake that has not completed by then is abandoned and retried. */
  connectionTimeout: number;
  /** Consecutive failed attempts before giving up (state `closed`). */
  maxRetries: number;
  /**
   * Interval of application-level `ping`s while open; 0 disables them (and
   * with them the detection of dead connections and of a lost tail).
   */
  pingInterval: number;
  /** With no frame at all this long after a ping, the connection is deemed dead and replaced. */
  pongTimeout: number;
  /** How long missing events may stay missing before resubscribing with `since`. */
  gapTimeout: number;
  /** Resubscriptions that fail to fill the same gap before the client skips it (and says so). */
  maxGapRetries: number;
  /** Messages kept while disconnected; further ones are dropped (an `error` reports each). */
  maxQueuedMessages: number;
  /** Reconnect (planned, no delay) before the server's 2-hour cap closes the connection; 0 disables. */
  maxConnectionAge: number;
  /**
   * With a token *provider*, reconnect (planned, with a fresh token) this long before the
   * token's `exp`: the server refuses requests after `exp` and closes the connection soon
   * after. A token that lives less than three margins is refreshed with a third of its
   * remaining lifetime left. A fixed token cannot be refreshed: its expiry triggers nothing.
   */
  tokenRefreshMargin: number;
}

/** What every option not given falls back to (partysocket's `DEFAULT` shape). */
export const DEFAULT: Readonly<ClientTuning> = Object.freeze({
  tokenTransport: "subprotocol",
  minReconnectionDelay: 1_000,
  maxReconnectionDelay: 30_000,
  reconnectionDelayGrowFactor: 2,
  minUptime: 5_000,
  connectionTimeout: 10_000,
  maxRetries: Number.POSITIVE_INFINITY,
  // A connection API Gateway forgot (frames go nowhere, no close) is noticed
  // within pingInterval + pongTimeout = 40 s, and replaced well within 60 s
  // (see deadConnectionBound); pings are cheap next to the 10-minute idle cap.
  pingInterval: 30_000,
  pongTimeout: 10_000,
  gapTimeout: 1_000,
  maxGapRetries: 3,
  maxQueuedMessages: 1_000,
  maxConnectionAge: 110 * 60_000,
  tokenRefreshMargin: 60_000,
});

export interface CloudWebSocketClientOptions extends Partial<ClientTuning> {
  /** The stack's `websocket_url` (or a provider of it). */
  url: Provider<string>;
  /** A Cognito ID or access token, or a provider called before every connection attempt. */
  token?: Provider<string | null | undefined>;
  /** The WebSocket implementation; defaults to the global one (browsers, Node 22+). Pass `ws` on Node 20. */
  WebSocket?: WebSocketConstructor;
  /** Source of randomness for the backoff jitter (tests inject a fixed one). */
  random?: () => number;
}

/**
 * The longest a connection can stay silent — frames go nowhere, no pong, no
 * close, as when API Gateway forgot it — before the client has given up on
 * it and the attempt replacing it has either opened or been abandoned: the
 * next ping comes at most `pingInterval` after the last frame, its answer is
 * awaited `pongTimeout`, the first retry after a stable connection waits at
 * most `minReconnectionDelay`, and a handshake at most `connectionTimeout`.
 * With {@link DEFAULT}: 30 + 10 + 1 + 10 = 51 s. Infinite with pings disabled.
 * (The connection counts as stable — its retry counter reset — when
 * `minUptime` ≤ `pingInterval`, as with the defaults: no ping, and so no
 * keep-alive failure, comes sooner than `pingInterval` after the open.)
 */
export function deadConnectionBound(
  options: Pick<ClientTuning, "pingInterval" | "pongTimeout" | "minReconnectionDelay" | "connectionTimeout">,
): number {
  if (options.pingInterval <= 0) {
    return Number.POSITIVE_INFINITY;
  }
  return options.pingInterval + options.pongTimeout + options.minReconnectionDelay + options.connectionTimeout;
}

/**
 * Milliseconds from opening a connection to replacing it (undefined: never): before the
 * server's 2-hour cap (`maxConnectionAge`) and, for a token that expires at `tokenExp`
 * (epoch ms), `tokenRefreshMargin` before it (a third of its remaining lifetime when that is
 * less), but never sooner than `minUptime`, so a provider that hands out nearly expired
 * tokens cannot make the client reconnect in a tight loop.
 */
export function replacementDelay(
  options: Pick<ClientTuning, "maxConnectionAge" | "tokenRefreshMargin" | "minUptime">,
  tokenExp: number | undefined,
  now: number,
): number | undefined {
  let delay = options.maxConnectionAge > 0 ? options.maxConnectionAge : Number.POSITIVE_INFINITY;
  if (tokenExp !== undefined) {
    const remaining = tokenExp - now;
    delay = Math.min(delay, remaining - Math.min(options.tokenRefreshMargin, Math.max(remaining, 0) / 3));
  }
  return Number.isFinite(delay) ? Math.max(delay, options.minUptime) : undefined;
}

/**
 * The `exp` claim of a JWT in epoch milliseconds, read without verifying it (the server
 * verifies; the client only wants to reconnect before it refuses the token). Undefined when
 * the token is not a JWT or has no numeric `exp`.
 */
export function tokenExpiry(token: string | null | undefined): number | undefined {
  const payload = token?.split(".")[1];
  if (token?.split(".").length !== 3 || !payload) {
    return undefined;
  }
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "=");
    const claims: unknown = JSON.parse(atob(base64));
    const exp = typeof claims === "object" && claims !== null ? Reflect.get(claims, "exp") : undefined;
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** The stack outputs the client needs (`cloud-ws local` writes them; Pulumi exports them). */
export interface StackOutputs {
  websocket_url: string;
}

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
}

export interface OpenInfo {
  /** The subprotocol the server selected. */
  protocol: string;
  /** Whether this is a reconnection (subscriptions were resumed with `since`). */
  reconnected: boolean;
}

export interface CloseInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
}

export interface ReconnectInfo {
  /** 1 for the first retry after a stable connection. */
  attempt: number;
  /** Milliseconds until the attempt. */
  delay: number;
}

export { type ClientError, type GapInfo, type HistoryResetInfo, RequestError, SubscriptionError } from "./core.js";

/** What `on(type, …)` hands to its handler, per type. */
export type ClientEvents = ProtocolEvents & {
  state: StateChange;
  open: OpenInfo;
  close: CloseInfo;
  reconnecting: ReconnectInfo;
} & { [T in KnownEventType]: AnyDeploymentEvent & EventOf<T> };

type Timer = ReturnType<typeof setTimeout>;

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

/** Application close codes the client uses on its own side. */
const CLOSE_NORMAL = 1000;
const CLOSE_KEEPALIVE = 4000;
const CLOSE_TIMEOUT = 4001;
const CLOSE_REFRESH = 4002;

export class CloudWebSocketClient {
  readonly #options: Readonly<ClientTuning>;
  readonly #url: Provider<string>;
  readonly #token: Provider<string | null | undefined>;
  readonly #WebSocket: WebSocketConstructor | undefined;
  readonly #random: () => number;
  readonly #events: Emitter;

  #state: ConnectionState = "idle";
  #socket: WebSocketLike | undefined;
  #generation = 0;
  #stopped = true;
  #attempt = 0;
  #hasOpened = false;
  #plannedReconnect = false;
  /** When the token of the connection being opened expires (epoch ms), if a provider gave it. */
  #tokenExp: number | undefined;
  /** The protocol: subscriptions, positions, pending replies, the queue. */
  readonly #core: ClientProtocol;
  #openWaiters: Waiter<void>[] = [];
  #closeWaiters: (() => void)[] = [];

  #reconnectTimer: Timer | undefined;
  #connectTimer: Timer | undefined;
  #uptimeTimer: Timer | undefined;
  #pingTimer: Timer | undefined;
  #pongTimer: Timer | undefined;
  #ageTimer: Timer | undefined;
  #closeFallbackTimer: Timer | undefined;
  /** Wakes the core when a gap's deadline is due. */
  #coreTimer: Timer | undefined;

  constructor(options: CloudWebSocketClientOptions) {
    const { url, token, WebSocket, random, ...tuning } = options;
    const defined = Object.fromEntries(Object.entries(tuning).filter(([, value]) => value !== undefined));
    this.#options = Object.freeze({ ...DEFAULT, ...defined });
    this.#url = url;
    this.#token = token;
    this.#WebSocket = WebSocket;
    this.#random = random ?? Math.random;
    this.#events = new Emitter((error, type) => this.#handlerFailed(error, type));
    this.#core = new ClientProtocol(
      {
        send: (message) => this.#transmit(message),
        emit: (type, payload) => this.#events.emit(type, payload),
        deliver: (event) => {
          this.#events.emit("event", event);
          this.#events.emit(event.type, event);
        },
        reconnect: (reason) => {
          if (this.#socket !== undefined) {
            // Backoff applies (not a planned reconnect): a server that keeps refusing must not spin us.
            this.#lose(this.#socket, CLOSE_REFRESH, reason);
          }
        },
        wake: (at) => {
          clearTimeout(this.#coreTimer);
          this.#coreTimer = at === undefined ? undefined : setTimeout(() => this.#core.tick(), Math.max(0, at - Date.now()));
        },
      },
      this.#options,
    );
  }

  /** A client for a stack's outputs (`websocket_url`). */
  static fromOutputs(outputs: StackOutputs, options: Omit<CloudWebSocketClientOptions, "url"> = {}): CloudWebSocketClient {
    return new CloudWebSocketClient({ ...options, url: outputs.websocket_url });
  }

  /** The options in effect (defaults merged with what was given). */
  get options(): Readonly<ClientTuning> {
    return this.#options;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The subprotocol the server selected on the current connection ("" when not open). */
  get protocol(): string {
    return this.#state === "open" && this.#socket !== undefined ? this.#socket.protocol : "";
  }

  /** Messages waiting for the next open connection. */
  get queuedMessages(): number {
    return this.#core.queuedMessages;
  }

  /** Deployments currently subscribed to. */
  get subscriptions(): string[] {
    return this.#core.subscriptions;
  }

  /** The last `seq` delivered in order for a deployment (undefined when not known). */
  lastSeq(deploymentId: string): number | undefined {
    return this.#core.lastSeq(deploymentId);
  }

  /**
   * Starts connecting (and reconnecting until `disconnect`); resolves once a
   * connection is open. Rejects if the client is stopped, or gives up, first.
   */
  connect(): Promise<void> {
    const opened = new Promise<void>((resolve, reject) => {
      if (this.#state === "open") {
        resolve();
      } else {
        this.#openWaiters.push({ resolve, reject });
      }
    });
    if (this.#stopped) {
      this.#stopped = false;
      this.#attempt = 0;
      this.#setState(this.#hasOpened ? "reconnecting" : "connecting");
      void this.#open();
    }
    return opened;
  }

  /**
   * Subscribes to a deployment; resolves with the server's ack. With `since`,
   * the server first replays the stored events with `seq > since` (0 replays
   * the whole history); without it, events from now on are delivered.
   * Subscribing while disconnected takes effect on the next open connection.
   * Subscribing again to a deployment keeps its position.
   */
  subscribe(deploymentId: string, options: { since?: number } = {}): Promise<SubscribedMessage> {
    return this.#core.subscribe(deploymentId, options);
  }

  /**
   * The recent deployments the caller may watch, newest first (by the time
   * of their latest event), each with its status, attempt and layer.
   * Resolves with the server's `deployments` answer, matched to this call by
   * its request `id`; rejects with a `RequestError` when the server refuses
   * (`invalid_limit`). Asked while disconnected, or on a connection lost
   * before it answered, it is asked (again) on the next open connection.
   *
   * @param limit how many, 1 to 200 (the server's default is 50).
   */
  listDeployments(limit?: number): Promise<DeploymentSummary[]> {
    return this.#core.listDeployments(limit);
  }

  /** Stops receiving a deployment's events (and forgets its position). */
  unsubscribe(deploymentId: string): void {
    this.#core.unsubscribe(deploymentId);
  }

  /** Sends a message now, or queues it until the next open connection (an `id` is added when it has none). */
  send(message: ClientMessage): void {
    this.#core.send(message);
  }

  /** Sends an application-level `ping` (the server answers `pong`, with each subscription's `latest` seq). */
  ping(): void {
    this.send({ action: "ping" });
  }

  /** Drops the current connection and connects again at once (subscriptions resume with `since`). */
  reconnect(): void {
    if (this.#stopped) {
      void this.connect();
      return;
    }
    this.#attempt = 0;
    this.#plannedReconnect = true;
    if (this.#socket !== undefined) {
      this.#lose(this.#socket, CLOSE_REFRESH, "reconnect requested");
    } else {
      clearTimeout(this.#reconnectTimer);
      this.#scheduleReconnect();
    }
  }

  /**
   * Closes the connection and stops reconnecting; resolves once closed.
   * Subscriptions and their positions are kept: `connect()` resumes them.
   */
  disconnect(code = CLOSE_NORMAL, reason = ""): Promise<void> {
    this.#stopped = true;
    this.#generation += 1;
    clearTimeout(this.#reconnectTimer);
    const socket = this.#socket;
    if (socket === undefined) {
      this.#setState("closed");
      this.#settleStopped();
      return Promise.resolve();
    }
    const closed = new Promise<void>((resolve) => {
      this.#closeWaiters.push(resolve);
    });
    // The connection is as good as gone: what is sent from now on waits for the next one.
    this.#core.closed();
    try {
      socket.close(code, reason);
    } catch {
      // already closing
    }
    // A peer that never answers the close handshake must not hold us up.
    this.#closeFallbackTimer = setTimeout(() => this.#lose(socket, code, reason), 2_000);
    return closed;
  }

  /** Registers a handler; returns the function that removes it. */
  on<K extends keyof ClientEvents>(type: K, handler: (payload: ClientEvents[K]) => void): () => void;
  /** Any other `domain.verb` event type (unknown types are passed through). */
  on(type: string, handler: (event: AnyDeploymentEvent) => void): () => void;
  on(type: string, handler: (payload: never) => void): () => void {
    return this.#events.add(type, handler as (payload: unknown) => void);
  }

  // -- connection lifecycle ------------------------------------------------------------------

  async #open(): Promise<void> {
    const generation = ++this.#generation;
    let url: string;
    let token: string | null | undefined;
    try {
      url = await resolveProvider(this.#url);
      token = await resolveProvider(this.#token);
    } catch (error) {
      if (generation === this.#generation && !this.#stopped) {
        this.#emit("error", { kind: "transport", error: asError(error, "the URL or token provider failed") });
        this.#scheduleReconnect();
      }
      return;
    }
    if (generation !== this.#generation || this.#stopped) {
      return;
    }
    // Only a provider can hand out a fresh token: a fixed one's expiry triggers nothing.
    this.#tokenExp = typeof this.#token === "function" ? tokenExpiry(token) : undefined;
    const WebSocketImpl = this.#WebSocket ?? globalWebSocket();
    if (WebSocketImpl === undefined) {
      this.#emit("error", {
        kind: "transport",
        error: new Error("no WebSocket implementation: pass the `WebSocket` option (e.g. the `ws` package on Node 20)"),
      });
      this.#giveUp(new Error("no WebSocket implementation"));
      return;
    }
    const handshake = buildHandshake(url, token, this.#options.tokenTransport);
    let socket: WebSocketLike;
    try {
      socket = new WebSocketImpl(handshake.url, handshake.protocols);
    } catch (error) {
      this.#emit("error", { kind: "transport", error: asError(error, "could not create the WebSocket") });
      this.#scheduleReconnect();
      return;
    }
    this.#socket = socket;
    socket.onopen = () => this.#handleOpen(socket);
    socket.onmessage = (event) => this.#handleFrame(socket, event.data);
    socket.onerror = (event) => this.#handleError(socket, event);
    socket.onclose = (event) => this.#lose(socket, event.code, event.reason);
    this.#connectTimer = setTimeout(() => this.#lose(socket, CLOSE_TIMEOUT, "connection timeout"), this.#options.connectionTimeout);
  }

  #handleOpen(socket: WebSocketLike): void {
    if (socket !== this.#socket) {
      return;
    }
    clearTimeout(this.#connectTimer);
    const reconnected = this.#hasOpened;
    this.#hasOpened = true;
    this.#setState("open");
    this.#uptimeTimer = setTimeout(() => {
      this.#attempt = 0;
    }, this.#options.minUptime);
    const replaceIn = replacementDelay(this.#options, this.#tokenExp, Date.now());
    if (replaceIn !== undefined) {
      const ageCap = this.#options.maxConnectionAge;
      const forToken = this.#tokenExp !== undefined && (ageCap <= 0 || replaceIn < ageCap);
      this.#ageTimer = setTimeout(() => {
        this.#plannedReconnect = true;
        this.#lose(
          socket,
          CLOSE_REFRESH,
          forToken ? "refreshing the token before it expires" : "refreshing before the connection's maximum age",
        );
      }, replaceIn);
    }
    this.#schedulePing();
    // Subscriptions first (resuming from the last seq), then what was queued meanwhile.
    this.#core.opened();
    this.#emit("open", { protocol: socket.protocol, reconnected });
    for (const waiter of this.#openWaiters.splice(0)) {
      waiter.resolve();
    }
  }

  #handleError(socket: WebSocketLike, event: unknown): void {
    if (socket !== this.#socket) {
      return;
    }
    const message = Reflect.get(Object(event), "message");
    const error = new Error(typeof message === "string" && message ? message : "WebSocket error");
    this.#emit("error", { kind: "transport", error });
    // The close event follows and decides about reconnecting.
  }

  /** The one way a connection ends: close event, timeout, dead keep-alive, planned refresh or disconnect. */
  #lose(socket: WebSocketLike, code: number, reason: string): void {
    if (socket !== this.#socket) {
      return;
    }
    this.#socket = undefined;
    detach(socket);
    if (socket.readyState <= OPEN) {
      try {
        socket.close(code >= 4000 || code === CLOSE_NORMAL ? code : CLOSE_NORMAL, reason);
      } catch {
        // a socket still connecting may refuse; it is detached either way
      }
    }
    for (const timer of [this.#connectTimer, this.#uptimeTimer, this.#pingTimer, this.#pongTimer, this.#ageTimer, this.#closeFallbackTimer]) {
      clearTimeout(timer);
    }
    this.#pongTimer = undefined;
    this.#core.closed();
    if (this.#stopped) {
      this.#setState("closed");
      this.#emit("close", { code, reason, willReconnect: false });
      this.#settleStopped();
      return;
    }
    this.#emit("close", { code, reason, willReconnect: true });
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#stopped) {
      return;
    }
    const planned = this.#plannedReconnect;
    this.#plannedReconnect = false;
    if (!planned && this.#attempt >= this.#options.maxRetries) {
      this.#giveUp(new Error(`gave up after ${this.#attempt} failed connection attempts`));
      return;
    }
    const delay = planned ? 0 : backoffDelay(this.#attempt, this.#options, this.#random);
    if (!planned) {
      this.#attempt += 1;
    }
    this.#setState("reconnecting");
    this.#emit("reconnecting", { attempt: Math.max(1, this.#attempt), delay });
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => {
      void this.#open();
    }, delay);
  }

  #giveUp(error: Error): void {
    this.#stopped = true;
    this.#setState("closed");
    for (const waiter of this.#openWaiters.splice(0)) {
      waiter.reject(error);
    }
  }

  #settleStopped(): void {
    const error = new Error("disconnected before a connection opened");
    for (const waiter of this.#openWaiters.splice(0)) {
      waiter.reject(error);
    }
    for (const resolve of this.#closeWaiters.splice(0)) {
      resolve();
    }
  }

  // -- keep-alive ----------------------------------------------------------------------------

  #schedulePing(): void {
    clearTimeout(this.#pingTimer);
    if (this.#options.pingInterval <= 0) {
      return;
    }
    this.#pingTimer = setTimeout(() => {
      const socket = this.#socket;
      if (socket === undefined || !this.#isOpen()) {
        return;
      }
      this.#core.send({ action: "ping" });
      // Armed by the oldest unanswered ping; any frame received disarms it.
      if (this.#pongTimer === undefined) {
        this.#pongTimer = setTimeout(
          () => this.#lose(socket, CLOSE_KEEPALIVE, "no answer to keep-alive ping"),
          this.#options.pongTimeout,
        );
      }
      this.#schedulePing();
    }, this.#options.pingInterval);
  }

  // -- frames --------------------------------------------------------------------------------

  #handleFrame(socket: WebSocketLike, data: unknown): void {
    if (socket !== this.#socket) {
      return;
    }
    // Any frame proves the connection is alive.
    clearTimeout(this.#pongTimer);
    this.#pongTimer = undefined;
    if (typeof data !== "string") {
      this.#emit("error", { kind: "protocol", error: new Error("binary frame received; the protocol uses text frames") });
      return;
    }
    this.#core.receive(data);
  }

  /** Sends one message the core produced (the core only does so while a connection is open). */
  #transmit(message: ClientMessage): void {
    const socket = this.#socket;
    if (socket === undefined) {
      return;
    }
    try {
      socket.send(JSON.stringify(message));
    } catch (error) {
      this.#emit("error", { kind: "transport", error: asError(error, "send failed") });
    }
  }

  // -- helpers ---------------------------------------------------------------------------------

  #isOpen(): boolean {
    return this.#state === "open" && this.#socket !== undefined && this.#socket.readyState === OPEN;
  }

  #setState(state: ConnectionState): void {
    const previous = this.#state;
    if (previous === state) {
      return;
    }
    this.#state = state;
    this.#emit("state", { state, previous });
  }

  #emit<K extends keyof ClientEvents>(type: K, payload: ClientEvents[K]): void {
    this.#events.emit(type, payload);
  }

  #handlerFailed(error: unknown, type: string): void {
    if (type === "error" || !this.#events.has("error")) {
      console.error(`cloud-ws client: a "${type}" handler threw`, error);
      return;
    }
    this.#emit("error", { kind: "handler", error, event: type });
  }
}

/** The URL and subprotocols of a handshake carrying `token` the chosen way. */
export function buildHandshake(
  url: string,
  token: string | null | undefined,
  transport: TokenTransport,
): { url: string; protocols: string[] } {
  if (!token) {
    return { url, protocols: transport === "subprotocol" ? [SUBPROTOCOL] : [] };
  }
  if (transport === "query") {
    const withToken = new URL(url);
    withToken.searchParams.set("token", token);
    return { url: withToken.toString(), protocols: [] };
  }
  return { url, protocols: [SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + token] };
}

async function resolveProvider<T>(provider: Provider<T>): Promise<T> {
  return typeof provider === "function" ? await (provider as () => T | Promise<T>)() : provider;
}

function detach(socket: WebSocketLike): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  // Keep an error listener: Node's `ws` throws on an 'error' nobody listens to.
  socket.onerror = () => undefined;
}

function asError(value: unknown, fallback: string): Error {
  if (value instanceof Error) {
    return value;
  }
  return new Error(typeof value === "string" && value ? value : fallback);
}
