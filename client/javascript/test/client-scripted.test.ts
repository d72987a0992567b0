/**
 * The client against a scripted server: the cases the real stack produces only
 * under load or by accident (gaps, reordering, capped replays, dead
 * keep-alives, refused subscriptions, flapping connections, batched frames,
 * replies out of order, a lost last event).
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
  DEFAULT,
  type GapInfo,
  type ReconnectInfo,
  RequestError,
  SubscriptionError,
} from "../src/index.js";
import { event, reply, type ScriptedConnection, ScriptedServer } from "./support/scripted-server.js";
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

/**
 * Answers every subscribe with an ack of `latest` (echoing its id) and replays what `history`
 * holds past `since`; answers pings with `pong` and each deployment's latest seq, as the stack does.
 */
function replayingServer(history: () => Record<string, unknown>[], latest: () => number, cap = Infinity): void {
  server.onFrame((connection, frame) => {
    if (frame["action"] === "ping") {
      connection.send(reply(frame, { type: "pong", timestamp: new Date().toISOString(), latest: { [DEP]: latest() } }));
      return;
    }
    if (frame["action"] !== "subscribe") {
      return;
    }
    const since = typeof frame["since"] === "number" ? frame["since"] : undefined;
    const replay = since === undefined ? [] : history().filter((e) => (e["seq"] as number) > since).slice(0, cap);
    connection.send(reply(frame, { type: "subscribed", deployment_id: frame["deployment_id"], seq: latest(), replay: replay.length }));
    for (const e of replay) {
      connection.send(e);
    }
  });
}

/** A client frame without the id the client adds to every request. */
function withoutId(frame: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (frame === undefined) {
    return undefined;
  }
  const { id: _id, ...rest } = frame;
  return rest;
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

  test("a connection that goes silent (no pong, no close) is replaced and resumed with since", async () => {
    // Time is scaled: the defaults divided by 100 (30 s ping, 10 s pong timeout, 1 s first retry,
    // 10 s handshake). deadConnectionBound(DEFAULT) <= 60 s is checked in backoff-protocol.test.ts.
    const scale = (ms: number): number => ms / 100;
    const scaled = {
      pingInterval: scale(DEFAULT.pingInterval),
      pongTimeout: scale(DEFAULT.pongTimeout),
      minReconnectionDelay: scale(DEFAULT.minReconnectionDelay),
      maxReconnectionDelay: scale(DEFAULT.maxReconnectionDelay),
      connectionTimeout: scale(DEFAULT.connectionTimeout),
      minUptime: scale(DEFAULT.minUptime),
    };
    const history = [1, 2, 3].map((seq) => event(DEP, seq));
    let visible = 2;
    replayingServer(() => history.slice(0, visible), () => visible);
    const c = newClient(scaled);
    const events = collect(c);
    const closes: CloseInfo[] = [];
    c.on("close", (info) => closes.push(info));
    let pongs = 0;
    c.on("pong", () => {
      pongs += 1;
    });
    await c.connect();
    await c.subscribe(DEP, { since: 0 });
    await waitFor(() => events.length === 2 && pongs >= 2, { what: "the first events and pongs" });

    // When API Gateway "forgets" the connection: what the client sends goes nowhere and nothing
    // comes back, with no close either; meanwhile event 3 is stored.
    const silenced = server.connections.length;
    const forgotten = server.connections.at(-1) as ScriptedConnection;
    forgotten.silent = true;
    visible = 3;

    // Then the keep-alive gives up on it, and the new connection resumes from seq 2.
    await waitFor(() => server.connections.length > silenced && c.state === "open" && events.length === 3, {
      what: "the silent connection to be replaced",
    });
    assert.ok(forgotten.ignored.some((f) => f["action"] === "ping"), "pings went unanswered");
    assert.equal(closes.at(-1)?.code, 4000, "closed by the keep-alive");
    assert.equal(closes.at(-1)?.willReconnect, true);
    assert.deepEqual(withoutId(server.connections[silenced]?.received[0]), { action: "subscribe", deployment_id: DEP, since: 2 });
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3]);
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
    assert.deepEqual(withoutId(server.connections[1]?.received[0]), { action: "subscribe", deployment_id: DEP, since: 2 });
  });

  test("a history that went back is reported, and the new history's events are delivered", async () => {
    // The server restarts and forgets the deployment (a local stack): events 1-3, then a new 1-2.
    let history = [1, 2, 3].map((seq) => event(DEP, seq));
    replayingServer(() => history, () => history.length);
    const c = newClient();
    const events = collect(c);
    const resets: { deployment_id: string; seq: number; previous: number }[] = [];
    c.on("history_reset", (reset) => resets.push(reset));
    await c.connect();
    await c.subscribe(DEP, { since: 0 });
    await waitFor(() => events.length === 3, { what: "the first history" });
    history = [];
    server.connections[0]?.socket.close(1012);
    await waitFor(() => resets.length === 1, { what: "the history reset" });
    assert.deepEqual(resets, [{ deployment_id: DEP, seq: 0, previous: 3 }]);
    assert.deepEqual(withoutId(server.connections[1]?.received[0]), { action: "subscribe", deployment_id: DEP, since: 3 });
    history = [1, 2].map((seq) => event(DEP, seq));
    for (const e of history) {
      server.connections[1]?.send(e);
    }
    await waitFor(() => events.length === 5, { what: "the new history's events" });
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 1, 2]);
    assert.equal(c.lastSeq(DEP), 2);
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

