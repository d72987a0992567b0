/**
 * Per-deployment ordering, deduplication and gap detection: the protocol's
 * rules for `seq`, with no I/O, so they are testable on their own.
 *
 * - a `seq` at or below the last one delivered (or already buffered) is a
 *   duplicate and is dropped;
 * - a `seq` more than one past the last delivered is buffered until the
 *   missing ones arrive (a replay and live events can interleave);
 * - events are released strictly in `seq` order, each exactly once.
 */

import type { AnyDeploymentEvent, SubscribedMessage } from "./protocol.js";

export class DeploymentSequence {
  #last: number | null;
  #latest = 0;
  #replayEnd: number | null = null;
  readonly #pending = new Map<number, AnyDeploymentEvent>();
  #duplicates = 0;

  /**
   * @param since the last `seq` the caller already has, if any. Without it the
   * position is taken from the first `subscribed` ack ("from now on").
   */
  constructor(since?: number) {
    this.#last = since ?? null;
  }

  /** The last `seq` delivered in order (null before the position is known). */
  get last(): number | null {
    return this.#last;
  }

  /** The highest `seq` known to exist (from acks and received events). */
  get latest(): number {
    return this.#latest;
  }

  /** Events received ahead of a missing one, waiting. */
  get buffered(): number {
    return this.#pending.size;
  }

  /** How many duplicates were dropped so far. */
  get duplicates(): number {
    return this.#duplicates;
  }

  /** Whether events are known to be missing (buffered ones wait, or an ack announced more). */
  get hasGap(): boolean {
    return this.#last !== null && (this.#pending.size > 0 || this.#latest > this.#last);
  }

  /** The `since` to subscribe with now: the last contiguous `seq`, when known. */
  get resumeSince(): number | undefined {
    return this.#last ?? undefined;
  }

  /**
   * Whether a capped replay has been consumed and the rest must be asked for
   * (the server replays at most a fixed number of events per subscribe).
   * Reading it clears the flag.
   */
  takeReplayContinuation(): boolean {
    if (this.#replayEnd !== null && this.#last !== null && this.#last >= this.#replayEnd) {
      this.#replayEnd = null;
      return this.#latest > this.#last;
    }
    return false;
  }

  /**
   * Applies a `subscribed` ack for a subscribe sent with `since`; returns the
   * events it releases (buffered ones that turned out to be in order).
   */
  acknowledge(ack: SubscribedMessage, since: number | undefined): AnyDeploymentEvent[] {
    this.#latest = Math.max(this.#latest, ack.seq);
    if (this.#last === null) {
      this.#last = since ?? ack.seq;
    }
    if (since !== undefined && since + ack.replay < ack.seq) {
      this.#replayEnd = since + ack.replay;
    }
    return this.#drain();
  }

  /**
   * Records that the server has stored events up to `seq` (a `pong`'s
   * `latest`). Beyond what was delivered, it opens a gap even when no later
   * event arrived to reveal it: the lost tail of a stream.
   */
  observeLatest(seq: number): void {
    this.#latest = Math.max(this.#latest, seq);
  }

  /**
   * Starts again at `seq`: the server's history went backwards, below what was
   * delivered (a restarted local stack, an id reused after its history
   * expired). What is held or known belongs to a history that no longer
   * exists: the position continues from `seq`, as a live-only subscription
   * does from its ack (the snapshot that follows stands for the rest).
   */
  restart(seq: number): void {
    this.#last = seq;
    this.#latest = seq;
    this.#replayEnd = null;
    this.#pending.clear();
  }

  /** Offers one received event; returns the events now deliverable, in order. */
  push(event: AnyDeploymentEvent): AnyDeploymentEvent[] {
    const seq = event.seq;
    if ((this.#last !== null && seq <= this.#last) || this.#pending.has(seq)) {
      this.#duplicates += 1;
      return [];
    }
    this.#pending.set(seq, event);
    this.#latest = Math.max(this.#latest, seq);
    return this.#drain();
  }

  /**
   * Gives up on the missing events: moves past the hole to the first buffered
   * event (or to the latest known `seq`) and returns what that releases.
   */
  skipGap(): AnyDeploymentEvent[] {
    if (this.#last === null) {
      return [];
    }
    const buffered = [...this.#pending.keys()];
    this.#last = buffered.length > 0 ? Math.min(...buffered) - 1 : Math.max(this.#last, this.#latest);
    this.#replayEnd = null;
    return this.#drain();
  }

  #drain(): AnyDeploymentEvent[] {
    if (this.#last === null) {
      return [];
    }
    for (const seq of this.#pending.keys()) {
      if (seq <= this.#last) {
        this.#pending.delete(seq);
        this.#duplicates += 1;
      }
    }
    const released: AnyDeploymentEvent[] = [];
    for (;;) {
      const next = this.#pending.get(this.#last + 1);
      if (next === undefined) {
        return released;
      }
      this.#pending.delete(next.seq);
      this.#last = next.seq;
      released.push(next);
    }
  }
}
