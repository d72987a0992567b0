/**
 * Typed definitions of the cloud-ws wire protocol (docs/protocol.md), and the
 * two functions that turn a received text frame into typed messages: a frame
 * carries one or more, one per line ({@link splitFrame}), each parsed by
 * {@link parseServerMessage}.
 *
 * Event `data` is the producer's payload: the interfaces below describe what
 * the orchestrator plugin's hooks emit (fields it may leave out are optional).
 * Any producer can emit any `domain.verb` type, so views should still check a
 * field before relying on it.
 */

import {
  DEPLOYMENT_ID_PATTERN,
  DEPLOYMENT_STATUSES as GENERATED_DEPLOYMENT_STATUSES,
  ERROR_CODES as GENERATED_ERROR_CODES,
  LOG_LEVELS as GENERATED_LOG_LEVELS,
  MAX_REQUEST_ID_CHARS,
  MESSAGE_SEPARATOR,
  TERMINAL_STATUSES as GENERATED_TERMINAL_STATUSES,
} from "./protocol.generated.js";

// The protocol constants are generated from conformance/protocol.json (tools/gen_protocol.py),
// the one source the server is tested against; this module re-exports them under their usual
// names and types. SUBPROTOCOL is offered beside the token (`bearer.<jwt>`, TOKEN_SUBPROTOCOL_PREFIX)
// and echoed back; MESSAGE_SEPARATOR separates the messages of one server frame.
export {
  DEFAULT_LIST_LIMIT,
  DEPLOYMENT_ID_PATTERN,
  MAX_LIST_LIMIT,
  MESSAGE_SEPARATOR,
  SUBPROTOCOL,
  TOKEN_SUBPROTOCOL_PREFIX,
} from "./protocol.generated.js";
/** The longest request `id` the server echoes. */
export const MAX_REQUEST_ID_LENGTH = MAX_REQUEST_ID_CHARS;

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
export interface JsonObject {
  [key: string]: JsonValue;
}

// -- client → server ---------------------------------------------------------------------------

/**
 * Every request may carry an `id` (at most {@link MAX_REQUEST_ID_LENGTH}
 * characters) that the server echoes on each reply to it. Replies are matched
 * by it, never by order: API Gateway may run one connection's frames
 * concurrently. The client fills it in when the caller does not.
 */
export interface RequestId {
  id?: string;
}

export interface SubscribeRequest extends RequestId {
  action: "subscribe";
  deployment_id: string;
  /** The last `seq` the client has; the server replays `seq > since`. */
  since?: number;
}

export interface UnsubscribeRequest extends RequestId {
  action: "unsubscribe";
  deployment_id: string;
}

export interface PingRequest extends RequestId {
  action: "ping";
}

/** Asks for the recent deployments the caller may watch, newest first (answered by `deployments`). */
export interface ListDeploymentsRequest extends RequestId {
  action: "list_deployments";
  /** How many, 1 to {@link MAX_LIST_LIMIT}; the server's default is {@link DEFAULT_LIST_LIMIT}. */
  limit?: number;
}

export type ClientMessage = SubscribeRequest | UnsubscribeRequest | PingRequest | ListDeploymentsRequest;

// -- server → client: acknowledgements and errors -----------------------------------------------

/** The request `id` a reply echoes (absent when the request carried none, or from an older server). */
export interface ReplyId {
  id?: string;
}

export interface SubscribedMessage extends ReplyId {
  type: "subscribed";
  deployment_id: string;
  /** The deployment's latest stored `seq` when the subscription took effect (0 before any event). */
  seq: number;
  /** How many stored events follow this ack (the replay of `since < seq ≤ this seq`). */
  replay: number;
}

export interface UnsubscribedMessage extends ReplyId {
  type: "unsubscribed";
  deployment_id: string;
}

export interface PongMessage extends ReplyId {
  type: "pong";
  timestamp?: string;
  /**
   * The last stored `seq` of every deployment the connection is subscribed
   * to (0 before any event): a client behind it lost the tail of a stream
   * (nothing later would reveal that gap) and catches up with `since`.
   */
  latest?: Record<string, number>;
}

/** Every `error.code` the server sends (generated from conformance/protocol.json). */
export const ERROR_CODES = GENERATED_ERROR_CODES;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorMessage extends ReplyId {
  type: "error";
  /** One of {@link ErrorCode}; kept open so a newer server's codes still parse. */
  code: ErrorCode | (string & {});
  message: string;
  /** The refused frame's action, when it named one. */
  action?: string;
  /** The deployment the refused request named, when it named a well-formed one. */
  deployment_id?: string;
}

// -- server → client: events --------------------------------------------------------------------

/** A status of `deployment.status`: `pending`, `deploying`, or a terminal one. */
export type DeploymentStatus = (typeof GENERATED_DEPLOYMENT_STATUSES)[number];
export const DEPLOYMENT_STATUSES: readonly DeploymentStatus[] = GENERATED_DEPLOYMENT_STATUSES;
/** The statuses after which nothing more happens: `succeeded`, `failed`, `cancelled`. */
export type TerminalStatus = (typeof GENERATED_TERMINAL_STATUSES)[number];
export const TERMINAL_STATUSES: readonly DeploymentStatus[] = GENERATED_TERMINAL_STATUSES;

