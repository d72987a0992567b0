/**
 * The dashboard in a real (headless Debian) Chromium, served by a real
 * `cloud-ws local`, watching `cloud-ws demo`: every stack's final state and
 * the failure are shown; a server-side close mid-demo is survived with the
 * full, correct picture; and the static page works against a stack it is only
 * given the URL and a token of (the cloud case).
 */

import assert from "node:assert/strict";
import { createReadStream, existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize } from "node:path";
import { describe, test } from "node:test";
import type { Page, Route } from "playwright-core";
import WebSocket from "ws";

import { DeploymentModel, formatDuration } from "../dashboard/src/model.js";
import { type AnyDeploymentEvent, CloudWebSocketClient, isEventOf } from "../src/index.js";
import { ARTIFACTS, dashboardInChromium, DIST } from "./support/dashboard.js";
import { deploymentId, gate, waitFor } from "./support/stack.js";

/** What `cloud-ws demo` plays (plugin side: cloud_ws/commands/demo.py): layer → stack → resources. */
const DEMO_LAYERS: Record<string, number>[] = [
  { vpc: 15, dns: 6, "transit-gateway": 5 },
  { "iam-roles": 22, "kms-keys": 4, "security-groups": 12 },
  { "database-rds": 9, "cache-redis": 5, "object-storage": 8 },
  { "api-service": 18, "worker-service": 11, "frontend-cdn": 7 },
];
const FAILING_STACK = "database-rds";
const FAILURE = "InvalidSubnet: Subnet not found: subnet-0b7d41";

const dashboard = dashboardInChromium({
  artifacts: true,
  // Static hosting: no local helper endpoint.
  expectedErrors: (message) => message.location().url.includes("/_cloud-ws/outputs"),
});
const { missing } = dashboard;

async function attribute(page: Page, selector: string, name: string): Promise<string | null> {
  return page.locator(selector).getAttribute(name);
}

async function seqShown(page: Page): Promise<number> {
  return Number((await attribute(page, "#stats", "data-last-seq")) ?? "0");
}

/** An observer on the same deployment, from seq 1: the ground truth the page must match. */
async function observe(deployment: string): Promise<{ client: CloudWebSocketClient; events: AnyDeploymentEvent[] }> {
  const client = new CloudWebSocketClient({ url: dashboard.stack.outputs.websocket_url, token: () => dashboard.stack.token(), WebSocket });
  const events: AnyDeploymentEvent[] = [];
  client.on("event", (event) => events.push(event));
  await client.connect();
  await client.subscribe(deployment, { since: 0 });
  return { client, events };
}

