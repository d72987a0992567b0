export { CloudWebSocketClient } from "./client.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export { CognitoTokens, REFRESH_MARGIN_MS, SignInError, signInTarget, type Fetch, type SignInTarget } from "./cognito.js";
export {
  ClientProtocol,
  MAX_PENDING_LISTS,
  RequestError,
  SubscriptionError,
  type ClientError,
  type GapInfo,
  type HistoryResetInfo,
  type ProtocolEvents,
  type ProtocolHost,
  type ProtocolTuning,
} from "./core.js";
export {
  type ClientEvents,
  type CloseInfo,
  type ConnectionState,
  type OpenInfo,
  type ReconnectInfo,
  type StateChange,
} from "./events.js";
export { buildHandshake, type TokenTransport } from "./handshake.js";
export { deadConnectionBound } from "./keepalive.js";
export { replacementDelay, tokenExpiry } from "./lifetime.js";
export { DEFAULT, type ClientTuning, type CloudWebSocketClientOptions, type Provider, type StackOutputs } from "./options.js";
export { DeploymentSequence } from "./sequence.js";
export {
  DeploymentState,
  epochMs,
  LOG_MESSAGE_CHARS,
  logEntryOf,
  parseSnapshotData,
  RECENT_LOGS,
  stackStatusOf,
  type DeploymentSnapshotData,
  type FoldResult,
  type LogEntry,
  type StackSnapshot,
  type StackState,
  type StackStatus,
} from "./state.js";
export type { WebSocketConstructor, WebSocketLike } from "./websocket.js";
// The protocol's public part, listed on purpose (not `export *`): the message and event types
// a handler receives or `send` takes, the helpers that narrow them, the error class a
// `protocol` error carries, and the constants an application branches on. Wire internals
// (the subprotocol, request-id and frame-separator limits, the frame parser) stay in
// ./protocol.js and ./protocol.generated.js, where this package's own code and tests import them.
export {
  DEFAULT_LIST_LIMIT,
  DEPLOYMENT_STATUSES,
  ERROR_CODES,
  isEventOf,
  isTerminalStatus,
  isTruncated,
  isValidDeploymentId,
  KNOWN_EVENT_TYPES,
  LOG_LEVELS,
  MAX_LIST_LIMIT,
  ProtocolViolation,
  TERMINAL_STATUSES,
  type AnyDeploymentEvent,
  type ClientMessage,
  type DeploymentEvent,
  type DeploymentsMessage,
  type DeploymentStatus,
  type DeploymentStatusData,
  type DeploymentSummary,
  type ErrorCode,
  type ErrorMessage,
  type EventDataMap,
  type EventOf,
  type JsonObject,
  type JsonPrimitive,
  type JsonValue,
  type KnownEventType,
  type ListDeploymentsRequest,
  type LogCreatedData,
  type LogLevel,
  type PingRequest,
  type PongMessage,
  type ServerMessage,
  type SnapshotMessage,
  type StackData,
  type StackDeployedData,
  type StackFailedData,
  type StackProgressData,
  type StackStartedData,
  type SubscribedMessage,
  type SubscribeRequest,
  type TerminalStatus,
  type TruncatedData,
  type UnsubscribedMessage,
  type UnsubscribeRequest,
} from "./protocol.js";