/** The level of a `log.created`, lowest first: `debug`, `info`, `warning`, `error`, `critical`. */
export type LogLevel = (typeof GENERATED_LOG_LEVELS)[number];
export const LOG_LEVELS: readonly LogLevel[] = GENERATED_LOG_LEVELS;

export interface DeploymentStatusData {
  status: DeploymentStatus;
  /** The layer being deployed, 1-based (0 when the deployment just started). */
  current_layer?: number;
  total_layers?: number;
  /** Set on a terminal status that failed or was cancelled. */
  error_message?: string;
  /** Set on a terminal status. */
  duration_seconds?: number;
}

export interface StackData {
  stack_name: string;
  environment?: string;
  layer?: number;
}

export type StackStartedData = StackData;

export interface StackProgressData extends StackData {
  resources_done?: number;
  resources_in_progress?: number;
}

export interface StackDeployedData extends StackData {
  duration_seconds?: number;
  resource_count?: number;
}

export interface StackFailedData extends StackData {
  error_message: string;
  duration_seconds?: number;
}

export interface LogCreatedData {
  level: LogLevel;
  message: string;
  stack_name?: string;
  environment?: string;
}

/** What `data` becomes when the message would have exceeded 127 KB. */
export interface TruncatedData {
  truncated: true;
  original_bytes: number;
}

/** The `data` of each event type the plugin emits. */
export interface EventDataMap {
  "deployment.status": DeploymentStatusData;
  "stack.started": StackStartedData;
  "stack.progress": StackProgressData;
  "stack.deployed": StackDeployedData;
  "stack.failed": StackFailedData;
  "log.created": LogCreatedData;
}

export type KnownEventType = keyof EventDataMap;
export const KNOWN_EVENT_TYPES: readonly KnownEventType[] = [
  "deployment.status",
  "stack.started",
  "stack.progress",
  "stack.deployed",
  "stack.failed",
  "log.created",
];

/** One deployment event as it arrives: `seq` is per deployment, 1, 2, 3, … with no gaps. */
export interface DeploymentEvent<T extends string = string, D = JsonObject> {
  type: T;
  deployment_id: string;
  seq: number;
  /** The producer's id (stable across its retries), or `eb:<EventBridge id>`. */
  event_id?: string;
  data: D;
  /** The producer's time, ISO 8601. */
  timestamp?: string;
}

/** An event of a known type, with its typed `data`. */
export type EventOf<T extends KnownEventType> = DeploymentEvent<T, EventDataMap[T]>;

/** Any event, known type or not: unknown types are passed through, never dropped. */
export type AnyDeploymentEvent = DeploymentEvent<string, JsonObject>;

/** The type of {@link SnapshotMessage}. */
export const SNAPSHOT_TYPE = "deployment.snapshot";

/**
 * A deployment's state folded from every event up to `seq`, sent right after
 * `subscribed`. It is not an event: its `seq` is the position it summarises,
 * so it never enters the per-deployment sequence (events with that `seq` may
 * still follow in a replay).
 */
export interface SnapshotMessage extends ReplyId {
  type: typeof SNAPSHOT_TYPE;
  deployment_id: string;
  seq: number;
  data: JsonObject;
}

/** One deployment at a glance, as `deployments` lists it. */
export interface DeploymentSummary {
  deployment_id: string;
  status: DeploymentStatus;
  /** 0 before any event; `n + 1` once re-run after its n-th attempt ended. */
  attempt: number;
  current_layer: number | null;
  total_layers: number | null;
  /** The producer's time of its latest event: the list is newest first by it. */
  updated_at: string | null;
  environment: string | null;
}

/** The answer to `list_deployments`: the deployments the caller may watch, newest first. */
export interface DeploymentsMessage extends ReplyId {
  type: "deployments";
  deployments: DeploymentSummary[];
}

export type ServerMessage =
  | SubscribedMessage
  | DeploymentsMessage
  | UnsubscribedMessage
  | PongMessage
  | ErrorMessage
  | SnapshotMessage
  | AnyDeploymentEvent;

/** Narrows an event to a known type, so its `data` is typed. */
export function isEventOf<T extends KnownEventType>(event: AnyDeploymentEvent, type: T): event is AnyDeploymentEvent & EventOf<T> {
  return event.type === type;
}

/** Whether the server replaced an oversize event's data with a marker. */
export function isTruncated(data: unknown): data is TruncatedData {
  return isObject(data) && data["truncated"] === true;
}

export function isTerminalStatus(status: unknown): status is TerminalStatus {
  return typeof status === "string" && (TERMINAL_STATUSES as readonly string[]).includes(status);
}

export function isValidDeploymentId(value: unknown): value is string {
  return typeof value === "string" && DEPLOYMENT_ID_PATTERN.test(value);
}

/** Raised by {@link parseServerMessage} for a frame that is not a protocol message. */
export class ProtocolViolation extends Error {
  override name = "ProtocolViolation";
}

