/**
 * The client side of the cloud-ws protocol, without I/O (like the Python
 * client's sans-I/O `ClientProtocol`).
 *
 * {@link ClientProtocol} knows which deployments are subscribed and where each
 * stream stands, which requests wait for a reply (by `id`), and what to send
 * when a connection opens. It turns API calls into messages for its host to
 * send, and received frames into deliveries: each deployment's events once
 * and in `seq` order, the replies, the gaps. It never touches a socket or a
 * timer: the host moves frames, says when a connection opens and closes, and
 * calls {@link ClientProtocol.tick} when the deadline it was given is due, so
 * all of it is testable with a fake host and a fake clock.
 */

import {
  type AnyDeploymentEvent,
  type ClientMessage,
  type DeploymentsMessage,
  type DeploymentSummary,
  type ErrorMessage,
  type ListDeploymentsRequest,
  MAX_LIST_LIMIT,
  isValidDeploymentId,
  parseServerMessage,
  type PongMessage,
  type ServerMessage,
  SNAPSHOT_TYPE,
  type SnapshotMessage,
  splitFrame,
  type SubscribedMessage,
  type UnsubscribedMessage,
} from "./protocol.js";
import { RECONNECT_ERROR_CODES, REFUSED_SUBSCRIPTION_CODES } from "./protocol.generated.js";
import { PendingRequests } from "./requests.js";
import { DeploymentSequence } from "./sequence.js";

/** The protocol's tuning knobs (a subset of the client's options). Times are milliseconds. */
export interface ProtocolTuning {
  /** How long missing events may stay missing before resubscribing with `since`. */
  gapTimeout: number;
  /** Resubscriptions that fail to fill the same gap before the client skips it (and says so). */
  maxGapRetries: number;
  /** Messages kept while disconnected; further ones are dropped (an `error` reports each). */
  maxQueuedMessages: number;
}

export interface GapInfo {
  deployment_id: string;
  /** The last `seq` delivered in order. */
  last: number;
  /** The highest `seq` known to exist. */
  latest: number;
  /** `resubscribe`: asked again with `since` = `last`; `skipped`: gave up on the missing events. */
  action: "resubscribe" | "skipped";
}

/**
 * A subscribe with `since` was answered with a lower `seq`: the server's
 * history is not the one the client followed (a restarted local stack forgot
 * everything, or a deployment id was reused after its history expired). The
 * client dropped its position and starts again from the snapshot that comes
 * next; a view drops what it folded and starts from it too.
 */
export interface HistoryResetInfo {
  deployment_id: string;
  /** The server's latest `seq` (its ack's): where the new history stands. */
  seq: number;
  /** The last `seq` the client had (the `since` it resubscribed with). */
  previous: number;
}

export type ClientError =
  | { kind: "server"; message: ErrorMessage; deployment_id?: string }
  | { kind: "transport"; error: Error }
  | { kind: "protocol"; error: Error }
  | { kind: "handler"; error: unknown; event: string }
  | { kind: "queue_full"; message: ClientMessage };

/** What the protocol core reports, per type (the client adds its connection events). */
export interface ProtocolEvents {
  /** Every deployment event, per deployment in `seq` order, each exactly once. */
  event: AnyDeploymentEvent;
  subscribed: SubscribedMessage;
  /** A deployment's state folded up to `seq`, sent right after `subscribed` (not an event: never sequenced). */
  snapshot: SnapshotMessage;
  unsubscribed: UnsubscribedMessage;
  pong: PongMessage;
  /** An answer to `list_deployments` (also handed to the promise of the call that asked). */
  deployments: DeploymentsMessage;
  error: ClientError;
  gap: GapInfo;
  /** The server's history of a deployment went backwards; its snapshot follows (see {@link HistoryResetInfo}). */
  history_reset: HistoryResetInfo;
}

/** A subscribe refused by the server (or cancelled by `unsubscribe`/`disconnect`). */
export class SubscriptionError extends Error {
  override name = "SubscriptionError";
  readonly code: string;
  readonly deploymentId: string;

