/**
 * A real `cloud-ws local` in a child process, driven only through its
 * contracts: the outputs file, the local helper/fault-injection endpoints and
 * EventBridge's PutEvents on the embedded AWS endpoint. Started the way the
 * Python integration tests start it (tests/test_integration/conftest.py).
 */

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";

/** The repository root (this file runs from client/javascript/build/test/support/). */
export const REPO_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));
/** The interpreter with cloud-ws installed (`make` creates it). */
export const PYTHON = process.env["CLOUD_WS_PYTHON"] ?? join(REPO_ROOT, ".venv", "bin", "python");

export interface Outputs {
  websocket_url: string;
  management_endpoint: string;
  event_bus_name: string;
  event_source: string;
  region: string;
  aws_endpoint_url: string;
  dashboard_url: string;
  user_pool_id: string;
  user_pool_client_id: string;
}

export interface ConnectionInfo {
  connectionId: string;
  connectedAt: string;
  lastActiveAt: string;
  sourceIp: string;
  stale: boolean;
}

export class LocalStack {
  readonly outputs: Outputs;
  readonly outputsPath: string;
  readonly #process: ChildProcess;
  readonly #directory: string;
  readonly #log: string[];

  private constructor(process: ChildProcess, directory: string, outputsPath: string, outputs: Outputs, log: string[]) {
    this.#process = process;
    this.#directory = directory;
    this.outputsPath = outputsPath;
    this.outputs = outputs;
    this.#log = log;
  }

  /** Starts `cloud-ws local --port 0` (and any further options) and waits (up to 60 s) for its outputs file. */
  static async start(...options: string[]): Promise<LocalStack> {
    const directory = mkdtempSync(join(tmpdir(), "cloud-ws-js-"));
    const outputsPath = join(directory, "outputs.json");
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: "1" };
    delete env["AWS_ENDPOINT_URL"];
    delete env["AWS_PROFILE"];
    const child = spawn(PYTHON, ["-m", "cloud_ws.cli", "local", "--port", "0", "--outputs", outputsPath, ...options], {
      cwd: REPO_ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const log: string[] = [];
    child.stdout?.on("data", (chunk: Buffer) => log.push(chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => log.push(chunk.toString()));
    let exited = false;
    child.on("exit", () => {
      exited = true;
    });
    await waitFor(() => existsSync(outputsPath) || exited, { timeout: 60_000, what: "cloud-ws local to write its outputs" });
    if (exited) {
      throw new Error(`cloud-ws local exited early:\n${log.join("")}`);
    }
    const outputs = JSON.parse(readFileSync(outputsPath, "utf8")) as Outputs;
    return new LocalStack(child, directory, outputsPath, outputs, log);
  }

  /** SIGTERM, as Ctrl-C would; waits for the exit and returns its code. */
  async stop(): Promise<number | null> {
    const child = this.#process;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      const code = await exited;
      clearTimeout(timer);
      rmSync(this.#directory, { recursive: true, force: true });
      return code;
    }
    rmSync(this.#directory, { recursive: true, force: true });
    return child.exitCode;
  }

  get log(): string {
    return this.#log.join("");
  }

  /** Base URL of the HTTP side (dashboard, control API), without the trailing slash. */
  get http(): string {
    return this.outputs.dashboard_url.replace(/\/$/, "");
  }

  /** A fresh dev ID token from the embedded Cognito. */
  async token(username = "dev"): Promise<string> {
    const reply = await fetch(`${this.http}/_cloud-ws/token?username=${encodeURIComponent(username)}`);
    if (!reply.ok) {
      throw new Error(`token endpoint answered ${reply.status}`);
    }
    const body = (await reply.json()) as { token: string };
    return body.token;
  }

  async connections(): Promise<ConnectionInfo[]> {
    const reply = await fetch(`${this.http}/_cloud-ws/connections`);
    return (await reply.json()) as ConnectionInfo[];
  }

  /** Closes a connection from the server side (API Gateway semantics: `$disconnect` follows). */
  async closeConnection(connectionId: string, code = 1011): Promise<void> {
    const reply = await fetch(`${this.http}/_cloud-ws/connections/${connectionId}/close`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code }),
    });
    if (!reply.ok) {
      throw new Error(`close ${connectionId} answered ${reply.status}: ${await reply.text()}`);
    }
  }

