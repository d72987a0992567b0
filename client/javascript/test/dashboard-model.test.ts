/** The dashboard's model: idempotent, never regressed by a late arrival. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { DeploymentModel, formatDuration } from "../dashboard/src/model.js";
import type { AnyDeploymentEvent, JsonObject } from "../src/index.js";

const DEP = "D1";

function ev(seq: number, type: string, data: JsonObject, second = seq): AnyDeploymentEvent {
  return {
    type,
    deployment_id: DEP,
    seq,
    event_id: `e${seq}`,
    data,
    timestamp: new Date(Date.UTC(2026, 10, 26, 10, 0, second)).toISOString(),
  };
}

describe("DeploymentModel", () => {
  test("applying an event twice changes nothing", () => {
    const model = new DeploymentModel(DEP);
    const deployed = ev(1, "stack.deployed", { stack_name: "vpc", duration_seconds: 300, resource_count: 15, layer: 1 });
    assert.equal(model.apply(deployed), true);
    assert.equal(model.apply(deployed), false);
    assert.equal(model.apply({ ...deployed, event_id: "other-id" }), false, "same seq is the same event");
    assert.equal(model.eventCount, 1);
    assert.deepEqual(
      [model.stacks.get("vpc")?.state, model.stacks.get("vpc")?.resourceCount, model.stacks.get("vpc")?.durationSeconds],
      ["deployed", 15, 300],
    );
  });

  test("a late started or progress event never regresses a finished stack", () => {
    const model = new DeploymentModel(DEP);
    model.apply(ev(2, "stack.deployed", { stack_name: "vpc", resource_count: 15, duration_seconds: 300 }, 20));
    model.apply(ev(3, "stack.started", { stack_name: "vpc", layer: 1 }, 5));
    model.apply(ev(4, "stack.progress", { stack_name: "vpc", resources_done: 9 }, 10));
    const vpc = model.stacks.get("vpc");
    assert.equal(vpc?.state, "deployed");
    assert.equal(vpc?.resourceCount, 15);
    assert.equal(vpc?.layer, 1, "fields the final event lacked are still filled in");
  });

  test("between two final states the newer timestamp wins, whatever the arrival order", () => {
    const retried = new DeploymentModel(DEP);
    retried.apply(ev(5, "stack.deployed", { stack_name: "db", resource_count: 3 }, 30));
    retried.apply(ev(6, "stack.failed", { stack_name: "db", error_message: "Subnet not found" }, 10));
    assert.equal(retried.stacks.get("db")?.state, "deployed");
    assert.equal(retried.stacks.get("db")?.error, undefined);

    const failed = new DeploymentModel(DEP);
    failed.apply(ev(5, "stack.deployed", { stack_name: "db", resource_count: 3 }, 10));
    failed.apply(ev(6, "stack.failed", { stack_name: "db", error_message: "Subnet not found" }, 30));
    assert.equal(failed.stacks.get("db")?.state, "failed");
    assert.equal(failed.stacks.get("db")?.error, "Subnet not found");
  });

  test("the deployment status never goes back from terminal, nor the layer", () => {
    const model = new DeploymentModel(DEP);
    model.apply(ev(1, "deployment.status", { status: "deploying", current_layer: 3, total_layers: 4 }, 10));
    model.apply(ev(2, "deployment.status", { status: "failed", error_message: "stack db failed", duration_seconds: 827 }, 20));
    model.apply(ev(3, "deployment.status", { status: "deploying", current_layer: 2, total_layers: 4 }, 5));
    assert.equal(model.status, "failed");
    assert.equal(model.currentLayer, 3);
    assert.equal(model.error, "stack db failed");
    assert.equal(model.durationSeconds, 827);
    assert.equal(model.terminal, true);
  });

  test("layers: done, failed and not deployed after a failure", () => {
    const model = new DeploymentModel(DEP);
    let seq = 0;
    const add = (type: string, data: JsonObject): void => {
      seq += 1;
      model.apply(ev(seq, type, data));
    };
    add("deployment.status", { status: "deploying", current_layer: 0, total_layers: 3 });
    add("deployment.status", { status: "deploying", current_layer: 1, total_layers: 3 });
    add("stack.started", { stack_name: "vpc", layer: 1 });
    assert.deepEqual(model.layers.map((l) => l.state), ["active", "pending", "pending"]);
    add("stack.deployed", { stack_name: "vpc", layer: 1, resource_count: 15 });
    add("deployment.status", { status: "deploying", current_layer: 2, total_layers: 3 });
    add("stack.started", { stack_name: "db", layer: 2 });
    add("stack.started", { stack_name: "cache", layer: 2 });
    add("stack.failed", { stack_name: "db", layer: 2, error_message: "Subnet not found" });
    add("stack.deployed", { stack_name: "cache", layer: 2, resource_count: 5 });
    add("deployment.status", { status: "failed", error_message: "db failed" });
    assert.deepEqual(model.layers.map((l) => l.state), ["done", "failed", "skipped"]);
    assert.deepEqual([model.count("deployed"), model.count("failed"), model.count("running")], [2, 1, 0]);
    assert.ok(model.progress > 0.5 && model.progress < 1);
  });

  test("logs stay in seq order; unknown event types are counted, not dropped", () => {
    const model = new DeploymentModel(DEP);
    model.apply(ev(3, "log.created", { level: "warning", message: "third", stack_name: "sg" }));
    model.apply(ev(1, "log.created", { level: "info", message: "first" }));
    model.apply(ev(2, "backup.finished", { ok: true }));
    model.apply(ev(4, "log.created", { level: "shouting", message: 42 }));
    assert.deepEqual(model.logs.map((l) => [l.seq, l.level, l.message]), [
      [1, "info", "first"],
      [3, "warning", "third"],
      [4, "info", "42"],
    ]);
    assert.equal(model.otherEvents.get("backup.finished"), 1);
    assert.equal(model.apply({ ...ev(5, "log.created", {}), deployment_id: "other" }), false);
  });

  test("formatDuration", () => {
    assert.deepEqual([formatDuration(undefined), formatDuration(58), formatDuration(245), formatDuration(3725)], ["", "58s", "4m 05s", "1h 02m"]);
  });
});
