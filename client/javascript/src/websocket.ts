/**
 * The part of the WHATWG WebSocket interface the client uses. The browser's
 * `WebSocket` and Node's `ws` package both fit it; inject one with the
 * `WebSocket` option where there is no global (Node 20).
 */

/** A listener type checked bivariantly, so both the DOM's and `ws`'s event types fit. */
type Listener<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

export interface WebSocketLike {
  readonly readyState: number;
  /** The subprotocol the server selected ("" when none). */
  readonly protocol: string;
  onopen: Listener<unknown> | null;
  onmessage: Listener<{ readonly data: unknown }> | null;
  onerror: Listener<unknown> | null;
  onclose: Listener<{ readonly code: number; readonly reason: string }> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** `readyState` values (the same in every implementation). */
export const CONNECTING = 0;
export const OPEN = 1;

/** The global WebSocket, where the platform has one (browsers, Node 22+). */
export function globalWebSocket(): WebSocketConstructor | undefined {
  const candidate: unknown = Reflect.get(globalThis, "WebSocket");
  return typeof candidate === "function" ? (candidate as WebSocketConstructor) : undefined;
}