describe("dashboard in Chromium", { skip: missing ?? false }, () => {
  test("shows the demo's final picture, across a server-side close mid-demo", async (t) => {
    const deployment = deploymentId("demo");
    const page = await dashboard.newPage();

    // Every connection attempt fetches a fresh token; the test can hold one back.
    let tokenRequests = 0;
    let hold: ReturnType<typeof gate> | undefined;
    await page.route("**/_cloud-ws/token*", async (route: Route) => {
      tokenRequests += 1;
      await hold?.promise;
      await route.continue();
    });

    await page.goto(`${dashboard.stack.http}/dashboard/?deployment=${deployment}`);
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 15_000 });
    assert.equal(await page.locator("#deployment-id").textContent(), deployment);
    const listed = await dashboard.stack.connections();
    assert.equal(listed.length, 1, "only the page is connected");
    const pageConnection = listed[0]?.connectionId ?? "";
    const observer = await observe(deployment);

    // Given the demo is running and the page has drawn part of it,
    const demo = dashboard.stack.demo(deployment, 5);
    await waitFor(async () => (await seqShown(page)) >= 15 && (await page.locator('.stack[data-state="deployed"]').count()) >= 1, {
      timeout: 60_000,
      what: "the page to show the demo under way",
    });

    // when the server closes the page's socket and holds it away while events go on,
    hold = gate();
    const seqAtClose = await seqShown(page);
    await dashboard.stack.closeConnection(pageConnection, 1011);
    await page.locator('#connection[data-state="reconnecting"]').waitFor({ timeout: 10_000 });
    assert.match((await page.locator("#connection-text").textContent()) ?? "", /Reconnecting/);
    await waitFor(() => (observer.events.at(-1)?.seq ?? 0) >= seqAtClose + 15, {
      timeout: 60_000,
      what: "15 events to be broadcast while the page is away",
    });
    assert.ok((await seqShown(page)) < seqAtClose + 15, "the page missed them live");
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-reconnecting.png"), fullPage: true });

    // and the page is let back in,
    hold.open();
    hold = undefined;
    await page.locator('#connection[data-state="open"][data-reconnects="1"]').waitFor({ timeout: 15_000 });

    // then, once the demo is over, the page shows exactly what the full history says.
    const { code, output } = await demo.done;
    assert.equal(code, 0, output);
    await waitFor(
      () => observer.events.some((e) => isEventOf(e, "deployment.status") && e.data.status === "failed"),
      { timeout: 60_000, what: "the observer to see the end of the deployment" },
    );
    const finalSeq = observer.events.at(-1)?.seq ?? 0;
    await waitFor(async () => (await seqShown(page)) === finalSeq, { timeout: 30_000, what: `the page to reach seq ${finalSeq}` });
    await observer.client.disconnect();
    assert.equal(await attribute(page, "#stats", "data-events"), String(finalSeq), "every event once: none lost, none twice");
    // The events missed while away came back as one replay, drawn in a frame or a few, not one by one.
    const renders = Number((await attribute(page, "#stats", "data-renders")) ?? "0");
    assert.ok(renders < finalSeq, `${renders} renders for ${finalSeq} events`);
    t.diagnostic(`${renders} renders for ${finalSeq} events`);
    assert.ok(tokenRequests >= 2, `a fresh token per connection (${tokenRequests} requests)`);

    const truth = new DeploymentModel(deployment);
    observer.events.forEach((event) => truth.apply(event));

    assert.equal(await attribute(page, "#deployment-status", "data-status"), "failed");
    assert.match((await page.locator("#deployment-error").textContent()) ?? "", new RegExp(`stack ${FAILING_STACK} failed in layer 3`));
    assert.deepEqual(
      await page.locator("#layers .layer").evaluateAll((items) => items.map((item) => item.getAttribute("data-state"))),
      ["done", "done", "failed", "skipped"],
    );

    const cards = await page.locator(".stack").evaluateAll((items) =>
      items.map((item) => ({
        name: item.getAttribute("data-stack"),
        state: item.getAttribute("data-state"),
        duration: item.querySelector(".duration")?.textContent ?? "",
        resources: item.querySelector(".resources")?.textContent ?? "",
        error: item.querySelector(".stack-error")?.textContent ?? null,
      })),
    );
    const expectedNames = DEMO_LAYERS.slice(0, 3).flatMap((layer) => Object.keys(layer));
    assert.deepEqual(cards.map((c) => c.name).sort(), [...expectedNames].sort(), "layers 1-3 shown, layer 4 never started");
    for (const card of cards) {
      const name = card.name ?? "";
      const known = truth.stack(name);
      assert.ok(known !== undefined, name);
      assert.equal(card.duration, formatDuration(known.durationSeconds), `${name} duration`);
      if (name === FAILING_STACK) {
        assert.equal(card.state, "failed");
        assert.ok(card.error?.includes(FAILURE), `${name} shows its error: ${card.error}`);
      } else {
        const resources = DEMO_LAYERS.find((layer) => name in layer)?.[name];
        assert.equal(card.state, "deployed", name);
        assert.equal(card.resources, `${resources} resources`, `${name} resources`);
        assert.equal(card.error, null);
      }
    }

    // The log pane holds every log line once, and its level filter works.
    const logLines = truth.logs.length;
    assert.equal(await page.locator("#log .log-line").count(), logLines);
    assert.equal(await page.locator('#log .log-line[data-level="warning"]').count(), 1);
    await page.locator('#log-filter [data-level="info"]').click();
    assert.equal(await page.locator("#log .log-line:visible").count(), logLines - truth.logs.filter((l) => l.level === "info").length);
    assert.ok(await page.locator('#log .log-line[data-level="error"]').first().isVisible());
    await page.locator('#log-filter [data-level="info"]').click();
    assert.equal(await page.locator("#log .log-line:visible").count(), logLines);

    await page.locator("#log .log-line").last().scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-final.png"), fullPage: true });
    await dashboard.closePage(page);
  });

  test("a failed demo re-run on the same id: the page says attempt 2, succeeded, also after a reload", async () => {
    const deployment = deploymentId("story");
    const page = await dashboard.newPage();
    await page.goto(`${dashboard.stack.http}/dashboard/?deployment=${deployment}`);
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 15_000 });

    // Given `cloud-ws demo` ran on the id and failed in layer 3,
    const { code, output } = await dashboard.stack.demo(deployment, 20).done;
    assert.equal(code, 0, output);
    await page.locator('#deployment-status[data-status="failed"]').waitFor({ timeout: 30_000 });
    assert.equal(await attribute(page, "#attempt-text", "data-attempt"), "1");
    assert.match((await page.locator("#deployment-error").textContent()) ?? "", new RegExp(`stack ${FAILING_STACK} failed in layer 3`));

    // when a new run on the same id is reported through the plugin and succeeds,
    await dashboard.stack.emit("deployment.status", deployment, { status: "deploying", current_layer: 3, total_layers: 4, environment: "dev" });
    await page.locator('#attempt-text[data-attempt="2"]').waitFor({ timeout: 15_000 });
    await dashboard.stack.emit("stack.deployed", deployment, { stack_name: FAILING_STACK, layer: 3, environment: "dev", resource_count: 9, duration_seconds: 64 });
    await dashboard.stack.emit("log.created", deployment, { level: "info", message: "subnet found on retry", stack_name: FAILING_STACK, environment: "dev" });
    await dashboard.stack.emit("deployment.status", deployment, { status: "succeeded", current_layer: 4, duration_seconds: 98 });

    // then the page shows attempt 2, succeeded, with only that attempt's stacks and log.
    const attempt2 = async (shown: Page): Promise<void> => {
      await shown.locator('#deployment-status[data-status="succeeded"]').waitFor({ timeout: 15_000 });
      assert.equal(await shown.locator("#attempt-text").textContent(), "2");
      assert.equal(await shown.locator("#layer-text").textContent(), "4 of 4");
      assert.ok(await shown.locator("#deployment-error").isHidden(), "no failure banner for a succeeded attempt");
      assert.deepEqual(
        await shown.locator(".stack").evaluateAll((items) => items.map((item) => [item.getAttribute("data-stack"), item.getAttribute("data-state")])),
        [[FAILING_STACK, "deployed"]],
        "a re-run's stacks start afresh",
      );
      assert.deepEqual(await shown.locator("#log .log-message").allTextContents(), ["subnet found on retry"]);
    };
    await attempt2(page);
    const lastSeq = await seqShown(page);
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-attempt-2.png"), fullPage: true });

    // After a reload the page starts from the snapshot: the same picture, nothing replayed.
    await page.reload();
    await attempt2(page);
    assert.equal(await attribute(page, "#stats", "data-snapshot-seq"), String(lastSeq));
    assert.equal(await attribute(page, "#stats", "data-events"), "0");
    await dashboard.closePage(page);
  });

  test("the home page lists deployments newest first, live; a click opens one; a reload starts from its snapshot", async () => {
    const older = deploymentId("home-a");
    const newer = deploymentId("home-b");
    await dashboard.stack.putEvents(older, [{ type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 3, environment: "dev" } }]);
    await dashboard.stack.putEvents(newer, [
      { type: "deployment.status", data: { status: "deploying", current_layer: 2, total_layers: 2, environment: "prod" } },
      { type: "deployment.status", data: { status: "failed" } },
    ]);

    const page = await dashboard.newPage();
    await page.goto(`${dashboard.stack.http}/dashboard/`);
    const ours = async (): Promise<string[]> =>
      (await page.locator("#deployments-rows tr").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-deployment") ?? ""))).filter(
        (id) => id === older || id === newer,
      );
    await waitFor(async () => (await ours()).length === 2 && (await attribute(page, `tr[data-deployment="${newer}"]`, "data-status")) === "failed", {
      timeout: 30_000,
      what: "both deployments listed",
    });
    assert.deepEqual(await ours(), [newer, older], "newest first");
    const row = (id: string): Promise<string[]> => page.locator(`tr[data-deployment="${id}"] td`).allTextContents();
    const newerRow = await row(newer);
    assert.deepEqual(newerRow.slice(0, 5), [newer, "failed", "1", "2 of 2", "prod"]);
    assert.match(newerRow[5] ?? "", /^\d+[smhd] ago$/);
    assert.deepEqual((await row(older)).slice(0, 5), [older, "deploying", "1", "1 of 3", "dev"]);

    // When the older one moves on, the list shows it live, now first.
    await dashboard.stack.putEvents(older, [{ type: "deployment.status", data: { status: "deploying", current_layer: 2, total_layers: 3 } }]);
    await waitFor(async () => (await ours())[0] === older && (await row(older))[3] === "2 of 3", { timeout: 30_000, what: "the list to update" });
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-home.png"), fullPage: true });

    // A click opens it.
    await page.locator(`tr[data-deployment="${older}"] .open-deployment`).click();
    await page.locator('#deployment-status[data-status="deploying"]').waitFor({ timeout: 15_000 });
    assert.equal(await page.locator("#deployment-id").textContent(), older);
    assert.equal(await page.locator("#layer-text").textContent(), "2 of 3");
    assert.match(page.url(), new RegExp(`deployment=${older}`));

    // After a reload, the page shows its state from the snapshot and asks for no history.
    const sent: Record<string, unknown>[] = [];
    const received: Record<string, unknown>[] = [];
    page.on("websocket", (socket) => {
      socket.on("framesent", (frame) => sent.push(JSON.parse(String(frame.payload)) as Record<string, unknown>));
      socket.on("framereceived", (frame) => {
        for (const line of String(frame.payload).split("\n")) {
          received.push(JSON.parse(line) as Record<string, unknown>);
        }
      });
    });
    await page.reload();
    await page.locator('#deployment-status[data-status="deploying"]').waitFor({ timeout: 15_000 });
    assert.equal(await page.locator("#layer-text").textContent(), "2 of 3");
    assert.equal(await attribute(page, "#stats", "data-snapshot-seq"), "2");
    assert.equal(await attribute(page, "#stats", "data-events"), "0", "no event was replayed");
    const subscribes = sent.filter((frame) => frame["action"] === "subscribe");
    assert.deepEqual(subscribes.map((frame) => [frame["deployment_id"], "since" in frame]), [[older, false]], "subscribed without since");
    assert.deepEqual(
      received.filter((message) => message["deployment_id"] === older).map((message) => message["type"]),
      ["subscribed", "deployment.snapshot"],
      "the ack and the snapshot, no replayed event",
    );
    await dashboard.closePage(page);
  });

  test("as static files against a stack it only has the URL and a token of", async () => {
    // Served from another origin, the page finds no local helper endpoints.
    const server = await serveStatic(DIST);
    const address = server.address() as AddressInfo;
    const origin = `http://127.0.0.1:${address.port}`;
    const deployment = deploymentId("static");
    try {
      const page = await dashboard.newPage();
      await page.goto(`${origin}/index.html`);
      await page.locator("#settings-url").waitFor({ state: "visible" });
      assert.match((await page.locator("#notice").textContent()) ?? "", /paste its websocket_url and a token/);

      // The user pastes the URL and a token, then picks a deployment.
      await page.locator("#settings-url").fill(dashboard.stack.outputs.websocket_url);
      await page.locator("#settings-token").fill(await dashboard.stack.token());
      await page.locator("#settings-form button[type=submit]").click();
      await page.locator('#connection[data-state="open"]').waitFor({ timeout: 15_000 });
      await page.locator("#deployment-input").fill(deployment);
      await page.locator("#watch-form button[type=submit]").click();
      await waitFor(async () => (await dashboard.stack.connections()).length >= 1, { what: "the page's connection" });
      await dashboard.stack.putEvents(deployment, [
        { type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 1 } },
        { type: "stack.started", data: { stack_name: "vpc", layer: 1, environment: "prod" } },
      ]);
      await page.locator('.stack[data-stack="vpc"][data-state="deploying"]').waitFor({ timeout: 15_000 });
      assert.match(page.url(), new RegExp(`deployment=${deployment}`));
      await dashboard.closePage(page);

      // A link carrying everything in its hash works too, and the token leaves the address bar.
      const linked = await dashboard.newPage();
      const hash = new URLSearchParams({ url: dashboard.stack.outputs.websocket_url, token: await dashboard.stack.token(), deployment });
      await linked.goto(`${origin}/index.html#${hash.toString()}`);
      await linked.locator('.stack[data-stack="vpc"][data-state="deploying"]').waitFor({ timeout: 15_000 });
      // A fresh page starts from the snapshot: the two events are in it, none was replayed.
      assert.equal(await attribute(linked, "#stats", "data-snapshot-seq"), "2");
      assert.equal(await attribute(linked, "#stats", "data-events"), "0");
      assert.doesNotMatch(linked.url(), /token=/);
      await dashboard.stack.putEvents(deployment, [{ type: "stack.deployed", data: { stack_name: "vpc", layer: 1, resource_count: 15, duration_seconds: 65 } }]);
      await linked.locator('.stack[data-stack="vpc"][data-state="deployed"] .resources:text("15 resources")').waitFor({ timeout: 15_000 });
      assert.equal(await linked.locator('.stack[data-stack="vpc"] .duration').textContent(), "1m 05s");
      await dashboard.closePage(linked);
    } finally {
      await new Promise<void>((done) => server.close(() => done()));
    }
  });
});

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
};

/** A plain static file server, as any bucket or CDN would be. */
async function serveStatic(root: string): Promise<Server> {
  const server = createServer((request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url ?? "/", "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
    const file = join(root, path === "/" ? "index.html" : path);
    if (!file.startsWith(root) || !existsSync(file)) {
      response.writeHead(404).end("not found");
      return;
    }
    response.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(response);
  });
  await new Promise<void>((ready) => server.listen(0, "127.0.0.1", () => ready()));
  return server;
}
