/**
 * The shared folding rules (conformance/state.json, read from the repository,
 * never copied): every case's events, delivered as listed — out of order and
 * duplicated on purpose — go through the client's sequencing and the
 * DeploymentState, and must give the case's snapshot data at its seq.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";

import {
  type AnyDeploymentEvent,
  type DeploymentSnapshotData,
  DeploymentSequence,
  DeploymentState,
  epochMs,
  type JsonObject,
  type SnapshotMessage,
} from "../src/index.js";
import { parseServerMessage } from "../src/protocol.js";
import { cut, LIMITS } from "../src/state.js";
import { REPO_ROOT } from "./support/stack.js";

interface StateCase {
  name: string;
  note: string;
  deployment_id: string;
  events: JsonObject[];
  expect: { seq: number; data: DeploymentSnapshotData };
}

const VECTORS = JSON.parse(readFileSync(join(REPO_ROOT, "conformance", "state.json"), "utf8")) as {
  limits: Record<string, number | string>;
  cases: StateCase[];
};

/** The events as the client delivers them: parsed from the wire, reordered by seq, each once. */
function delivered(events: JsonObject[]): AnyDeploymentEvent[] {
  const sequence = new DeploymentSequence(0);
  const out: AnyDeploymentEvent[] = [];
  for (const raw of events) {
    const message = parseServerMessage(JSON.stringify(raw));
    assert.ok(message.type !== "deployment.snapshot" && "data" in message && "seq" in message, "an event");
    out.push(...sequence.push(message as AnyDeploymentEvent));
  }
  assert.equal(sequence.hasGap, false, "the vector has no hole");
  return out;
}

function fold(state: DeploymentState, events: AnyDeploymentEvent[]): DeploymentState {
  for (const event of events) {
    state.apply(event);
  }
  return state;
}

describe("conformance/state.json", () => {
  assert.ok(VECTORS.cases.length >= 10, "the vectors are there");

  for (const vector of VECTORS.cases) {
    test(vector.name, () => {
      const events = delivered(vector.events);
      const state = fold(new DeploymentState(vector.deployment_id), events);
      assert.equal(state.seq, vector.expect.seq);
      assert.deepEqual(state.toSnapshot(), vector.expect.data, vector.note);
    });
  }
});

describe("duplicates without the sequencing in front", () => {
  // The state itself ignores a seq at or below the last folded, whatever the event says.
  for (const vector of VECTORS.cases) {
    test(vector.name, () => {
      const events = vector.events.map((raw) => parseServerMessage(JSON.stringify(raw)) as AnyDeploymentEvent);
      events.sort((a, b) => a.seq - b.seq);
      const state = fold(new DeploymentState(vector.deployment_id), events);
      assert.deepEqual(state.toSnapshot(), vector.expect.data);
    });
  }
});

describe("the limits", () => {
  test("are conformance/state.json's", () => {
    assert.deepEqual({ ...LIMITS }, VECTORS.limits);
  });

  test("cut counts bytes of JSON per code point, as the server does", () => {
    assert.equal(cut("abcd", 3), "abc");
    assert.equal(cut('a"b', 3), 'a"');
    assert.equal(cut("\n\t\\", 6), "\n\t\\");
    assert.equal(cut("\u0001\u0001", 11), "\u0001");
    assert.equal(cut("é€😀", 8), "é€"); // an emoji is one character of 4 bytes, not two halves
    assert.equal(cut("é€😀", 9), "é€😀");
    assert.equal(cut("\ud800x", 4), "\ufffdx");
    assert.equal(cut("😀".repeat(200_000), LIMITS.log_message_bytes), "😀".repeat(125));
  });

  test("a 500 KB error message on five stacks leaves a snapshot under 128 KB", () => {
    const state = new DeploymentState("D1");
    const message = "Subnet not found. ".repeat(30_000);
    for (let i = 0; i < 5; i += 1) {
      const raw = { type: "stack.failed", deployment_id: "D1", seq: i + 1, data: { stack_name: `stack-${i}`, error_message: message } };
      state.apply(parseServerMessage(JSON.stringify(raw)) as AnyDeploymentEvent);
    }
    const wire = JSON.stringify({ type: "deployment.snapshot", deployment_id: "D1", seq: 5, data: state.toSnapshot() });
    assert.ok(Buffer.byteLength(wire, "utf8") < LIMITS.snapshot_bytes);
    assert.equal(state.stacks.get("stack-0")?.error_message, message.slice(0, LIMITS.error_message_bytes));
  });
});

describe("a state started from a snapshot", () => {
  // A snapshot is the fold of every event through its seq: a state started from one
  // (a fresh page) must fold the rest of each vector to the same result.
  for (const vector of VECTORS.cases) {
    test(`${vector.name}: from a snapshot taken at every seq`, () => {
      const events = delivered(vector.events);
      for (let split = 0; split <= events.length; split += 1) {
        const before = fold(new DeploymentState(vector.deployment_id), events.slice(0, split));
        const wire: SnapshotMessage = {
          type: "deployment.snapshot",
          deployment_id: vector.deployment_id,
          seq: before.seq,
          data: JSON.parse(JSON.stringify(before.toSnapshot())) as JsonObject,
        };
        const resumed = fold(DeploymentState.fromSnapshot(wire), events.slice(split));
        assert.deepEqual(resumed.toSnapshot(), vector.expect.data, `snapshot at seq ${before.seq}`);
      }
    });
  }
});

describe("epochMs", () => {
  test("reads times as the server does: UTC when no zone is named, null when unreadable", () => {
    const utc = Date.UTC(2026, 11, 2, 10, 0, 0);
    assert.deepEqual(
      ["2026-12-02T10:00:00Z", "2026-12-02T10:00:00", "2026-12-02 10:00:00", "2026-12-02T11:00:00+01:00", "2026-12-02T10:00:00.250Z"].map(epochMs),
      [utc, utc, utc, utc, utc + 250],
    );
    assert.deepEqual([epochMs(""), epochMs("yesterday"), epochMs(undefined), epochMs(42)], [null, null, null, null]);
  });
});
