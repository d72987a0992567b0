/**
 * "A token's lifetime is the connection's" (docs/protocol.md, "Token lifetime"), shown in a real
 * (headless Debian) Chromium through real sockets against a real `cloud-ws local` whose embedded
 * Cognito mints 15-second tokens (`--token-lifetime 15`):
 *
 * - the dashboard, which on the local stack fetches a fresh dev token for every connection,
 *   replaces its connection ahead of each token's `exp` (a planned close, 4002), resumes with
 *   `since`, and ends up showing every event put before, across and after several expiries:
 *   every log line in order, the final figures, no gap or error notice;
 * - a plain WebSocket in the same browser opened with one fixed token (which nothing refreshes)
 *   is posted nothing after its token's `exp`, though events keep coming, and the server closes
 *   it (1000) within 60 s of `exp`.
 *
 * The client's own refresh timing is unit-tested in token-lifetime.test.ts.
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import type { Browser, BrowserContext, Page, WebSocket as PageSocket } from "playwright-core";

import { tokenExpiry } from "../src/index.js";
import { browserMissing, launchBrowser } from "./support/browser.js";
import { deploymentId, LocalStack, waitFor } from "./support/stack.js";

const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DIST = join(PACKAGE_ROOT, "dashboard", "dist");

/** Seconds the stack's tokens live. */
const LIFETIME = 15;
/** The verifier's leeway on `exp` (handlers/config.py). */
const LEEWAY = 5;
/** The close code and reason of the client's planned reconnect ahead of `exp` (src/client.ts). */
const CLOSE_REFRESH = 4002;
const REFRESH_REASON = "refreshing the token before it expires";
/** How late a frame posted just before `exp` may still arrive (same machine, one hop). */
const ARRIVAL_SLACK = 1_000;

type Event = { type: string; data: Record<string, unknown> };

/** What the page's WebSocket wrapper (installed before the dashboard loads) records of each socket. */
interface SocketRecord {
  token: string | null;
  createdAt: number;
  openedAt: number | null;
  /** The page's own close() call, if it made one. */
  closeCall: { at: number; code: number | null; reason: string | null } | null;
  closed: { at: number; code: number; reason: string } | null;
  /** Arrival times and seqs of deployment events received on it. */
  events: { at: number; seq: number }[];
}

/** What the control socket (a fixed token, never refreshed) saw. */
interface ControlRecord {
  openedAt: number | null;
  frames: { at: number; messages: Record<string, unknown>[] }[];
  closed: { at: number; code: number; reason: string } | null;
}

const missing = browserMissing();
let stack: LocalStack;
let browser: Browser;

before(async () => {
  if (missing !== null) {
    return;
  }
  assert.ok(existsSync(join(DIST, "index.html")), "build the dashboard first (npm run build)");
  [stack, browser] = await Promise.all([LocalStack.start("--token-lifetime", String(LIFETIME)), launchBrowser()]);
});

after(async () => {
  if (missing !== null) {
    return;
  }
  await browser?.close();
  const code = await stack?.stop();
  assert.equal(code, 0, `cloud-ws local exited with ${code}:\n${stack?.log}`);
});

/** Wraps the page's WebSocket so the test sees each socket's token, its close call and what it received. */
function recordSockets(): void {
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
          const parsed = JSON.parse(line) as { type?: string; seq?: number; event_id?: string };
          if (typeof parsed.seq === "number" && typeof parsed.event_id === "string") {
            record.events.push({ at, seq: parsed.seq });
          }
        }
      });
      this.addEventListener("close", (event: CloseEvent) => {
        record.closed = { at: Date.now(), code: event.code, reason: event.reason };
      });
    }

    override close(code?: number, reason?: string): void {
      this.#record.closeCall ??= { at: Date.now(), code: code ?? null, reason: reason ?? null };
      super.close(code, reason);
    }
  }
  window.WebSocket = Recorded;
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

