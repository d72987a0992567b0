/** Pure helpers: full-jitter backoff, handshake building, frame parsing. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  backoffDelay,
  buildHandshake,
  deadConnectionBound,
  DEFAULT,
  isEventOf,
  ProtocolViolation,
} from "../src/index.js";
import { parseServerMessage, splitFrame } from "../src/protocol.js";

const tuning = { minReconnectionDelay: 100, maxReconnectionDelay: 1_000, reconnectionDelayGrowFactor: 2 };

describe("backoffDelay", () => {
  test("grows exponentially up to the cap (upper bound with random = 1)", () => {
    const delays = [0, 1, 2, 3, 4, 5].map((attempt) => backoffDelay(attempt, tuning, () => 1));
    assert.deepEqual(delays, [100, 200, 400, 800, 1_000, 1_000]);
  });

  test("is fully jittered: anywhere from 0 to the bound", () => {
    assert.equal(backoffDelay(3, tuning, () => 0), 0);
    assert.equal(backoffDelay(3, tuning, () => 0.5), 400);
    for (let i = 0; i < 100; i += 1) {
      const delay = backoffDelay(2, tuning);
      assert.ok(delay >= 0 && delay <= 400, `delay ${delay}`);
    }
  });

  test("defaults match partysocket's shape: one DEFAULT object", () => {
    assert.ok(Object.isFrozen(DEFAULT));
    assert.equal(DEFAULT.tokenTransport, "subprotocol");
    assert.ok(DEFAULT.pingInterval < 10 * 60_000, "pings well inside the 10-minute idle timeout");
    assert.ok(DEFAULT.maxConnectionAge < 2 * 60 * 60_000, "refreshes before the 2-hour cap");
  });
});

describe("buildHandshake", () => {
  test("subprotocol transport offers cloud-ws and bearer.<token>", () => {
    assert.deepEqual(buildHandshake("ws://h/local", "a.b.c", "subprotocol"), {
      url: "ws://h/local",
      protocols: ["cloud-ws", "bearer.a.b.c"],
    });
  });

  test("query transport appends ?token=, keeping other parameters", () => {
    assert.deepEqual(buildHandshake("ws://h/local?x=1", "a.b.c", "query"), {
      url: "ws://h/local?x=1&token=a.b.c",
      protocols: [],
    });
  });

  test("no token: the URL as given", () => {
    assert.deepEqual(buildHandshake("ws://h/local?token=t.u.v", null, "subprotocol"), {
      url: "ws://h/local?token=t.u.v",
      protocols: ["cloud-ws"],
    });
  });
});

describe("parseServerMessage", () => {
  test("acks, pongs and errors", () => {
    assert.deepEqual(parseServerMessage('{"type":"subscribed","deployment_id":"D","seq":4,"replay":2}'), {
      type: "subscribed",
      deployment_id: "D",
      seq: 4,
      replay: 2,
    });
    assert.deepEqual(parseServerMessage('{"type":"pong","timestamp":"t"}'), { type: "pong", timestamp: "t" });
    assert.deepEqual(
      parseServerMessage('{"type":"error","code":"forbidden","message":"no","action":"subscribe"}'),
      { type: "error", code: "forbidden", message: "no", action: "subscribe" },
    );
  });

  test("replies keep the echoed id; errors their deployment; pongs the latest seq per deployment", () => {
    assert.deepEqual(parseServerMessage('{"type":"subscribed","deployment_id":"D","seq":4,"replay":0,"id":"subscribe-7"}'), {
      type: "subscribed",
      deployment_id: "D",
      seq: 4,
      replay: 0,
      id: "subscribe-7",
    });
    assert.deepEqual(
      parseServerMessage('{"type":"error","code":"forbidden","message":"no","action":"subscribe","deployment_id":"D","id":"s-1"}'),
      { type: "error", code: "forbidden", message: "no", action: "subscribe", deployment_id: "D", id: "s-1" },
    );
    assert.deepEqual(parseServerMessage('{"type":"pong","timestamp":"t","id":"ping-3","latest":{"D1":42,"D2":0,"bad":-1}}'), {
      type: "pong",
      timestamp: "t",
      id: "ping-3",
      latest: { D1: 42, D2: 0 },
    });
    // An id longer than any the client sends matches nothing, so it is not kept.
    assert.deepEqual(parseServerMessage(`{"type":"pong","id":"${"x".repeat(65)}"}`), { type: "pong" });
  });

  test("a snapshot is its own message type, not an event", () => {
    assert.deepEqual(parseServerMessage('{"type":"deployment.snapshot","deployment_id":"D","seq":9,"data":{"status":"failed"}}'), {
      type: "deployment.snapshot",
      deployment_id: "D",
      seq: 9,
      data: { status: "failed" },
    });
  });

  test("events keep unknown types and typed data", () => {
    const message = parseServerMessage(
      '{"type":"stack.failed","deployment_id":"D","seq":3,"event_id":"e","data":{"stack_name":"db","error_message":"boom"},"timestamp":"t"}',
    );
    assert.equal(message.type, "stack.failed");
    assert.ok("seq" in message && "data" in message);
    if (isEventOf(message, "stack.failed")) {
      assert.equal(message.data.error_message, "boom");
    } else {
      assert.fail("not narrowed");
    }
    const custom = parseServerMessage('{"type":"backup.finished","deployment_id":"D","seq":4,"data":{"ok":true}}');
    assert.equal(custom.type, "backup.finished");
  });

  test("refuses what is not a protocol message", () => {
    assert.throws(() => parseServerMessage("not json"), ProtocolViolation);
    assert.throws(() => parseServerMessage("[1]"), ProtocolViolation);
    assert.throws(() => parseServerMessage('{"type":"stack.deployed","deployment_id":"D"}'), ProtocolViolation);
    assert.throws(() => parseServerMessage('{"type":"subscribed","deployment_id":"D","seq":-1}'), ProtocolViolation);
  });
});

describe("splitFrame", () => {
  test("one message per line, blank lines and a trailing separator skipped", () => {
    assert.deepEqual(splitFrame('{"a":1}'), ['{"a":1}']);
    assert.deepEqual(splitFrame('{"a":1}\n{"b":2}\n{"c":3}\n'), ['{"a":1}', '{"b":2}', '{"c":3}']);
    assert.deepEqual(splitFrame('{"a":1}\n\n{"b":2}'), ['{"a":1}', '{"b":2}']);
  });
});

describe("keep-alive defaults", () => {
  test("a silent connection is given up and replaced within 60 s with the defaults", () => {
    // Given the defaults, the worst case is: silence starts right after a pong, the next ping
    // waits a whole interval, its answer the whole timeout, then the first retry's delay and a
    // handshake that takes as long as allowed.
    const bound = deadConnectionBound(DEFAULT);
    assert.equal(bound, DEFAULT.pingInterval + DEFAULT.pongTimeout + DEFAULT.minReconnectionDelay + DEFAULT.connectionTimeout);
    assert.ok(bound <= 60_000, `${bound} ms`);
    // Pings also keep an idle connection from API Gateway's 10-minute idle timeout.
    assert.ok(DEFAULT.pingInterval < 10 * 60_000);
    assert.equal(deadConnectionBound({ ...DEFAULT, pingInterval: 0 }), Number.POSITIVE_INFINITY);
  });
});
