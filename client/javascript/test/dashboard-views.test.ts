/**
 * The dashboard's views in a real (headless Debian) Chromium against a real
 * `cloud-ws local`: the home and deployment pages on a phone (nothing wider
 * than the screen, every figure reachable), the "not allowed" view of a
 * subscribe the server refuses with `forbidden`, a cancelled deployment (its
 * banner, its stopped stacks, a duration that stands still), a running
 * deployment's duration counted from its own start, and the log pane's
 * stack and text filters.
 *
 * Screenshots land in client/javascript/artifacts/; with
 * CLOUD_WS_UPDATE_SCREENSHOTS=1 the phone ones are also written to
 * docs/screenshots/, which docs/dashboard.md shows.
 */

import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { Page } from "playwright-core";

import { CloudWebSocketClient, SubscriptionError } from "../src/index.js";
import WebSocket from "ws";
import { ARTIFACTS, dashboardInChromium } from "./support/dashboard.js";
import { deploymentId, type Outputs, PYTHON, REPO_ROOT, waitFor } from "./support/stack.js";

const DOC_SCREENSHOTS = join(REPO_ROOT, "docs", "screenshots");

/** An iPhone 12–15's screen in CSS pixels, and its device pixel ratio. */
const PHONE = { width: 390, height: 844, scale: 2 };

const dashboard = dashboardInChromium({ artifacts: true });
const { missing } = dashboard;

/** The width and height a PNG file says it has (its IHDR chunk). */
function pngSize(path: string): { width: number; height: number } {
  const bytes = readFileSync(path);
  assert.equal(bytes.subarray(1, 4).toString("latin1"), "PNG", `${path} is a PNG`);
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

/** A full-page screenshot into artifacts/ (and docs/screenshots/ when asked); checks it is the phone's width. */
async function phoneScreenshot(page: Page, name: string): Promise<void> {
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path, fullPage: true });
  assert.equal(pngSize(path).width, PHONE.width * PHONE.scale, `${name} is ${PHONE.width} CSS px wide`);
  if (process.env["CLOUD_WS_UPDATE_SCREENSHOTS"] === "1") {
    mkdirSync(DOC_SCREENSHOTS, { recursive: true });
    copyFileSync(path, join(DOC_SCREENSHOTS, name));
  }
}

/** Whether the page is wider than its screen (anything a user would have to scroll sideways to). */
async function pageWidth(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth);
}

/** Elements (by selector) that are not entirely on screen horizontally, with their extent. */
async function offScreen(page: Page, selectors: string[], width: number): Promise<string[]> {
  const outside: string[] = [];
  for (const selector of selectors) {
    const boxes = await page.locator(selector).evaluateAll((items) =>
      items.map((item) => {
        const box = item.getBoundingClientRect();
        return { left: box.left, right: box.right, shown: box.width > 0 && box.height > 0 };
      }),
    );
    assert.ok(boxes.length > 0, `the page has ${selector}`);
    for (const box of boxes) {
      if (!box.shown || box.left < 0 || box.right > width + 0.5) {
        outside.push(`${selector}: ${box.shown ? `${box.left}–${box.right}` : "not shown"}`);
      }
    }
  }
  return outside;
}

const LONG_ENV = "production-eu-west-1";

/** A deployment under way in layer 2 of 4: three deployed stacks, three deploying, a few log lines. */
function underWay(): { type: string; data: Record<string, unknown> }[] {
  const events: { type: string; data: Record<string, unknown> }[] = [
    { type: "deployment.status", data: { status: "deploying", current_layer: 2, total_layers: 4, environment: LONG_ENV } },
  ];
  for (const name of ["vpc", "dns", "transit-gateway-attachments"]) {
    events.push({ type: "stack.started", data: { stack_name: name, layer: 1, environment: LONG_ENV } });
    events.push({ type: "stack.deployed", data: { stack_name: name, layer: 1, environment: LONG_ENV, resource_count: 12, duration_seconds: 65 } });
  }
  for (const name of ["iam-roles", "kms-keys", "security-groups"]) {
    events.push({ type: "stack.started", data: { stack_name: name, layer: 2, environment: LONG_ENV } });
  }
  events.push(
    { type: "log.created", data: { level: "info", message: "layer 1 done", stack_name: "vpc", environment: LONG_ENV } },
    {
      type: "log.created",
      data: {
        level: "warning",
        message: "aws:ec2/securityGroup:SecurityGroup sg-ingress-from-the-transit-gateway-attachment-0123456789abcdef replaced",
        stack_name: "security-groups",
        environment: LONG_ENV,
      },
    },
    { type: "log.created", data: { level: "info", message: "creating key alias alias/deployments", stack_name: "kms-keys", environment: LONG_ENV } },
  );
  return events;
}

