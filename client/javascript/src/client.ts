/**
 * `CloudWebSocketClient`: a reconnecting cloud-ws client for browsers and Node.
 *
 * The shape follows partysocket (see `options.ts`): one options object, the
 * URL and token as providers called before every connection attempt, messages
 * sent while disconnected queued and flushed on the next open, the retry
 * counter reset only once a connection stayed up for `minUptime`.
 *
 * This class is the shell that wires the parts together and gives them one
 * API; each part does one job in its own module:
 *
 * - `core.ts` speaks the cloud-ws protocol (docs/protocol.md) without I/O: it
 *   splits every frame into its messages, remembers the subscriptions and
 *   resubscribes with `since` = the last `seq` after a reconnect, drops
 *   duplicates, buffers out-of-order events and releases them in `seq` order,
 *   asks again (`since`) when a gap does not fill within `gapTimeout` or a
 *   `pong` shows a lost tail (`latest`), and matches replies to requests by
 *   `id` (API Gateway may run one connection's frames concurrently, so
 *   replies can come back in any order);
 * - `connection.ts` is the transport: it opens, watches and replaces
 *   connections and moves frames, with `retry.ts` deciding when to try
 *   again, `keepalive.ts` pinging to keep the connection alive and prove it
 *   is, `lifetime.ts` planning its replacement before its age or token runs
 *   out, and `handshake.ts` putting the token in the handshake;
 * - `events.ts` hands what both report to the application's handlers.
 *
 * What is left here is the one timer the core asks for (its next deadline)
 * and the public methods, each handed to the part that does it.
 */

import { CLOSE_NORMAL, Connection } from "./connection.js";
import { ClientProtocol } from "./core.js";
import { ClientEmitter, type ClientEvents, type ConnectionState } from "./events.js";
import { type ClientTuning, type CloudWebSocketClientOptions, type StackOutputs, withDefaults } from "./options.js";
import type { AnyDeploymentEvent, ClientMessage, DeploymentSummary, SubscribedMessage } from "./protocol.js";

type Timer = ReturnType<typeof setTimeout>;

export class CloudWebSocketClient {
  readonly #options: Readonly<ClientTuning>;
  readonly #events = new ClientEmitter();
  /** The protocol: subscriptions, positions, pending replies, the queue. */
  readonly #core: ClientProtocol;
  /** The socket: opening, keep-alive, replacing, reconnecting. */
  readonly #connection: Connection;
  /** Wakes the core when a gap's deadline is due. */
  #coreTimer: Timer | undefined;

  constructor(options: CloudWebSocketClientOptions) {
    const { url, token, WebSocket, random, ...tuning } = options;
    this.#options = withDefaults(tuning);
    this.#core = new ClientProtocol(
      {
        send: (message) => this.#connection.transmit(message),
        emit: (type, payload) => this.#events.report(type, payload),
        deliver: (event) => this.#events.deliver(event),
        reconnect: (reason) => this.#connection.replace(reason),
        wake: (at) => {
          clearTimeout(this.#coreTimer);
          this.#coreTimer = at === undefined ? undefined : setTimeout(() => this.#core.tick(), Math.max(0, at - Date.now()));
        },
      },
      this.#options,
    );
    this.#connection = new Connection({
      options: this.#options,
      url,
      token,
      WebSocket,
      random: random ?? Math.random,
      core: this.#core,
      events: this.#events,
    });
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
    return this.#connection.state;
  }

  /** The subprotocol the server selected on the current connection ("" when not open). */
  get protocol(): string {
    return this.#connection.protocol;
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
    return this.#connection.connect();
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
    this.#connection.reconnect();
  }

  /**
   * Closes the connection and stops reconnecting; resolves once closed.
   * Subscriptions and their positions are kept: `connect()` resumes them.
   */
  disconnect(code = CLOSE_NORMAL, reason = ""): Promise<void> {
    return this.#connection.disconnect(code, reason);
  }

  /** Registers a handler; returns the function that removes it. */
  on<K extends keyof ClientEvents>(type: K, handler: (payload: ClientEvents[K]) => void): () => void;
  /** Any other `domain.verb` event type (unknown types are passed through). */
  on(type: string, handler: (event: AnyDeploymentEvent) => void): () => void;
  on(type: string, handler: (payload: never) => void): () => void {
    return this.#events.on(type, handler);
  }
}
