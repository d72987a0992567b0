/** Reconnection delays: exponential growth, capped, with full jitter. */

export interface BackoffOptions {
  /** Upper bound of the first retry's delay, in ms. */
  minReconnectionDelay: number;
  /** No delay is ever longer than this, in ms. */
  maxReconnectionDelay: number;
  /** Growth of the upper bound per failed attempt. */
  reconnectionDelayGrowFactor: number;
}

/**
 * The delay before retry number `attempt` (0 for the first retry after a
 * stable connection): uniformly random in [0, min(max, min × factor^attempt)]
 * — "full jitter", so a fleet of clients dropped at once does not come back
 * in lockstep.
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(
    options.maxReconnectionDelay,
    options.minReconnectionDelay * options.reconnectionDelayGrowFactor ** Math.max(0, attempt),
  );
  return Math.floor(Math.min(1, Math.max(0, random())) * ceiling);
}