  constructor(deploymentId: string, code: string, message: string) {
    super(message);
    this.code = code;
    this.deploymentId = deploymentId;
  }
}

/** A request other than a subscribe refused by the server (e.g. `list_deployments` with a bad limit). */
export class RequestError extends Error {
  override name = "RequestError";
  readonly code: string;
  readonly action: string;

  constructor(action: string, code: string, message: string) {
    super(message);
    this.code = code;
    this.action = action;
  }
}

/** The most `list_deployments` calls waiting for an answer at once; further ones are refused. */
export const MAX_PENDING_LISTS = 100;

/** What {@link ClientProtocol} asks of whoever owns the connection. */
export interface ProtocolHost {
  /** Sends one message on the open connection (only called between `opened()` and `closed()`). */
  send(message: ClientMessage): void;
  /** Hands a report to its handlers. */
  emit<K extends keyof ProtocolEvents>(type: K, payload: ProtocolEvents[K]): void;
  /** Hands an event, in order, to the `event` handlers and to those of its own type. */
  deliver(event: AnyDeploymentEvent): void;
  /** The connection must be replaced (the server said only a new one helps). */
  reconnect(reason: string): void;
  /** Call {@link ClientProtocol.tick} at this clock time (undefined: nothing to wait for). */
  wake(at: number | undefined): void;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

interface ListCall {
  readonly message: ListDeploymentsRequest & { id: string };
  resolve(rows: DeploymentSummary[]): void;
  reject(error: Error): void;
}

interface Subscription {
  readonly id: string;
  readonly sequence: DeploymentSequence;
  waiters: Waiter<SubscribedMessage>[];
  /** When the current gap is given up waiting for (clock time), if one is open. */
  gapDeadline: number | undefined;
  gapRetries: number;
  gapRetriesAt: number | null;
  /**
   * Whether the server answered a subscribe since the last gap retry. Only
   * an answered retry that still leaves the hole counts towards skipping it:
   * an unanswered one (throttled, lost) proves nothing about the history.
   */
  answered: boolean;
}

/** Codes after which the subscription cannot succeed as asked: it is dropped (generated from conformance/protocol.json). */
export const FATAL_SUBSCRIBE_CODES: ReadonlySet<string> = new Set<string>(REFUSED_SUBSCRIPTION_CODES);
/** Codes that a new connection (with a fresh token) fixes (generated from conformance/protocol.json). */
export const RECONNECT_CODES: ReadonlySet<string> = new Set<string>(RECONNECT_ERROR_CODES);

export class ClientProtocol {
  readonly #host: ProtocolHost;
  readonly #tuning: Readonly<ProtocolTuning>;
  readonly #clock: () => number;
  readonly #subscriptions = new Map<string, Subscription>();
  /** Requests sent on the current connection and not answered yet, by id. */
  readonly #pending = new PendingRequests<Subscription>();
  readonly #queue: ClientMessage[] = [];
  /** `list_deployments` calls not answered yet, by id: sent again on the next connection if it is lost. */
  readonly #lists = new Map<string, ListCall>();
  #open = false;
  /**
   * Events an ack released (they raced ahead of it), held for the snapshot
   * that follows the ack in the same frame, so the user gets the snapshot
   * first and then every event after it.
   */
  #held: { subscription: Subscription; events: AnyDeploymentEvent[] } | undefined;
  /** Counts connections, so a frame's remaining messages are dropped once its connection is gone. */
  #connection = 0;
  #wakeAt: number | undefined;

  /**
   * @param host moves the messages and hands out the reports.
   * @param tuning gap and queue limits.
   * @param clock the time deadlines are expressed in (milliseconds).
   */
  constructor(host: ProtocolHost, tuning: Readonly<ProtocolTuning>, clock: () => number = Date.now) {
    this.#host = host;
    this.#tuning = tuning;
    this.#clock = clock;
  }

