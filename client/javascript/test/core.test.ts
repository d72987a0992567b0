/** The protocol core on its own: no socket, no timer; a fake host and a fake clock. */

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import {
  type AnyDeploymentEvent,
  type ClientMessage,
  ClientProtocol,
  type GapInfo,
  type ProtocolEvents,
  type ProtocolHost,
  SubscriptionError,
} from "../src/index.js";

const DEP = "D1BRV40";

/** A host that records everything the core asks of it. */
class FakeHost implements ProtocolHost {
  readonly sent: ClientMessage[] = [];
  readonly delivered: AnyDeploymentEvent[] = [];
  readonly reports: { type: keyof ProtocolEvents; payload: unknown }[] = [];
  readonly reconnects: string[] = [];
  wakeAt: number | undefined;
  onDeliver: (event: AnyDeploymentEvent) => void = () => undefined;

  send(message: ClientMessage): void {
    this.sent.push(message);
  }

  emit<K extends keyof ProtocolEvents>(type: K, payload: ProtocolEvents[K]): void {
    this.reports.push({ type, payload });
  }

  deliver(event: AnyDeploymentEvent): void {
    this.delivered.push(event);
    this.onDeliver(event);
  }

  reconnect(reason: string): void {
    this.reconnects.push(reason);
  }

  wake(at: number | undefined): void {
    this.wakeAt = at;
  }

  gaps(): GapInfo[] {
    return this.reports.filter((r) => r.type === "gap").map((r) => r.payload as GapInfo);
  }

  last(): ClientMessage {
    const message = this.sent.at(-1);
    assert.ok(message !== undefined, "something was sent");
    return message;
  }
}

function ev(seq: number, deploymentId = DEP): string {
  return JSON.stringify({ type: "log.created", deployment_id: deploymentId, seq, data: { level: "info", message: `m${seq}` } });
}

function ack(request: ClientMessage, seq: number, replay = 0): string {
  assert.equal(request.action, "subscribe");
  return JSON.stringify({ type: "subscribed", deployment_id: request.action === "subscribe" ? request.deployment_id : "", seq, replay, id: request.id });
}

function withoutId(message: ClientMessage): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...message };
  delete copy["id"];
  return copy;
}

let now = 0;
let host: FakeHost;
let core: ClientProtocol;

beforeEach(() => {
  now = 1_000;
  host = new FakeHost();
  core = new ClientProtocol(host, { gapTimeout: 100, maxGapRetries: 2, maxQueuedMessages: 10 }, () => now);
});

