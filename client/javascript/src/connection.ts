/**
 * The socket's lifecycle: opening a connection (URL and token asked of their
 * providers on every attempt), watching it, and replacing it when it closes,
 * times out, goes silent, or reaches its planned end, until `disconnect`, or
 * until it gives up (`maxRetries` failures in a row, or no WebSocket
 * implementation).
 *
 * This is the only code that touches a WebSocket. It tells the core when a
 * connection opens and closes and hands it every text frame; the core hands
 * back the messages to send. Which connection is current is decided here
 * alone: every socket event is checked against it, so a late event from a
 * replaced socket changes nothing. The rules it applies live beside it:
 * `retry.ts` (when to try again), `keepalive.ts` (when a silent connection is
 * dead), `lifetime.ts` (when to replace a healthy one), `handshake.ts` (how
 * the token travels).
 */

import type { ClientProtocol } from "./core.js";
import type { ClientEmitter, ConnectionState } from "./events.js";
import { buildHandshake } from "./handshake.js";
import { KeepAlive } from "./keepalive.js";
import { plannedReplacement, tokenExpiry } from "./lifetime.js";
import { type ClientTuning, type Provider, resolveProvider } from "./options.js";
import type { ClientMessage } from "./protocol.js";
import { RetryPolicy } from "./retry.js";
import { globalWebSocket, OPEN, type WebSocketConstructor, type WebSocketLike } from "./websocket.js";

type Timer = ReturnType<typeof setTimeout>;

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

/** Application close codes the client uses on its own side. */
export const CLOSE_NORMAL = 1000;
const CLOSE_KEEPALIVE = 4000;
const CLOSE_TIMEOUT = 4001;
const CLOSE_REFRESH = 4002;

/** The part of the protocol core a connection drives. */
export type ConnectionCore = Pick<ClientProtocol, "opened" | "closed" | "receive" | "send">;

/** What a {@link Connection} is made of. */
export interface ConnectionSetup {
  options: Readonly<ClientTuning>;
  url: Provider<string>;
  token: Provider<string | null | undefined>;
  /** The WebSocket implementation; undefined: the global one, looked up at each attempt. */
  WebSocket: WebSocketConstructor | undefined;
  /** Source of randomness for the backoff jitter. */
  random: () => number;
  core: ConnectionCore;
  events: ClientEmitter;
}

export class Connection {
  readonly #options: Readonly<ClientTuning>;
  readonly #url: Provider<string>;
  readonly #token: Provider<string | null | undefined>;
  readonly #WebSocket: WebSocketConstructor | undefined;
  readonly #core: ConnectionCore;
  readonly #events: ClientEmitter;
  readonly #retry: RetryPolicy;
  readonly #keepAlive: KeepAlive;

  #state: ConnectionState = "idle";
  #socket: WebSocketLike | undefined;
  #generation = 0;
  #stopped = true;
  #hasOpened = false;
  /** When the token of the connection being opened expires (epoch ms), if a provider gave it. */
  #tokenExp: number | undefined;
  #openWaiters: Waiter<void>[] = [];
  #closeWaiters: (() => void)[] = [];

  #reconnectTimer: Timer | undefined;
  #connectTimer: Timer | undefined;
  #ageTimer: Timer | undefined;
  #closeFallbackTimer: Timer | undefined;