describe("batched frames", () => {
  test("a frame with three messages delivers the three, in order", async () => {
    server.onFrame((connection, frame) => {
      if (frame["action"] === "subscribe") {
        connection.send(reply(frame, { type: "subscribed", deployment_id: DEP, seq: 0, replay: 0 }));
        connection.sendBatch([
          event(DEP, 1, "deployment.status", { status: "deploying", current_layer: 1, total_layers: 1 }),
          event(DEP, 2, "stack.started", { stack_name: "vpc", layer: 1 }),
          event(DEP, 3, "deployment.status", { status: "succeeded" }),
        ]);
      }
    });
    const c = newClient();
    const seen: string[] = [];
    c.on("event", (e) => seen.push(`event ${e.seq}`));
    c.on("deployment.status", (e) => seen.push(`status ${e.data.status}`));
    c.on("stack.started", (e) => seen.push(`stack ${e.data.stack_name}`));
    await c.connect();
    await c.subscribe(DEP);
    await waitFor(() => seen.length === 6, { what: "three events" });
    assert.deepEqual(seen, ["event 1", "status deploying", "event 2", "stack vpc", "event 3", "status succeeded"]);
    assert.equal(server.connections.length, 1);
  });

  test("an ack and its replay in one frame; an unreadable line costs only itself", async () => {
    server.onFrame((connection, frame) => {
      if (frame["action"] === "subscribe") {
        const batch = [reply(frame, { type: "subscribed", deployment_id: DEP, seq: 3, replay: 3 }), event(DEP, 1), event(DEP, 2), event(DEP, 3)];
        connection.socket.send(batch.map((m) => JSON.stringify(m)).join("\n").replace('"seq":2', '"seq":2,}') + "\n");
        connection.send(event(DEP, 2));
      }
    });
    const c = newClient({ gapTimeout: 60_000 });
    const events = collect(c);
    const errors: ClientError[] = [];
    c.on("error", (e) => errors.push(e));
    await c.connect();
    const ack = await c.subscribe(DEP, { since: 0 });
    assert.equal(ack.seq, 3);
    await waitFor(() => events.length === 3, { what: "the replay" });
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3]);
    assert.deepEqual(errors.map((e) => e.kind), ["protocol"]);
  });
});