describe("the dashboard across token expiries, in Chromium against cloud-ws local --token-lifetime 15", { skip: missing ?? false }, () => {
  test("refreshes ahead of every exp and resumes with since, losing nothing; a connection that does not refresh gets nothing after exp and is closed by the server", async (t) => {
    const deployment = deploymentId("DASHTOK");
    /** Every event put, in seq order (a new deployment: the first is seq 1), with when it was put. */
    const put: { event: Event; at: number }[] = [];
    const putEvents = async (events: Event[]): Promise<void> => {
      await stack.putEvents(deployment, events);
      const at = Date.now();
      put.push(...events.map((event) => ({ event, at })));
    };
    const logLine = (message: string, stackName: string): Event => ({
      type: "log.created",
      data: { level: "info", message, stack_name: stackName, environment: "dev" },
    });

    // Given a deployment under way before the page opens (the page starts from its snapshot),
    await putEvents([
      { type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 3, environment: "dev" } },
      { type: "stack.started", data: { stack_name: "vpc", layer: 1, environment: "dev" } },
      { type: "stack.started", data: { stack_name: "dns", layer: 1, environment: "dev" } },
      logLine("before 1", "vpc"),
      logLine("before 2", "dns"),
      logLine("before 3", "vpc"),
    ]);

    // and the dashboard open on it, its sockets watched from the test (playwright) and from the page.
    const context: BrowserContext = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    await context.addInitScript(recordSockets);
    const page: Page = await context.newPage();
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(error.message));
    page.on("console", (message) => {
      if (message.type() === "error" && !message.text().includes("WebSocket")) {
        problems.push(`${message.text()} (${message.location().url})`);
      }
    });
    const sockets: { socket: PageSocket; subscribes: Record<string, unknown>[]; closedAt: number | null }[] = [];
    page.on("websocket", (socket) => {
      const seen = { socket, subscribes: [] as Record<string, unknown>[], closedAt: null as number | null };
      sockets.push(seen);
      socket.on("framesent", ({ payload }) => {
        const frame = JSON.parse(String(payload)) as Record<string, unknown>;
        if (frame["action"] === "subscribe" && frame["deployment_id"] === deployment) {
          seen.subscribes.push(frame);
        }
      });
      socket.on("close", () => {
        seen.closedAt = Date.now();
      });
    });
    await page.goto(`${stack.http}/dashboard/?deployment=${deployment}`);
    await page.locator('#stats[data-last-seq="6"]').waitFor({ timeout: 20_000 });
    const records = (): Promise<SocketRecord[]> => page.evaluate(() => Reflect.get(window, "__sockets") as SocketRecord[]);
    const firstToken = (await records())[0]?.token ?? null;
    const firstExp = tokenExpiry(firstToken);
    assert.ok(firstExp !== undefined, "the page's first connection carried a JWT with an exp");

    // and, in another window, a plain WebSocket with one fixed token that nothing refreshes.
    const controlContext = await browser.newContext();
    const control = await controlContext.newPage();
    await control.goto(`${stack.http}/_cloud-ws/outputs`);
    const controlToken = await stack.token();
    const controlExp = tokenExpiry(controlToken);
    assert.ok(controlExp !== undefined);
    await control.evaluate(
      async ({ url, token, id }) => {
        const record: ControlRecord = { openedAt: null, frames: [], closed: null };
        Reflect.set(window, "__control", record);
        const socket = new WebSocket(url, ["cloud-ws", `bearer.${token}`]);
        socket.onmessage = (message) => {
          record.frames.push({ at: Date.now(), messages: String(message.data).split("\n").map((line) => JSON.parse(line) as Record<string, unknown>) });
        };
        socket.onclose = (event) => {
          record.closed = { at: Date.now(), code: event.code, reason: event.reason };
        };
        await new Promise((opened, failed) => {
          socket.onopen = opened;
          socket.onerror = failed;
        });
        record.openedAt = Date.now();
        socket.send(JSON.stringify({ action: "subscribe", deployment_id: id, id: "control" }));
      },
      { url: stack.outputs.websocket_url, token: controlToken, id: deployment },
    );
    const controlRecord = (): Promise<ControlRecord> => control.evaluate(() => Reflect.get(window, "__control") as ControlRecord);
    await waitFor(async () => (await controlRecord()).frames.some((frame) => frame.messages.some((m) => m["type"] === "subscribed")), {
      timeout: 10_000,
      what: "the control socket's subscription",
    });

    // When events are put steadily, across the expiry of the page's first token and of the next two
    // (each lives 15 s), and of the control socket's token,
    const steps = stackSteps();
    const until = Math.max(firstExp + (LIFETIME + LEEWAY) * 1000, controlExp + (LEEWAY + 3) * 1000);
    let tick = 0;
    while (Date.now() < until) {
      tick += 1;
      const batch = [logLine(`line ${tick}`, tick % 2 === 0 ? "vpc" : "dns")];
      if (tick % 8 === 4 && steps.length > 0) {
        batch.push(steps.shift() as Event);
      }
      await putEvents(batch);
      await new Promise((wake) => setTimeout(wake, 400));
    }
    // and then the rest of the deployment, to its end.
    await putEvents([...steps, { type: "deployment.status", data: { status: "succeeded", current_layer: 3, total_layers: 3, environment: "dev" } }, logLine("done", "frontend-cdn")]);
    const total = put.length;

    // Then the page shows every event: the last seq, every log line in order, the final figures,
    await page.locator(`#stats[data-last-seq="${total}"]`).waitFor({ timeout: 30_000 });
    await new Promise((wake) => setTimeout(wake, 1_000)); // a late duplicate or a notice would show now
    assert.equal(await page.locator("#stats").getAttribute("data-last-seq"), String(total));
    assert.equal(await page.locator("#stats").getAttribute("data-snapshot-seq"), "6");
    assert.equal(await page.locator("#stats").getAttribute("data-events"), String(total - 6), "every event after the snapshot folded once");
    const lines = put.flatMap(({ event }, index) => (event.type === "log.created" ? [{ seq: index + 1, message: String(event.data["message"]) }] : []));
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
    // and no gap or error notice, connected live after several resumes;
    assert.ok(await page.locator("#notice").isHidden(), `a notice: ${await page.locator("#notice").textContent()}`);
    assert.equal(await page.locator("#connection").getAttribute("data-state"), "open");
    const resumed = Number(await page.locator("#connection").getAttribute("data-reconnects"));
    assert.ok(resumed >= 2, `resumed ${resumed}×`);
    assert.match((await page.locator("#connection-text").textContent()) ?? "", /^Connected · live · resumed \d+×$/);

    // the page opened one socket per token, each replaced ahead of its exp by the page itself,
    // nothing received on it after exp; the first subscribed without since, the others resumed with it.
    // (Read between refreshes: the page's record and playwright's then name the same sockets.)
    let recorded: SocketRecord[] = [];
    await waitFor(
      async () => {
        recorded = await records();
        const last = recorded.at(-1);
        return recorded.length === sockets.length && last?.openedAt !== null && last?.closeCall === null && (sockets.at(-1)?.subscribes.length ?? 0) > 0;
      },
      { timeout: 10_000, what: "the page's current connection to be open and subscribed" },
    );
    // (10 s into each 15 s token: 4 connections over these ~37 s; at least 3 = two expiries crossed.)
    assert.ok(recorded.length >= 3, `the page opened ${recorded.length} WebSockets`);
    const expiries = recorded.map((record) => tokenExpiry(record.token));
    assert.equal(new Set(expiries).size, recorded.length, "a fresh token for every connection");
    recorded.forEach((record, index) => {
      const exp = expiries[index];
      assert.ok(exp !== undefined, `socket ${index} carried a token with an exp`);
      for (const received of record.events) {
        assert.ok(received.at <= exp + ARRIVAL_SLACK, `socket ${index} received seq ${received.seq} ${received.at - exp} ms after exp`);
      }
      if (index < recorded.length - 1) {
        assert.deepEqual(
          [record.closeCall?.code, record.closeCall?.reason],
          [CLOSE_REFRESH, REFRESH_REASON],
          `socket ${index} closed by the page to refresh: ${JSON.stringify(record)}`,
        );
        assert.ok((record.closeCall?.at ?? Infinity) < exp, `socket ${index} replaced ${(record.closeCall?.at ?? 0) - exp} ms after exp`);
      } else {
        assert.ok(Date.now() < exp, "the current socket's token is still valid");
      }
    });
    assert.equal(sockets[0]?.subscribes[0]?.["since"], undefined, "the page starts from the snapshot");
    for (const [index, seen] of sockets.entries()) {
      if (index > 0) {
        const since = seen.subscribes[0]?.["since"];
        assert.ok(typeof since === "number" && since >= 6, `socket ${index} resubscribed with since: ${JSON.stringify(seen.subscribes)}`);
      }
    }
    assert.deepEqual(problems, [], "the page reported errors");

    // And the socket that never refreshed got live events before its token's exp, none after
    // (though events were put after it), and was closed by the server within 60 s of exp.
    await waitFor(async () => (await controlRecord()).closed !== null, { timeout: controlExp + 60_000 - Date.now(), what: "the server to close the control socket" });
    const seenByControl = await controlRecord();
    const controlEvents = seenByControl.frames.flatMap((frame) =>
      frame.messages.filter((m) => typeof m["seq"] === "number" && typeof m["event_id"] === "string").map((m) => ({ at: frame.at, seq: m["seq"] as number })),
    );
    assert.ok(controlEvents.length > 0, "the control socket was live before exp");
    for (const received of controlEvents) {
      assert.ok(received.at <= controlExp + ARRIVAL_SLACK, `control received seq ${received.seq} ${received.at - controlExp} ms after exp`);
    }
    const lastToControl = Math.max(...controlEvents.map((received) => received.seq));
    const putAfterExp = put.filter(({ at }, index) => at > controlExp + ARRIVAL_SLACK && index + 1 > lastToControl).length;
    assert.ok(putAfterExp >= 10, `${putAfterExp} events put after the control token's exp that it did not get`);
    const closed = seenByControl.closed;
    assert.ok(closed !== null);
    assert.equal(closed.code, 1000, `closed by the server: ${JSON.stringify(closed)}`);
    assert.ok(closed.at > controlExp && closed.at <= controlExp + 60_000, `closed ${closed.at - controlExp} ms after exp`);

    t.diagnostic(
      `${total} events; the page's ${recorded.length} connections replaced ${recorded
        .slice(0, -1)
        .map((record, index) => `${(((expiries[index] ?? 0) - (record.closeCall?.at ?? 0)) / 1000).toFixed(1)} s`)
        .join(", ")} before exp; the control socket's last event ${((controlExp - Math.max(...controlEvents.map((r) => r.at))) / 1000).toFixed(1)} s before exp, closed ${((closed.at - controlExp) / 1000).toFixed(1)} s after`,
    );
    await controlContext.close();
    await context.close();
  });
});
