/** Replies matched to their requests by id, never by order; the fallback for servers that echo no id. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { MAX_PENDING_REQUESTS, PendingRequests } from "../src/requests.js";

function subscribe(deploymentId: string, subscription: string, since?: number) {
  return { action: "subscribe" as const, deploymentId, since, subscription };
}

describe("PendingRequests", () => {
  test("ids are fresh for every request and no longer than the protocol allows", () => {
    const pending = new PendingRequests<string>();
    const ids = ["subscribe", "ping", "unsubscribe", "subscribe"].map((action) => pending.nextId(action));
    assert.equal(new Set(ids).size, 4);
    assert.ok(ids.every((id) => id.length <= 64));
  });

  test("replies in any order find their own request", () => {
    const pending = new PendingRequests<string>();
    pending.add("s1", subscribe("A", "a", 0));
    pending.add("s2", subscribe("A", "a", 5));
    pending.add("p3", { action: "ping" });
    assert.deepEqual(pending.take({ type: "subscribed", deployment_id: "A", seq: 9, replay: 4, id: "s2" }), subscribe("A", "a", 5));
    assert.deepEqual(pending.take({ type: "pong", id: "p3" }), { action: "ping" });
    assert.deepEqual(pending.take({ type: "subscribed", deployment_id: "A", seq: 9, replay: 9, id: "s1" }), subscribe("A", "a", 0));
    assert.equal(pending.size, 0);
  });

  test("an error is matched by its id, whatever it names", () => {
    const pending = new PendingRequests<string>();
    pending.add("s1", subscribe("A", "a"));
    pending.add("s2", subscribe("B", "b"));
    const refused = pending.take({ type: "error", code: "forbidden", message: "no", action: "subscribe", id: "s2" });
    assert.deepEqual(refused, subscribe("B", "b"));
    assert.equal(pending.size, 1);
  });

  test("an unknown id, or a reply of the wrong kind, matches nothing and takes nothing", () => {
    const pending = new PendingRequests<string>();
    pending.add("s1", subscribe("A", "a"));
    assert.equal(pending.take({ type: "subscribed", deployment_id: "A", seq: 1, replay: 0, id: "gone" }), undefined);
    assert.equal(pending.take({ type: "pong", id: "s1" }), undefined);
    assert.equal(pending.size, 1);
  });

  test("without ids: the oldest request of that kind and deployment", () => {
    const pending = new PendingRequests<string>();
    pending.add("s1", subscribe("A", "a", 1));
    pending.add("s2", subscribe("B", "b", 2));
    pending.add("s3", subscribe("B", "b", 3));
    assert.deepEqual(pending.take({ type: "subscribed", deployment_id: "B", seq: 4, replay: 0 }), subscribe("B", "b", 2));
    assert.deepEqual(
      pending.take({ type: "error", code: "forbidden", message: "no", action: "subscribe", deployment_id: "A" }),
      subscribe("A", "a", 1),
    );
  });

  test("without ids, an error naming no deployment is blamed only when one request could have caused it", () => {
    const pending = new PendingRequests<string>();
    pending.add("s1", subscribe("A", "a"));
    pending.add("s2", subscribe("B", "b"));
    const error = { type: "error" as const, code: "forbidden", message: "no", action: "subscribe" };
    assert.equal(pending.take(error), undefined, "two subscribes wait: not guessed");
    pending.take({ type: "subscribed", deployment_id: "A", seq: 0, replay: 0 });
    assert.deepEqual(pending.take(error), subscribe("B", "b"));
  });

  test("a connection that never answers cannot grow the table without bound: the oldest go first", () => {
    const pending = new PendingRequests<string>();
    for (let i = 0; i <= MAX_PENDING_REQUESTS; i += 1) {
      pending.add(`p${i}`, { action: "ping" });
    }
    assert.equal(pending.size, MAX_PENDING_REQUESTS);
    assert.equal(pending.take({ type: "pong", id: "p0" }), undefined);
    assert.deepEqual(pending.take({ type: "pong", id: `p${MAX_PENDING_REQUESTS}` }), { action: "ping" });
  });
});
