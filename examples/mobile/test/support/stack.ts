/**
 * A real `cloud-ws local` in a child process for the app's tests, started,
 * fed and stopped by the client's own test support (client/javascript/test/
 * support/local-stack.ts, which its stack.ts extends as this file does): port
 * 0, an outputs file in a temporary folder, the repository's venv. Events go
 * in as any producer's do, through EventBridge's PutEvents on the embedded AWS
 * endpoint, numbered per deployment so they keep their order.
 *
 * Not that stack.ts itself: it reads `import.meta.url`, which the web
 * project's babel-jest leaves undefined, and calls the global fetch, which
 * under jest-expo is React Native's (no native side). Every request here goes
 * through Node's fetch (`nodeFetch`).
 */

import { randomUUID } from "node:crypto";
import { join, resolve } from "node:path";

import WebSocket from "ws";

import { type LocalProcess, RunningLocal, startLocal, waitFor } from "../../../../client/javascript/test/support/local-stack";
import { CloudWebSocketClient, type SnapshotMessage, type WebSocketConstructor } from "../../src/cloudws";

export const REPO_ROOT = resolve(__dirname, "../../../..");
export const PYTHON = process.env["CLOUD_WS_PYTHON"] ?? join(REPO_ROOT, ".venv", "bin", "python");
/** Node's fetch (the jest environment keeps it: importing `expo` replaces the global one). */
export const nodeFetch: typeof fetch = (globalThis as { nodeFetch?: typeof fetch }).nodeFetch ?? fetch;
/** `ws` as the client's WebSocket (Node 20 has no global one). */
export const NodeWebSocket = WebSocket as unknown as WebSocketConstructor;

export interface Outputs {
  websocket_url: string;
  region: string;
  user_pool_client_id: string;
  aws_endpoint_url: string;
  dashboard_url: string;
  event_bus_name: string;
  event_source: string;
  dev_username: string;
}

export interface TestEvent {
  type: string;
  data: Record<string, unknown>;
}

export class LocalStack extends RunningLocal<Outputs> {
  private constructor(local: LocalProcess) {
    super(local, `mobile-test-${randomUUID()}`, nodeFetch);
  }

  /** Starts `cloud-ws local --port 0` and waits (up to 90 s) for its outputs file. */
  static async start(): Promise<LocalStack> {
    return new LocalStack(await startLocal({ root: REPO_ROOT, python: PYTHON, prefix: "cloud-ws-mobile-", timeout: 90_000 }));
  }

  /** A fresh ID token of the dev user from the embedded Cognito (what `cloud-ws token` prints). */
  async token(): Promise<string> {
    const reply = await nodeFetch(`${this.outputs.dashboard_url.replace(/\/$/, "")}/_cloud-ws/token`);
    return ((await reply.json()) as { token: string }).token;
  }

  /** Puts events on the stack's bus, in order, ten to a PutEvents call. */
  async put(deploymentId: string, events: TestEvent[]): Promise<void> {
    await this.putEvents(deploymentId, events);
  }

  /**
   * The server's own snapshot of a deployment, from a separate client (the
   * test's witness), once it covers `seq` (every event put so far by default).
   */
  async snapshot(deploymentId: string, seq = this.count(deploymentId)): Promise<SnapshotMessage> {
    const token = await this.token();
    let latest: SnapshotMessage | undefined;
    await waitFor(
      async () => {
        const client = new CloudWebSocketClient({ url: this.outputs.websocket_url, token, WebSocket: NodeWebSocket, pingInterval: 0 });
        const received = new Promise<SnapshotMessage>((settle) => client.on("snapshot", settle));
        try {
          await client.connect();
          await client.subscribe(deploymentId);
          latest = await received;
        } finally {
          await client.disconnect();
        }
        return latest.seq >= seq;
      },
      { timeout: 30_000, interval: 250, what: `the server's snapshot of ${deploymentId} at #${seq}` },
    );
    if (latest === undefined) {
      throw new Error("no snapshot");
    }
    return latest;
  }
}

export function deploymentId(prefix = "MOB"): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** A deployment with three layers in which `database` fails in layer 2; `logs` log lines along the way. */
export function failingDeployment(logs: number): TestEvent[] {
  const events: TestEvent[] = [
    { type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 3 } },
    { type: "stack.started", data: { stack_name: "network", layer: 1, environment: "dev" } },
    { type: "stack.deployed", data: { stack_name: "network", layer: 1, environment: "dev", resource_count: 15, duration_seconds: 42 } },
    { type: "deployment.status", data: { status: "deploying", current_layer: 2, total_layers: 3 } },
    { type: "stack.started", data: { stack_name: "database", layer: 2, environment: "dev" } },
    { type: "stack.started", data: { stack_name: "cache", layer: 2, environment: "dev" } },
  ];
  for (let i = 1; i <= logs; i += 1) {
    events.push({
      type: "log.created",
      data: { level: i % 10 === 0 ? "warning" : "info", message: `applying resource ${i}`, stack_name: i % 2 ? "database" : "cache", environment: "dev" },
    });
  }
  events.push(
    { type: "stack.deployed", data: { stack_name: "cache", layer: 2, environment: "dev", resource_count: 4, duration_seconds: 12.5 } },
    {
      type: "stack.failed",
      data: { stack_name: "database", layer: 2, environment: "dev", error_message: "RDS quota exceeded: DBInstances (40/40)", duration_seconds: 61 },
    },
    { type: "log.created", data: { level: "error", message: "database: RDS quota exceeded", stack_name: "database", environment: "dev" } },
    { type: "deployment.status", data: { status: "failed", current_layer: 2, total_layers: 3, error_message: "database failed", duration_seconds: 130 } },
  );
  return events;
}
