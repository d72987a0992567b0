/**
 * When to try connecting again: the retry counter, the backoff delay it
 * gives, and when the counter resets.
 *
 * The counter resets only once a connection stayed up for `minUptime`, so a
 * server that accepts and at once drops every connection is retried with a
 * growing delay, not in a loop. A planned reconnect (asked for, or replacing
 * a connection before its age or token runs out) goes at once and counts as
 * no failure. Only after `maxRetries` failed attempts in a row does the
 * client give up. Separate from the connection so the counting rules sit in
 * one place, apart from the sockets and events they are about.
 */

import { backoffDelay } from "./backoff.js";
import type { ReconnectInfo } from "./events.js";
import type { ClientTuning } from "./options.js";

type Timer = ReturnType<typeof setTimeout>;

type RetryTuning = Pick<
  ClientTuning,
  "minReconnectionDelay" | "maxReconnectionDelay" | "reconnectionDelayGrowFactor" | "minUptime" | "maxRetries"
>;

export class RetryPolicy {
  readonly #options: RetryTuning;
  readonly #random: () => number;
  #attempt = 0;
  #planned = false;
  #uptimeTimer: Timer | undefined;

  constructor(options: RetryTuning, random: () => number) {
    this.#options = options;
    this.#random = random;
  }

  /** Failed attempts since the last stable connection. */
  get failures(): number {
    return this.#attempt;
  }

  /** Starts counting afresh (a new `connect()`, or a reconnect asked for). */
  reset(): void {
    this.#attempt = 0;
  }

  /** The next attempt is planned: it goes without delay and counts as no failure. */
  plan(): void {
    this.#planned = true;
  }

  /** A connection opened: once it has stayed up `minUptime`, the counter resets. */
  opened(): void {
    this.#uptimeTimer = setTimeout(() => {
      this.#attempt = 0;
    }, this.#options.minUptime);
  }

  /** The connection closed: if it was not up `minUptime`, the counter keeps counting. */
  closed(): void {
    clearTimeout(this.#uptimeTimer);
  }

  /**
   * The next attempt: its number (1 for the first retry after a stable connection) and its
   * delay. Undefined when `maxRetries` attempts in a row have failed: time to give up.
   */
  next(): ReconnectInfo | undefined {
    const planned = this.#planned;
    this.#planned = false;
    if (!planned && this.#attempt >= this.#options.maxRetries) {
      return undefined;
    }
    const delay = planned ? 0 : backoffDelay(this.#attempt, this.#options, this.#random);
    if (!planned) {
      this.#attempt += 1;
    }
    return { attempt: Math.max(1, this.#attempt), delay };
  }
}
