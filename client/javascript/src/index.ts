export {
  CloudWebSocketClient,
  DEFAULT,
  RequestError,
  SubscriptionError,
  buildHandshake,
  deadConnectionBound,
  replacementDelay,
  tokenExpiry,
  type ClientError,
  type ClientEvents,
  type ClientTuning,
  type CloseInfo,
  type CloudWebSocketClientOptions,
  type ConnectionState,
  type GapInfo,
  type HistoryResetInfo,
  type OpenInfo,
  type Provider,
  type ReconnectInfo,
  type StackOutputs,
  type StateChange,
  type TokenTransport,
} from "./client.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export { CognitoTokens, REFRESH_MARGIN_MS, SignInError, signInTarget, type Fetch, type SignInTarget } from "./cognito.js";
export { ClientProtocol, MAX_PENDING_LISTS, type ProtocolEvents, type ProtocolHost, type ProtocolTuning } from "./core.js";
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
export * from "./protocol.js";
