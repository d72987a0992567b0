/**
 * The dashboard in a real (headless Debian) Chromium against a real `cloud-ws local`, as the
 * dashboard-*.test.ts files drive it: the stack and the browser a test file shares (started before
 * its tests, stopped after), and pages that collect what they report as errors.
 *
 * For the two tests across token expiries (dashboard-signin, dashboard-token-lifetime): a record
 * of every WebSocket the page opens, a deployment put steadily across the expiries, and the checks
 * that the page shows every event put and replaced every connection ahead of its token's `exp`.
 */

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before } from "node:test";
import type { Browser, BrowserContextOptions, ConsoleMessage, Page } from "playwright-core";

import { tokenExpiry } from "../../src/index.js";
import { browserMissing, launchBrowser } from "./browser.js";
import { LocalStack } from "./stack.js";

/** client/javascript (this file runs from client/javascript/build/test/support/). */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
/** The built dashboard (`npm run build`), which the local stack serves under /dashboard/. */
export const DIST = join(PACKAGE_ROOT, "dashboard", "dist");
/** Where the tests' screenshots land. */
export const ARTIFACTS = join(PACKAGE_ROOT, "artifacts");

const DESKTOP: BrowserContextOptions = { viewport: { width: 1400, height: 1000 } };

export interface DashboardOptions {
  /** Further options of `cloud-ws local` (e.g. `--token-lifetime 15`). */
  stackOptions?: string[];
  /** Create ARTIFACTS/ for screenshots. */
  artifacts?: boolean;
  /** Console errors this file's pages cause on purpose (a WebSocket's are always expected: a refused or dropped socket, which the client handles). */
  expectedErrors?: (message: ConsoleMessage) => boolean;
}

/** A test file's local stack and Chromium, and the pages it opens in that Chromium. */
export class DashboardInChromium {
  /** Why the browser tests cannot run here (the file's describe() skips with it), or null. */
  readonly missing: string | null = browserMissing();
  readonly #expectedErrors: (message: ConsoleMessage) => boolean;
  readonly #problems = new WeakMap<Page, string[]>();
  #stack: LocalStack | undefined;
  #browser: Browser | undefined;

  constructor(expectedErrors: (message: ConsoleMessage) => boolean = () => false) {
    this.#expectedErrors = expectedErrors;
  }

  get stack(): LocalStack {
    if (this.#stack === undefined) {
      throw new Error("the local stack is not started (before() did not run or failed)");
    }
    return this.#stack;
  }

  get browser(): Browser {
    if (this.#browser === undefined) {
      throw new Error("Chromium is not started (before() did not run or failed)");
    }
    return this.#browser;
  }