describe("dashboard views in Chromium", { skip: missing ?? false }, () => {
  test("fits a phone: no sideways scrolling, every figure on screen, one column of stacks, all the home page's columns", async () => {
    const deployment = deploymentId("phone");
    // A few others first, so the home page (and its screenshot) lists several.
    await dashboard.stack.putEvents(deploymentId("nightly"), [
      { type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 2, environment: "staging" } },
      { type: "deployment.status", data: { status: "succeeded", current_layer: 2, total_layers: 2 } },
    ]);
    await dashboard.stack.putEvents(deploymentId("hotfix"), [
      { type: "deployment.status", data: { status: "deploying", current_layer: 3, total_layers: 4, environment: "dev" } },
      { type: "deployment.status", data: { status: "failed" } },
    ]);
    await dashboard.stack.putEvents(deployment, [
      ...underWay(),
      // A token with nowhere to break (a digest, a key) must not widen the page either.
      { type: "log.created", data: { level: "debug", message: `digest ${"0123456789abcdef".repeat(6)}`, stack_name: "kms-keys" } },
    ]);
    const page = await dashboard.newPage({
      context: {
        viewport: { width: PHONE.width, height: PHONE.height },
        deviceScaleFactor: PHONE.scale,
        hasTouch: true,
        isMobile: true,
      },
    });

    // The home page: the row of our deployment shows every column, with its name, within the screen.
    await page.goto(`${dashboard.stack.http}/dashboard/`);
    const row = page.locator(`tr[data-deployment="${deployment}"]`);
    await row.waitFor({ timeout: 30_000 });
    assert.ok((await pageWidth(page)) <= PHONE.width, `home page ${await pageWidth(page)} px wide`);
    assert.deepEqual(await offScreen(page, ["#watch-form button", "#connection", "#settings-toggle", ".brand"], PHONE.width), []);
    const cells = await row.locator("td").evaluateAll((items) =>
      items.map((item) => {
        const box = item.getBoundingClientRect();
        return { label: item.getAttribute("data-label"), text: item.textContent ?? "", left: box.left, right: box.right, width: box.width };
      }),
    );
    assert.deepEqual(
      cells.map((cell) => [cell.label, cell.text]),
      [
        ["Deployment", deployment],
        ["Status", "deploying"],
        ["Attempt", "1"],
        ["Layer", "2 of 4"],
        ["Environment", LONG_ENV],
        ["Updated", cells[5]?.text ?? ""],
      ],
    );
    assert.match(cells[5]?.text ?? "", /^\d+[smhd] ago$/);
    for (const cell of cells) {
      assert.ok(cell.width > 0 && cell.left >= 0 && cell.right <= PHONE.width, `${cell.label} on screen: ${cell.left}–${cell.right}`);
    }
    await phoneScreenshot(page, "dashboard-phone-home.png");

    // A tap opens the deployment page, which fits too.
    await row.locator(".open-deployment").tap();
    await page.locator('.stack[data-stack="security-groups"]').waitFor({ timeout: 15_000 });
    await page.locator("#log .log-line").nth(3).waitFor();
    assert.ok((await pageWidth(page)) <= PHONE.width, `deployment page ${await pageWidth(page)} px wide`);
    assert.deepEqual(
      await offScreen(
        page,
        [
          "#watch-form button",
          "#connection",
          "#settings-toggle",
          "#deployment-id",
          "#deployment-status",
          "#attempt-text",
          "#layer-text",
          "#stack-counts",
          "#duration-text",
          "#stats",
          "#layers .layer",
          ".stack",
          "#log-filter .chip",
          "#log-text",
          "#log-stack",
          "#log .log-message",
        ],
        PHONE.width,
      ),
      [],
    );
    assert.equal(await page.locator("#layers .layer").count(), 4);
    const columns = new Set(await page.locator(".stack").evaluateAll((items) => items.map((item) => Math.round(item.getBoundingClientRect().left))));
    assert.equal(columns.size, 1, `stack cards in one column (left edges ${[...columns].join(", ")})`);
    await phoneScreenshot(page, "dashboard-phone-deployment.png");

    // Connection… opens its form within the screen too.
    await page.locator("#settings-toggle").tap();
    await page.locator("#settings-url").waitFor();
    assert.ok((await pageWidth(page)) <= PHONE.width, `with the settings open ${await pageWidth(page)} px wide`);
    assert.deepEqual(await offScreen(page, ["#settings-url", "#settings-token", "#reconnect"], PHONE.width), []);
    await dashboard.closePage(page);
  });

  test("a subscribe refused with forbidden shows the 'not allowed' view, and Try again watches it once granted", async () => {
    const deployment = deploymentId("secret");
    await dashboard.stack.putEvents(deployment, underWay());
    const page = await dashboard.newPage();
    // The stack answers this deployment's subscribe as a stack whose access policy does not
    // grant its project would; every other frame passes through unchanged.
    let granted = false;
    const message = `you are not allowed to watch deployment ${deployment}: none of your groups is granted project 'alpha'; ask an administrator to grant it in the stack's access policy`;
    await page.routeWebSocket(/.*/, (socket) => {
      const server = socket.connectToServer();
      socket.onMessage((frame) => {
        const parsed = JSON.parse(String(frame)) as Record<string, unknown>;
        if (!granted && parsed["action"] === "subscribe" && parsed["deployment_id"] === deployment) {
          socket.send(JSON.stringify({ type: "error", code: "forbidden", id: parsed["id"], action: "subscribe", deployment_id: deployment, message }));
          return;
        }
        server.send(frame);
      });
    });

    await page.goto(`${dashboard.stack.http}/dashboard/?deployment=${deployment}`);
    await page.locator("#forbidden").waitFor({ timeout: 15_000 });
    assert.equal(await page.locator("#forbidden h2").textContent(), "Not allowed");
    assert.equal(await page.locator("#forbidden-message").textContent(), message);
    assert.match((await page.locator("#forbidden").textContent()) ?? "", /access.*policy/s);
    assert.equal(await page.locator("#deployment-status").getAttribute("data-status"), "forbidden");
    assert.equal(await page.locator("#deployment-status").textContent(), "not allowed");
    for (const part of ["#progress-panel", "#columns", "#facts", "#deployment-error", "#notice"]) {
      assert.ok(await page.locator(part).isHidden(), `${part} hidden: no spinner, no empty picture, no generic error`);
    }
    assert.equal(await page.locator('#connection[data-state="open"]').count(), 1, "the connection itself is fine");
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-forbidden.png"), fullPage: true });
    // It fits a phone too.
    await page.setViewportSize({ width: PHONE.width, height: PHONE.height });
    assert.ok((await pageWidth(page)) <= PHONE.width, `the view is ${await pageWidth(page)} px wide at ${PHONE.width}`);
    assert.deepEqual(await offScreen(page, ["#forbidden h2", "#forbidden-message", "#forbidden-retry", "#forbidden code"], PHONE.width), []);
    await page.setViewportSize({ width: 1400, height: 1000 });

    // Once an administrator grants the project, Try again shows the deployment.
    granted = true;
    await page.locator("#forbidden-retry").click();
    await page.locator('.stack[data-stack="kms-keys"]').waitFor({ timeout: 15_000 });
    assert.ok(await page.locator("#forbidden").isHidden());
    assert.equal(await page.locator("#deployment-status").getAttribute("data-status"), "deploying");
    await dashboard.closePage(page);
  });

  test("a cancelled deployment: a cancelled banner and layer, its deploying stack stopped, a duration that stands still", async () => {
    const deployment = deploymentId("cancel");
    await dashboard.stack.putEvents(deployment, underWay());
    const page = await dashboard.newPage();
    await page.goto(`${dashboard.stack.http}/dashboard/?deployment=${deployment}`);
    await page.locator('.stack[data-stack="security-groups"]').waitFor({ timeout: 15_000 });
    // Given a page watching live, when the run is cancelled with a reason while two stacks deploy,
    await dashboard.stack.putEvents(deployment, [
      { type: "stack.deployed", data: { stack_name: "iam-roles", layer: 2, environment: LONG_ENV, resource_count: 22, duration_seconds: 40 } },
      { type: "deployment.status", data: { status: "cancelled", error_message: "cancelled by alice (Ctrl-C)" } },
    ]);
    await page.locator('#deployment-status[data-status="cancelled"]').waitFor({ timeout: 15_000 });

    // then the banner says cancelled, why, and which stacks it stopped.
    const banner = page.locator("#deployment-error");
    assert.equal(await banner.getAttribute("data-status"), "cancelled");
    assert.equal(
      await banner.textContent(),
      "Deployment cancelled: cancelled by alice (Ctrl-C); stopped while deploying: kms-keys, security-groups",
    );
    assert.deepEqual(
      await page.locator("#layers .layer").evaluateAll((items) => items.map((item) => item.getAttribute("data-state"))),
      ["done", "cancelled", "skipped", "skipped"],
      "layer 2 was cancelled, not failed",
    );
    const cards = await page.locator(".stack").evaluateAll((items) =>
      items.map((item) => [item.getAttribute("data-stack"), item.getAttribute("data-stopped"), item.querySelector(".badge")?.textContent ?? ""]),
    );
    assert.deepEqual(cards.slice(3), [
      ["iam-roles", "false", "deployed"],
      ["kms-keys", "true", "cancelled"],
      ["security-groups", "true", "cancelled"],
    ]);

    // Nothing keeps counting: the duration is the deployment's span, the same seconds later.
    const duration = await page.locator("#duration-text").textContent();
    assert.match(duration ?? "", /^\d+s$/, `a finished duration: ${duration}`);
    await new Promise((wake) => setTimeout(wake, 2_500));
    assert.equal(await page.locator("#duration-text").textContent(), duration);
    assert.deepEqual(await page.locator(".stack .duration").allTextContents(), ["1m 05s", "1m 05s", "1m 05s", "40s", "", ""]);
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-cancelled.png"), fullPage: true });

    // A page started from the snapshot says the same (the reason only if the snapshot carries it).
    await page.reload();
    await page.locator('#deployment-status[data-status="cancelled"]').waitFor({ timeout: 15_000 });
    assert.equal(await banner.getAttribute("data-status"), "cancelled");
    assert.match((await banner.textContent()) ?? "", /^Deployment cancelled\b.*; stopped while deploying: kms-keys, security-groups$/);
    assert.equal(await page.locator('#layers .layer[data-layer="2"]').getAttribute("data-state"), "cancelled");
    assert.equal(await page.locator('.stack[data-stopped="true"] .badge').allTextContents().then((badges) => badges.join()), "cancelled,cancelled");
    assert.match((await page.locator("#duration-text").textContent()) ?? "", /^\d+s$/);
    await dashboard.closePage(page);
  });

  test("a running deployment's duration counts from its start, not from when the page opened", async () => {
    const deployment = deploymentId("clock");
    await dashboard.stack.putEvents(deployment, [{ type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 2 } }]);
    // Given the deployment started a few seconds before the page opens,
    await new Promise((wake) => setTimeout(wake, 3_000));
    const page = await dashboard.newPage();
    await page.goto(`${dashboard.stack.http}/dashboard/?deployment=${deployment}`);
    await page.locator('#deployment-status[data-status="deploying"]').waitFor({ timeout: 15_000 });
    const seconds = async (): Promise<number> => {
      const text = (await page.locator("#duration-text").textContent()) ?? "";
      const match = /^(\d+)s so far$/.exec(text);
      assert.ok(match !== null, `a running duration: ${text}`);
      return Number(match[1]);
    };
    // then it shows those seconds at once, and counts on without any event.
    const first = await seconds();
    assert.ok(first >= 3, `${first}s: counted from the deployment's start`);
    await waitFor(async () => (await seconds()) >= first + 2, { timeout: 5_000, what: "the duration to count on" });
    await dashboard.closePage(page);
  });

  test("a history that went back (the stack restarted, the id reused) is noticed after a reconnect: the page starts again from the snapshot", async () => {
    const deployment = deploymentId("reset");
    const page = await dashboard.newPage();
    // The page's WebSocket talks to the test alone, which plays a stack that loses its history.
    const stacks = (names: string[], status: string): Record<string, unknown> =>
      Object.fromEntries(names.map((name) => [name, { status, layer: 1, environment: "dev", resource_count: 3, duration_seconds: 5, error_message: null }]));
    const picture = (seq: number, names: string[], status: string, infos: number): Record<string, unknown> => ({
      type: "deployment.snapshot",
      deployment_id: deployment,
      seq,
      data: {
        status: "deploying",
        attempt: 1,
        current_layer: 1,
        total_layers: 2,
        started_at: new Date(Date.now() - 60_000).toISOString(),
        updated_at: new Date().toISOString(),
        environment: "dev",
        stacks: stacks(names, status),
        dropped_stack_events: 0,
        log_counts: { info: infos },
        recent_logs: [],
      },
    });
    // The first connection's history is at seq 41; after the "restart" the stack is at seq 3.
    const histories = [picture(41, ["vpc", "dns", "cdn"], "deployed", 56), picture(3, ["vpc"], "deploying", 1)];
    const sockets: { close(options?: { code?: number; reason?: string }): Promise<void> }[] = [];
    const subscribes: Record<string, unknown>[] = [];
    await page.routeWebSocket(/.*/, (socket) => {
      const history = histories[Math.min(sockets.length, histories.length - 1)] ?? {};
      sockets.push(socket);
      socket.onMessage((frame) => {
        const asked = JSON.parse(String(frame)) as Record<string, unknown>;
        const reply = (message: Record<string, unknown>): void => socket.send(JSON.stringify({ ...message, id: asked["id"] }));
        if (asked["action"] === "subscribe") {
          subscribes.push(asked);
          reply({ type: "subscribed", deployment_id: deployment, seq: history["seq"], replay: 0 });
          socket.send(JSON.stringify(history));
        } else if (asked["action"] === "unsubscribe") {
          reply({ type: "unsubscribed", deployment_id: deployment });
        } else if (asked["action"] === "ping") {
          reply({ type: "pong", latest: { [deployment]: history["seq"] } });
        } else if (asked["action"] === "list_deployments") {
          reply({ type: "deployments", deployments: [] });
        }
      });
    });
    await page.goto(`${dashboard.stack.http}/dashboard/?deployment=${deployment}`);
    await page.locator('#stats[data-last-seq="41"]').waitFor({ timeout: 15_000 });
    assert.equal(await page.locator(".stack").count(), 3);

    // When the stack "restarts" (the page's socket closes) and its history starts again,
    await sockets[0]?.close({ code: 1011, reason: "restart" });
    await page.locator('#stats[data-last-seq="3"]').waitFor({ timeout: 20_000 });

    // then the page shows the new history's picture, says why, and follows it from there.
    assert.deepEqual(
      await page.locator(".stack").evaluateAll((items) => items.map((item) => [item.getAttribute("data-stack"), item.getAttribute("data-state")])),
      [["vpc", "deploying"]],
    );
    assert.match((await page.locator("#log-filter").textContent()) ?? "", /info 1/);
    assert.match((await page.locator("#notice").textContent()) ?? "", /history of .* went back \(seq 3, the page had 41\)/);
    assert.deepEqual(
      subscribes.map((asked) => asked["since"] ?? null),
      [null, 41, null],
      "resumed with since = 41, then subscribed afresh without since",
    );
    const last = sockets.at(-1);
    assert.ok(last !== undefined);
    (last as unknown as { send(message: string): void }).send(
      JSON.stringify({ type: "stack.deployed", deployment_id: deployment, seq: 4, event_id: "e4", timestamp: new Date().toISOString(), data: { stack_name: "vpc", layer: 1, resource_count: 15, duration_seconds: 30 } }),
    );
    await page.locator('.stack[data-stack="vpc"][data-state="deployed"]').waitFor({ timeout: 15_000 });
    assert.equal(await page.locator("#stats").getAttribute("data-last-seq"), "4");
    await dashboard.closePage(page);
  });

  test("the log pane filters by text and by stack; a click on a stack shows its lines", async () => {
    const deployment = deploymentId("logs");
    await dashboard.stack.putEvents(deployment, underWay());
    const page = await dashboard.newPage();
    await page.goto(`${dashboard.stack.http}/dashboard/?deployment=${deployment}`);
    await page.locator("#log .log-line").nth(2).waitFor({ timeout: 15_000 });
    const shown = (): Promise<string[]> => page.locator("#log .log-line:visible .log-stack").allTextContents();
    assert.deepEqual(await shown(), ["vpc", "security-groups", "kms-keys"]);

    await page.locator("#log-text").fill("REPLACED");
    assert.deepEqual(await shown(), ["security-groups"], "the text matches case-insensitively");
    assert.equal(await page.locator("#log-note").textContent(), "1 of 3 lines match the filter.");
    await page.locator("#log-text").fill("kms");
    assert.deepEqual(await shown(), ["kms-keys"], "a stack's name matches too");
    await page.locator("#log-text").fill("");
    assert.ok(await page.locator("#log-note").isHidden());

    await page.locator('.stack[data-stack="vpc"]').click();
    assert.equal(await page.locator("#log-stack").inputValue(), "vpc");
    assert.deepEqual(await shown(), ["vpc"]);
    assert.equal(await page.locator('.stack[aria-pressed="true"]').getAttribute("data-stack"), "vpc");
    await page.locator('.stack[data-stack="vpc"]').press("Enter");
    assert.deepEqual(await shown(), ["vpc", "security-groups", "kms-keys"], "again: all lines");
    await page.locator('.stack[data-stack="security-groups"]').press("Enter");
    assert.deepEqual(await shown(), ["security-groups"], "from the keyboard too");
    await page.locator("#log-stack").selectOption("");
    assert.deepEqual(await shown(), ["vpc", "security-groups", "kms-keys"]);
    assert.equal(await page.locator('.stack[aria-pressed="true"]').count(), 0);

    // A line that arrives while a filter is on is filtered too; the level chips still apply on top.
    await page.locator("#log-stack").selectOption("kms-keys");
    await dashboard.stack.putEvents(deployment, [
      { type: "log.created", data: { level: "info", message: "key rotated", stack_name: "kms-keys" } },
      { type: "log.created", data: { level: "info", message: "rule added", stack_name: "security-groups" } },
    ]);
    await page.locator("#log .log-line").nth(4).waitFor({ state: "attached", timeout: 15_000 });
    assert.deepEqual(await page.locator("#log .log-line:visible .log-message").allTextContents(), ["creating key alias alias/deployments", "key rotated"]);
    await page.locator('#log-filter [data-level="info"]').click();
    assert.equal(await page.locator("#log .log-line:visible").count(), 0);
    await dashboard.closePage(page);
  });
});

