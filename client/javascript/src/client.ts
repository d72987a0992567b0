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
 * On top of that it speaks the cloud-ws protocol (docs/protocol.md): it
 * splits every frame into its messages (one per line), remembers its
 * subscriptions and resubscribes with `since` = the last `seq` after a
 * reconnect, drops duplicates, buffers out-of-order events and releases them
 * in `seq` order, asks again (`since`) when a gap does not fill within
 * `gapTimeout`, and keeps the connection alive with application pings whose
 * `pong` also reveals a lost tail (`latest`). Every request carries an `id`,
 * and replies are matched by it: API Gateway may run one connection's frames
 * concurrently, so replies can come back in any order.
 */

import { backoffDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import {
  type AnyDeploymentEvent,
  type ClientMessage,
  type ErrorMessage,
  type EventOf,
  type KnownEventType,
  type PongMessage,
  type ServerMessage,
  type SnapshotMessage,
  type SubscribedMessage,
  type UnsubscribedMessage,
  isValidDeploymentId,
  parseServerMessage,
  SNAPSHOT_TYPE,
  splitFrame,
  SUBPROTOCOL,
  TOKEN_SUBPROTOCOL_PREFIX,
} from "./protocol.js";
import { PendingRequests } from "./requests.js";
import { DeploymentSequence } from "./sequence.js";
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
}

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
 */