describe("request ids", () => {
  test("every request carries an id of at most 64 characters, each one different", async () => {
    replayingServer(() => [], () => 0);
    const c = newClient({ pingInterval: 10 });
    await c.connect();
    await c.subscribe(DEP);
    c.unsubscribe(DEP);
    c.ping();
    await waitFor(() => server.frames.filter((f) => f["action"] === "ping").length >= 2, { what: "pings" });
    const ids = server.frames.map((f) => f["id"]);
    assert.ok(ids.every((id) => typeof id === "string" && id.length > 0 && id.length <= 64), JSON.stringify(ids));
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual([...new Set(server.frames.map((f) => f["action"]))].sort(), ["ping", "subscribe", "unsubscribe"]);
  });

  test("replies that come back out of order are matched by id", async () => {
    // Given a subscribe "from now on", replaced before its ack by one from the start of history,
    const history = [1, 2, 3].map((seq) => event(DEP, seq));
    const subscribes: Record<string, unknown>[] = [];
    server.onFrame((connection, frame) => {
      if (frame["action"] === "unsubscribe") {
        connection.send(reply(frame, { type: "unsubscribed", deployment_id: DEP }));
      }
      if (frame["action"] !== "subscribe") {
        return;
      }
      subscribes.push(frame);
      if (subscribes.length < 2) {
        return;
      }
      // when the server answers the second before the first (API Gateway ran them concurrently),
      const [older, newer] = subscribes as [Record<string, unknown>, Record<string, unknown>];
      connection.send(reply(newer, { type: "subscribed", deployment_id: DEP, seq: 3, replay: 3 }));
      history.forEach((e) => connection.send(e));
      connection.send(reply(older, { type: "subscribed", deployment_id: DEP, seq: 3, replay: 0 }));
    });
    const c = newClient({ gapTimeout: 60_000 });
    const events = collect(c);
    await c.connect();
    const fromNow = c.subscribe(DEP);
    c.unsubscribe(DEP);
    await assert.rejects(fromNow, SubscriptionError);
    const fromStart = await c.subscribe(DEP, { since: 0 });

    // then each ack is applied with its own request's since: the replay is not mistaken for
    // duplicates of a "from now on" position, and the stale ack changes nothing.
    assert.equal(fromStart.id, subscribes[1]?.["id"]);
    await waitFor(() => events.length === 3, { what: "the replay" });
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3]);
    assert.equal(c.lastSeq(DEP), 3);
    assert.deepEqual(c.subscriptions, [DEP]);
  });

  test("an error with another request's id fails that subscription, not the first one", async () => {
    server.onFrame((connection, frame) => {
      if (frame["action"] !== "subscribe") {
        return;
      }
      if (frame["deployment_id"] === "secret") {
        // No deployment named: only the id says which request was refused.
        connection.send(reply(frame, { type: "error", code: "forbidden", message: "not allowed", action: "subscribe" }));
        return;
      }
      // The public deployment's ack is held back until the refusal is out.
      setTimeout(() => connection.send(reply(frame, { type: "subscribed", deployment_id: DEP, seq: 0, replay: 0 })), 20);
    });
    const c = newClient();
    const errors: ClientError[] = [];
    c.on("error", (e) => errors.push(e));
    await c.connect();
    const first = c.subscribe(DEP);
    const second = c.subscribe("secret");
    await assert.rejects(second, (error: unknown) => error instanceof SubscriptionError && error.code === "forbidden" && error.deploymentId === "secret");
    const ack = await first;
    assert.equal(ack.deployment_id, DEP);
    assert.deepEqual(c.subscriptions, [DEP]);
    assert.equal(errors[0]?.kind === "server" ? errors[0].deployment_id : undefined, "secret");
  });

  test("without an id or a deployment, an error is not blamed on one of several pending subscribes", async () => {
    let answered = false;
    server.onFrame((connection, frame) => {
      if (frame["action"] === "subscribe" && !answered) {
        answered = true;
        // An older server: no id, no deployment_id, while two subscribes are pending.
        connection.send({ type: "error", code: "forbidden", message: "not allowed", action: "subscribe" });
      }
    });
    const c = newClient();
    const errors: ClientError[] = [];
    c.on("error", (e) => errors.push(e));
    await c.connect();
    void c.subscribe(DEP).catch(() => undefined);
    void c.subscribe("other").catch(() => undefined);
    await waitFor(() => errors.length === 1, { what: "the error" });
    assert.deepEqual(c.subscriptions, [DEP, "other"], "neither subscription was dropped on a guess");
    assert.equal(errors[0]?.kind === "server" ? errors[0].deployment_id : "kind", undefined);
  });
});