  /** Starts the stack and Chromium side by side. */
  async start(stackOptions: string[]): Promise<void> {
    [this.#stack, this.#browser] = await Promise.all([LocalStack.start(...stackOptions), launchBrowser()]);
  }

  /** Closes Chromium, stops the stack and checks it exited cleanly. */
  async stop(): Promise<void> {
    await this.#browser?.close();
    const code = await this.#stack?.stop();
    assert.equal(code, 0, `cloud-ws local exited with ${code}:\n${this.#stack?.log}`);
  }

  /**
   * A page in a fresh context (a 1400×1000 window unless told), with `initScript` run before the
   * dashboard's own; what it reports as errors (uncaught exceptions, unexpected console errors)
   * is collected for `problems`/`closePage`.
   */
  async newPage(options: { context?: BrowserContextOptions; initScript?: () => void } = {}): Promise<Page> {
    const context = await this.browser.newContext(options.context ?? DESKTOP);
    if (options.initScript !== undefined) {
      await context.addInitScript(options.initScript);
    }
    const page = await context.newPage();
    const seen: string[] = [];
    this.#problems.set(page, seen);
    page.on("pageerror", (error) => seen.push(error.message));
    page.on("console", (message) => {
      if (message.type() === "error" && !message.text().includes("WebSocket") && !this.#expectedErrors(message)) {
        seen.push(`${message.text()} (${message.location().url})`);
      }
    });
    return page;
  }

  /** The errors `page` reported so far. */
  problems(page: Page): string[] {
    return this.#problems.get(page) ?? [];
  }

  /** Checks the page reported no error, then closes it (and its context). */
  async closePage(page: Page): Promise<void> {
    assert.deepEqual(this.#problems.get(page), [], "the page reported errors");
    await page.context().close();
  }
}

/**
 * The file's stack and Chromium: started in a before() hook (after checking the dashboard is
 * built), stopped in an after() hook; neither when Chromium is missing.
 */
export function dashboardInChromium({ stackOptions = [], artifacts = false, expectedErrors }: DashboardOptions = {}): DashboardInChromium {
  const dashboard = new DashboardInChromium(expectedErrors);
  before(async () => {
    if (dashboard.missing !== null) {
      return;
    }
    assert.ok(existsSync(join(DIST, "index.html")), "build the dashboard first (npm run build)");
    if (artifacts) {
      mkdirSync(ARTIFACTS, { recursive: true });
    }
    await dashboard.start(stackOptions);
  });
  after(async () => {
    if (dashboard.missing !== null) {
      return;
    }
    await dashboard.stop();
  });
  return dashboard;
}

// ---- Across token expiries (cloud-ws local --token-lifetime 15) ----

/** Seconds the stack's tokens live. */
export const LIFETIME = 15;
/** The verifier's leeway on `exp` (server/config.py). */
export const LEEWAY = 5;
/** The close code and reason of the client's planned reconnect ahead of `exp` (src/connection.ts). */
export const CLOSE_REFRESH = 4002;
export const REFRESH_REASON = "refreshing the token before it expires";
/** How late a frame posted just before `exp` may still arrive (same machine, one hop). */
export const ARRIVAL_SLACK = 1_000;

export type Event = { type: string; data: Record<string, unknown> };

/** What the page's WebSocket wrapper (`recordSockets`, installed before the dashboard loads) records of each socket. */
export interface SocketRecord {
  token: string | null;
  createdAt: number;
  openedAt: number | null;
  /** The page's own close() call, if it made one. */
  closeCall: { at: number; code: number | null; reason: string | null } | null;
  closed: { at: number; code: number; reason: string } | null;
  /** The `since` of each subscribe sent on it (null: none). */
  subscribes: (number | null)[];
  /** Arrival times and seqs of deployment events received on it. */
  events: { at: number; seq: number }[];
}

/**
 * An init script: wraps the page's WebSocket so the test sees each socket's token, its close
 * call, its subscribes and the events it received (in `window.__sockets`). It runs in the page:
 * it may use nothing from this module.
 */
export function recordSockets(): void {
  const Native = window.WebSocket;
  const records: SocketRecord[] = [];
  Reflect.set(window, "__sockets", records);
  class Recorded extends Native {
    readonly #record: SocketRecord;
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      const bearer = (typeof protocols === "string" ? [protocols] : (protocols ?? [])).find((p) => p.startsWith("bearer."));
      const record: SocketRecord = {
        token: bearer === undefined ? null : bearer.slice("bearer.".length),
        createdAt: Date.now(),
        openedAt: null,
        closeCall: null,
        closed: null,
        subscribes: [],
        events: [],
      };
      this.#record = record;
      records.push(record);
      this.addEventListener("open", () => {
        record.openedAt = Date.now();
      });
      this.addEventListener("message", (message: MessageEvent) => {
        const at = Date.now();
        for (const line of String(message.data).split("\n")) {
          const parsed = JSON.parse(line) as { seq?: number; event_id?: string };
          if (typeof parsed.seq === "number" && typeof parsed.event_id === "string") {
            record.events.push({ at, seq: parsed.seq });
          }
        }
      });
      this.addEventListener("close", (event: CloseEvent) => {
        record.closed = { at: Date.now(), code: event.code, reason: event.reason };
      });
    }

    override send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
      if (typeof data === "string") {
        const frame = JSON.parse(data) as { action?: string; since?: number };
        if (frame.action === "subscribe") {
          this.#record.subscribes.push(typeof frame.since === "number" ? frame.since : null);
        }
      }
      super.send(data);
    }

    override close(code?: number, reason?: string): void {
      this.#record.closeCall ??= { at: Date.now(), code: code ?? null, reason: reason ?? null };
      super.close(code, reason);
    }
  }
  window.WebSocket = Recorded;
}

