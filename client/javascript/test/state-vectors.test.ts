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
  parseServerMessage,
  type SnapshotMessage,
} from "../src/index.js";
import { REPO_ROOT } from "./support/stack.js";

interface StateCase {
  name: string;
  note: string;
  deployment_id: string;
  events: JsonObject[];
  expect: { seq: number; data: DeploymentSnapshotData };
}

const VECTORS = JSON.parse(readFileSync(join(REPO_ROOT, "conformance", "state.json"), "utf8")) as { cases: StateCase[] };

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

describe("a state started from a snapshot", () => {
  // The server's snapshot strips the keys that order each field; a state started from one
  // (a fresh page) must still fold the rest of each vector to the same result.
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
