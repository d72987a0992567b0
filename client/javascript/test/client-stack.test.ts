/**
 * The client against a real `cloud-ws local`: the real handlers, the real
 * embedded Cognito and EventBridge, server-side closes through the fault
 * injection API.
 */

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import WebSocket from "ws";

import {
  type AnyDeploymentEvent,
  type CloudWebSocketClientOptions,
  CloudWebSocketClient,
  type GapInfo,
  type OpenInfo,
  DeploymentState,
  type PongMessage,
  type SnapshotMessage,
} from "../src/index.js";
import { deploymentId, gate, LocalStack, waitFor } from "./support/stack.js";

let stack: LocalStack;
const clients: CloudWebSocketClient[] = [];

function newClient(options: Partial<CloudWebSocketClientOptions> = {}): CloudWebSocketClient {
  const client = new CloudWebSocketClient({
    url: stack.outputs.websocket_url,
    token: () => stack.token(),
    WebSocket,
    minReconnectionDelay: 50,
    maxReconnectionDelay: 500,
    pingInterval: 0,
    ...options,
  });
  clients.push(client);
  return client;
}

function collect(client: CloudWebSocketClient): AnyDeploymentEvent[] {
  const events: AnyDeploymentEvent[] = [];
  client.on("event", (e) => events.push(e));
  return events;
}

function logs(count: number, from = 1): { type: string; data: Record<string, unknown> }[] {
  return Array.from({ length: count }, (_, i) => ({
    type: "log.created",
    data: { level: "info", message: `line ${from + i}`, stack_name: "vpc", environment: "dev" },
  }));
}

/** The ids of the connections open right now. */
async function openIds(): Promise<Set<string>> {
  return new Set((await stack.connections()).map((c) => c.connectionId));
}

/** Connects `client` and returns its connection id, as the control API lists it. */
async function connectAndIdentify(client: CloudWebSocketClient): Promise<string> {
  const before = await openIds();
  await client.connect();
  let id: string | undefined;
  await waitFor(
    async () => {
      const fresh = [...(await openIds())].filter((c) => !before.has(c));
      id = fresh.length === 1 ? fresh[0] : undefined;
      return id !== undefined;
    },
    { what: "the client's connection to be listed" },
  );
  return id ?? "";
}

/** Waits until the server stored `count` events of a deployment (seen by a fresh replay). */
async function storedCount(deployment: string): Promise<number> {
  const probe = newClient();
  await probe.connect();
  const ack = await probe.subscribe(deployment);
  await probe.disconnect();
  return ack.seq;
}

before(async () => {
  stack = await LocalStack.start();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.disconnect()));
});

after(async () => {
  const code = await stack.stop();
  assert.equal(code, 0, `cloud-ws local exited with ${code}:\n${stack.log}`);
});