/** What `recordSockets` recorded so far, every socket the page opened in order. */
export function socketRecords(page: Page): Promise<SocketRecord[]> {
  return page.evaluate(() => Reflect.get(window, "__sockets") as SocketRecord[]);
}

function logLine(message: string, stackName: string): Event {
  return { type: "log.created", data: { level: "info", message, stack_name: stackName, environment: "dev" } };
}

/** A deployment of three layers, two stacks each: what happens, in order, after the first two stacks started. */
function stackSteps(): Event[] {
  const steps: Event[] = [];
  const layers = [
    ["vpc", "dns"],
    ["iam-roles", "kms-keys"],
    ["api-service", "frontend-cdn"],
  ];
  layers.forEach((names, index) => {
    const layer = index + 1;
    if (layer > 1) {
      steps.push({ type: "deployment.status", data: { status: "deploying", current_layer: layer, total_layers: 3, environment: "dev" } });
      for (const name of names) {
        steps.push({ type: "stack.started", data: { stack_name: name, layer, environment: "dev" } });
      }
    }
    for (const name of names) {
      steps.push({ type: "stack.deployed", data: { stack_name: name, layer, environment: "dev", resource_count: 4 + layer, duration_seconds: 10 * layer } });
    }
  });
  return steps;
}

/** The events a deployment under way has before the page opens (its snapshot's seq). */
const STARTED = 6;

/** A new deployment put on the stack as the test goes: every event put, in seq order (the first is seq 1), with when it was put. */
export class SteadyDeployment {
  readonly put: { event: Event; at: number }[] = [];
  readonly #stack: LocalStack;
  readonly #id: string;

  constructor(stack: LocalStack, id: string) {
    this.#stack = stack;
    this.#id = id;
  }

  async putEvents(events: Event[]): Promise<void> {
    await this.#stack.putEvents(this.#id, events);
    const at = Date.now();
    this.put.push(...events.map((event) => ({ event, at })));
  }

