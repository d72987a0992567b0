/**
 * A real `cloud-ws local` in a child process, driven only through its
 * contracts: the outputs file, the local helper/fault-injection endpoints and
 * EventBridge's PutEvents on the embedded AWS endpoint. Started the way the
 * Python integration tests start it (tests/test_integration/conftest.py).
 */

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";

import { type LocalProcess, RunningLocal, startLocal, waitFor } from "./local-stack.js";

export { waitFor };

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

export class LocalStack extends RunningLocal<Outputs> {
  private constructor(local: LocalProcess) {
    // This test process as a producer: one id, and each deployment's events numbered 1, 2, 3 …
    super(local, `test-${randomUUID()}`);
  }

  /** Starts `cloud-ws local --port 0` (and any further options) and waits (up to 60 s) for its outputs file. */
  static async start(...options: string[]): Promise<LocalStack> {
    return new LocalStack(await startLocal({ root: REPO_ROOT, python: PYTHON, prefix: "cloud-ws-js-", options, timeout: 60_000 }));
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
