/**
 * Requests sent on one connection and not answered yet, keyed by their `id`.
 *
 * API Gateway may run one connection's frames concurrently, so replies come
 * back in any order: a reply is matched to its request by the `id` it echoes,
 * never by position. No I/O here; the client registers what it sends and
 * asks which request a reply answers.
 */

import type { DeploymentsMessage, ErrorMessage, PongMessage, SubscribedMessage, UnsubscribedMessage } from "./protocol.js";

/** A request waiting for its reply. `S` is what the caller keeps to recognise its subscription. */
export type PendingRequest<S> =
  | { action: "subscribe"; deploymentId: string; since: number | undefined; subscription: S }
  | { action: "unsubscribe"; deploymentId: string }
  | { action: "ping" }
  | { action: "list_deployments" };

/** The replies that answer a request. */
export type Reply = SubscribedMessage | UnsubscribedMessage | PongMessage | DeploymentsMessage | ErrorMessage;

/** The most requests remembered per connection. */
export const MAX_PENDING_REQUESTS = 1_000;

const ANSWERS: Record<Exclude<Reply["type"], "error">, PendingRequest<unknown>["action"]> = {
  subscribed: "subscribe",
  unsubscribed: "unsubscribe",
  pong: "ping",
  deployments: "list_deployments",
};

export class PendingRequests<S> {
  readonly #pending = new Map<string, PendingRequest<S>>();
  #counter = 0;

  /** How many requests wait for a reply. */
  get size(): number {
    return this.#pending.size;
  }

  /**
   * A fresh id for a request of `action`: unique for the client's lifetime,
   * so a late reply from an earlier connection can never match a new request.
   */
  nextId(action: string): string {
    this.#counter += 1;
    return `${action.slice(0, 40)}-${this.#counter}`;
  }

  /**
   * Registers a request sent (or about to be) with `id`. Beyond
   * {@link MAX_PENDING_REQUESTS} the oldest is forgotten: a server that
   * leaves requests unanswered (pings, on a connection kept alive by events)
   * must not grow this without bound.
   */
  add(id: string, request: PendingRequest<S>): void {
    this.#pending.delete(id);
    this.#pending.set(id, request);
    for (const oldest of this.#pending.keys()) {
      if (this.#pending.size <= MAX_PENDING_REQUESTS) {
        break;
      }
      this.#pending.delete(oldest);
    }
  }

  /**
   * Removes and returns the request `reply` answers, or undefined when it
   * answers none that is pending (a request forgotten meanwhile, or a reply
   * nobody asked for).
   *
   * A reply that echoes an id is matched by it alone. One without (a server
   * older than request ids) falls back to the oldest pending request it
   * could answer; an error naming neither an id nor a deployment is matched
   * only when a single pending request could have caused it, rather than
   * blamed on whichever was sent first.
   */
  take(reply: Reply): PendingRequest<S> | undefined {
    if (reply.id !== undefined) {
      const request = this.#pending.get(reply.id);
      if (request === undefined || (reply.type !== "error" && request.action !== ANSWERS[reply.type])) {
        return undefined;
      }
      this.#pending.delete(reply.id);
      return request;
    }
    const candidates = [...this.#pending].filter(([, request]) => couldAnswer(reply, request));
    const chosen = reply.type === "error" && reply.deployment_id === undefined && candidates.length !== 1 ? undefined : candidates[0];
    if (chosen === undefined) {
      return undefined;
    }
    this.#pending.delete(chosen[0]);
    return chosen[1];
  }

  /** Forgets everything: the connection they were sent on is gone, and so are their replies. */
  clear(): void {
    this.#pending.clear();
  }
}

function couldAnswer<S>(reply: Reply, request: PendingRequest<S>): boolean {
  const deploymentId = request.action === "subscribe" || request.action === "unsubscribe" ? request.deploymentId : undefined;
  if (reply.type !== "error") {
    return (
      request.action === ANSWERS[reply.type] &&
      (reply.type === "pong" || reply.type === "deployments" || reply.deployment_id === deploymentId)
    );
  }
  if (reply.action !== undefined && reply.action !== request.action) {
    return false;
  }
  return reply.deployment_id === undefined || reply.deployment_id === deploymentId;
}
