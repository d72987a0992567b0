/**
 * How a connection attempt carries the token: the URL and subprotocols of the
 * WebSocket handshake.
 *
 * Kept apart from the connection that uses it because it is pure (a token in,
 * a URL and protocol list out, exported and tested on its own) and answers to
 * where the server's `$connect` route looks for the token, not to anything
 * else in the client.
 */

import { SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX } from "./protocol.js";

/**
 * How the token travels in the handshake. Browsers cannot set headers:
 * `subprotocol` offers `["cloud-ws", "bearer.<jwt>"]` (the server echoes
 * `cloud-ws`); `query` appends `?token=<jwt>` (URLs end up in proxy logs).
 */
export type TokenTransport = "subprotocol" | "query";

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
