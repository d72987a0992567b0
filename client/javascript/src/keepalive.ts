/**
 * Application-level keep-alive: a `ping` every `pingInterval` while a
 * connection is open, and the verdict "dead" when no frame at all arrives
 * within `pongTimeout` of the oldest unanswered one.
 *
 * API Gateway can forget a connection without closing it (frames go nowhere,
 * no close event), and only silence after a ping tells. The pings keep the
 * connection alive and prove it is; the core reads the `pong`s (their
 * `latest` shows a lost tail), this module only cares that *something* came
 * back. It is separate from the connection so its two timers, and the bound
 * they put on noticing a dead connection ({@link deadConnectionBound}), can be
 * read in one place.
 */

import type { ClientTuning, DEFAULT } from "./options.js";
import type { WebSocketLike } from "./websocket.js";

type Timer = ReturnType<typeof setTimeout>;

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

/** What {@link KeepAlive} asks of the connection it watches. */
export interface KeepAliveHost {
  /** The connection to ping, when one is open (undefined: none, and pinging stops). */
  openSocket(): WebSocketLike | undefined;
  /** Sends an application-level `ping`. */
  ping(): void;
  /** `socket` left a ping unanswered for `pongTimeout`: it is dead and must be replaced. */
  dead(socket: WebSocketLike): void;
}

export class KeepAlive {
  readonly #options: Pick<ClientTuning, "pingInterval" | "pongTimeout">;
  readonly #host: KeepAliveHost;
  #pingTimer: Timer | undefined;
  #pongTimer: Timer | undefined;

  constructor(options: Pick<ClientTuning, "pingInterval" | "pongTimeout">, host: KeepAliveHost) {
    this.#options = options;
    this.#host = host;
  }

  /** Pings `pingInterval` from now, and every `pingInterval` after while a connection is open. */
  start(): void {
    clearTimeout(this.#pingTimer);
    if (this.#options.pingInterval <= 0) {
      return;
    }
    this.#pingTimer = setTimeout(() => {
      const socket = this.#host.openSocket();
      if (socket === undefined) {
        return;
      }
      this.#host.ping();
      // Armed by the oldest unanswered ping; any frame received disarms it.
      if (this.#pongTimer === undefined) {
        this.#pongTimer = setTimeout(() => this.#host.dead(socket), this.#options.pongTimeout);
      }
      this.start();
    }, this.#options.pingInterval);
  }

  /** A frame arrived: the connection is alive, whatever the frame was. */
  heard(): void {
    clearTimeout(this.#pongTimer);
    this.#pongTimer = undefined;
  }

  /** The connection is gone: no more pings, no verdict pending. */
  stop(): void {
    clearTimeout(this.#pingTimer);
    this.heard();
  }
}