  /** Deployments currently subscribed to, in subscription order. */
  get subscriptions(): string[] {
    return [...this.#subscriptions.keys()];
  }

  /** Messages waiting for the next open connection. */
  get queuedMessages(): number {
    return this.#queue.length;
  }

  /** Requests sent on this connection whose reply has not come yet. */
  get pendingRequests(): number {
    return this.#pending.size;
  }

  /** The last `seq` delivered in order for a deployment (undefined when not known). */
  lastSeq(deploymentId: string): number | undefined {
    return this.#subscriptions.get(deploymentId)?.sequence.last ?? undefined;
  }

  // -- API calls -------------------------------------------------------------------------------

  /** See `CloudWebSocketClient.subscribe`. */
  subscribe(deploymentId: string, options: { since?: number } = {}): Promise<SubscribedMessage> {
    if (!isValidDeploymentId(deploymentId)) {
      return Promise.reject(
        new SubscriptionError(deploymentId, "invalid_deployment_id", "deployment_id must match ^[A-Za-z0-9_-]{1,64}$"),
      );
    }
    const since = options.since;
    if (since !== undefined && !(Number.isInteger(since) && since >= 0)) {
      return Promise.reject(new SubscriptionError(deploymentId, "invalid_since", "since must be a non-negative integer"));
    }
    let subscription = this.#subscriptions.get(deploymentId);
    if (subscription === undefined) {
      subscription = {
        id: deploymentId,
        sequence: new DeploymentSequence(since),
        waiters: [],
        gapDeadline: undefined,
        gapRetries: 0,
        gapRetriesAt: null,
        answered: false,
      };
      this.#subscriptions.set(deploymentId, subscription);
    }
    const target = subscription;
    const acked = new Promise<SubscribedMessage>((resolve, reject) => {
      target.waiters.push({ resolve, reject });
    });
    if (this.#open) {
      this.#sendSubscribe(target);
    }
    return acked;
  }

  /** See `CloudWebSocketClient.listDeployments`. */
  listDeployments(limit?: number): Promise<DeploymentSummary[]> {
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= MAX_LIST_LIMIT)) {
      return Promise.reject(new RequestError("list_deployments", "invalid_limit", `limit must be an integer from 1 to ${MAX_LIST_LIMIT}`));
    }
    if (this.#lists.size >= MAX_PENDING_LISTS) {
      return Promise.reject(new RequestError("list_deployments", "too_many_requests", "too many deployment lists are waiting for an answer"));
    }
    const id = this.#pending.nextId("list_deployments");
    const message: ListDeploymentsRequest & { id: string } =
      limit === undefined ? { action: "list_deployments", id } : { action: "list_deployments", limit, id };
    return new Promise<DeploymentSummary[]>((resolve, reject) => {
      this.#lists.set(id, { message, resolve, reject });
      if (this.#open) {
        this.#transmit(message);
      }
    });
  }

  /** See `CloudWebSocketClient.unsubscribe`. */
  unsubscribe(deploymentId: string): void {
    const subscription = this.#subscriptions.get(deploymentId);
    if (subscription === undefined) {
      return;
    }
    this.#drop(subscription, "unsubscribed", "unsubscribed before the server acknowledged");
    if (this.#open) {
      this.#transmit({ action: "unsubscribe", deployment_id: deploymentId });
    }
    this.#reschedule();
  }

  /** Sends a message now, or queues it until the next open connection. */
  send(message: ClientMessage): void {
    if (this.#open) {
      this.#transmit(message);
    } else if (this.#queue.length < this.#tuning.maxQueuedMessages) {
      this.#queue.push(message);
    } else {
      this.#host.emit("error", { kind: "queue_full", message });
    }
  }

  // -- connection events -----------------------------------------------------------------------

  /** A connection opened: every subscription is sent again (resuming from its last `seq`), then the queue. */
  opened(): void {
    this.#connection += 1;
    this.#open = true;
    this.#pending.clear();
    for (const subscription of this.#subscriptions.values()) {
      this.#sendSubscribe(subscription);
    }
    // Lists asked for on a connection that was lost before it answered (or before any opened).
    for (const call of this.#lists.values()) {
      this.#transmit(call.message);
    }
    for (const message of this.#queue.splice(0)) {
      this.#transmit(message);
    }
  }

