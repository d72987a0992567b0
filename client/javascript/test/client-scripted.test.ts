/**
 * The client against a scripted server: the cases the real stack produces only
 * under load or by accident (gaps, reordering, capped replays, dead
 * keep-alives, refused subscriptions, flapping connections).
 */

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import WebSocket from "ws";

import {
  type AnyDeploymentEvent,
  type ClientError,
  type CloseInfo,
  CloudWebSocketClient,
  type CloudWebSocketClientOptions,
  type GapInfo,
  type ReconnectInfo,
  SubscriptionError,
} from "../src/index.js";
import { event, type ScriptedConnection, ScriptedServer } from "./support/scripted-server.js";
import { waitFor } from "./support/stack.js";

const DEP = "D1BRV40";

let server: ScriptedServer;
let client: CloudWebSocketClient | undefined;

function newClient(options: Partial<CloudWebSocketClientOptions> = {}): CloudWebSocketClient {
  client = new CloudWebSocketClient({
    url: server.url,
    token: "header.payload.signature",
    WebSocket,
    minReconnectionDelay: 5,
    maxReconnectionDelay: 50,
    pingInterval: 0,
    ...options,
  });
  return client;
}

function collect(c: CloudWebSocketClient): AnyDeploymentEvent[] {
  const events: AnyDeploymentEvent[] = [];
  c.on("event", (e) => events.push(e));
  return events;
}

/** Answers every subscribe with an ack of `latest` and replays what `history` holds past `since`. */
function replayingServer(history: () => Record<string, unknown>[], latest: () => number, cap = Infinity): void {
  server.onFrame((connection, frame) => {
    if (frame["action"] !== "subscribe") {
      return;
    }
    const since = typeof frame["since"] === "number" ? frame["since"] : undefined;
    const replay = since === undefined ? [] : history().filter((e) => (e["seq"] as number) > since).slice(0, cap);
    connection.send({ type: "subscribed", deployment_id: frame["deployment_id"], seq: latest(), replay: replay.length });
    for (const e of replay) {
      connection.send(e);
    }
  });
}

beforeEach(async () => {
  server = await ScriptedServer.start();
});

afterEach(async () => {
  await client?.disconnect();
  client = undefined;
  await server.close();
});

describe("handshake", () => {
  test("offers the token as a subprotocol; the server's echo is exposed", async () => {
    const c = newClient();
    await c.connect();
    assert.equal(server.connections[0]?.request.headers["sec-websocket-protocol"], "cloud-ws,bearer.header.payload.signature");
    assert.equal(c.protocol, "cloud-ws");
  });

  test("query transport puts the token in the URL", async () => {
    const c = newClient({ tokenTransport: "query" });
    await c.connect();
    assert.equal(server.connections[0]?.request.url, "/local?token=header.payload.signature");
  });

  test("without a WebSocket implementation, connect fails with a clear error", async (t) => {
    if (Reflect.get(globalThis, "WebSocket") !== undefined) {
      t.skip("this Node has a global WebSocket");
      return;
    }
    const errors: ClientError[] = [];
    client = new CloudWebSocketClient({ url: server.url });
    client.on("error", (e) => errors.push(e));
    await assert.rejects(client.connect(), /no WebSocket implementation/);
    assert.equal(client.state, "closed");
    assert.match(errors[0]?.kind === "transport" ? errors[0].error.message : "", /pass the `WebSocket` option/);
  });
});

