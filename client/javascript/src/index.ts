export {
  CloudWebSocketClient,
  DEFAULT,
  SubscriptionError,
  buildHandshake,
  deadConnectionBound,
  type ClientError,
  type ClientEvents,
  type ClientTuning,
  type CloseInfo,
  type CloudWebSocketClientOptions,
  type ConnectionState,
  type GapInfo,
  type OpenInfo,
  type Provider,
  type ReconnectInfo,
  type StackOutputs,
  type StateChange,
  type TokenTransport,
} from "./client.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export { ClientProtocol, type ProtocolEvents, type ProtocolHost, type ProtocolTuning } from "./core.js";
export { DeploymentSequence } from "./sequence.js";
export type { WebSocketConstructor, WebSocketLike } from "./websocket.js";
export * from "./protocol.js";