describe("pong.latest", () => {
  test("a lost last event is noticed at the next pong and fetched with since", async () => {
    const history = [1, 2, 3].map((seq) => event(DEP, seq, "deployment.status", { status: seq === 3 ? "succeeded" : "deploying" }));
    let stored = 2;
    replayingServer(() => history.slice(0, stored), () => stored);
    const c = newClient({ pingInterval: 10, gapTimeout: 10 });
    const events = collect(c);
    const gaps: GapInfo[] = [];
    c.on("gap", (g) => gaps.push(g));
    let pongs = 0;
    c.on("pong", () => {
      pongs += 1;
    });
    await c.connect();
    await c.subscribe(DEP, { since: 0 });
    await waitFor(() => events.length === 2 && pongs >= 3, { what: "the first two events and a few pongs" });
    assert.equal(server.frames.filter((f) => f["action"] === "subscribe").length, 1, "a pong that is not ahead asks for nothing");

    // When the terminal event is stored but its post is lost (nothing later will reveal it),
    stored = 3;

    // then the next pong reports seq 3, and the client asks for it with since = 2.
    await waitFor(() => events.length === 3, { what: "the lost event" });
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3]);
    assert.deepEqual(events[2]?.data, { status: "succeeded" });
    assert.deepEqual(gaps[0], { deployment_id: DEP, last: 2, latest: 3, action: "resubscribe" });
    assert.deepEqual(server.frames.filter((f) => f["action"] === "subscribe").map((f) => f["since"]), [0, 2]);
    assert.equal(server.connections.length, 1, "caught up without reconnecting");
  });

  test("events already on their way when the pong overtakes them are not asked for again", async () => {
    server.onFrame((connection, frame) => {
      if (frame["action"] === "subscribe") {
        connection.send(reply(frame, { type: "subscribed", deployment_id: DEP, seq: 0, replay: 0 }));
      } else if (frame["action"] === "ping") {
        // The pong says 1 is stored; the event itself follows the pong.
        connection.sendBatch([reply(frame, { type: "pong", latest: { [DEP]: 1 } }), event(DEP, 1)]);
      }
    });
    const c = newClient({ gapTimeout: 60_000 });
    const events = collect(c);
    await c.connect();
    await c.subscribe(DEP);
    c.ping();
    await waitFor(() => events.length === 1, { what: "the event" });
    c.ping();
    await waitFor(() => server.frames.filter((f) => f["action"] === "ping").length === 2, { what: "the second ping" });
    assert.equal(server.frames.filter((f) => f["action"] === "subscribe").length, 1);
  });
});

describe("snapshots", () => {
  test("a snapshot is handed over as such and never takes an event's place", async () => {
    const history = [1, 2].map((seq) => event(DEP, seq));
    server.onFrame((connection, frame) => {
      if (frame["action"] === "subscribe") {
        connection.sendBatch([
          reply(frame, { type: "subscribed", deployment_id: DEP, seq: 2, replay: 2 }),
          { type: "deployment.snapshot", deployment_id: DEP, seq: 2, data: { status: "deploying", attempt: 1 } },
          ...history,
        ]);
      }
    });
    const c = newClient({ gapTimeout: 60_000 });
    const events = collect(c);
    const snapshots: unknown[] = [];
    c.on("snapshot", (s) => snapshots.push(s.data));
    await c.connect();
    await c.subscribe(DEP, { since: 0 });
    await waitFor(() => events.length === 2, { what: "the replay" });
    assert.deepEqual(events.map((e) => [e.seq, e.type]), [
      [1, "log.created"],
      [2, "log.created"],
    ]);
    assert.deepEqual(snapshots, [{ status: "deploying", attempt: 1 }]);
  });
});

