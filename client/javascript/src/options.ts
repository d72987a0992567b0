/**
 * What a caller configures a `CloudWebSocketClient` with: the options object,
 * the tuning knobs and their {@link DEFAULT}s, and the providers of the URL
 * and token.
 *
 * The shape follows partysocket: one options object, everything but the URL
 * optional and merged over {@link DEFAULT}; the URL and token are *providers*
 * called before every connection attempt, so a reconnect always carries a
 * fresh token. It is a module of its own because it is the contract the
 * caller sees, and because each part of the client (the connection, its
 * keep-alive, its retries, its planned replacement) reads its own few knobs
 * from {@link ClientTuning} without depending on the others.
 */

import type { TokenTransport } from "./handshake.js";
import type { WebSocketConstructor } from "./websocket.js";

/** A value, or a function (sync or async) called each time the value is needed. */
export type Provider<T> = T | (() => T | Promise<T>);

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

/** The stack outputs the client needs (`cloud-ws local` writes them; Pulumi exports them). */
export interface StackOutputs {
  websocket_url: string;
}

/** The tuning in effect: the knobs given (an explicit `undefined` counts as not given) over {@link DEFAULT}. */
export function withDefaults(tuning: Partial<ClientTuning>): Readonly<ClientTuning> {
  const defined = Object.fromEntries(Object.entries(tuning).filter(([, value]) => value !== undefined));
  return Object.freeze({ ...DEFAULT, ...defined });
}

/** The provider's value now: the value itself, or what the function returns (awaited). */
export async function resolveProvider<T>(provider: Provider<T>): Promise<T> {
  return typeof provider === "function" ? await (provider as () => T | Promise<T>)() : provider;
}
