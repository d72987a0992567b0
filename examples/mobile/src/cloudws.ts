/**
 * The project's TypeScript client, from its build output (`make js-build`
 * writes client/javascript/dist): the same protocol core, sequencing and
 * state folding the dashboard and the Node client use, not a copy.
 */
export {
  CloudWebSocketClient,
  DeploymentState,
  SubscriptionError,
  type AnyDeploymentEvent,
  type ConnectionState,
  type DeploymentStatus,
  type DeploymentSummary,
  type LogEntry,
  type SnapshotMessage,
  type StackState,
  type WebSocketConstructor,
} from "../../../client/javascript/dist/index.js";
