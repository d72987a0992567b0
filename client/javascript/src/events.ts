/**
 * What a `CloudWebSocketClient` reports to its handlers: the connection's
 * events (`state`, `open`, `close`, `reconnecting`) beside the core's, and the
 * emitter that hands them out.
 *
 * The connection and the core both report through {@link ClientEmitter}, one
 * place with the rule for a handler that throws: the others still run, and
 * the exception becomes an `error` event (logged instead when it is an
 * `error` handler that threw, or when no `error` handler is registered), so
 * application code can never break the client's own bookkeeping.
 */

import type { ProtocolEvents } from "./core.js";
import { Emitter } from "./emitter.js";
import type { AnyDeploymentEvent, EventOf, KnownEventType } from "./protocol.js";

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

/** What `on(type, …)` hands to its handler, per type. */
export type ClientEvents = ProtocolEvents & {
  state: StateChange;
  open: OpenInfo;
  close: CloseInfo;
  reconnecting: ReconnectInfo;
} & { [T in KnownEventType]: AnyDeploymentEvent & EventOf<T> };

/** The client's handlers, by event type. */
export class ClientEmitter {
  readonly #events = new Emitter((error, type) => this.#handlerFailed(error, type));

  /** Registers a handler (its payload type is the caller's to check); returns the function that removes it. */
  on(type: string, handler: (payload: never) => void): () => void {
    return this.#events.add(type, handler as (payload: unknown) => void);
  }

  emit<K extends keyof ClientEvents>(type: K, payload: ClientEvents[K]): void {
    this.#events.emit(type, payload);
  }

  /** Hands one of the core's reports to its handlers. */
  report<K extends keyof ProtocolEvents>(type: K, payload: ProtocolEvents[K]): void {
    this.#events.emit(type, payload);
  }

  /** Hands an event, in order, to the `event` handlers and to those of its own type. */
  deliver(event: AnyDeploymentEvent): void {
    this.#events.emit("event", event);
    this.#events.emit(event.type, event);
  }

  #handlerFailed(error: unknown, type: string): void {
    if (type === "error" || !this.#events.has("error")) {
      console.error(`cloud-ws client: a "${type}" handler threw`, error);
      return;
    }
    this.emit("error", { kind: "handler", error, event: type });
  }
}
