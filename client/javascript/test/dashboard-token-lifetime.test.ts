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
import { describe, test } from "node:test";
import type { WebSocket as PageSocket } from "playwright-core";

import { tokenExpiry } from "../src/index.js";
import { ARRIVAL_SLACK, assertReplacedAheadOfExp, dashboardInChromium, LEEWAY, LIFETIME, recordSockets, type SocketRecord, socketRecords, SteadyDeployment } from "./support/dashboard.js";
import { deploymentId, waitFor } from "./support/stack.js";

/** What the control socket (a fixed token, never refreshed) saw. */
interface ControlRecord {
  openedAt: number | null;
  frames: { at: number; messages: Record<string, unknown>[] }[];
  closed: { at: number; code: number; reason: string } | null;
}

const dashboard = dashboardInChromium({ stackOptions: ["--token-lifetime", String(LIFETIME)] });
const { missing } = dashboard;

describe("the dashboard across token expiries, in Chromium against cloud-ws local --token-lifetime 15", { skip: missing ?? false }, () => {
  test("refreshes ahead of every exp and resumes with since, losing nothing; a connection that does not refresh gets nothing after exp and is closed by the server", async (t) => {
    const { stack, browser } = dashboard;
    const deployment = deploymentId("DASHTOK");
    /** Every event put, in seq order (a new deployment: the first is seq 1), with when it was put. */
    const events = new SteadyDeployment(stack, deployment);
    const put = events.put;

    // Given a deployment under way before the page opens (the page starts from its snapshot),
    await events.start();

    // and the dashboard open on it, its sockets watched from the test (playwright) and from the page.
    const page = await dashboard.newPage({ initScript: recordSockets });
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
    const records = (): Promise<SocketRecord[]> => socketRecords(page);
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
    const until = Math.max(firstExp + (LIFETIME + LEEWAY) * 1000, controlExp + (LEEWAY + 3) * 1000);
    // and then the rest of the deployment, to its end.
    const total = await events.runUntil(until);

    // Then the page shows every event: the last seq, every log line in order, the final figures,
    // and no gap or error notice, connected live after several resumes;
    await events.assertShownOn(page);
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
    const expiries = assertReplacedAheadOfExp(recorded);
    assert.equal(new Set(expiries).size, recorded.length, "a new exp for every connection");
    assert.ok(Date.now() < (expiries.at(-1) ?? 0), "the current socket's token is still valid");
    assert.equal(sockets[0]?.subscribes[0]?.["since"], undefined, "the page starts from the snapshot");
    for (const [index, seen] of sockets.entries()) {
      if (index > 0) {
        const since = seen.subscribes[0]?.["since"];
        assert.ok(typeof since === "number" && since >= 6, `socket ${index} resubscribed with since: ${JSON.stringify(seen.subscribes)}`);
      }
    }
    assert.deepEqual(dashboard.problems(page), [], "the page reported errors");

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
    await dashboard.closePage(page);
  });
});
