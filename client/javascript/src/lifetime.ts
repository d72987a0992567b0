/**
 * How long one connection may live: the planned replacement before the
 * server's 2-hour cap or before the token expires, and the token's `exp`
 * that decides it.
 *
 * This is arithmetic on the options, a clock reading and a token, with no
 * timer or socket, so it is tested with plain numbers; the connection only
 * arms one timer with what {@link plannedReplacement} returns. The Cognito
 * token store (`cognito.ts`) reads a token's `exp` with {@link tokenExpiry} too.
 */

import type { ClientTuning } from "./options.js";

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

/** When, and why, a connection opened now is to be replaced. */
export interface PlannedReplacement {
  /** Milliseconds from the open (see {@link replacementDelay}). */
  delay: number;
  /** The close reason the replaced connection goes with. */
  reason: string;
}

/**
 * The replacement {@link replacementDelay} plans for a connection opened at `now`, with the
 * reason that names what comes first (undefined: it is never replaced).
 */
export function plannedReplacement(
  options: Pick<ClientTuning, "maxConnectionAge" | "tokenRefreshMargin" | "minUptime">,
  tokenExp: number | undefined,
  now: number,
): PlannedReplacement | undefined {
  const delay = replacementDelay(options, tokenExp, now);
  if (delay === undefined) {
    return undefined;
  }
  const ageCap = options.maxConnectionAge;
  const forToken = tokenExp !== undefined && (ageCap <= 0 || delay < ageCap);
  return {
    delay,
    reason: forToken ? "refreshing the token before it expires" : "refreshing before the connection's maximum age",
  };
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
