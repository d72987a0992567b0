/**
 * Running a real `cloud-ws local` for a test, the parts both the client's tests (stack.ts) and the
 * mobile example's jest tests (examples/mobile/test/support/stack.ts) use: starting it with an
 * outputs file in a temporary folder, stopping it, and putting events on its bus as a numbering
 * producer does (RunningLocal, which each side's LocalStack extends).
 *
 * Kept free of what only one of them can run: no `import.meta` (jest compiles this file to
 * CommonJS with Babel, and the mobile example's plain babel-jest project leaves `import.meta`
 * undefined), no imports of the client's own files, and no fixed `fetch` (under jest-expo the
 * global one is React Native's, which has no native side: the mobile tests hand Node's).
 */

import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type Fetch = typeof fetch;

/** The global `fetch`, looked up at each call. */
const globalFetch: Fetch = (input, init) => fetch(input, init);

/** A `cloud-ws local` child process and what it wrote. */
export interface LocalProcess {
  child: ChildProcess;
  /** The temporary folder its outputs file is in (removed by `stopLocal`). */
  directory: string;
  outputsPath: string;
  /** The outputs file as written. */
  outputsText: string;
  /** Its stdout and stderr so far. */
  log: string[];
}

/**
 * Starts `python -m cloud_ws.cli local --port 0 --outputs <temporary folder>/outputs.json` and any
 * further `options`, in `root`, without the caller's AWS endpoint or profile, and waits (`timeout`
 * ms) for its outputs file; throws with its output when it exits first.
 */
export async function startLocal({
  root,
  python,
  prefix,
  options = [],
  timeout,
}: {
  root: string;
  python: string;
  /** The temporary folder's name prefix. */
  prefix: string;
  options?: string[];
  timeout: number;
}): Promise<LocalProcess> {
  const directory = mkdtempSync(join(tmpdir(), prefix));
  const outputsPath = join(directory, "outputs.json");
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: "1" };
  delete env["AWS_ENDPOINT_URL"];
  delete env["AWS_PROFILE"];
  const child = spawn(python, ["-m", "cloud_ws.cli", "local", "--port", "0", "--outputs", outputsPath, ...options], {
    cwd: root,
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
  await waitFor(() => existsSync(outputsPath) || exited, { timeout, what: "cloud-ws local to write its outputs" });
  if (exited) {
    throw new Error(`cloud-ws local exited early:\n${log.join("")}`);
  }
  return { child, directory, outputsPath, outputsText: readFileSync(outputsPath, "utf8"), log };
}

/** SIGTERM, as Ctrl-C would (SIGKILL 30 s later); waits for the exit, removes the folder and returns the exit code. */
async function stopLocal({ child, directory }: Pick<LocalProcess, "child" | "directory">): Promise<number | null> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const code = await exited;
    clearTimeout(timer);
    rmSync(directory, { recursive: true, force: true });
    return code;
  }
  rmSync(directory, { recursive: true, force: true });
  return child.exitCode;
}

/** The outputs keys putting events needs. */
export interface BusOutputs {
  event_bus_name: string;
  event_source: string;
  region: string;
  aws_endpoint_url: string;
}

/**
 * A test process as a producer: one id, and each deployment's events numbered 1, 2, 3 … (as the
 * plugin numbers its own), so events put one after another keep their order however the stack's
 * concurrent delivery batches interleave.
 */
class EventProducer {
  readonly #outputs: BusOutputs;
  readonly #id: string;
  readonly #fetch: Fetch;
  readonly #numbers = new Map<string, number>();

  constructor(outputs: BusOutputs, id: string, fetchImpl: Fetch = globalFetch) {
    this.#outputs = outputs;
    this.#id = id;
    this.#fetch = fetchImpl;
  }

  /** Events put so far for a deployment (each got seq 1, 2, … in this order). */
  count(deploymentId: string): number {
    return this.#numbers.get(deploymentId) ?? 0;
  }

  /**
   * Puts deployment events on the stack's bus with EventBridge's JSON API, as any producer could
   * (the embedded endpoint does not check signatures), in order, ten to a PutEvents call;
   * returns their event ids.
   */
  async put(deploymentId: string, events: { type: string; data: Record<string, unknown> }[]): Promise<string[]> {
    const outputs = this.#outputs;
    const ids: string[] = [];
    for (let start = 0; start < events.length; start += 10) {
      const entries = events.slice(start, start + 10).map((event) => {
        const eventId = randomUUID();
        ids.push(eventId);
        const number = this.count(deploymentId) + 1;
        this.#numbers.set(deploymentId, number);
        return {
          Source: outputs.event_source,
          DetailType: event.type,
          EventBusName: outputs.event_bus_name,
          Detail: JSON.stringify({
            deployment_id: deploymentId,
            event_id: eventId,
            data: event.data,
            timestamp: new Date().toISOString(),
            producer_id: this.#id,
            producer_seq: number,
          }),
        };
      });
      const reply = await this.#fetch(`${outputs.aws_endpoint_url}/`, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-amz-json-1.1",
          "X-Amz-Target": "AWSEvents.PutEvents",
          Authorization: `AWS4-HMAC-SHA256 Credential=local/20260101/${outputs.region}/events/aws4_request, SignedHeaders=host, Signature=0`,
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
}

/**
 * A started `cloud-ws local`: its outputs, its log, its events put by this test process as one
 * producer, and its stop. What each test suite adds (how it starts one, its tokens, …) is its
 * subclass's.
 */
export class RunningLocal<O extends BusOutputs> {
  readonly outputs: O;
  readonly outputsPath: string;
  /** The outputs file as written. */
  readonly outputsText: string;
  readonly #local: LocalProcess;
  readonly #producer: EventProducer;

  /** `producerId` names this test process as a producer; its requests go through `fetchImpl`. */
  protected constructor(local: LocalProcess, producerId: string, fetchImpl?: Fetch) {
    this.#local = local;
    this.outputsPath = local.outputsPath;
    this.outputsText = local.outputsText;
    this.outputs = JSON.parse(local.outputsText) as O;
    this.#producer = new EventProducer(this.outputs, producerId, fetchImpl);
  }

  /** Its stdout and stderr so far. */
  get log(): string {
    return this.#local.log.join("");
  }

  /** SIGTERM, as Ctrl-C would; waits for the exit and returns its code. */
  stop(): Promise<number | null> {
    return stopLocal(this.#local);
  }

  /**
   * Puts deployment events on the stack's bus with EventBridge's JSON API, as
   * any producer could (the embedded endpoint does not check signatures).
   * Numbered per deployment, so entries keep their order; returns their event ids.
   */
  putEvents(deploymentId: string, events: { type: string; data: Record<string, unknown> }[]): Promise<string[]> {
    return this.#producer.put(deploymentId, events);
  }

  /** Events put so far for a deployment (each got seq 1, 2, … in this order). */
  count(deploymentId: string): number {
    return this.#producer.count(deploymentId);
  }
}

/** Waits until `condition` holds, polling every `interval` ms; fails with `what` after `timeout` ms. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  { timeout = 10_000, interval = 10, what = "a condition" }: { timeout?: number; interval?: number; what?: string } = {},
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