/**
 * `cloud-ws local --access POLICY`: a stack that shows a deployment only to users one of whose
 * groups is granted its project. Started here rather than through LocalStack, which starts a
 * stack without a policy; skipped while the stack has no `--access` option.
 */
const ACCESS_MISSING = ((): string | null => {
  if (missing !== null) {
    return missing;
  }
  const help = spawnSync(PYTHON, ["-m", "cloud_ws.cli", "local", "--help"], { cwd: REPO_ROOT, encoding: "utf8" });
  return (help.stdout ?? "").includes("--access") ? null : "cloud-ws local has no --access option yet";
})();

class AccessStack {
  private constructor(
    readonly outputs: Outputs,
    readonly child: ChildProcess,
    readonly directory: string,
  ) {}

  static async start(policy: Record<string, string[]>): Promise<AccessStack> {
    const directory = mkdtempSync(join(tmpdir(), "cloud-ws-access-"));
    const outputsPath = join(directory, "outputs.json");
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: "1" };
    delete env["AWS_ENDPOINT_URL"];
    delete env["AWS_PROFILE"];
    const args = ["-m", "cloud_ws.cli", "local", "--port", "0", "--outputs", outputsPath, "--access", JSON.stringify(policy)];
    const child = spawn(PYTHON, args, { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    const log: string[] = [];
    child.stdout?.on("data", (chunk: Buffer) => log.push(chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => log.push(chunk.toString()));
    await waitFor(() => existsSync(outputsPath) || child.exitCode !== null, { timeout: 60_000, what: "cloud-ws local --access to start" });
    if (child.exitCode !== null) {
      throw new Error(`cloud-ws local --access exited early:\n${log.join("")}`);
    }
    return new AccessStack(JSON.parse(readFileSync(outputsPath, "utf8")) as Outputs, child, directory);
  }

  get http(): string {
    return this.outputs.dashboard_url.replace(/\/$/, "");
  }

  async token(): Promise<string> {
    const reply = await fetch(`${this.http}/_cloud-ws/token`);
    return ((await reply.json()) as { token: string }).token;
  }

  /** One event of `project` through EventBridge's PutEvents, as any producer sends it. */
  async put(deployment: string, project: string, type: string, data: Record<string, unknown>, number: number): Promise<void> {
    const detail = { deployment_id: deployment, event_id: randomUUID(), data, timestamp: new Date().toISOString(), project, producer_id: `test-${deployment}`, producer_seq: number };
    const entry = { Source: this.outputs.event_source, DetailType: type, EventBusName: this.outputs.event_bus_name, Detail: JSON.stringify(detail) };
    const reply = await fetch(`${this.outputs.aws_endpoint_url}/`, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AWSEvents.PutEvents",
        Authorization: `AWS4-HMAC-SHA256 Credential=local/20260101/${this.outputs.region}/events/aws4_request, SignedHeaders=host, Signature=0`,
      },
      body: JSON.stringify({ Entries: [entry] }),
    });
    assert.ok(reply.ok, `PutEvents answered ${reply.status}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      const exited = new Promise((done) => this.child.once("exit", done));
      this.child.kill("SIGTERM");
      await exited;
    }
    rmSync(this.directory, { recursive: true, force: true });
  }
}

describe("dashboard against a stack with an access policy", { skip: ACCESS_MISSING ?? false }, () => {
  test("a deployment of a project none of the user's groups is granted: the 'not allowed' view with the server's message; a granted one shows", async () => {
    // The local dev user is in the group "developers", granted project "alpha" only.
    const access = await AccessStack.start({ developers: ["alpha"] });
    try {
      const allowed = deploymentId("alpha");
      const refused = deploymentId("beta");
      await access.put(allowed, "alpha", "deployment.status", { status: "deploying", current_layer: 1, total_layers: 2, environment: "dev" }, 1);
      await access.put(refused, "beta", "deployment.status", { status: "deploying", current_layer: 1, total_layers: 2, environment: "dev" }, 1);

      // Given both are stored (the refused one's project is known once its first event is),
      const client = new CloudWebSocketClient({ url: access.outputs.websocket_url, token: () => access.token(), WebSocket });
      await client.connect();
      await waitFor(
        async () => {
          try {
            await client.subscribe(refused);
            client.unsubscribe(refused);
            return false;
          } catch (error) {
            return error instanceof SubscriptionError && error.code === "forbidden";
          }
        },
        { timeout: 30_000, what: `the stack to refuse ${refused}` },
      );
      await client.disconnect();

      // the home page lists only the granted one,
      const page = await dashboard.newPage();
      await page.goto(`${access.http}/dashboard/`);
      await page.locator(`tr[data-deployment="${allowed}"]`).waitFor({ timeout: 30_000 });
      assert.equal(await page.locator(`tr[data-deployment="${refused}"]`).count(), 0, "the list holds only what the user may watch");

      // and the other one's page says not allowed, with the server's own message.
      await page.goto(`${access.http}/dashboard/?deployment=${refused}`);
      await page.locator("#forbidden").waitFor({ timeout: 15_000 });
      const message = (await page.locator("#forbidden-message").textContent()) ?? "";
      assert.match(message, new RegExp(`${refused}.*'beta'.*access policy`));
      assert.equal(await page.locator("#deployment-status").textContent(), "not allowed");
      assert.ok(await page.locator("#progress-panel").isHidden());
      assert.ok(await page.locator("#notice").isHidden());
      await page.screenshot({ path: join(ARTIFACTS, "dashboard-forbidden-access.png"), fullPage: true });

      // The granted one opens as usual.
      await page.locator("#deployment-input").fill(allowed);
      await page.locator("#watch-form button[type=submit]").click();
      await page.locator('#deployment-status[data-status="deploying"]').waitFor({ timeout: 15_000 });
      assert.ok(await page.locator("#forbidden").isHidden());
      await dashboard.closePage(page);
    } finally {
      await access.stop();
    }
  });
});