  /** The deployment under way: deploying layer 1, its two stacks started, three log lines (STARTED events). */
  async start(): Promise<void> {
    await this.putEvents([
      { type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 3, environment: "dev" } },
      { type: "stack.started", data: { stack_name: "vpc", layer: 1, environment: "dev" } },
      { type: "stack.started", data: { stack_name: "dns", layer: 1, environment: "dev" } },
      logLine("before 1", "vpc"),
      logLine("before 2", "dns"),
      logLine("before 3", "vpc"),
    ]);
  }

  /**
   * A log line every 400 ms until `until` (epoch ms), with every eighth a step of the deployment,
   * and then the rest of the deployment, to its end; returns how many events were put in all.
   */
  async runUntil(until: number): Promise<number> {
    const steps = stackSteps();
    let tick = 0;
    while (Date.now() < until) {
      tick += 1;
      const batch = [logLine(`line ${tick}`, tick % 2 === 0 ? "vpc" : "dns")];
      if (tick % 8 === 4 && steps.length > 0) {
        batch.push(steps.shift() as Event);
      }
      await this.putEvents(batch);
      await new Promise((wake) => setTimeout(wake, 400));
    }
    await this.putEvents([...steps, { type: "deployment.status", data: { status: "succeeded", current_layer: 3, total_layers: 3, environment: "dev" } }, logLine("done", "frontend-cdn")]);
    return this.put.length;
  }

  /**
   * The page shows every event put: the last seq, the snapshot it started from and every event
   * after it folded once, every log line once each in order, the deployment's end; no gap
   * notice, and connected live after at least two resumes.
   */
  async assertShownOn(page: Page): Promise<void> {
    const total = this.put.length;
    await page.locator(`#stats[data-last-seq="${total}"]`).waitFor({ timeout: 30_000 });
    await new Promise((wake) => setTimeout(wake, 1_000)); // a late duplicate or a notice would show now
    assert.equal(await page.locator("#stats").getAttribute("data-last-seq"), String(total));
    assert.equal(await page.locator("#stats").getAttribute("data-snapshot-seq"), String(STARTED), "the page started from the snapshot");
    assert.equal(await page.locator("#stats").getAttribute("data-events"), String(total - STARTED), "every event after the snapshot folded once");
    const lines = this.put.flatMap(({ event }, index) => (event.type === "log.created" ? [{ seq: index + 1, message: String(event.data["message"]) }] : []));
    const shown = await page.locator("#log .log-line").evaluateAll((items) =>
      items.map((item) => ({ seq: Number(item.getAttribute("data-seq")), message: item.querySelector(".log-message")?.textContent ?? "" })),
    );
    assert.deepEqual(shown, lines, "every log line, once each, in seq order");
    assert.match((await page.locator("#log-filter").textContent()) ?? "", new RegExp(`info ${lines.length}`));
    assert.ok(await page.locator("#log-note").isHidden(), "no line missing from the pane");
    assert.equal(await page.locator("#deployment-status").getAttribute("data-status"), "succeeded");
    assert.equal(await page.locator("#layer-text").textContent(), "3 of 3");
    assert.equal(await page.locator("#stack-counts").textContent(), "6 deployed");
    assert.deepEqual(
      (await page.locator(".stack").evaluateAll((items) => items.map((item) => `${item.getAttribute("data-stack")} ${item.getAttribute("data-state")}`))).sort(),
      ["api-service", "dns", "frontend-cdn", "iam-roles", "kms-keys", "vpc"].map((name) => `${name} deployed`),
    );
    assert.ok(await page.locator("#notice").isHidden(), `a notice: ${await page.locator("#notice").textContent()}`);
    assert.equal(await page.locator("#connection").getAttribute("data-state"), "open");
    const resumed = Number(await page.locator("#connection").getAttribute("data-reconnects"));
    assert.ok(resumed >= 2, `resumed ${resumed}×`);
  }
}

/**
 * The page's sockets across at least two expiries: at least three, a fresh token each, nothing
 * received on one after its token's `exp`, and each but the last closed by the page itself
 * (a planned refresh) before that `exp`. Returns each socket's `exp`.
 */
export function assertReplacedAheadOfExp(records: SocketRecord[]): number[] {
  assert.ok(records.length >= 3, `${records.length} connections: two expiries crossed`);
  assert.equal(new Set(records.map((record) => record.token)).size, records.length, "a fresh token for every connection");
  return records.map((record, index) => {
    const exp = tokenExpiry(record.token);
    assert.ok(exp !== undefined, `socket ${index} carried a token with an exp`);
    for (const received of record.events) {
      assert.ok(received.at <= exp + ARRIVAL_SLACK, `socket ${index} received seq ${received.seq} ${received.at - exp} ms after exp`);
    }
    if (index < records.length - 1) {
      assert.deepEqual(
        [record.closeCall?.code, record.closeCall?.reason],
        [CLOSE_REFRESH, REFRESH_REASON],
        `socket ${index} closed by the page to refresh: ${JSON.stringify(record)}`,
      );
      assert.ok((record.closeCall?.at ?? Infinity) < exp, `socket ${index} replaced ${(record.closeCall?.at ?? 0) - exp} ms after exp`);
    }
    return exp;
  });
}