describe("listDeployments", () => {
  const row = (id: string, status: string): Record<string, unknown> => ({
    deployment_id: id,
    status,
    attempt: 1,
    current_layer: 2,
    total_layers: 4,
    updated_at: "2026-12-02T10:00:00.000Z",
    environment: "dev",
  });

  test("each call gets the answer to its own id, whatever the order they come back in", async () => {
    const asked: Record<string, unknown>[] = [];
    server.onFrame((connection, frame) => {
      if (frame["action"] !== "list_deployments") {
        return;
      }
      asked.push(frame);
      if (asked.length === 2) {
        // The second request is answered first, as concurrent handlers may.
        const [first, second] = asked as [Record<string, unknown>, Record<string, unknown>];
        connection.send(reply(second, { type: "deployments", deployments: [row("B", "failed")] }));
        connection.send(reply(first, { type: "deployments", deployments: [row("A", "succeeded"), row("C", "deploying")] }));
      }
    });
    const c = newClient();
    const errors: ClientError[] = [];
    c.on("error", (e) => errors.push(e));
    await c.connect();
    const [all, few] = await Promise.all([c.listDeployments(), c.listDeployments(1)]);
    assert.deepEqual(all.map((d) => [d.deployment_id, d.status]), [
      ["A", "succeeded"],
      ["C", "deploying"],
    ]);
    assert.deepEqual(few, [
      { deployment_id: "B", status: "failed", attempt: 1, current_layer: 2, total_layers: 4, updated_at: "2026-12-02T10:00:00.000Z", environment: "dev" },
    ]);
    assert.deepEqual(asked.map(withoutId), [{ action: "list_deployments" }, { action: "list_deployments", limit: 1 }]);
    assert.notEqual(asked[0]?.["id"], asked[1]?.["id"]);
    assert.deepEqual(errors, [], "a deployments answer is not a protocol error");
  });

  test("a refused list rejects its call only; asked while disconnected, it goes out on open", async () => {
    server.onFrame((connection, frame) => {
      if (frame["action"] === "list_deployments") {
        connection.send(
          frame["limit"] === 7
            ? reply(frame, { type: "error", code: "invalid_limit", message: "limit must be an integer from 1 to 200", action: "list_deployments" })
            : reply(frame, { type: "deployments", deployments: [row("A", "pending")] }),
        );
      }
    });
    const c = newClient();
    const early = c.listDeployments(7);
    const fine = c.listDeployments();
    assert.equal(server.frames.length, 0, "nothing is sent before a connection opens");
    await c.connect();
    await assert.rejects(early, (e: unknown) => e instanceof RequestError && e.code === "invalid_limit");
    assert.equal((await fine)[0]?.deployment_id, "A");
    await assert.rejects(c.listDeployments(201), (e: unknown) => e instanceof RequestError && e.code === "invalid_limit");
  });

  test("a list whose connection was lost before the answer is asked again on the next one", async () => {
    let lists = 0;
    server.onFrame((connection, frame) => {
      if (frame["action"] !== "list_deployments") {
        return;
      }
      lists += 1;
      if (lists === 1) {
        connection.socket.terminate(); // lost before it answered
      } else {
        connection.send(reply(frame, { type: "deployments", deployments: [row("A", "succeeded")] }));
      }
    });
    const c = newClient();
    await c.connect();
    const rows = await c.listDeployments();
    assert.equal(rows[0]?.deployment_id, "A");
    assert.equal(server.connections.length, 2);
  });
});