  /** The connection is gone: replies to what was sent on it will never come, gaps wait for the next. */
  closed(): void {
    this.#connection += 1;
    this.#open = false;
    this.#pending.clear();
    for (const subscription of this.#subscriptions.values()) {
      subscription.gapDeadline = undefined;
    }
    this.#reschedule();
  }

  /** One text frame from the server: its messages (one per line) are handled in order. */
  receive(frame: string): void {
    const connection = this.#connection;
    for (const line of splitFrame(frame)) {
      if (connection !== this.#connection) {
        break; // a handler closed or replaced the connection: the rest belongs to a dead one
      }
      let message: ServerMessage;
      try {
        message = parseServerMessage(line);
      } catch (error) {
        // One unreadable message does not cost the rest of the batch.
        this.#host.emit("error", { kind: "protocol", error: error instanceof Error ? error : new Error("unreadable message") });
        continue;
      }
      const held = this.#held;
      if (held !== undefined && !(message.type === SNAPSHOT_TYPE && message.deployment_id === held.subscription.id)) {
        this.#releaseHeld(); // no snapshot came right after the ack: hand them over before anything else
      }
      this.#handle(message);
    }
    // Already in order and past the sequence, so handed over even when the connection is gone.
    this.#releaseHeld();
    this.#reschedule();
  }

  /** The deadline given to `host.wake` (or a later one) has come: act on the gaps that are due. */
  tick(): void {
    const now = this.#clock();
    this.#wakeAt = undefined; // reported again below, even when unchanged (a timer may fire early)
    for (const subscription of [...this.#subscriptions.values()]) {
      if (subscription.gapDeadline !== undefined && subscription.gapDeadline <= now) {
        subscription.gapDeadline = undefined;
        this.#gapTimedOut(subscription);
      }
    }
    this.#reschedule();
  }

  // -- received messages -----------------------------------------------------------------------

  #handle(message: ServerMessage): void {
    switch (message.type) {
      case "subscribed":
        this.#handleSubscribed(message as SubscribedMessage);
        return;
      case "unsubscribed":
        this.#pending.take(message as UnsubscribedMessage);
        this.#host.emit("unsubscribed", message as UnsubscribedMessage);
        return;
      case "pong":
        this.#handlePong(message as PongMessage);
        return;
      case "error":
        this.#handleServerError(message as ErrorMessage);
        return;
      case "deployments":
        this.#handleDeployments(message as DeploymentsMessage);
        return;
      case SNAPSHOT_TYPE:
        this.#host.emit("snapshot", message as SnapshotMessage);
        this.#releaseHeld();
        return;
      default:
        this.#handleEvent(message as AnyDeploymentEvent);
    }
  }

