/**
 * A real `cloud-ws local` in a child process for the app's tests, started as
 * client/javascript/test/support/stack.ts starts it (that file is an ES
 * module of the client's own test build; jest runs this one through Babel):
 * port 0, an outputs file in a temporary folder, the repository's venv.
 * Events go in as any producer's do, through EventBridge's PutEvents on the
 * embedded AWS endpoint, numbered per deployment so they keep their order.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import WebSocket from "ws";

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

export class LocalStack {
  readonly #producer = `mobile-test-${randomUUID()}`;
  readonly #numbers = new Map<string, number>();

  private constructor(
    readonly outputs: Outputs,
    readonly outputsText: string,
    readonly log: string[],
    private readonly child: ChildProcess,
    private readonly directory: string,
  ) {}

  /** Starts `cloud-ws local --port 0` and waits (up to 90 s) for its outputs file. */
  static async start(): Promise<LocalStack> {
    const directory = mkdtempSync(join(tmpdir(), "cloud-ws-mobile-"));
    const outputsPath = join(directory, "outputs.json");
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: "1" };
    delete env["AWS_ENDPOINT_URL"];
    delete env["AWS_PROFILE"];
    const child = spawn(PYTHON, ["-m", "cloud_ws.cli", "local", "--port", "0", "--outputs", outputsPath], {
      cwd: REPO_ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const log: string[] = [];
    child.stdout?.on("data", (chunk: Buffer) => log.push(chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => log.push(chunk.toString()));
    await waitFor(() => existsSync(outputsPath) || child.exitCode !== null, { timeout: 90_000, what: "cloud-ws local's outputs" });
    if (child.exitCode !== null) {
      throw new Error(`cloud-ws local exited early:\n${log.join("")}`);
    }
    const text = readFileSync(outputsPath, "utf8");
    return new LocalStack(JSON.parse(text) as Outputs, text, log, child, directory);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((done) => this.child.once("exit", done));
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.directory, { recursive: true, force: true });
  }

  /** A fresh ID token of the dev user from the embedded Cognito (what `cloud-ws token` prints). */
  async token(): Promise<string> {
    const reply = await nodeFetch(`${this.outputs.dashboard_url.replace(/\/$/, "")}/_cloud-ws/token`);
    return ((await reply.json()) as { token: string }).token;
  }

  /** Puts events on the stack's bus, in order, ten to a PutEvents call. */
  async put(deploymentId: string, events: TestEvent[]): Promise<void> {
    for (let start = 0; start < events.length; start += 10) {
      const entries = events.slice(start, start + 10).map((event) => {
        const number = (this.#numbers.get(deploymentId) ?? 0) + 1;
        this.#numbers.set(deploymentId, number);
        return {
          Source: this.outputs.event_source,
          DetailType: event.type,
          EventBusName: this.outputs.event_bus_name,
          Detail: JSON.stringify({
            deployment_id: deploymentId,
            event_id: randomUUID(),
            data: event.data,
            timestamp: new Date().toISOString(),
            producer_id: this.#producer,
            producer_seq: number,
          }),
        };
      });
      const reply = await nodeFetch(`${this.outputs.aws_endpoint_url}/`, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-amz-json-1.1",
          "X-Amz-Target": "AWSEvents.PutEvents",
          Authorization: `AWS4-HMAC-SHA256 Credential=local/20260101/${this.outputs.region}/events/aws4_request, SignedHeaders=host, Signature=0`,
        },
        body: JSON.stringify({ Entries: entries }),
      });
      const body = (await reply.json()) as { FailedEntryCount?: number };
      if (!reply.ok || body.FailedEntryCount !== 0) {
        throw new Error(`PutEvents failed: ${reply.status} ${JSON.stringify(body)}`);
      }
    }
  }

  /** Events put so far for a deployment (each gets seq 1, 2, … in this order). */
  count(deploymentId: string): number {
    return this.#numbers.get(deploymentId) ?? 0;
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

/** Polls `condition` until it holds; fails with `what` after `timeout` ms. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  { timeout = 20_000, interval = 20, what = "a condition" }: { timeout?: number; interval?: number; what?: string } = {},
): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await condition()) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    }
    await new Promise((wake) => setTimeout(wake, interval));
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