  constructor(setup: ConnectionSetup) {
    this.#options = setup.options;
    this.#url = setup.url;
    this.#token = setup.token;
    this.#WebSocket = setup.WebSocket;
    this.#core = setup.core;
    this.#events = setup.events;
    this.#retry = new RetryPolicy(setup.options, setup.random);
    this.#keepAlive = new KeepAlive(setup.options, {
      openSocket: () => (this.#isOpen() ? this.#socket : undefined),
      ping: () => this.#core.send({ action: "ping" }),
      dead: (socket) => this.#lose(socket, CLOSE_KEEPALIVE, "no answer to keep-alive ping"),
    });
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The subprotocol the server selected on the current connection ("" when not open). */
  get protocol(): string {
    return this.#state === "open" && this.#socket !== undefined ? this.#socket.protocol : "";
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
      this.#retry.reset();
      this.#setState(this.#hasOpened ? "reconnecting" : "connecting");
      void this.#open();
    }
    return opened;
  }

  /** Drops the current connection and connects again at once. */
  reconnect(): void {
    if (this.#stopped) {
      void this.connect();
      return;
    }
    this.#retry.reset();
    this.#retry.plan();
    if (this.#socket !== undefined) {
      this.#lose(this.#socket, CLOSE_REFRESH, "reconnect requested");
    } else {
      clearTimeout(this.#reconnectTimer);
      this.#scheduleReconnect();
    }
  }

  /** Replaces the current connection because the server said only a new one helps. */
  replace(reason: string): void {
    if (this.#socket !== undefined) {
      // Backoff applies (not a planned reconnect): a server that keeps refusing must not spin us.
      this.#lose(this.#socket, CLOSE_REFRESH, reason);
    }
  }

  /** Closes the connection and stops reconnecting; resolves once closed. */
  disconnect(code: number, reason: string): Promise<void> {
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

  /** Sends one message the core produced (the core only does so while a connection is open). */
  transmit(message: ClientMessage): void {
    const socket = this.#socket;
    if (socket === undefined) {
      return;
    }
    try {
      socket.send(JSON.stringify(message));
    } catch (error) {
      this.#events.emit("error", { kind: "transport", error: asError(error, "send failed") });
    }
  }

  // -- one connection, from attempt to loss -----------------------------------------------------

  async #open(): Promise<void> {
    const generation = ++this.#generation;
    let url: string;
    let token: string | null | undefined;
    try {
      url = await resolveProvider(this.#url);
      token = await resolveProvider(this.#token);
    } catch (error) {
      if (generation === this.#generation && !this.#stopped) {
        this.#events.emit("error", { kind: "transport", error: asError(error, "the URL or token provider failed") });
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
      this.#events.emit("error", {
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
      this.#events.emit("error", { kind: "transport", error: asError(error, "could not create the WebSocket") });
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
    this.#retry.opened();
    const replacement = plannedReplacement(this.#options, this.#tokenExp, Date.now());
    if (replacement !== undefined) {
      this.#ageTimer = setTimeout(() => {
        this.#retry.plan();
        this.#lose(socket, CLOSE_REFRESH, replacement.reason);
      }, replacement.delay);
    }
    this.#keepAlive.start();
    // Subscriptions first (resuming from the last seq), then what was queued meanwhile.
    this.#core.opened();
    this.#events.emit("open", { protocol: socket.protocol, reconnected });
    for (const waiter of this.#openWaiters.splice(0)) {
      waiter.resolve();
    }
  }

  #handleFrame(socket: WebSocketLike, data: unknown): void {
    if (socket !== this.#socket) {
      return;
    }
    // Any frame proves the connection is alive.
    this.#keepAlive.heard();
    if (typeof data !== "string") {
      this.#events.emit("error", { kind: "protocol", error: new Error("binary frame received; the protocol uses text frames") });
      return;
    }
    this.#core.receive(data);
  }

  #handleError(socket: WebSocketLike, event: unknown): void {
    if (socket !== this.#socket) {
      return;
    }
    const message = Reflect.get(Object(event), "message");
    const error = new Error(typeof message === "string" && message ? message : "WebSocket error");
    this.#events.emit("error", { kind: "transport", error });
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
    for (const timer of [this.#connectTimer, this.#ageTimer, this.#closeFallbackTimer]) {
      clearTimeout(timer);
    }
    this.#retry.closed();
    this.#keepAlive.stop();
    this.#core.closed();
    if (this.#stopped) {
      this.#setState("closed");
      this.#events.emit("close", { code, reason, willReconnect: false });
      this.#settleStopped();
      return;
    }
    this.#events.emit("close", { code, reason, willReconnect: true });
    this.#scheduleReconnect();
  }

  // -- between connections ----------------------------------------------------------------------

  #scheduleReconnect(): void {
    if (this.#stopped) {
      return;
    }
    const next = this.#retry.next();
    if (next === undefined) {
      this.#giveUp(new Error(`gave up after ${this.#retry.failures} failed connection attempts`));
      return;
    }
    this.#setState("reconnecting");
    this.#events.emit("reconnecting", next);
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => {
      void this.#open();
    }, next.delay);
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

  // -- helpers ----------------------------------------------------------------------------------

  #isOpen(): boolean {
    return this.#state === "open" && this.#socket !== undefined && this.#socket.readyState === OPEN;
  }

  #setState(state: ConnectionState): void {
    const previous = this.#state;
    if (previous === state) {
      return;
    }
    this.#state = state;
    this.#events.emit("state", { state, previous });
  }
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
