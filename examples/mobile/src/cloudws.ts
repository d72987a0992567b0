/**
 * The project's TypeScript client, from its build output (`make js-build`
 * writes client/javascript/dist): the same protocol core, sequencing and
 * state folding the dashboard and the Node client use, and the same Cognito
 * sign-in the dashboard uses, not a copy.
 */
export {
  CloudWebSocketClient,
  CognitoTokens,
  DeploymentState,
  SignInError,
  signInTarget,
  SubscriptionError,
  type AnyDeploymentEvent,
  type ConnectionState,
  type DeploymentStatus,
  type DeploymentSummary,
  type Fetch,
  type LogEntry,
  type SnapshotMessage,
  type StackState,
  type WebSocketConstructor,
} from "../../../client/javascript/dist/index.js";
