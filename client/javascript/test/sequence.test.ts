/** The seq rules on their own: dedupe, reorder, gaps, capped replays. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { type AnyDeploymentEvent, DeploymentSequence } from "../src/index.js";

function ev(seq: number): AnyDeploymentEvent {
  return { type: "log.created", deployment_id: "D1", seq, data: { message: `m${seq}` } };
}

function seqs(events: AnyDeploymentEvent[]): number[] {
  return events.map((e) => e.seq);
}

describe("DeploymentSequence", () => {
  test("releases contiguous events at once and drops duplicates", () => {
    const s = new DeploymentSequence(0);
    assert.deepEqual(seqs(s.push(ev(1))), [1]);
    assert.deepEqual(seqs(s.push(ev(2))), [2]);
    assert.deepEqual(s.push(ev(2)), []);
    assert.deepEqual(s.push(ev(1)), []);
    assert.equal(s.duplicates, 2);
    assert.equal(s.last, 2);
    assert.equal(s.hasGap, false);
  });

  test("buffers out-of-order events and releases them in order", () => {
    const s = new DeploymentSequence(0);
    assert.deepEqual(s.push(ev(3)), []);
    assert.deepEqual(s.push(ev(2)), []);
    assert.equal(s.hasGap, true);
    assert.equal(s.buffered, 2);
    assert.deepEqual(s.push(ev(3)), [], "a buffered seq is a duplicate too");
    assert.deepEqual(seqs(s.push(ev(1))), [1, 2, 3]);
    assert.equal(s.hasGap, false);
  });

  test("without since, the first ack sets the position and older events are dropped", () => {
    const s = new DeploymentSequence();
    assert.equal(s.resumeSince, undefined);
    assert.deepEqual(s.push(ev(7)), [], "nothing is released before the position is known");
    assert.deepEqual(s.push(ev(9)), []);
    assert.deepEqual(seqs(s.acknowledge({ type: "subscribed", deployment_id: "D1", seq: 7, replay: 0 }, undefined)), []);
    assert.equal(s.last, 7);
    assert.deepEqual(seqs(s.push(ev(8))), [8, 9]);
  });

  test("an ack announcing newer events makes a gap until the replay arrives", () => {
    const s = new DeploymentSequence(2);
    s.acknowledge({ type: "subscribed", deployment_id: "D1", seq: 5, replay: 3 }, 2);
    assert.equal(s.hasGap, true);
    assert.equal(s.latest, 5);
    assert.deepEqual(seqs([...s.push(ev(3)), ...s.push(ev(4)), ...s.push(ev(5))]), [3, 4, 5]);
    assert.equal(s.hasGap, false);
    assert.equal(s.takeReplayContinuation(), false);
  });

  test("a capped replay asks for a continuation once consumed", () => {
    const s = new DeploymentSequence(0);
    s.acknowledge({ type: "subscribed", deployment_id: "D1", seq: 10, replay: 4 }, 0);
    s.push(ev(1));
    s.push(ev(2));
    s.push(ev(3));
    assert.equal(s.takeReplayContinuation(), false, "not before the replay is consumed");
    s.push(ev(4));
    assert.equal(s.takeReplayContinuation(), true);
    assert.equal(s.takeReplayContinuation(), false, "reading clears it");
    assert.equal(s.resumeSince, 4);
  });

  test("skipGap moves past a hole that will never fill", () => {
    const s = new DeploymentSequence(0);
    s.push(ev(1));
    s.push(ev(4));
    s.push(ev(5));
    assert.deepEqual(seqs(s.skipGap()), [4, 5]);
    assert.equal(s.last, 5);
    assert.equal(s.hasGap, false);
  });

  test("a latest seq beyond the last delivered opens a gap that the missing events close", () => {
    const s = new DeploymentSequence(0);
    s.push(ev(1));
    s.observeLatest(1);
    assert.equal(s.hasGap, false, "caught up: nothing missing");
    s.observeLatest(2);
    assert.equal(s.hasGap, true, "the lost tail");
    assert.equal(s.resumeSince, 1);
    assert.deepEqual(seqs(s.push(ev(2))), [2]);
    assert.equal(s.hasGap, false);
    s.observeLatest(1);
    assert.equal(s.latest, 2, "an older report never lowers what is known");
  });
});