describe("ordering", () => {
  test("a replay and live events interleaving are delivered in seq order, once", async () => {
    server.onFrame((connection, frame) => {
      if (frame["action"] === "subscribe") {
        // Live 4 overtakes the ack and the replay of 1-3; 2 arrives twice.
        connection.send(event(DEP, 4));
        connection.send({ type: "subscribed", deployment_id: DEP, seq: 3, replay: 3 });
        for (const seq of [2, 1, 2, 3]) {
          connection.send(event(DEP, seq));
        }
        connection.send(event(DEP, 5));
      }
    });
    const c = newClient({ gapTimeout: 60_000 });
    const events = collect(c);
    await c.connect();
    await c.subscribe(DEP, { since: 0 });
    await waitFor(() => events.length === 5, { what: "5 events" });
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5]);
    assert.equal(server.frames.filter((f) => f["action"] === "subscribe").length, 1, "no resubscribe was needed");
  });

  test("a gap that does not fill is asked for again with since", async () => {
    const history = [1, 2, 3].map((seq) => event(DEP, seq));
    let subscribes = 0;
    server.onFrame((connection, frame) => {
      if (frame["action"] !== "subscribe") {
        return;
      }
      subscribes += 1;
      if (subscribes === 1) {
        connection.send({ type: "subscribed", deployment_id: DEP, seq: 0, replay: 0 });
        connection.send(history[0] ?? {});
        connection.send(history[2] ?? {}); // 2 is lost in transport
        return;
      }
      const since = frame["since"] as number;
      const replay = history.filter((e) => (e["seq"] as number) > since);
      connection.send({ type: "subscribed", deployment_id: DEP, seq: 3, replay: replay.length });
      replay.forEach((e) => connection.send(e));
    });
    const c = newClient({ gapTimeout: 20 });
    const events = collect(c);
    const gaps: GapInfo[] = [];
    c.on("gap", (g) => gaps.push(g));
    await c.connect();
    await c.subscribe(DEP, { since: 0 });
    await waitFor(() => events.length === 3, { what: "the gap to fill" });
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3]);
    assert.deepEqual(gaps, [{ deployment_id: DEP, last: 1, latest: 3, action: "resubscribe" }]);
    assert.deepEqual(server.frames.filter((f) => f["action"] === "subscribe").map((f) => f["since"]), [0, 1]);
  });

  test("a hole that never fills is skipped after a few attempts, and reported", async () => {
    server.onFrame((connection, frame) => {
      if (frame["action"] === "subscribe") {
        connection.send({ type: "subscribed", deployment_id: DEP, seq: 3, replay: 0 });
        connection.send(event(DEP, 3)); // 1 and 2 expired from history
      }
    });
    const c = newClient({ gapTimeout: 10, maxGapRetries: 2 });
    const events = collect(c);
    const gaps: GapInfo[] = [];
    c.on("gap", (g) => gaps.push(g));
    await c.connect();
    await c.subscribe(DEP, { since: 0 });
    await waitFor(() => events.length === 1, { what: "the skip" });
    assert.deepEqual(events.map((e) => e.seq), [3]);
    assert.deepEqual(gaps.map((g) => g.action), ["resubscribe", "resubscribe", "skipped"]);
  });

  test("a capped replay is continued at once from the last seq", async () => {
    const history = Array.from({ length: 7 }, (_, i) => event(DEP, i + 1));
    replayingServer(() => history, () => 7, 3);
    const c = newClient({ gapTimeout: 60_000 });
    const events = collect(c);
    await c.connect();
    await c.subscribe(DEP, { since: 0 });
    await waitFor(() => events.length === 7, { what: "the whole history" });
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(server.frames.filter((f) => f["action"] === "subscribe").map((f) => f["since"]), [0, 3, 6]);
  });

  test("unknown event types pass through, typed handlers get their type", async () => {
    server.onFrame((connection, frame) => {
      if (frame["action"] === "subscribe") {
        connection.send({ type: "subscribed", deployment_id: DEP, seq: 0, replay: 0 });
        connection.send(event(DEP, 1, "backup.finished", { snapshots: 3 }));
        connection.send(event(DEP, 2, "stack.failed", { stack_name: "db", error_message: "Subnet not found" }));
      }
    });
    const c = newClient();
    const custom: AnyDeploymentEvent[] = [];
    const failures: string[] = [];
    c.on("backup.finished", (e) => custom.push(e));
    c.on("stack.failed", (e) => failures.push(`${e.data.stack_name}: ${e.data.error_message}`));
    await c.connect();
    await c.subscribe(DEP);
    await waitFor(() => failures.length === 1, { what: "the failure" });
    assert.deepEqual(custom.map((e) => e.data), [{ snapshots: 3 }]);
    assert.deepEqual(failures, ["db: Subnet not found"]);
  });
});