describe("ClientProtocol", () => {
  test("nothing is sent before a connection opens; then the subscriptions, then the queue", () => {
    void core.subscribe(DEP, { since: 4 });
    core.send({ action: "ping" });
    assert.equal(host.sent.length, 0);
    assert.equal(core.queuedMessages, 1);
    core.opened();
    assert.deepEqual(host.sent.map(withoutId), [{ action: "subscribe", deployment_id: DEP, since: 4 }, { action: "ping" }]);
    assert.ok(host.sent.every((m) => typeof m.id === "string"));
    assert.equal(core.pendingRequests, 2);
  });

  test("a batch is handled in order, and an ack is applied with its own request's since", async () => {
    core.opened();
    const acked = core.subscribe(DEP, { since: 0 });
    const request = host.last();
    core.receive([ack(request, 3, 3), ev(1), ev(2), ev(3)].join("\n"));
    assert.equal((await acked).seq, 3);
    assert.deepEqual(host.delivered.map((e) => e.seq), [1, 2, 3]);
    assert.equal(core.pendingRequests, 0);
  });

  test("a handler that unsubscribes mid-batch stops the rest of that deployment's events", () => {
    core.opened();
    void core.subscribe(DEP, { since: 0 });
    core.receive(ack(host.last(), 0));
    host.onDeliver = () => core.unsubscribe(DEP);
    core.receive([ev(1), ev(2)].join("\n"));
    assert.deepEqual(host.delivered.map((e) => e.seq), [1]);
    assert.equal(host.last().action, "unsubscribe");
  });

  test("a pong ahead opens a gap; at its deadline the deployment is asked for with since", () => {
    core.opened();
    void core.subscribe(DEP, { since: 0 });
    core.receive([ack(host.last(), 2, 2), ev(1), ev(2)].join("\n"));
    assert.equal(host.wakeAt, undefined, "no gap, nothing to wait for");

    core.send({ action: "ping" });
    core.receive(JSON.stringify({ type: "pong", id: host.last().id, latest: { [DEP]: 3 } }));
    assert.equal(host.wakeAt, now + 100, "the gap gets gapTimeout to fill by itself");

    now += 100;
    core.tick();
    assert.deepEqual(host.gaps(), [{ deployment_id: DEP, last: 2, latest: 3, action: "resubscribe" }]);
    const retry = host.last();
    assert.equal(retry.action === "subscribe" ? retry.since : undefined, 2);
    core.receive([ack(retry, 3, 1), ev(3)].join("\n"));
    assert.deepEqual(host.delivered.map((e) => e.seq), [1, 2, 3]);
    assert.equal(host.wakeAt, undefined);
  });

  test("unanswered gap retries are not counted: the tail is skipped only after answered ones", () => {
    core.opened();
    void core.subscribe(DEP, { since: 0 });
    core.receive(ack(host.last(), 0));
    core.receive(JSON.stringify({ type: "pong", latest: { [DEP]: 1 } }));
    // Given every retry goes unanswered (its posts are throttled),
    for (let i = 0; i < 5; i += 1) {
      now += 100;
      core.tick();
    }
    // then the client keeps asking, and never gives the event up.
    assert.equal(host.gaps().length, 5);
    assert.ok(host.gaps().every((g) => g.action === "resubscribe"));

    // When retries are answered but the event never comes (it expired from history),
    for (let i = 0; i < 3; i += 1) {
      core.receive(ack(host.last(), 1));
      now += 100;
      core.tick();
    }
    // then, after maxGapRetries answered attempts, it is skipped, loudly.
    assert.equal(host.gaps().at(-1)?.action, "skipped");
    assert.equal(core.lastSeq(DEP), 1);
  });

  test("a reply to an earlier subscription does not move a newer one's position", () => {
    core.opened();
    void core.subscribe(DEP).catch(() => undefined);
    const older = host.last();
    core.unsubscribe(DEP);
    void core.subscribe(DEP, { since: 0 });
    const newer = host.last();
    core.receive(ack(older, 5));
    assert.equal(core.lastSeq(DEP), 0, "the stale ack (no since) changed nothing");
    core.receive([ack(newer, 2, 2), ev(1), ev(2)].join("\n"));
    assert.deepEqual(host.delivered.map((e) => e.seq), [1, 2]);
  });

  test("an error naming a request's id refuses that subscription only", async () => {
    core.opened();
    const first = core.subscribe("A");
    const requestA = host.last();
    const second = core.subscribe("B");
    const requestB = host.last();
    core.receive(JSON.stringify({ type: "error", code: "forbidden", message: "no", action: "subscribe", id: requestB.id }));
    await assert.rejects(second, (e: unknown) => e instanceof SubscriptionError && e.deploymentId === "B");
    core.receive(ack(requestA, 0));
    assert.equal((await first).deployment_id, "A");
    assert.deepEqual(core.subscriptions, ["A"]);
  });

  test("a code only a new connection fixes asks the host for one; the rest of the frame is dropped", () => {
    core.opened();
    void core.subscribe(DEP, { since: 0 });
    const request = host.last();
    host.reconnect = (reason) => {
      host.reconnects.push(reason);
      core.closed(); // as the client does when it drops the connection
    };
    core.receive(
      [JSON.stringify({ type: "error", code: "token_expired", message: "reconnect", id: request.id }), ack(request, 1, 1), ev(1)].join("\n"),
    );
    assert.deepEqual(host.reconnects, ["server said token_expired"]);
    assert.deepEqual(host.delivered, []);
    assert.equal(core.pendingRequests, 0);
  });

  test("events an ack releases wait for the snapshot after it: the snapshot first, then every later event", () => {
    const order: string[] = [];
    host.onDeliver = (event) => order.push(`event ${event.seq}`);
    const emit = host.emit.bind(host);
    host.emit = (type, payload) => {
      if (type === "snapshot") {
        order.push("snapshot");
      }
      emit(type, payload);
    };
    core.opened();
    void core.subscribe(DEP);
    const request = host.last();
    // Given a live event overtakes the ack (no since: the ack sets the position),
    core.receive(ev(6));
    assert.deepEqual(order, []);
    // when the ack (seq 5) and its snapshot come in one frame,
    const snapshot = JSON.stringify({ type: "deployment.snapshot", deployment_id: DEP, seq: 5, data: {}, id: request.id });
    core.receive([ack(request, 5), snapshot, ev(7)].join("\n"));
    // then the user gets the snapshot before the event it released.
    assert.deepEqual(order, ["snapshot", "event 6", "event 7"]);
  });

  test("without a snapshot after the ack, the released events are not held back", () => {
    core.opened();
    void core.subscribe(DEP);
    const request = host.last();
    core.receive(ev(2));
    core.receive([ack(request, 1), ev(3)].join("\n"));
    assert.deepEqual(host.delivered.map((e) => e.seq), [2, 3]);
  });
});