  #handleSubscribed(ack: SubscribedMessage): void {
    const request = this.#pending.take(ack);
    this.#host.emit("subscribed", ack);
    if (request?.action !== "subscribe") {
      return; // answers nothing we sent on this connection
    }
    const subscription = this.#subscriptions.get(ack.deployment_id);
    if (subscription === undefined) {
      // Unsubscribed while the subscribe was under way: the server may have run the two in
      // either order, so say it again (unsubscribing twice is harmless) rather than keep
      // receiving a deployment nobody watches.
      if (this.#open) {
        this.#transmit({ action: "unsubscribe", deployment_id: ack.deployment_id });
      }
      return;
    }
    if (request.subscription !== subscription) {
      // Answers the subscribe of an earlier subscription to the same deployment: its `since`
      // is not this one's, so it must not move the position.
      return;
    }
    subscription.answered = true;
    if (request.since !== undefined && ack.seq < request.since) {
      this.#historyWentBack(subscription, ack, request.since);
    }
    const released = subscription.sequence.acknowledge(ack, request.since);
    for (const waiter of subscription.waiters.splice(0)) {
      waiter.resolve(ack);
    }
    if (released.length > 0) {
      this.#held = { subscription, events: released };
    } else {
      this.#deliver(subscription, released);
    }
  }

  /**
   * A history only grows (an event is stored before it is sent), so an ack below the `since`
   * asked for comes from another history. Mixing the two would drop the new one's events as
   * duplicates of the old one's: the position starts again at the ack's `seq` (the snapshot
   * that follows stands for what is before it) and the user is told. A new history that has
   * already grown past `since` cannot be told apart by `seq` alone.
   */
  #historyWentBack(subscription: Subscription, ack: SubscribedMessage, since: number): void {
    subscription.sequence.restart(ack.seq);
    subscription.gapDeadline = undefined;
    subscription.gapRetries = 0;
    subscription.gapRetriesAt = null;
    this.#host.emit("history_reset", { deployment_id: ack.deployment_id, seq: ack.seq, previous: since });
  }

  #releaseHeld(): void {
    const held = this.#held;
    if (held !== undefined) {
      this.#held = undefined;
      this.#deliver(held.subscription, held.events);
    }
  }

  #handleDeployments(reply: DeploymentsMessage): void {
    this.#pending.take(reply);
    const call = reply.id === undefined ? undefined : this.#lists.get(reply.id);
    if (call !== undefined && reply.id !== undefined) {
      this.#lists.delete(reply.id);
    }
    this.#host.emit("deployments", reply);
    call?.resolve(reply.deployments);
  }

  #handlePong(pong: PongMessage): void {
    this.#pending.take(pong);
    this.#host.emit("pong", pong);
    // The server's last seq per subscription: being behind it means events were lost with
    // nothing later to reveal it. It opens a gap, which is given `gapTimeout` to fill (events
    // posted just before the pong may still be on their way), then asked for with `since`.
    for (const [deploymentId, latest] of Object.entries(pong.latest ?? {})) {
      const subscription = this.#subscriptions.get(deploymentId);
      if (subscription === undefined || subscription.sequence.last === null) {
        continue; // not ours any more, or its ack (which sets the position) is still to come
      }
      subscription.sequence.observeLatest(latest);
      this.#watchGap(subscription, false);
    }
  }

  #handleServerError(error: ErrorMessage): void {
    const request = this.#pending.take(error);
    const deploymentId =
      error.deployment_id ?? (request?.action === "subscribe" || request?.action === "unsubscribe" ? request.deploymentId : undefined);
    this.#host.emit(
      "error",
      deploymentId === undefined ? { kind: "server", message: error } : { kind: "server", message: error, deployment_id: deploymentId },
    );
    if (RECONNECT_CODES.has(error.code)) {
      // A waiting list is asked for again on the new connection.
      this.#host.reconnect(`server said ${error.code}`);
      return;
    }
    const list = error.id === undefined ? undefined : this.#lists.get(error.id);
    if (list !== undefined && error.id !== undefined) {
      this.#lists.delete(error.id);
      list.reject(new RequestError("list_deployments", error.code, error.message));
      return;
    }
    if (request?.action === "subscribe" && FATAL_SUBSCRIBE_CODES.has(error.code)) {
      // Only the subscription that sent the refused request is dropped: a newer one to the
      // same deployment, or any other, is untouched.
      const subscription = request.subscription;
      if (this.#subscriptions.get(subscription.id) === subscription) {
        this.#drop(subscription, error.code, error.message);
      }
    }
  }

  #handleEvent(event: AnyDeploymentEvent): void {
    const subscription = this.#subscriptions.get(event.deployment_id);
    if (subscription === undefined) {
      return; // unsubscribed meanwhile
    }
    this.#deliver(subscription, subscription.sequence.push(event));
  }

  #deliver(subscription: Subscription, released: AnyDeploymentEvent[]): void {
    for (const event of released) {
      if (this.#subscriptions.get(subscription.id) !== subscription) {
        return; // a handler unsubscribed
      }
      this.#host.deliver(event);
    }
    this.#watchGap(subscription, released.length > 0);
  }

  // -- gaps ------------------------------------------------------------------------------------

  #watchGap(subscription: Subscription, progressed: boolean): void {
    const sequence = subscription.sequence;
    if (sequence.takeReplayContinuation() && this.#open) {
      this.#sendSubscribe(subscription); // the replay was capped: ask for the rest now
    }
    if (!sequence.hasGap) {
      subscription.gapDeadline = undefined;
      subscription.gapRetries = 0;
      return;
    }
    if (progressed || subscription.gapDeadline === undefined) {
      subscription.gapDeadline = this.#clock() + this.#tuning.gapTimeout;
    }
  }

  #gapTimedOut(subscription: Subscription): void {
    const sequence = subscription.sequence;
    if (this.#subscriptions.get(subscription.id) !== subscription || !sequence.hasGap || !this.#open) {
      return;
    }
    const last = sequence.last ?? 0;
    if (subscription.gapRetriesAt !== last) {
      subscription.gapRetriesAt = last;
      subscription.gapRetries = 0;
    } else if (!subscription.answered) {
      // The last retry got no answer at all: ask again without counting it.
      subscription.gapRetries = Math.max(0, subscription.gapRetries - 1);
    }
    if (subscription.gapRetries >= this.#tuning.maxGapRetries) {
      // The missing events are gone (expired from history): carry on without them, loudly.
      this.#host.emit("gap", { deployment_id: subscription.id, last, latest: sequence.latest, action: "skipped" });
      subscription.gapRetries = 0;
      this.#deliver(subscription, sequence.skipGap());
      return;
    }
    subscription.gapRetries += 1;
    subscription.answered = false;
    this.#host.emit("gap", { deployment_id: subscription.id, last, latest: sequence.latest, action: "resubscribe" });
    this.#sendSubscribe(subscription);
    subscription.gapDeadline = this.#clock() + this.#tuning.gapTimeout;
  }

  /** Tells the host the earliest gap deadline, when it changed. */
  #reschedule(): void {
    let earliest: number | undefined;
    for (const subscription of this.#subscriptions.values()) {
      const deadline = subscription.gapDeadline;
      if (deadline !== undefined && (earliest === undefined || deadline < earliest)) {
        earliest = deadline;
      }
    }
    if (earliest !== this.#wakeAt) {
      this.#wakeAt = earliest;
      this.#host.wake(earliest);
    }
  }

  // -- sending ---------------------------------------------------------------------------------

  #sendSubscribe(subscription: Subscription): void {
    const since = subscription.sequence.resumeSince;
    const message: ClientMessage =
      since === undefined
        ? { action: "subscribe", deployment_id: subscription.id }
        : { action: "subscribe", deployment_id: subscription.id, since };
    this.#transmit(message, subscription);
  }

  /**
   * Hands one request to the host with an `id` (the caller's, or a fresh
   * one) under which its reply is awaited. `subscription` is the one a
   * subscribe is sent for; a raw subscribe from `send()` has none.
   */
  #transmit(message: ClientMessage, subscription?: Subscription): void {
    const id = message.id ?? this.#pending.nextId(message.action);
    if (message.action === "subscribe" && subscription !== undefined) {
      this.#pending.add(id, { action: "subscribe", deploymentId: message.deployment_id, since: message.since, subscription });
    } else if (message.action === "unsubscribe") {
      this.#pending.add(id, { action: "unsubscribe", deploymentId: message.deployment_id });
    } else if (message.action === "ping") {
      this.#pending.add(id, { action: "ping" });
    } else if (message.action === "list_deployments") {
      this.#pending.add(id, { action: "list_deployments" });
    }
    this.#host.send({ ...message, id });
  }

  #drop(subscription: Subscription, code: string, message: string): void {
    this.#subscriptions.delete(subscription.id);
    subscription.gapDeadline = undefined;
    for (const waiter of subscription.waiters.splice(0)) {
      waiter.reject(new SubscriptionError(subscription.id, code, message));
    }
  }
}