describe("reconnecting", () => {
  test("the retry counter grows while connections fail and resets after a stable one", async () => {
    let count = 0;
    server.onConnection((connection: ScriptedConnection) => {
      count += 1;
      if (count <= 3 || count === 5) {
        connection.socket.close(1011); // flapping: closed right after opening
      } else if (count === 4) {
        setTimeout(() => connection.socket.close(1011), 150); // stays up past minUptime
      }
    });
    const c = newClient({ minReconnectionDelay: 10, maxReconnectionDelay: 1_000, reconnectionDelayGrowFactor: 2, minUptime: 50, random: () => 1 });
    const retries: ReconnectInfo[] = [];
    c.on("reconnecting", (r) => retries.push(r));
    await c.connect();
    await waitFor(() => retries.length === 5, { what: "five retries" });
    assert.deepEqual(retries.map((r) => r.delay), [10, 20, 40, 10, 20]);
    assert.deepEqual(retries.map((r) => r.attempt), [1, 2, 3, 1, 2]);
  });

  test("a dead keep-alive (no pong) replaces the connection", async () => {
    const c = newClient({ pingInterval: 20, pongTimeout: 40 });
    const closes: CloseInfo[] = [];
    c.on("close", (info) => closes.push(info));
    await c.connect();
    await waitFor(() => server.connections.length === 2 && c.state === "open", { what: "a second connection" });
    assert.equal(closes[0]?.code, 4000);
    assert.equal(closes[0]?.willReconnect, true);
    assert.ok((server.connections[0]?.received ?? []).some((f) => f["action"] === "ping"));
  });

  test("subscriptions resume with since after a reconnect", async () => {
    const history = [1, 2, 3, 4].map((seq) => event(DEP, seq));
    let visible = 2;
    replayingServer(() => history.slice(0, visible), () => visible);
    const c = newClient();
    const events = collect(c);
    await c.connect();
    await c.subscribe(DEP, { since: 0 });
    await waitFor(() => events.length === 2, { what: "the first two" });
    visible = 4;
    server.connections[0]?.socket.close(1001);
    await waitFor(() => events.length === 4, { what: "the replay after reconnecting" });
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4]);
    assert.deepEqual(server.connections[1]?.received[0], { action: "subscribe", deployment_id: DEP, since: 2 });
  });

  test("token_expired makes the client reconnect with a fresh token", async () => {
    let tokens = 0;
    server.onFrame((connection, frame) => {
      if (frame["action"] === "subscribe" && server.connections.length === 1) {
        connection.send({ type: "error", code: "token_expired", message: "reconnect with a fresh token", action: "subscribe" });
      } else if (frame["action"] === "subscribe") {
        connection.send({ type: "subscribed", deployment_id: DEP, seq: 0, replay: 0 });
      }
    });
    const c = newClient({
      token: () => {
        tokens += 1;
        return `t${tokens}.x.y`;
      },
    });
    await c.connect();
    const ack = await c.subscribe(DEP);
    assert.equal(ack.type, "subscribed");
    assert.equal(tokens, 2);
    assert.equal(server.connections[1]?.request.headers["sec-websocket-protocol"], "cloud-ws,bearer.t2.x.y");
  });

  test("disconnect stops reconnecting; connect resumes from the last seq", async () => {
    const history = [1, 2, 3].map((seq) => event(DEP, seq));
    let visible = 1;
    replayingServer(() => history.slice(0, visible), () => visible);
    const c = newClient();
    const events = collect(c);
    await c.connect();
    await c.subscribe(DEP, { since: 0 });
    await waitFor(() => events.length === 1, { what: "the first event" });
    await c.disconnect();
    assert.equal(c.state, "closed");
    visible = 3;
    await c.connect();
    await waitFor(() => events.length === 3, { what: "the rest" });
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3]);
    assert.equal(server.connections.length, 2);
  });
});

describe("errors", () => {
  test("a refused subscription rejects and is forgotten; the connection stays usable", async () => {
    server.onFrame((connection, frame) => {
      if (frame["action"] === "subscribe" && frame["deployment_id"] === "secret") {
        connection.send({ type: "error", code: "forbidden", message: "you are not allowed to watch deployment secret", action: "subscribe" });
      } else if (frame["action"] === "subscribe") {
        connection.send({ type: "subscribed", deployment_id: frame["deployment_id"], seq: 0, replay: 0 });
      }
    });
    const c = newClient();
    const errors: ClientError[] = [];
    c.on("error", (e) => errors.push(e));
    await c.connect();
    const refused = c.subscribe("secret");
    await assert.rejects(refused, (error: unknown) => error instanceof SubscriptionError && error.code === "forbidden");
    assert.deepEqual(c.subscriptions, []);
    assert.equal(errors[0]?.kind === "server" ? errors[0].deployment_id : undefined, "secret");
    await c.subscribe(DEP);
    assert.deepEqual(c.subscriptions, [DEP]);
  });

  test("invalid arguments are refused before anything is sent", async () => {
    const c = newClient();
    await assert.rejects(c.subscribe("not valid!"), SubscriptionError);
    await assert.rejects(c.subscribe(DEP, { since: -1 }), SubscriptionError);
    assert.deepEqual(c.subscriptions, []);
  });

  test("a handler that throws does not stop delivery", async () => {
    server.onFrame((connection, frame) => {
      if (frame["action"] === "subscribe") {
        connection.send({ type: "subscribed", deployment_id: DEP, seq: 0, replay: 0 });
        connection.send(event(DEP, 1));
        connection.send(event(DEP, 2));
      }
    });
    const c = newClient();
    const errors: ClientError[] = [];
    c.on("error", (e) => errors.push(e));
    c.on("event", () => {
      throw new Error("handler bug");
    });
    const events = collect(c);
    await c.connect();
    await c.subscribe(DEP);
    await waitFor(() => events.length === 2, { what: "both events" });
    assert.equal(errors.filter((e) => e.kind === "handler").length, 2);
  });
});
