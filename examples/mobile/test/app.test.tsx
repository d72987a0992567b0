/**
 * The app against a real `cloud-ws local`: rendered by React Native's test
 * renderer (jest-expo), driven by React Native Testing Library, connected
 * with the project's client over `ws`. AppState is React Native's jest mock:
 * the tests hand the listener the app registered the states a phone would.
 */

import { act, fireEvent, render, screen, waitFor } from "@testing-library/react-native";
import { AppState, type AppStateStatus } from "react-native";

import App from "../App";
import { LOCAL_DEV_PASSWORD, loadOutputs, pastedToken, signIn } from "../src/session";
import type { SnapshotMessage, WebSocketConstructor } from "../src/cloudws";
import { deploymentId, failingDeployment, LocalStack, nodeFetch, NodeWebSocket, type TestEvent } from "./support/stack";

const LONG = { timeout: 30_000 };

let stack: LocalStack;

beforeAll(async () => {
  // The app's updates come from a real socket, not from anything the test does; React's act()
  // warnings are for tests that drive every update themselves. RNTL still wraps its renders,
  // presses and waits in act().
  (globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false;
  stack = await LocalStack.start();
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

/** `ws`, recording what the app sends and the type of every message it receives (a frame holds one per line). */
function recordingWebSocket(): { WebSocket: WebSocketConstructor; sent: Record<string, unknown>[]; received: string[] } {
  const sent: Record<string, unknown>[] = [];
  const received: string[] = [];
  class Recording extends (NodeWebSocket as unknown as typeof import("ws").WebSocket) {
    constructor(...args: ConstructorParameters<typeof import("ws").WebSocket>) {
      super(...args);
      // The client sends text frames only: one JSON message each.
      const send = this.send.bind(this) as (data: string) => void;
      this.send = ((data: string) => {
        sent.push(JSON.parse(data) as Record<string, unknown>);
        send(data);
      }) as typeof this.send;
      this.on("message", (data: Buffer) => {
        for (const line of data.toString().split("\n").filter(Boolean)) {
          received.push((JSON.parse(line) as { type: string }).type);
        }
      });
    }
  }
  return { WebSocket: Recording as unknown as WebSocketConstructor, sent, received };
}

/** The app's AppState listener (React Native's mock records it), called as the OS would. */
async function appGoes(next: AppStateStatus): Promise<void> {
  const calls = jest.mocked(AppState.addEventListener).mock.calls.filter(([type]) => type === "change");
  const listener = calls.at(-1)?.[1];
  if (listener === undefined) {
    throw new Error("the app registered no AppState listener");
  }
  await act(async () => {
    listener(next);
  });
}

/** What the screen shows equals the server's snapshot: status, layers, stacks, log count, the latest lines. */
function expectScreenToShow(snapshot: SnapshotMessage): void {
  const data = snapshot.data as {
    status: string;
    current_layer: number;
    total_layers: number;
    stacks: Record<string, { status: string }>;
    log_counts: Record<string, number>;
    recent_logs: { message: string }[];
  };
  expect(screen.getByTestId("seq")).toHaveTextContent(`#${snapshot.seq}`);
  expect(screen.getByTestId("status")).toHaveTextContent(data.status);
  expect(screen.getByTestId("layers")).toHaveTextContent(`Layer ${data.current_layer} of ${data.total_layers}`);
  for (const [name, { status }] of Object.entries(data.stacks)) {
    expect(screen.getByTestId(`stack-status-${name}`)).toHaveTextContent(status);
  }
  expect(screen.queryAllByTestId(/^stack-status-/)).toHaveLength(Object.keys(data.stacks).length);
  const lines = Object.values(data.log_counts).reduce((sum, count) => sum + count, 0);
  expect(screen.getByTestId("log-count")).toHaveTextContent(new RegExp(`^${lines} lines`));
  const shown = screen.queryAllByTestId("log-line");
  expect(shown).toHaveLength(data.recent_logs.length);
  // Newest first on screen; the snapshot lists them oldest first.
  const newest = data.recent_logs.at(-1);
  if (newest !== undefined) {
    expect(shown[0]).toHaveTextContent(new RegExp(escape(newest.message)));
  }
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

test("signs in with the local dev user, lists the deployments and opens one: status, layers, stacks, failure banner, logs", async () => {
  const id = deploymentId();
  await stack.put(id, failingDeployment(12));
  const server = await stack.snapshot(id);

  render(<App WebSocket={NodeWebSocket} fetchImpl={nodeFetch} listInterval={500} />);
  fireEvent.changeText(screen.getByTestId("stack-input"), stack.outputsText);
  fireEvent.press(screen.getByTestId("connect")); // empty user and password: the local dev user, through Cognito

  await waitFor(() => expect(screen.getByTestId(`deployment-${id}`)).toBeOnTheScreen(), LONG);
  expect(screen.getByTestId("connection")).toHaveTextContent("Live");
  expect(screen.getByTestId(`deployment-${id}`)).toHaveTextContent(/failed/);

  fireEvent.press(screen.getByTestId(`deployment-${id}`));
  await waitFor(() => expect(screen.getByTestId("status")).toHaveTextContent("failed"), LONG);
  expectScreenToShow(server);
  expect(screen.getByTestId("failure-banner")).toHaveTextContent(/database failed/);
  expect(screen.getByTestId("failure-banner")).toHaveTextContent(/RDS quota exceeded: DBInstances \(40\/40\)/);
  expect(screen.getByTestId("log-count")).toHaveTextContent("13 lines · 1 warning · 1 error");

  fireEvent.press(screen.getByTestId("back"));
  await waitFor(() => expect(screen.getByTestId(`deployment-${id}`)).toBeOnTheScreen(), LONG);
  screen.unmount();
});

test("a local stack's address gives its outputs with their URLs on the host typed, and its dev user signs in", async () => {
  const port = /:(\d+)/.exec(stack.outputs.dashboard_url)?.[1];
  const outputs = await loadOutputs(`http://localhost:${port}`, nodeFetch);
  expect(outputs.websocket_url).toBe(stack.outputs.websocket_url.replace("127.0.0.1", "localhost"));
  expect(outputs.aws_endpoint_url).toBe(stack.outputs.aws_endpoint_url.replace("127.0.0.1", "localhost"));
  const session = await signIn(outputs, "dev", LOCAL_DEV_PASSWORD, nodeFetch);
  expect((await session.token()).split(".")).toHaveLength(3);
  await expect(loadOutputs("not a stack", nodeFetch)).rejects.toThrow(/outputs JSON/);
});

test("a wrong password is refused with Cognito's reason and no session", async () => {
  render(<App WebSocket={NodeWebSocket} fetchImpl={nodeFetch} />);
  fireEvent.changeText(screen.getByTestId("stack-input"), stack.outputsText);
  fireEvent.changeText(screen.getByTestId("username-input"), "dev");
  fireEvent.changeText(screen.getByTestId("password-input"), "not-the-password");
  fireEvent.press(screen.getByTestId("connect"));
  await waitFor(() => expect(screen.getByTestId("sign-in-error")).toBeOnTheScreen(), LONG);
  expect(screen.getByTestId("sign-in-error")).toHaveTextContent(/password|NotAuthorized/i);
  expect(screen.getByTestId("connect")).toBeOnTheScreen();
  screen.unmount();
});

test("follows a live deployment, survives a background period from the snapshot with nothing missing, and goes on live", async () => {
  const id = deploymentId();
  const start: TestEvent[] = [
    { type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 3 } },
    { type: "stack.started", data: { stack_name: "network", layer: 1, environment: "dev" } },
  ];
  await stack.put(id, start);
  await stack.snapshot(id);
  const { WebSocket, sent, received } = recordingWebSocket();
  const session = pastedToken(stack.outputs, await stack.token());

  render(<App session={session} WebSocket={WebSocket} listInterval={500} />);
  await waitFor(() => expect(screen.getByTestId(`deployment-${id}`)).toBeOnTheScreen(), LONG);
  fireEvent.press(screen.getByTestId(`deployment-${id}`));
  await waitFor(() => expect(screen.getByTestId("seq")).toHaveTextContent("#2"), LONG);
  expect(screen.getByTestId("stack-status-network")).toHaveTextContent("deploying");

  // Live: each event shows as it happens.
  await stack.put(id, [
    { type: "stack.deployed", data: { stack_name: "network", layer: 1, environment: "dev", resource_count: 15, duration_seconds: 42 } },
    { type: "log.created", data: { level: "info", message: "network ready", stack_name: "network" } },
  ]);
  await waitFor(() => expect(screen.getByTestId("stack-status-network")).toHaveTextContent("deployed"), LONG);
  await waitFor(() => expect(screen.getByTestId("log-count")).toHaveTextContent(/^1 line/), LONG);

  // Background: the socket closes (the server sees no connection of the app's), the screen keeps what it had.
  await appGoes("background");
  expect(screen.getByTestId("connection")).toHaveTextContent("Paused");
  await waitFor(async () => expect(await openConnections(stack)).toBe(0), LONG);
  const beforeBackground = received.length;
  const sentBeforeBackground = sent.length;

  // Meanwhile the deployment goes on: a layer, a failure and 120 log lines, none of them sent to the phone.
  await stack.put(id, failingDeployment(120).slice(3));
  const server = await stack.snapshot(id);
  expect(server.seq).toBe(4 + failingDeployment(120).length - 3);
  expect(screen.getByTestId("seq")).toHaveTextContent("#4");
  expect(received.length).toBe(beforeBackground);

  // Foreground: a fresh connection, subscribed without `since`: the snapshot, no replay.
  await appGoes("active");
  await waitFor(() => expect(screen.getByTestId("seq")).toHaveTextContent(`#${server.seq}`), LONG);
  expectScreenToShow(server);
  expect(screen.getByTestId("connection")).toHaveTextContent("Live");
  // It asked for the deployment without `since` (a resume with `since` would replay all 127 events).
  const subscribes = sent.slice(sentBeforeBackground).filter((message) => message["action"] === "subscribe");
  expect(subscribes).toEqual([expect.objectContaining({ deployment_id: id })]);
  expect(subscribes[0]).not.toHaveProperty("since");
  const sinceResume = received.slice(beforeBackground);
  expect(sinceResume.filter((type) => type === "deployment.snapshot")).toHaveLength(1);
  expect(sinceResume.filter((type) => type.includes(".") && type !== "deployment.snapshot")).toEqual([]);
  expect(screen.getByTestId("failure-banner")).toHaveTextContent(/database failed/);

  // And live again from there: a re-run starts attempt 2.
  await stack.put(id, [{ type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 3 } }]);
  await waitFor(() => expect(screen.getByTestId("attempt")).toHaveTextContent("attempt 2"), LONG);
  expect(screen.getByTestId("status")).toHaveTextContent("deploying");
  expect(screen.queryByTestId("failure-banner")).toBeNull();
  expectScreenToShow(await stack.snapshot(id));
  screen.unmount();
});

async function openConnections(local: LocalStack): Promise<number> {
  const reply = await nodeFetch(`${local.outputs.dashboard_url.replace(/\/$/, "")}/_cloud-ws/connections`);
  return ((await reply.json()) as unknown[]).length;
}