export function deadConnectionBound(
  options: Pick<ClientTuning, "pingInterval" | "pongTimeout" | "minReconnectionDelay" | "connectionTimeout">,
): number {
  if (options.pingInterval <= 0) {
    return Number.POSITIVE_INFINITY;
  }
  return options.pingInterval + options.pongTimeout + options.minReconnectionDelay + options.connectionTimeout;
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

export interface GapInfo {
  deployment_id: string;
  /** The last `seq` delivered in order. */
  last: number;
  /** The highest `seq` known to exist. */
  latest: number;
  /** `resubscribe`: asked again with `since` = `last`; `skipped`: gave up on the missing events. */
  action: "resubscribe" | "skipped";
}

export type ClientError =
  | { kind: "server"; message: ErrorMessage; deployment_id?: string }
  | { kind: "transport"; error: Error }
  | { kind: "protocol"; error: Error }
  | { kind: "handler"; error: unknown; event: string }
  | { kind: "queue_full"; message: ClientMessage };

/** What `on(type, …)` hands to its handler, per type. */
export type ClientEvents = {
  /** Every deployment event, per deployment in `seq` order, each exactly once. */
  event: AnyDeploymentEvent;
  subscribed: SubscribedMessage;
  /** A deployment's state folded up to `seq`, sent right after `subscribed` (not an event: never sequenced). */
  snapshot: SnapshotMessage;
  unsubscribed: UnsubscribedMessage;
  pong: PongMessage;
  error: ClientError;
  state: StateChange;
  open: OpenInfo;
  close: CloseInfo;
  reconnecting: ReconnectInfo;
  gap: GapInfo;
} & { [T in KnownEventType]: AnyDeploymentEvent & EventOf<T> };

/** A subscribe refused by the server (or cancelled by `unsubscribe`/`disconnect`). */
export class SubscriptionError extends Error {
  override name = "SubscriptionError";
  readonly code: string;
  readonly deploymentId: string;

  constructor(deploymentId: string, code: string, message: string) {
    super(message);
    this.code = code;
    this.deploymentId = deploymentId;
  }
}

type Timer = ReturnType<typeof setTimeout>;

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

interface Subscription {
  readonly id: string;
  readonly sequence: DeploymentSequence;
  waiters: Waiter<SubscribedMessage>[];
  gapTimer: Timer | undefined;
  gapRetries: number;
  gapRetriesAt: number | null;
  /**
   * Whether the server answered a subscribe since the last gap retry. Only
   * an answered retry that still leaves the hole counts towards skipping it:
   * an unanswered one (throttled, lost) proves nothing about the history.
   */
  answered: boolean;
}

/** Codes after which the subscription cannot succeed as asked: it is dropped. */
const FATAL_SUBSCRIBE_CODES = new Set(["invalid_deployment_id", "invalid_since", "forbidden", "too_many_subscriptions"]);
/** Codes that a new connection (with a fresh token) fixes. */
const RECONNECT_CODES = new Set(["token_expired", "unknown_connection"]);

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
  readonly #queue: ClientMessage[] = [];
  readonly #subscriptions = new Map<string, Subscription>();
  /** Requests sent on the current connection and not answered yet, by id. */
  readonly #pending = new PendingRequests<Subscription>();
  #openWaiters: Waiter<void>[] = [];
  #closeWaiters: (() => void)[] = [];

  #reconnectTimer: Timer | undefined;
  #connectTimer: Timer | undefined;
  #uptimeTimer: Timer | undefined;
  #pingTimer: Timer | undefined;
  #pongTimer: Timer | undefined;
  #ageTimer: Timer | undefined;
  #closeFallbackTimer: Timer | undefined;

  constructor(options: CloudWebSocketClientOptions) {
    const { url, token, WebSocket, random, ...tuning } = options;
    const defined = Object.fromEntries(Object.entries(tuning).filter(([, value]) => value !== undefined));
    this.#options = Object.freeze({ ...DEFAULT, ...defined });
    this.#url = url;
    this.#token = token;
    this.#WebSocket = WebSocket;
    this.#random = random ?? Math.random;
    this.#events = new Emitter((error, type) => this.#handlerFailed(error, type));
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
    return this.#queue.length;
  }

  /** Deployments currently subscribed to. */
  get subscriptions(): string[] {
    return [...this.#subscriptions.keys()];
  }

  /** The last `seq` delivered in order for a deployment (undefined when not known). */
  lastSeq(deploymentId: string): number | undefined {
    return this.#subscriptions.get(deploymentId)?.sequence.last ?? undefined;
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
    if (!isValidDeploymentId(deploymentId)) {
      return Promise.reject(
        new SubscriptionError(deploymentId, "invalid_deployment_id", "deployment_id must match ^[A-Za-z0-9_-]{1,64}$"),
      );
    }
    const since = options.since;
    if (since !== undefined && !(Number.isInteger(since) && since >= 0)) {
      return Promise.reject(new SubscriptionError(deploymentId, "invalid_since", "since must be a non-negative integer"));
    }
    let subscription = this.#subscriptions.get(deploymentId);
    if (subscription === undefined) {
      subscription = {
        id: deploymentId,
        sequence: new DeploymentSequence(since),
        waiters: [],
        gapTimer: undefined,
        gapRetries: 0,
        gapRetriesAt: null,
        answered: false,
      };
      this.#subscriptions.set(deploymentId, subscription);
    }
    const target = subscription;
    const acked = new Promise<SubscribedMessage>((resolve, reject) => {
      target.waiters.push({ resolve, reject });
    });
    if (this.#isOpen()) {
      this.#sendSubscribe(target);
    }
    return acked;
  }

  /** Stops receiving a deployment's events (and forgets its position). */
  unsubscribe(deploymentId: string): void {
    const subscription = this.#subscriptions.get(deploymentId);
    if (subscription === undefined) {
      return;
    }
    this.#subscriptions.delete(deploymentId);
    clearTimeout(subscription.gapTimer);
    this.#rejectWaiters(subscription, "unsubscribed", "unsubscribed before the server acknowledged");
    if (this.#isOpen()) {
      this.#transmit({ action: "unsubscribe", deployment_id: deploymentId });
    }
  }

  /** Sends a message now, or queues it until the next open connection. */
  send(message: ClientMessage): void {
    if (this.#isOpen()) {
      this.#transmit(message);
    } else if (this.#queue.length < this.#options.maxQueuedMessages) {
      this.#queue.push(message);
    } else {
      this.#emit("error", { kind: "queue_full", message });
    }
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
    this.#pending.clear();
    this.#setState("open");
    this.#uptimeTimer = setTimeout(() => {
      this.#attempt = 0;
    }, this.#options.minUptime);
    if (this.#options.maxConnectionAge > 0) {
      this.#ageTimer = setTimeout(() => {
        this.#plannedReconnect = true;
        this.#lose(socket, CLOSE_REFRESH, "refreshing before the connection's maximum age");
      }, this.#options.maxConnectionAge);
    }
    this.#schedulePing();
    // Subscriptions first (resuming from the last seq), then what was queued meanwhile.
    for (const subscription of this.#subscriptions.values()) {
      this.#sendSubscribe(subscription);
    }
    for (const message of this.#queue.splice(0)) {
      this.#transmit(message);
    }
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
    this.#pending.clear();
    for (const subscription of this.#subscriptions.values()) {
      clearTimeout(subscription.gapTimer);
      subscription.gapTimer = undefined;
    }
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
      this.#transmit({ action: "ping" });
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
    // One frame may carry a batch of messages, one per line: each is handled in order.
    for (const line of splitFrame(data)) {
      if (socket !== this.#socket) {
        return; // a handler closed or replaced the connection: the rest belongs to a dead one
      }
      let message: ServerMessage;
      try {
        message = parseServerMessage(line);
      } catch (error) {
        // One unreadable message does not cost the rest of the batch.
        this.#emit("error", { kind: "protocol", error: asError(error, "unreadable message") });
        continue;
      }
      this.#handleMessage(message);
    }
  }

  #handleMessage(message: ServerMessage): void {
    switch (message.type) {
      case "subscribed":
        this.#handleSubscribed(message as SubscribedMessage);
        return;
      case "unsubscribed":
        this.#pending.take(message as UnsubscribedMessage);
        this.#emit("unsubscribed", message as UnsubscribedMessage);
        return;
      case "pong":
        this.#handlePong(message as PongMessage);
        return;
      case "error":
        this.#handleServerError(message as ErrorMessage);
        return;
      case SNAPSHOT_TYPE:
        this.#emit("snapshot", message as SnapshotMessage);
        return;
      default:
        this.#handleEvent(message as AnyDeploymentEvent);
    }
  }

  #handleSubscribed(ack: SubscribedMessage): void {
    const request = this.#pending.take(ack);
    this.#emit("subscribed", ack);
    if (request?.action !== "subscribe") {
      return; // answers nothing we sent on this connection
    }
    const subscription = this.#subscriptions.get(ack.deployment_id);
    if (subscription === undefined) {
      // Unsubscribed while the subscribe was under way: the server may have run the two in
      // either order, so say it again (unsubscribing twice is harmless) rather than keep
      // receiving a deployment nobody watches.
      if (this.#isOpen()) {
        this.#transmit({ action: "unsubscribe", deployment_id: ack.deployment_id });
      }
      return;
    }
    if (request.subscription !== subscription) {
      // Answers the subscribe of an earlier subscription to the same deployment: its `since`
      // is not this one's, so it must not move the position.
      return;
    }
    subscription.answered = true;
    const released = subscription.sequence.acknowledge(ack, request.since);
    for (const waiter of subscription.waiters.splice(0)) {
      waiter.resolve(ack);
    }
    this.#deliver(subscription, released);
  }

  #handlePong(pong: PongMessage): void {
    this.#pending.take(pong);
    this.#emit("pong", pong);
    // The server's last seq per subscription: being behind it means events were lost with
    // nothing later to reveal it. It opens a gap, which is given `gapTimeout` to fill (events
    // posted just before the pong may still be on their way), then asked for with `since`.
    for (const [deploymentId, latest] of Object.entries(pong.latest ?? {})) {
      const subscription = this.#subscriptions.get(deploymentId);
      if (subscription === undefined || subscription.sequence.last === null) {
        continue; // not ours any more, or its ack (which sets the position) is still to come
      }
      subscription.sequence.observeLatest(latest);
      this.#watchGap(subscription, false);
    }
  }

  #handleServerError(error: ErrorMessage): void {
    const request = this.#pending.take(error);
    const deploymentId = error.deployment_id ?? (request?.action === "subscribe" || request?.action === "unsubscribe" ? request.deploymentId : undefined);
    this.#emit("error", deploymentId === undefined ? { kind: "server", message: error } : { kind: "server", message: error, deployment_id: deploymentId });
    if (RECONNECT_CODES.has(error.code) && this.#socket !== undefined) {
      // Backoff applies (not a planned reconnect): a server that keeps refusing must not spin us.
      this.#lose(this.#socket, CLOSE_REFRESH, `server said ${error.code}`);
      return;
    }
    if (request?.action === "subscribe" && FATAL_SUBSCRIBE_CODES.has(error.code)) {
      // Only the subscription that sent the refused request is dropped: a newer one to the
      // same deployment, or any other, is untouched.
      const subscription = request.subscription;
      if (this.#subscriptions.get(subscription.id) === subscription) {
        this.#subscriptions.delete(subscription.id);
        clearTimeout(subscription.gapTimer);
        this.#rejectWaiters(subscription, error.code, error.message);
      }
    }
  }

  #handleEvent(event: AnyDeploymentEvent): void {
    const subscription = this.#subscriptions.get(event.deployment_id);
    if (subscription === undefined) {
      return; // unsubscribed meanwhile
    }
    this.#deliver(subscription, subscription.sequence.push(event));
  }

  #deliver(subscription: Subscription, released: AnyDeploymentEvent[]): void {
    for (const event of released) {
      if (this.#subscriptions.get(subscription.id) !== subscription) {
        return; // a handler unsubscribed
      }
      this.#emit("event", event);
      this.#events.emit(event.type, event);
    }
    this.#watchGap(subscription, released.length > 0);
  }

  // -- gaps ------------------------------------------------------------------------------------

  #watchGap(subscription: Subscription, progressed: boolean): void {
    const sequence = subscription.sequence;
    if (sequence.takeReplayContinuation() && this.#isOpen()) {
      this.#sendSubscribe(subscription); // the replay was capped: ask for the rest now
    }
    if (!sequence.hasGap) {
      clearTimeout(subscription.gapTimer);
      subscription.gapTimer = undefined;
      subscription.gapRetries = 0;
      return;
    }
    if (progressed || subscription.gapTimer === undefined) {
      clearTimeout(subscription.gapTimer);
      subscription.gapTimer = setTimeout(() => this.#gapTimedOut(subscription), this.#options.gapTimeout);
    }
  }

  #gapTimedOut(subscription: Subscription): void {
    subscription.gapTimer = undefined;
    const sequence = subscription.sequence;
    if (this.#subscriptions.get(subscription.id) !== subscription || !sequence.hasGap || !this.#isOpen()) {
      return;
    }
    const last = sequence.last ?? 0;
    if (subscription.gapRetriesAt !== last) {
      subscription.gapRetriesAt = last;
      subscription.gapRetries = 0;
    } else if (!subscription.answered) {
      // The last retry got no answer at all: ask again without counting it.
      subscription.gapRetries = Math.max(0, subscription.gapRetries - 1);
    }
    if (subscription.gapRetries >= this.#options.maxGapRetries) {
      // The missing events are gone (expired from history): carry on without them, loudly.
      this.#emit("gap", { deployment_id: subscription.id, last, latest: sequence.latest, action: "skipped" });
      subscription.gapRetries = 0;
      this.#deliver(subscription, sequence.skipGap());
      return;
    }
    subscription.gapRetries += 1;
    subscription.answered = false;
    this.#emit("gap", { deployment_id: subscription.id, last, latest: sequence.latest, action: "resubscribe" });
    this.#sendSubscribe(subscription);
    subscription.gapTimer = setTimeout(() => this.#gapTimedOut(subscription), this.#options.gapTimeout);
  }

  // -- sending ---------------------------------------------------------------------------------

  #sendSubscribe(subscription: Subscription): void {
    const since = subscription.sequence.resumeSince;
    const frame: ClientMessage =
      since === undefined
        ? { action: "subscribe", deployment_id: subscription.id }
        : { action: "subscribe", deployment_id: subscription.id, since };
    this.#transmit(frame, subscription);
  }

  /**
   * Sends one request on the current connection, with an `id` (the caller's,
   * or a fresh one) under which its reply is awaited. `subscription` is the
   * one a subscribe is sent for; a raw subscribe from `send()` has none.
   */
  #transmit(message: ClientMessage, subscription?: Subscription): void {
    const socket = this.#socket;
    if (socket === undefined) {
      return;
    }
    const id = message.id ?? this.#pending.nextId(message.action);
    if (message.action === "subscribe" && subscription !== undefined) {
      this.#pending.add(id, { action: "subscribe", deploymentId: message.deployment_id, since: message.since, subscription });
    } else if (message.action === "unsubscribe") {
      this.#pending.add(id, { action: "unsubscribe", deploymentId: message.deployment_id });
    } else if (message.action === "ping") {
      this.#pending.add(id, { action: "ping" });
    }
    try {
      socket.send(JSON.stringify({ ...message, id }));
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

  #rejectWaiters(subscription: Subscription, code: string, message: string): void {
    for (const waiter of subscription.waiters.splice(0)) {
      waiter.reject(new SubscriptionError(subscription.id, code, message));
    }
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