  /** Closes every open connection from the server side; returns their ids. */
  async closeAll(code = 1011): Promise<string[]> {
    const ids = (await this.connections()).map((c) => c.connectionId);
    await Promise.all(ids.map((id) => this.closeConnection(id, code)));
    return ids;
  }

  /**
   * Puts deployment events on the stack's bus with EventBridge's JSON API, as
   * any producer could (the embedded endpoint does not check signatures).
   * Numbered per deployment, so entries keep their order; returns their event ids.
   */
  /** This test process as a producer: one id, and each deployment's events numbered 1, 2, 3 … */
  private readonly producerId = `test-${randomUUID()}`;
  private readonly numbers = new Map<string, number>();

  private nextNumber(deploymentId: string): number {
    const next = (this.numbers.get(deploymentId) ?? 0) + 1;
    this.numbers.set(deploymentId, next);
    return next;
  }

  async putEvents(deploymentId: string, events: { type: string; data: Record<string, unknown> }[]): Promise<string[]> {
    const ids: string[] = [];
    for (let start = 0; start < events.length; start += 10) {
      const entries = events.slice(start, start + 10).map((event) => {
        const eventId = randomUUID();
        ids.push(eventId);
        return {
          Source: this.outputs.event_source,
          DetailType: event.type,
          EventBusName: this.outputs.event_bus_name,
          Detail: JSON.stringify({
            deployment_id: deploymentId,
            event_id: eventId,
            data: event.data,
            timestamp: new Date().toISOString(),
            // A numbering producer, as the plugin is: its events get their seq in this order
            // however the stack's concurrent delivery batches interleave.
            producer_id: this.producerId,
            producer_seq: this.nextNumber(deploymentId),
          }),
        };
      });
      const reply = await fetch(`${this.outputs.aws_endpoint_url}/`, {
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
    return ids;
  }

  /** Emits one event through the plugin (`cloud-ws emit TYPE DEPLOYMENT_ID --data JSON`); rejects unless it exits 0. */
  async emit(type: string, deploymentId: string, data: Record<string, unknown>): Promise<void> {
    const child = spawn(
      PYTHON,
      ["-m", "cloud_ws.cli", "emit", type, deploymentId, "--data", JSON.stringify(data), "--outputs", this.outputsPath],
      { cwd: REPO_ROOT, env: { ...process.env, PYTHONUNBUFFERED: "1" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const output: string[] = [];
    child.stdout?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
    const code = await new Promise<number | null>((settle) => child.on("exit", (exit) => settle(exit)));
    if (code !== 0) {
      throw new Error(`cloud-ws emit ${type} exited with ${code}: ${output.join("")}`);
    }
  }

  /** Runs `cloud-ws demo` against this stack; resolves with its exit code and output. */
  demo(deploymentId: string, speed: number, onLine?: (line: string) => void): { done: Promise<{ code: number | null; output: string }> } {
    const child = spawn(
      PYTHON,
      ["-m", "cloud_ws.cli", "demo", deploymentId, "--outputs", this.outputsPath, "--speed", String(speed)],
      { cwd: REPO_ROOT, env: { ...process.env, PYTHONUNBUFFERED: "1" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const output: string[] = [];
    let partial = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      output.push(chunk.toString());
      partial += chunk.toString();
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        onLine?.(line);
      }
    });
    child.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
    const done = new Promise<{ code: number | null; output: string }>((settle) => {
      child.on("exit", (code) => settle({ code, output: output.join("") }));
    });
    return { done };
  }
}

/** Waits until `condition` holds, polling; fails with `what` after `timeout` ms. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  { timeout = 10_000, what = "a condition" }: { timeout?: number; what?: string } = {},
): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await condition()) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    }
    await new Promise((wake) => setTimeout(wake, 10));
  }
}

/** A new deployment id for one test. */
export function deploymentId(prefix = "JS"): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** A promise and the function that settles it (for providers the test releases). */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

function findRoot(start: string): string {
  let directory = start;
  for (;;) {
    if (existsSync(join(directory, "pyproject.toml")) && existsSync(join(directory, "handlers"))) {
      return directory;
    }
    const parent = resolve(directory, "..");
    if (parent === directory) {
      throw new Error(`cannot find the repository root above ${start}`);
    }
    directory = parent;
  }
}