describe("against cloud-ws local", () => {
  test("receives events in order, typed, through a browser-style subprotocol handshake", async () => {
    const dep = deploymentId();
    const client = newClient();
    const events = collect(client);
    const failures: string[] = [];
    client.on("stack.failed", (e) => failures.push(`${e.data.stack_name}: ${e.data.error_message}`));
    await client.connect();
    assert.equal(client.protocol, "cloud-ws", "the server echoes the subprotocol");
    const { id, ...ack } = await client.subscribe(dep);
    assert.deepEqual(ack, { type: "subscribed", deployment_id: dep, seq: 0, replay: 0 });
    assert.match(id ?? "", /^subscribe-\d+$/, "the server echoes the request's id");

    const ids = await stack.putEvents(dep, [
      { type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 2 } },
      { type: "stack.failed", data: { stack_name: "database-rds", environment: "dev", error_message: "Subnet not found" } },
      { type: "log.created", data: { level: "error", message: "giving up", environment: "dev" } },
    ]);

    await waitFor(() => events.length === 3, { what: "three events" });
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3]);
    assert.deepEqual(events.map((e) => e.event_id), ids);
    assert.deepEqual(events.map((e) => e.type), ["deployment.status", "stack.failed", "log.created"]);
    assert.deepEqual(events[0]?.data, { status: "deploying", current_layer: 1, total_layers: 2 });
    assert.deepEqual(failures, ["database-rds: Subnet not found"]);
  });

  test("the query-parameter token form works too", async () => {
    const client = newClient({ tokenTransport: "query" });
    await client.connect();
    assert.equal(client.protocol, "");
    const ack = await client.subscribe(deploymentId());
    assert.equal(ack.type, "subscribed");
  });

  test("since replays the history; subscribing without it starts from now", async () => {
    const dep = deploymentId();
    await stack.putEvents(dep, logs(4));
    await waitFor(async () => (await storedCount(dep)) === 4, { what: "four stored events" });
    const client = newClient();
    const all = collect(client);
    await client.connect();
    const { id: _id, ...ack } = await client.subscribe(dep, { since: 1 });
    assert.deepEqual(ack, { type: "subscribed", deployment_id: dep, seq: 4, replay: 3 });
    await waitFor(() => all.length === 3, { what: "the replay" });
    assert.deepEqual(all.map((e) => e.seq), [2, 3, 4]);

    const other = newClient();
    const live = collect(other);
    await other.connect();
    await other.subscribe(dep);
    await stack.putEvents(dep, logs(1, 5));
    await waitFor(() => live.length === 1 && all.length === 4, { what: "the live event on both" });
    assert.deepEqual(live.map((e) => e.seq), [5]);
  });

  test("server-side closes mid-stream lose nothing and duplicate nothing", async () => {
    const dep = deploymentId();
    let hold: ReturnType<typeof gate> | undefined;
    const client = newClient({
      token: async () => {
        await hold?.promise;
        return stack.token();
      },
    });
    const events = collect(client);
    const opens: OpenInfo[] = [];
    client.on("open", (info) => opens.push(info));
    const first = await connectAndIdentify(client);
    await client.subscribe(dep, { since: 0 });
    const ids = await stack.putEvents(dep, logs(5));
    await waitFor(() => events.length === 5, { what: "the first five" });

    // Given the connection is closed by the server and the client is held before reconnecting,
    hold = gate();
    await stack.closeConnection(first, 1011);
    await waitFor(() => client.state === "reconnecting", { what: "the client to notice" });
    // when events are stored while it is away,
    ids.push(...(await stack.putEvents(dep, logs(5, 6))));
    await waitFor(async () => (await storedCount(dep)) === 10, { what: "ten stored events" });
    // and it comes back, while more events are being produced,
    const second = connectIdentity();
    hold.open();
    hold = undefined;
    const producing = stack.putEvents(dep, logs(10, 11));
    const secondId = await second;
    // and is closed once more in the middle of that stream,
    await stack.closeConnection(secondId, 1001);
    ids.push(...(await producing));
    ids.push(...(await stack.putEvents(dep, logs(5, 21))));

    // then every event arrives exactly once, in order.
    await waitFor(() => events.length >= 25 && client.state === "open", { what: "all 25 events" });
    assert.deepEqual(events.map((e) => e.seq), Array.from({ length: 25 }, (_, i) => i + 1));
    assert.deepEqual(events.map((e) => e.event_id), ids);
    assert.equal(new Set(events.map((e) => e.event_id)).size, 25);
    assert.ok(opens.length >= 3, `reconnected twice (${opens.length} opens)`);
    assert.ok(opens.slice(1).every((o) => o.reconnected));

    async function connectIdentity(): Promise<string> {
      const known = await openIds();
      let id: string | undefined;
      await waitFor(
        async () => {
          const fresh = [...(await openIds())].filter((c) => !known.has(c));
          id = fresh[0];
          return id !== undefined && client.state === "open";
        },
        { what: "the reconnected connection" },
      );
      return id ?? "";
    }
  });

  test("the token provider is called before every connection attempt; a refused token is retried with a new one", async () => {
    const tokens: string[] = [];
    const client = newClient({
      token: async () => {
        const n = tokens.length + 1;
        // The second attempt gets a token the server refuses (401), the next a good one again.
        const token = n === 2 ? "not.a.token" : await stack.token(`js-user-${n}`);
        tokens.push(token);
        return token;
      },
    });
    const opens: OpenInfo[] = [];
    client.on("open", (info) => opens.push(info));
    const dep = deploymentId();
    const events = collect(client);
    const first = await connectAndIdentify(client);
    await client.subscribe(dep, { since: 0 });

    await stack.closeConnection(first, 1011);
    await waitFor(() => opens.length === 2, { what: "the reconnection after a refused token" });
    assert.equal(tokens.length, 3, "one call per attempt: first, refused, accepted");
    assert.equal(new Set(tokens).size, 3);

    await stack.closeAll(1012);
    await waitFor(() => opens.length === 3, { what: "the third connection" });
    assert.equal(tokens.length, 4);
    await stack.putEvents(dep, logs(1));
    await waitFor(() => events.length === 1, { what: "an event on the new connection" });
  });

  test("messages sent while disconnected are queued and flushed on reconnect", async () => {
    let hold: ReturnType<typeof gate> | undefined;
    const client = newClient({
      token: async () => {
        await hold?.promise;
        return stack.token();
      },
    });
    let pongs = 0;
    client.on("pong", () => {
      pongs += 1;
    });
    const dep = deploymentId();
    const acks: string[] = [];
    client.on("subscribed", (ack) => acks.push(ack.deployment_id));
    const id = await connectAndIdentify(client);

    hold = gate();
    await stack.closeConnection(id, 1011);
    await waitFor(() => client.state === "reconnecting", { what: "the disconnection" });
    client.ping();
    client.ping();
    const subscribed = client.subscribe(dep);
    assert.equal(client.queuedMessages, 2);
    assert.equal(pongs, 0);

    hold.open();
    await subscribed;
    await waitFor(() => pongs === 2, { what: "two pongs" });
    assert.equal(client.queuedMessages, 0);
    assert.deepEqual(acks, [dep]);
  });

  test("keep-alive pings are answered; an idle drop by the server is recovered", async () => {
    const client = newClient({ pingInterval: 30 });
    let pongs = 0;
    client.on("pong", () => {
      pongs += 1;
    });
    const dep = deploymentId();
    const events = collect(client);
    await client.connect();
    await client.subscribe(dep, { since: 0 });
    await waitFor(() => pongs >= 3, { what: "three pongs" });

    // The idle sweep closes what has been idle for "more than" the given time: with 0, everything (1001).
    const closes: number[] = [];
    client.on("close", (info) => closes.push(info.code));
    await fetch(`${stack.http}/_cloud-ws/faults/drop-idle`, { method: "POST", body: JSON.stringify({ idle_seconds: 0 }) });
    await stack.putEvents(dep, logs(2));
    await waitFor(() => events.length === 2 && client.state === "open", { what: "events after the drop" });
    assert.deepEqual(closes, [1001]);
    assert.deepEqual(events.map((e) => e.seq), [1, 2]);
  });

  test("pongs carry the id of their ping and the latest seq of each subscription", async () => {
    const dep = deploymentId();
    const client = newClient();
    const pongs: PongMessage[] = [];
    client.on("pong", (pong) => pongs.push(pong));
    await client.connect();
    await client.subscribe(dep, { since: 0 });
    await stack.putEvents(dep, logs(2));
    await waitFor(() => client.lastSeq(dep) === 2, { what: "two events" });
    client.ping();
    await waitFor(() => pongs.length === 1, { what: "the pong" });
    assert.match(pongs[0]?.id ?? "", /^ping-\d+$/);
    assert.deepEqual(pongs[0]?.latest, { [dep]: 2 });
  });

  test("a snapshot follows every ack, and the deployment list shows the latest first", async () => {
    const older = deploymentId();
    const newer = deploymentId();
    await stack.putEvents(older, [{ type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 3, environment: "dev" } }]);
    await waitFor(async () => (await storedCount(older)) === 1, { what: "the first deployment's event" });
    await stack.putEvents(newer, [
      { type: "deployment.status", data: { status: "deploying", current_layer: 2, total_layers: 2 } },
      { type: "deployment.status", data: { status: "failed" } },
    ]);
    await waitFor(async () => (await storedCount(newer)) === 2, { what: "the second deployment's events" });

    const client = newClient();
    const snapshots: SnapshotMessage[] = [];
    client.on("snapshot", (s) => snapshots.push(s));
    await client.connect();
    const ack = await client.subscribe(newer);
    await waitFor(() => snapshots.length === 1, { what: "the snapshot" });
    const state = DeploymentState.fromSnapshot(snapshots[0] as SnapshotMessage);
    assert.deepEqual([state.seq, state.status, state.attempt, state.currentLayer, state.totalLayers], [2, "failed", 1, 2, 2]);
    assert.equal(snapshots[0]?.id, ack.id, "the snapshot carries the subscribe's id");

    const rows = await client.listDeployments(200);
    const ours = rows.filter((row) => row.deployment_id === older || row.deployment_id === newer);
    assert.deepEqual(
      ours.map((row) => [row.deployment_id, row.status, row.attempt, row.current_layer, row.total_layers]),
      [
        [newer, "failed", 1, 2, 2],
        [older, "deploying", 1, 1, 3],
      ],
    );
    assert.equal(ours[1]?.environment, "dev");
  });

  // Last in this file: the throttle counts every post the stack makes, whoever it is for.
  test("a terminal status whose posts answer 429 beyond the poster's retries still reaches the client", async (t) => {
    const dep = deploymentId();
    // Pings often, so a lost tail shows at the next pong (latest) rather than at the next event.
    const client = newClient({ pingInterval: 300, gapTimeout: 300 });
    const events = collect(client);
    const gaps: GapInfo[] = [];
    client.on("gap", (gap) => gaps.push(gap));
    const opens: OpenInfo[] = [];
    client.on("open", (info) => opens.push(info));
    await client.connect();
    await client.subscribe(dep, { since: 0 });
    await stack.putEvents(dep, [{ type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 1 } }]);
    await waitFor(() => events.length === 1, { what: "the first status" });

    // Given the next 40 posts answer 429 (more than the poster retries one post),
    const throttled = await fetch(`${stack.http}/_cloud-ws/faults/throttle`, { method: "POST", body: JSON.stringify({ count: 40 }) });
    assert.equal(throttled.status, 200);
    // when the deployment's terminal status is emitted, and nothing follows it,
    await stack.putEvents(dep, [{ type: "deployment.status", data: { status: "succeeded", duration_seconds: 12 } }]);

    // then it still arrives, once, in order: retried by the delivery engine, or fetched with
    // since once a pong's latest shows the client is behind.
    await waitFor(() => events.length === 2, { timeout: 60_000, what: "the terminal status" });
    assert.deepEqual(events.map((e) => e.seq), [1, 2]);
    assert.deepEqual(events[1]?.data, { status: "succeeded", duration_seconds: 12 });
    t.diagnostic(`resubscribed for the tail: ${gaps.some((g) => g.action === "resubscribe")}; reconnections: ${opens.length - 1}`);
  });
});
