/**
 * The shared delivery rules (conformance/sequence.json, read from the
 * repository, never copied) through the protocol core: a fake host records
 * what the core sends and hands over, and a fake clock fires each timer at
 * its own time. The file's description defines the steps.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";

import {
  type AnyDeploymentEvent,
  type ClientMessage,
  ClientProtocol,
  DEFAULT,
  type JsonValue,
  type ProtocolEvents,
  type ProtocolHost,
} from "../src/index.js";
import { REPO_ROOT } from "./support/stack.js";

type Step = { receive: JsonValue } | { advance_ms: number } | { reconnect: true } | { ping: true };

interface SequenceCase {
  name: string;
  note: string;
  deployment_id: string;
  subscribe: { since: number | null };
  steps: Step[];
  expect: {
    delivered: { type: string; seq: number; previous?: number }[];
    requests: Record<string, JsonValue>[];
    errors: string[];
    subscribed: boolean;
  };
}

const VECTORS = JSON.parse(readFileSync(join(REPO_ROOT, "conformance", "sequence.json"), "utf8")) as {
  gap_timeout_ms: number;
  cases: SequenceCase[];
};

/** Plays one case: the host side of the core, with the case's clock. */
class Runner implements ProtocolHost {
  readonly sent: ClientMessage[] = [];
  readonly delivered: { type: string; seq: number; previous?: number }[] = [];
  readonly errors: string[] = [];
  readonly core: ClientProtocol;
  now = 0;
  #wakeAt: number | undefined;

  constructor(gapTimeout: number) {
    // The client's own tuning, but the vectors' gap timeout.
    this.core = new ClientProtocol(this, { ...DEFAULT, gapTimeout }, () => this.now);
  }

  send(message: ClientMessage): void {
    this.sent.push(message);
  }

  emit<K extends keyof ProtocolEvents>(type: K, payload: ProtocolEvents[K]): void {
    if (type === "snapshot") {
      const snapshot = payload as ProtocolEvents["snapshot"];
      this.delivered.push({ type: snapshot.type, seq: snapshot.seq });
    } else if (type === "history_reset") {
      const reset = payload as ProtocolEvents["history_reset"];
      this.delivered.push({ type: "history_reset", seq: reset.seq, previous: reset.previous });
    } else if (type === "error") {
      const error = payload as ProtocolEvents["error"];
      if (error.kind === "server") {
        this.errors.push(error.message.code);
      } else {
        assert.fail(`the core reported a ${error.kind} error`);
      }
    }
  }

  deliver(event: AnyDeploymentEvent): void {
    this.delivered.push({ type: event.type, seq: event.seq });
  }

  reconnect(): void {
    // No vector ends in a code that asks for a new connection.
    assert.fail("the core asked for a new connection");
  }

  wake(at: number | undefined): void {
    this.#wakeAt = at;
  }

  /** A received message with each "@n" replaced by the id of the n-th request sent. */
  resolve(value: JsonValue): JsonValue {
    if (Array.isArray(value)) {
      return value.map((item) => this.resolve(item));
    }
    if (typeof value === "object" && value !== null) {
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, this.resolve(item)]));
    }
    if (typeof value === "string" && /^@\d+$/.test(value)) {
      const request = this.sent[Number(value.slice(1)) - 1];
      assert.ok(request?.id !== undefined, `request ${value} was sent`);
      return request.id;
    }
    return value;
  }

  step(step: Step): void {
    if ("receive" in step) {
      const messages = Array.isArray(step.receive) ? step.receive : [step.receive];
      this.core.receive(messages.map((message) => JSON.stringify(this.resolve(message))).join("\n"));
    } else if ("advance_ms" in step) {
      const target = this.now + step.advance_ms;
      // Every timer due on the way fires at its own time, not at the end.
      for (let fired = 0; this.#wakeAt !== undefined && this.#wakeAt <= target; fired += 1) {
        assert.ok(fired < 1_000, "the core keeps asking to be woken at the same time");
        this.now = Math.max(this.now, this.#wakeAt);
        this.core.tick();
      }
      this.now = target;
    } else if ("reconnect" in step) {
      this.core.closed();
      this.core.opened();
    } else if ("ping" in step) {
      this.core.send({ action: "ping" });
    } else {
      assert.fail(`unknown step ${JSON.stringify(step)}`);
    }
    // Whatever is due now, as the client's timer would fire it.
    if (this.#wakeAt !== undefined && this.#wakeAt <= this.now) {
      this.core.tick();
    }
  }
}

function withoutId(message: ClientMessage): Record<string, unknown> {
  const { id: _id, ...rest } = message;
  return rest;
}

describe("conformance/sequence.json", () => {
  assert.ok(VECTORS.cases.length >= 10, "the vectors are there");

  for (const vector of VECTORS.cases) {
    test(vector.name, () => {
      const runner = new Runner(VECTORS.gap_timeout_ms);
      runner.core.opened();
      const since = vector.subscribe.since;
      void runner.core.subscribe(vector.deployment_id, since === null ? {} : { since }).catch(() => undefined);
      for (const step of vector.steps) {
        runner.step(step);
      }
      assert.deepEqual(runner.delivered, vector.expect.delivered, vector.note);
      assert.deepEqual(runner.sent.map(withoutId), vector.expect.requests, vector.note);
      assert.deepEqual(runner.errors, vector.expect.errors);
      assert.equal(runner.core.subscriptions.includes(vector.deployment_id), vector.expect.subscribed);
    });
  }
});