/**
 * The messages of one server frame: one JSON object per line
 * ({@link MESSAGE_SEPARATOR}); blank lines (a trailing separator) are skipped.
 */
export function splitFrame(frame: string): string[] {
  return frame.split(MESSAGE_SEPARATOR).filter((line) => line.trim() !== "");
}

/**
 * Parses one message (one line of a frame, see {@link splitFrame}). Throws
 * {@link ProtocolViolation} when it is not JSON or lacks the fields its type
 * requires.
 */
export function parseServerMessage(text: string): ServerMessage {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ProtocolViolation("frame is not JSON");
  }
  if (!isObject(value) || typeof value["type"] !== "string") {
    throw new ProtocolViolation("frame is not an object with a string type");
  }
  const type = value["type"];
  const id = value["id"];
  // Only ids the client could have sent are kept; anything else matches no request.
  const echoed: ReplyId = typeof id === "string" && id.length <= MAX_REQUEST_ID_LENGTH ? { id } : {};
  switch (type) {
    case "subscribed": {
      const deploymentId = value["deployment_id"];
      const seq = value["seq"];
      const replay = value["replay"];
      if (typeof deploymentId !== "string" || !isCount(seq)) {
        throw new ProtocolViolation("subscribed ack without deployment_id and seq");
      }
      return { type, deployment_id: deploymentId, seq, replay: isCount(replay) ? replay : 0, ...echoed };
    }
    case "unsubscribed": {
      const deploymentId = value["deployment_id"];
      if (typeof deploymentId !== "string") {
        throw new ProtocolViolation("unsubscribed ack without deployment_id");
      }
      return { type, deployment_id: deploymentId, ...echoed };
    }
    case "pong": {
      const pong: PongMessage = { type, ...echoed };
      const timestamp = value["timestamp"];
      if (typeof timestamp === "string") {
        pong.timestamp = timestamp;
      }
      const latest = value["latest"];
      if (isObject(latest)) {
        // A malformed entry is left out rather than failing the whole pong: the rest is still useful.
        pong.latest = Object.fromEntries(Object.entries(latest).filter((entry): entry is [string, number] => isCount(entry[1])));
      }
      return pong;
    }
    case "error": {
      const code = value["code"];
      const message = value["message"];
      const action = value["action"];
      const deploymentId = value["deployment_id"];
      const error: ErrorMessage = {
        type,
        code: typeof code === "string" ? code : "unknown",
        message: typeof message === "string" ? message : "",
        ...echoed,
      };
      if (typeof action === "string") {
        error.action = action;
      }
      if (typeof deploymentId === "string") {
        error.deployment_id = deploymentId;
      }
      return error;
    }
    case "deployments": {
      const rows = value["deployments"];
      if (!Array.isArray(rows)) {
        throw new ProtocolViolation("deployments without a deployments list");
      }
      // A row that is not a summary is left out rather than failing the whole list.
      const deployments = rows.map(parseSummary).filter((row): row is DeploymentSummary => row !== null);
      return { type, deployments, ...echoed };
    }
    case SNAPSHOT_TYPE: {
      const deploymentId = value["deployment_id"];
      const seq = value["seq"];
      const data = value["data"];
      if (typeof deploymentId !== "string" || !isCount(seq)) {
        throw new ProtocolViolation("snapshot without deployment_id and seq");
      }
      return { type, deployment_id: deploymentId, seq, data: isJsonObject(data) ? data : {}, ...echoed };
    }
    default: {
      const deploymentId = value["deployment_id"];
      const seq = value["seq"];
      const data = value["data"];
      if (typeof deploymentId !== "string" || !isCount(seq)) {
        throw new ProtocolViolation(`${type} event without deployment_id and seq`);
      }
      const event: AnyDeploymentEvent = {
        type,
        deployment_id: deploymentId,
        seq,
        data: isJsonObject(data) ? data : {},
      };
      const eventId = value["event_id"];
      const timestamp = value["timestamp"];
      if (typeof eventId === "string") {
        event.event_id = eventId;
      }
      if (typeof timestamp === "string") {
        event.timestamp = timestamp;
      }
      return event;
    }
  }
}

function parseSummary(row: unknown): DeploymentSummary | null {
  if (!isObject(row) || typeof row["deployment_id"] !== "string") {
    return null;
  }
  const status = row["status"];
  const attempt = row["attempt"];
  const text = (value: unknown): string | null => (typeof value === "string" ? value : null);
  const layer = (value: unknown): number | null => (isCount(value) ? value : null);
  return {
    deployment_id: row["deployment_id"],
    status: typeof status === "string" && (DEPLOYMENT_STATUSES as readonly string[]).includes(status) ? (status as DeploymentStatus) : "pending",
    attempt: isCount(attempt) ? attempt : 0,
    current_layer: layer(row["current_layer"]),
    total_layers: layer(row["total_layers"]),
    updated_at: text(row["updated_at"]),
    environment: text(row["environment"]),
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** JSON.parse only ever yields JSON values, so an object from it is a JsonObject. */
function isJsonObject(value: unknown): value is JsonObject {
  return isObject(value);
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0;
}
