/**
 * The dashboard's Cognito sign-in (Connection… → username and password, dashboard/src/auth.ts), in a
 * real (headless Debian) Chromium against a real `cloud-ws local --token-lifetime 15`, whose
 * embedded Cognito mints 15-second ID tokens:
 *
 * - a wrong password shows Cognito's refusal, connects nothing and stores nothing;
 * - the dev user's password signs in through the form (`USER_PASSWORD_AUTH` on the stack's
 *   `aws_endpoint_url`, not the local dev-token endpoint, which the page is not asked again), and
 *   the page, whose token provider refreshes the ID token with `REFRESH_TOKEN_AUTH` within 90 s of
 *   its `exp`, shows every event put before, across and after at least two expiries, with no gap;
 *   the tokens are in no storage, nor is the password;
 * - a pasted token that is about to expire, or has expired, shows a notice saying so.
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";

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
/** How late a frame posted just before `exp` may still arrive (same machine, one hop). */
const ARRIVAL_SLACK = 1_000;
/** The local stack's dev user (its banner prints them). */
const USERNAME = "dev";
const PASSWORD = "Local-Dev-Passw0rd!";
const WRONG_PASSWORD = "Not-The-Passw0rd!";

type Event = { type: string; data: Record<string, unknown> };

interface SocketRecord {
  token: string | null;
  createdAt: number;
  closeCall: { at: number; code: number | null; reason: string | null } | null;
  /** The `since` of each subscribe sent on it (null: none). */
  subscribes: (number | null)[];
  events: { at: number; seq: number }[];
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

/** Wraps the page's WebSocket: each socket's token, its close call, its subscribes and the events it received. */
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
        closeCall: null,
        subscribes: [],
        events: [],
      };
      this.#record = record;
      records.push(record);
      this.addEventListener("message", (message: MessageEvent) => {
        const at = Date.now();
        for (const line of String(message.data).split("\n")) {
          const parsed = JSON.parse(line) as { seq?: number; event_id?: string };
          if (typeof parsed.seq === "number" && typeof parsed.event_id === "string") {
            record.events.push({ at, seq: parsed.seq });
          }
        }
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

/** Everything the page keeps in localStorage and sessionStorage. */
function storage(page: Page): Promise<Record<string, string>> {
  return page.evaluate(() => {
    const all: Record<string, string> = {};
    for (const [name, store] of [
      ["local", localStorage],
      ["session", sessionStorage],
    ] as const) {
      for (let index = 0; index < store.length; index += 1) {
        const key = store.key(index) ?? "";
        all[`${name}:${key}`] = store.getItem(key) ?? "";
      }
    }
    return all;
  });
}

/** Watches the page's requests: Cognito's InitiateAuth calls (flow, status, tokens answered) and the local dev-token endpoint. */
function watchAuth(page: Page): { flows: { at: number; flow: string; status: number }[]; idTokens: Set<string>; secrets: Set<string>; devTokenRequests: number[] } {
  const seen = { flows: [] as { at: number; flow: string; status: number }[], idTokens: new Set<string>(), secrets: new Set<string>(), devTokenRequests: [] as number[] };
  page.on("request", (request) => {
    if (request.url().includes("/_cloud-ws/token")) {
      seen.devTokenRequests.push(Date.now());
    }
  });
  page.on("response", async (response) => {
    const request = response.request();
    if (request.method() !== "POST" || request.headers()["x-amz-target"] !== "AWSCognitoIdentityProviderService.InitiateAuth") {
      return;
    }
    const flow = String((request.postDataJSON() as { AuthFlow?: string }).AuthFlow);
    seen.flows.push({ at: Date.now(), flow, status: response.status() });
    const body = (await response.json().catch(() => ({}))) as { AuthenticationResult?: { IdToken?: string; RefreshToken?: string; AccessToken?: string } };
    const result = body.AuthenticationResult;
    if (result?.IdToken) {
      seen.idTokens.add(result.IdToken);
      seen.secrets.add(result.IdToken);
    }
    for (const secret of [result?.RefreshToken, result?.AccessToken]) {
      if (secret) {
        seen.secrets.add(secret);
      }
    }
  });
  return seen;
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

async function newPage(): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  await context.addInitScript(recordSockets);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(error.message));
  page.on("console", (message) => {
    // A refused sign-in is a 400 the browser logs as a failed resource; that is the point of it.
    if (message.type() === "error" && !message.text().includes("WebSocket") && !message.text().includes("400")) {
      problems.push(`${message.text()} (${message.location().url})`);
    }
  });
  return { context, page, problems };
}

describe("the dashboard's Cognito sign-in, in Chromium against cloud-ws local --token-lifetime 15", { skip: missing ?? false }, () => {
  test("a wrong password is refused and stores nothing; the dev user signs in through the form and the page loses no event across two token expiries", async (t) => {
    const deployment = deploymentId("DASHSIGN");
    const put: Event[] = [];
    const putEvents = async (events: Event[]): Promise<void> => {
      await stack.putEvents(deployment, events);
      put.push(...events);
    };
    const logLine = (message: string, stackName: string): Event => ({
      type: "log.created",
      data: { level: "info", message, stack_name: stackName, environment: "dev" },
    });

    // Given a deployment under way, and the dashboard open on it (served by the local stack: dev tokens at first),
    await putEvents([
      { type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 3, environment: "dev" } },
      { type: "stack.started", data: { stack_name: "vpc", layer: 1, environment: "dev" } },
      { type: "stack.started", data: { stack_name: "dns", layer: 1, environment: "dev" } },
      logLine("before 1", "vpc"),
      logLine("before 2", "dns"),
      logLine("before 3", "vpc"),
    ]);
    const { context, page, problems } = await newPage();
    const auth = watchAuth(page);
    await page.goto(`${stack.http}/dashboard/?deployment=${deployment}`);
    await page.locator('#stats[data-last-seq="6"]').waitFor({ timeout: 20_000 });
    const records = (): Promise<SocketRecord[]> => page.evaluate(() => Reflect.get(window, "__sockets") as SocketRecord[]);

    // the Connection… panel offers to sign in, filled from the local stack's outputs.
    await page.locator("#settings-toggle").click();
    await page.locator("#signin-form").waitFor({ state: "visible" });
    await waitFor(async () => (await page.locator("#signin-client-id").inputValue()) === stack.outputs.user_pool_client_id, {
      timeout: 10_000,
      what: "the sign-in fields filled from the local outputs",
    });
    assert.equal(await page.locator("#signin-region").inputValue(), stack.outputs.region);
    assert.equal(await page.locator("#signin-endpoint").inputValue(), stack.outputs.aws_endpoint_url);
    assert.equal(await page.locator("#settings-url").inputValue(), stack.outputs.websocket_url);

    // When a wrong password is entered, Cognito's refusal shows, and nothing is stored or connected.
    const storedBefore = await storage(page);
    const socketsBefore = (await records()).length;
    await page.locator("#signin-username").fill(USERNAME);
    await page.locator("#signin-password").fill(WRONG_PASSWORD);
    await page.locator("#signin-submit").click();
    await page.locator("#signin-error").waitFor({ state: "visible", timeout: 10_000 });
    assert.match((await page.locator("#signin-error").textContent()) ?? "", /^Sign-in refused: .+/);
    assert.deepEqual(
      auth.flows.map(({ flow, status }) => `${flow} ${status}`),
      ["USER_PASSWORD_AUTH 400"],
    );
    assert.equal(await page.locator("#signin-password").inputValue(), "", "the password is not kept in the form");
    assert.ok(await page.locator("#settings").isVisible(), "the panel stays open to try again");
    assert.deepEqual(await storage(page), storedBefore, "a refused sign-in stores nothing");
    assert.ok((await page.locator("#settings-source").textContent())?.includes("local stack"), "still on the dev token");
    const afterRefusal = await records();
    assert.ok(afterRefusal.slice(socketsBefore).every((record) => record.closeCall === null || record.closeCall.code === CLOSE_REFRESH));

    // When the dev user's password is entered, the page signs in and connects with the session's tokens.
    await page.locator("#signin-password").fill(PASSWORD);
    const signInAt = Date.now();
    await page.locator("#signin-submit").click();
    await page.locator("#settings").waitFor({ state: "hidden", timeout: 10_000 });
    assert.ok(await page.locator("#signin-error").isHidden());
    assert.match((await page.locator("#settings-source").textContent()) ?? "", /^Signed in as dev: /);
    await page.locator('#stats[data-last-seq="6"]').waitFor({ timeout: 20_000 });
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 20_000 });
    const signedIn = (await records()).filter((record) => record.createdAt >= signInAt);
    const firstExp = tokenExpiry(signedIn[0]?.token);
    assert.ok(firstExp !== undefined, "the first signed-in connection carried a JWT with an exp");

    // and events are put steadily, across the expiry of its first token and of the next (each lives 15 s),
    const steps = stackSteps();
    const until = firstExp + (LIFETIME + LEEWAY) * 1000;
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
    // and then the rest of the deployment, to its end,
    await putEvents([...steps, { type: "deployment.status", data: { status: "succeeded", current_layer: 3, total_layers: 3, environment: "dev" } }, logLine("done", "frontend-cdn")]);
    const total = put.length;

    // Then the page shows every event: the last seq, every log line once in order, the final figures,
    await page.locator(`#stats[data-last-seq="${total}"]`).waitFor({ timeout: 30_000 });
    await new Promise((wake) => setTimeout(wake, 1_000)); // a late duplicate or a notice would show now
    assert.equal(await page.locator("#stats").getAttribute("data-last-seq"), String(total));
    assert.equal(await page.locator("#stats").getAttribute("data-snapshot-seq"), "6", "signed in, the page started again from the snapshot");
    assert.equal(await page.locator("#stats").getAttribute("data-events"), String(total - 6), "every event after the snapshot folded once");
    const lines = put.flatMap((event, index) => (event.type === "log.created" ? [{ seq: index + 1, message: String(event.data["message"]) }] : []));
    const shown = await page.locator("#log .log-line").evaluateAll((items) =>
      items.map((item) => ({ seq: Number(item.getAttribute("data-seq")), message: item.querySelector(".log-message")?.textContent ?? "" })),
    );
    assert.deepEqual(shown, lines, "every log line, once each, in seq order");
    assert.ok(await page.locator("#log-note").isHidden(), "no line missing from the pane");
    assert.equal(await page.locator("#deployment-status").getAttribute("data-status"), "succeeded");
    assert.equal(await page.locator("#stack-counts").textContent(), "6 deployed");
    // and no notice (no gap, no token warning), connected live after several resumes;
    assert.ok(await page.locator("#notice").isHidden(), `a notice: ${await page.locator("#notice").textContent()}`);
    assert.ok(await page.locator("#token-notice").isHidden(), `a token notice: ${await page.locator("#token-notice").textContent()}`);
    assert.equal(await page.locator("#connection").getAttribute("data-state"), "open");
    assert.ok(Number(await page.locator("#connection").getAttribute("data-reconnects")) >= 2);

    // every connection since the sign-in carried an ID token Cognito answered the page with (one
    // USER_PASSWORD_AUTH, then REFRESH_TOKEN_AUTH), never a dev token from the local endpoint,
    // each replaced by the page ahead of its exp and posted nothing after it; the first subscribed
    // without since (a fresh picture), the others resumed with it.
    const sinceSignIn = (await records()).filter((record) => record.createdAt >= signInAt);
    assert.ok(sinceSignIn.length >= 3, `${sinceSignIn.length} connections since the sign-in: two expiries crossed`);
    assert.deepEqual(auth.devTokenRequests.filter((at) => at >= signInAt), [], "the dev-token endpoint was not asked after the sign-in");
    const flows = auth.flows.filter(({ at }) => at >= signInAt);
    assert.equal(flows[0]?.flow, "USER_PASSWORD_AUTH");
    assert.ok(flows.every(({ status }) => status === 200), JSON.stringify(flows));
    const refreshes = flows.filter(({ flow }) => flow === "REFRESH_TOKEN_AUTH").length;
    assert.ok(refreshes >= 2, `${refreshes} refreshes`);
    sinceSignIn.forEach((record, index) => {
      assert.ok(record.token !== null && auth.idTokens.has(record.token), `socket ${index} carried an ID token from Cognito`);
      const exp = tokenExpiry(record.token);
      assert.ok(exp !== undefined);
      for (const received of record.events) {
        assert.ok(received.at <= exp + ARRIVAL_SLACK, `socket ${index} received seq ${received.seq} ${received.at - exp} ms after exp`);
      }
      if (index < sinceSignIn.length - 1) {
        assert.equal(record.closeCall?.code, CLOSE_REFRESH, `socket ${index} closed by the page to refresh: ${JSON.stringify(record.closeCall)}`);
        assert.ok((record.closeCall?.at ?? Infinity) < exp, `socket ${index} replaced after exp`);
      }
      if (index === 0) {
        assert.deepEqual(record.subscribes, [null], "signed in, the page subscribes afresh (from the snapshot)");
      } else {
        assert.ok(record.subscribes.length > 0 && record.subscribes.every((since) => since !== null && since >= 6), `socket ${index} resumed with since: ${JSON.stringify(record.subscribes)}`);
      }
    });
    assert.equal(new Set(sinceSignIn.map((record) => record.token)).size, sinceSignIn.length, "a fresh token for every connection");

    // and neither the tokens nor the password are in any storage.
    const stored = Object.values(await storage(page));
    for (const value of stored) {
      assert.ok(!value.includes(PASSWORD), "the password is stored");
      for (const secret of auth.secrets) {
        assert.ok(!value.includes(secret), "a Cognito token is stored");
      }
    }
    assert.equal(await page.locator("#signin-password").inputValue(), "");
    assert.deepEqual(problems, [], "the page reported errors");
    t.diagnostic(`${total} events; ${sinceSignIn.length} connections since the sign-in, ${refreshes} REFRESH_TOKEN_AUTH`);
    await context.close();
  });

  test("a pasted token says it is about to expire, then that it has expired; signing in clears the notice", async () => {
    const { context, page, problems } = await newPage();
    await page.goto(`${stack.http}/dashboard/`);
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 20_000 });
    assert.ok(await page.locator("#token-notice").isHidden(), "the local stack's dev tokens need no notice");

    // When a token with 15 s to live is pasted under Connection…,
    const token = await stack.token();
    const exp = tokenExpiry(token);
    assert.ok(exp !== undefined);
    await page.locator("#settings-toggle").click();
    await page.locator("#settings-token").fill(token);
    await page.locator("#settings-form button[type=submit]").click();

    // then the page says it expires within a minute, and once past its exp that it has expired.
    await page.locator('#token-notice[data-expires-in="1"]').waitFor({ timeout: 5_000 });
    assert.equal(await page.locator("#token-notice").textContent(), "Your token expires in 1 min: sign in or paste a new one under Connection…");
    await page.locator('#token-notice[data-expires-in="expired"]').waitFor({ timeout: exp - Date.now() + 5_000 });
    assert.equal(await page.locator("#token-notice").textContent(), "Your token has expired: sign in or paste a new one under Connection…");

    // And signing in instead removes the notice and connects again.
    await page.locator("#settings-toggle").click();
    await page.locator("#signin-username").fill(USERNAME);
    await page.locator("#signin-password").fill(PASSWORD);
    await page.locator("#signin-submit").click();
    await page.locator("#settings").waitFor({ state: "hidden", timeout: 10_000 });
    await page.locator("#token-notice").waitFor({ state: "hidden", timeout: 5_000 });
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 20_000 });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, "the pasted token is forgotten once signed in");
    assert.deepEqual(problems, [], "the page reported errors");
    await context.close();
  });
});
