/** The dashboard's model: the shared folding rules, a snapshot as the starting point, the view's layers and log pane. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  DeploymentModel,
  formatAge,
  formatDuration,
  formatStepDuration,
  liveOrder,
  type LogLine,
  logLineMatches,
  resourceSeconds,
} from "../dashboard/src/model.js";
import { type AnyDeploymentEvent, type JsonObject, type SnapshotMessage } from "../src/index.js";

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

/** Applies events with seq 1, 2, 3, … (as the client delivers them). */
function play(model: DeploymentModel, events: [string, JsonObject, number?][], from = 1): void {
  events.forEach(([type, data, second], index) => model.apply(ev(from + index, type, data, second ?? from + index)));
}

function snapshot(seq: number, data: JsonObject): SnapshotMessage {
  return { type: "deployment.snapshot", deployment_id: DEP, seq, data };
}

const FAILED_AT_3: JsonObject = {
  status: "failed",
  attempt: 1,
  current_layer: 3,
  total_layers: 4,
  started_at: "2026-11-26T10:00:01.000Z",
  updated_at: "2026-11-26T10:02:00.000Z",
  environment: "dev",
  stacks: {
    vpc: { status: "deployed", layer: 1, environment: "dev", resource_count: 15, duration_seconds: 300, error_message: null },
    "database-rds": { status: "failed", layer: 3, environment: "dev", resource_count: 3, duration_seconds: 73, error_message: "Subnet not found" },
  },
  log_counts: { info: 83, error: 2 },
  recent_logs: [
    { level: "info", message: "layer 1 done", stack_name: "vpc", seq: 130, timestamp: "2026-11-26T10:01:00.000Z" },
    { level: "error", message: "Subnet not found", stack_name: "database-rds", seq: 137, timestamp: "2026-11-26T10:01:59.000Z" },
  ],
};

describe("DeploymentModel", () => {
  test("an event at or below the folded seq changes nothing", () => {
    const model = new DeploymentModel(DEP);
    const deployed = ev(1, "stack.deployed", { stack_name: "vpc", duration_seconds: 300, resource_count: 15, layer: 1 });
    assert.equal(model.apply(deployed), true);
    assert.equal(model.apply(deployed), false);
    assert.equal(model.apply({ ...deployed, event_id: "other-id" }), false, "same seq is the same event");
    assert.equal(model.eventCount, 1);
    const vpc = model.stack("vpc");
    assert.deepEqual([vpc?.state, vpc?.resourceCount, vpc?.durationSeconds], ["deployed", 15, 300]);
  });

  test("a later started or progress event never regresses a finished stack, whatever its time; states are the snapshot's names", () => {
    const model = new DeploymentModel(DEP);
    play(model, [
      ["stack.started", { stack_name: "db", layer: 1 }],
      ["stack.deployed", { stack_name: "vpc", resource_count: 15, duration_seconds: 300 }, 20],
      ["stack.started", { stack_name: "vpc", layer: 1 }, 5],
      ["stack.progress", { stack_name: "vpc", resources_done: 9 }, 10],
    ]);
    assert.equal(model.stack("db")?.state, "deploying");
    const vpc = model.stack("vpc");
    assert.equal(vpc?.state, "deployed");
    assert.equal(vpc?.resourceCount, 15);
    assert.equal(vpc?.layer, 1, "fields the final event lacked are still filled in");
    assert.equal(vpc?.resourcesDone, 9, "the later event's values win, though it is stamped earlier");
  });

  test("a re-run is attempt 2: fresh stacks, layer and log pane; total layers kept", () => {
    const model = new DeploymentModel(DEP);
    play(model, [
      ["deployment.status", { status: "deploying", current_layer: 1, total_layers: 2 }],
      ["stack.failed", { stack_name: "db", layer: 1, error_message: "Subnet not found" }],
      ["log.created", { level: "error", message: "db failed" }],
      ["deployment.status", { status: "failed", error_message: "stack db failed in layer 1" }],
    ]);
    assert.deepEqual([model.status, model.attempt, model.error], ["failed", 1, "stack db failed in layer 1"]);
    play(
      model,
      [
        ["deployment.status", { status: "deploying", current_layer: 1 }],
        ["stack.deployed", { stack_name: "api", layer: 1, resource_count: 4 }],
        ["deployment.status", { status: "succeeded" }],
      ],
      5,
    );
    assert.deepEqual([model.status, model.attempt, model.currentLayer, model.totalLayers], ["succeeded", 2, 1, 2]);
    assert.deepEqual(model.stackList.map((s) => s.name), ["api"]);
    assert.deepEqual(model.logs, [], "the pane shows the running attempt's lines");
    assert.equal(model.error, undefined);
    assert.equal(model.eventCount, 7);
  });

  test("a snapshot is the starting point: the page shows its state, then folds the events after it", () => {
    const model = new DeploymentModel(DEP);
    assert.equal(model.applySnapshot(snapshot(138, FAILED_AT_3)), true);
    assert.deepEqual([model.status, model.attempt, model.currentLayer, model.totalLayers, model.lastSeq], ["failed", 1, 3, 4, 138]);
    assert.equal(model.eventCount, 0, "nothing was replayed");
    assert.equal(model.snapshotSeq, 138);
    assert.deepEqual(model.logs.map((l) => l.seq), [130, 137]);
    assert.deepEqual(Object.fromEntries(model.logCounts), { info: 83, error: 2 });
    assert.equal(model.error, "stack database-rds failed in layer 3: Subnet not found", "the snapshot has no status error: the stacks say it");
    assert.deepEqual(model.layers.map((l) => l.state), ["done", "done", "failed", "skipped"]);

    assert.equal(model.apply(ev(100, "log.created", { level: "info", message: "old" })), false, "covered by the snapshot");
    model.apply({ ...ev(139, "deployment.status", { status: "deploying", current_layer: 1 }), timestamp: "2026-11-26T11:00:00.000Z" });
    assert.deepEqual([model.status, model.attempt, model.currentLayer, model.totalLayers], ["deploying", 2, 1, 4]);
    assert.deepEqual([model.stackList, model.logs, model.eventCount], [[], [], 1]);
  });

  test("an event that overtakes the snapshot is folded again on top of it; a later snapshot is ignored", () => {
    const model = new DeploymentModel(DEP);
    // Given live event 139 arrives before the ack's snapshot at 138,
    model.apply({ ...ev(139, "log.created", { level: "warning", message: "retrying" }), timestamp: "2026-11-26T10:02:01.000Z" });
    // when the snapshot comes,
    assert.equal(model.applySnapshot(snapshot(138, FAILED_AT_3)), true);
    // then the picture is the snapshot's plus event 139.
    assert.equal(model.lastSeq, 139);
    assert.deepEqual(model.logs.map((l) => l.seq), [130, 137, 139]);
    assert.deepEqual(Object.fromEntries(model.logCounts), { info: 83, error: 2, warning: 1 });
    // A snapshot after a reconnect (which replays with since) does not replace what the page knows.
    assert.equal(model.applySnapshot(snapshot(140, { ...FAILED_AT_3, status: "succeeded" })), false);
    assert.equal(model.status, "failed");
  });

  test("a page that folded from seq 1 ignores snapshots", () => {
    const model = new DeploymentModel(DEP);
    play(model, [["deployment.status", { status: "deploying", current_layer: 1, total_layers: 3 }]]);
    assert.equal(model.applySnapshot(snapshot(1, { status: "pending", attempt: 0 })), false);
    assert.deepEqual([model.status, model.attempt], ["deploying", 1]);
  });

  test("layers: done, failed and not deployed after a failure", () => {
    const model = new DeploymentModel(DEP);
    const steps: [string, JsonObject][] = [
      ["deployment.status", { status: "deploying", current_layer: 0, total_layers: 3 }],
      ["deployment.status", { status: "deploying", current_layer: 1, total_layers: 3 }],
      ["stack.started", { stack_name: "vpc", layer: 1 }],
    ];
    play(model, steps);
    assert.deepEqual(model.layers.map((l) => l.state), ["active", "pending", "pending"]);
    play(
      model,
      [
        ["stack.deployed", { stack_name: "vpc", layer: 1, resource_count: 15 }],
        ["deployment.status", { status: "deploying", current_layer: 2, total_layers: 3 }],
        ["stack.started", { stack_name: "db", layer: 2 }],
        ["stack.started", { stack_name: "cache", layer: 2 }],
        ["stack.failed", { stack_name: "db", layer: 2, error_message: "Subnet not found" }],
        ["stack.deployed", { stack_name: "cache", layer: 2, resource_count: 5 }],
        ["deployment.status", { status: "failed", error_message: "db failed" }],
      ],
      4,
    );
    assert.deepEqual(model.layers.map((l) => l.state), ["done", "failed", "skipped"]);
    assert.deepEqual([model.count("deployed"), model.count("failed"), model.count("deploying")], [2, 1, 0]);
    assert.ok(model.progress > 0.5 && model.progress < 1);
  });

  test("log lines are in seq order whatever their times; unknown event types are counted, not dropped", () => {
    const model = new DeploymentModel(DEP);
    play(model, [
      ["log.created", { level: "info", message: "first" }, 10],
      ["log.created", { level: "warning", message: "earlier", stack_name: "sg" }, 5],
      ["backup.finished", { ok: true }],
      ["log.created", { level: "shouting", message: 42 }, 20],
    ]);
    assert.deepEqual(model.logs.map((l) => [l.seq, l.level, l.message]), [
      [1, "info", "first"],
      [2, "warning", "earlier"],
      [4, "shouting", ""],
    ]);
    assert.equal(model.otherEvents.get("backup.finished"), 1);
    const revision = model.logsRevision;
    model.apply(ev(5, "log.created", { level: "info", message: "last" }, 30));
    assert.equal(model.logsRevision, revision, "a line appended at the end needs no redraw");
    assert.equal(model.apply({ ...ev(6, "log.created", {}), deployment_id: "other" }), false);
  });

  test("a status stamped 2099 freezes nothing: the re-run and its success show", () => {
    const model = new DeploymentModel(DEP);
    play(model, [["deployment.status", { status: "deploying", current_layer: 1, total_layers: 1 }]]);
    model.apply({ ...ev(2, "deployment.status", { status: "failed" }), timestamp: "2099-01-01T00:00:00.000Z" });
    play(
      model,
      [
        ["deployment.status", { status: "deploying", current_layer: 1 }],
        ["deployment.status", { status: "succeeded" }],
      ],
      3,
    );
    assert.deepEqual([model.status, model.attempt, model.lastTimestamp], ["succeeded", 2, ev(4, "x", {}).timestamp]);
  });

  test("the limits: stacks beyond the cap are counted, not shown; long texts are cut", () => {
    const model = new DeploymentModel(DEP);
    const names: [string, JsonObject][] = [];
    for (let i = 0; i < 52; i += 1) {
      names.push(["stack.failed", { stack_name: `s${i}`, layer: 1, error_message: "x".repeat(600_000) }]);
    }
    play(model, [...names, ["log.created", { message: "y".repeat(10_000) }]]);
    assert.equal(model.stackList.length, 50);
    assert.equal(model.droppedStackEvents, 2);
    assert.equal(model.stack("s0")?.error?.length, 1_000);
    assert.equal(model.logs[0]?.message.length, 500);
  });

  test("a cancelled run: its layer and deploying stacks are cancelled, not failed; the banner says why and what it stopped", () => {
    const model = new DeploymentModel(DEP);
    play(model, [
      ["deployment.status", { status: "deploying", current_layer: 1, total_layers: 3 }],
      ["stack.started", { stack_name: "vpc", layer: 1 }],
      ["stack.started", { stack_name: "dns", layer: 1 }],
      ["stack.deployed", { stack_name: "vpc", layer: 1, resource_count: 15 }],
    ]);
    assert.equal(model.banner, undefined, "a running attempt has no banner");
    assert.equal(model.stack("dns")?.stopped, false);
    play(model, [["deployment.status", { status: "cancelled" }]], 5);
    assert.deepEqual(model.layers.map((l) => l.state), ["cancelled", "skipped", "skipped"]);
    assert.deepEqual([model.stack("dns")?.state, model.stack("dns")?.stopped, model.stack("vpc")?.stopped], ["deploying", true, false]);
    assert.deepEqual(model.banner, { status: "cancelled", text: "Deployment cancelled (no reason was reported); stopped while deploying: dns" });

    const withReason = new DeploymentModel(DEP);
    play(withReason, [
      ["deployment.status", { status: "deploying", current_layer: 1, total_layers: 1 }],
      ["deployment.status", { status: "cancelled", error_message: "Ctrl-C" }],
    ]);
    assert.deepEqual(withReason.banner, { status: "cancelled", text: "Deployment cancelled: Ctrl-C" });
    assert.deepEqual(withReason.layers.map((l) => l.state), ["cancelled"]);
  });

  test("a failed run's banner: its error, else its failed stacks, else says none was reported", () => {
    const model = new DeploymentModel(DEP);
    play(model, [
      ["deployment.status", { status: "deploying", current_layer: 1, total_layers: 1 }],
      ["deployment.status", { status: "failed" }],
    ]);
    assert.deepEqual(model.banner, { status: "failed", text: "Deployment failed: no reason was reported" });
    const fromSnapshot = new DeploymentModel(DEP);
    fromSnapshot.applySnapshot(snapshot(138, FAILED_AT_3));
    assert.deepEqual(fromSnapshot.banner, { status: "failed", text: "Deployment failed: stack database-rds failed in layer 3: Subnet not found" });
  });

  test("the duration is the attempt's: from started_at to now while it runs, its own figure or span once it ended", () => {
    const model = new DeploymentModel(DEP);
    assert.equal(model.elapsed(Date.now()), undefined, "nothing reported yet");
    // Given a snapshot of a run that started at 10:00:01 and last reported at 10:02:00,
    model.applySnapshot(snapshot(20, { ...FAILED_AT_3, status: "deploying" }));
    // a page opened at 10:05:01 shows five minutes, and counts on;
    assert.deepEqual(model.elapsed(Date.parse("2026-11-26T10:05:01Z")), { seconds: 300, running: true });
    assert.deepEqual(model.elapsed(Date.parse("2026-11-26T10:05:11Z")), { seconds: 310, running: true });
    // a browser clock behind the producer's never shows less than the events span.
    assert.deepEqual(model.elapsed(Date.parse("2026-11-26T09:00:00Z")), { seconds: 119, running: true });

    // An ended run stands still: its span, whatever the time now,
    const ended = new DeploymentModel(DEP);
    ended.applySnapshot(snapshot(138, FAILED_AT_3));
    assert.deepEqual(ended.elapsed(Date.parse("2026-11-27T00:00:00Z")), { seconds: 119, running: false });
    // or the figure its final status gave.
    const given = new DeploymentModel(DEP);
    play(given, [
      ["deployment.status", { status: "deploying", current_layer: 1, total_layers: 1 }],
      ["deployment.status", { status: "succeeded", duration_seconds: 30 }],
    ]);
    assert.deepEqual(given.elapsed(Date.now()), { seconds: 30, running: false });
  });

  test("a refusal is kept for the view; the log filter matches stack and text; lines the page does not hold are counted", () => {
    const model = new DeploymentModel(DEP);
    assert.equal(model.refusal, undefined);
    model.refuse("forbidden", "you are not allowed to watch deployment D1");
    assert.deepEqual(model.refusal, { code: "forbidden", message: "you are not allowed to watch deployment D1" });

    const line: LogLine = { seq: 1, timestamp: undefined, level: "warning", message: "Security group REPLACED", stackName: "sg" };
    assert.equal(logLineMatches(line, { stack: undefined, text: "" }), true);
    assert.equal(logLineMatches(line, { stack: undefined, text: " replaced " }), true, "case and surrounding spaces do not matter");
    assert.equal(logLineMatches(line, { stack: undefined, text: "warn" }), true, "the level matches");
    assert.equal(logLineMatches(line, { stack: "sg", text: "group" }), true);
    assert.equal(logLineMatches(line, { stack: "vpc", text: "" }), false);
    assert.equal(logLineMatches({ ...line, stackName: undefined }, { stack: "sg", text: "" }), false);
    assert.equal(logLineMatches(line, { stack: undefined, text: "created" }), false);

    const started = new DeploymentModel(DEP);
    started.applySnapshot(snapshot(138, FAILED_AT_3));
    assert.equal(started.logLinesNotHeld, 83, "85 lines, the snapshot's latest 2 held");
    assert.deepEqual(started.logStacks, ["vpc", "database-rds"]);
  });

  test("a snapshot below the folded seq says the server's history went back; one at or above it does not", () => {
    const model = new DeploymentModel(DEP);
    model.applySnapshot(snapshot(41, FAILED_AT_3));
    assert.equal(model.historyWentBack(snapshot(3, FAILED_AT_3)), true, "a restarted stack, a reused id");
    assert.equal(model.historyWentBack(snapshot(41, FAILED_AT_3)), false);
    assert.equal(model.historyWentBack(snapshot(50, FAILED_AT_3)), false, "a history that grew meanwhile");
    assert.equal(model.historyWentBack({ ...snapshot(3, FAILED_AT_3), deployment_id: "other" }), false);
    assert.equal(new DeploymentModel(DEP).historyWentBack(snapshot(0, { status: "pending", attempt: 0 })), false, "a fresh page knows no history");
  });

  test("formatDuration and formatAge", () => {
    assert.deepEqual([formatDuration(undefined), formatDuration(58), formatDuration(245), formatDuration(3725)], ["", "58s", "4m 05s", "1h 02m"]);
    const now = Date.parse("2026-11-26T12:00:00Z");
    assert.deepEqual(
      ["2026-11-26T11:59:48Z", "2026-11-26T11:56:00Z", "2026-11-26T09:00:00Z", "2026-11-24T12:00:00Z", null].map((t) => formatAge(t, now)),
      ["12s ago", "4m ago", "3h ago", "2d ago", ""],
    );
  });
});

describe("DeploymentModel: a stack's resources", () => {
  const vpc = (status: string, extra: JsonObject = {}): JsonObject => ({ name: "main", type: "aws:ec2/vpc:Vpc", operation: "create", status, ...extra });
  const subnet = (name: string, status: string, extra: JsonObject = {}): JsonObject => ({ name, type: "aws:ec2/subnet:Subnet", operation: "create", status, ...extra });

  test("the resources entries of stack.progress fold per type and name, the later entry winning, in the order they first appeared", () => {
    const model = new DeploymentModel(DEP);
    play(model, [
      ["stack.started", { stack_name: "network", layer: 1 }],
      ["stack.progress", { stack_name: "network", resources_done: 0, resources: [vpc("running"), subnet("private-a", "running")] }, 10],
      ["stack.progress", { stack_name: "network", resources_done: 1, resources: [vpc("done", { duration_seconds: 2.5 }), subnet("private-b", "running")] }, 12],
      // The same name with another type is another resource (Pulumi names are unique per type).
      ["stack.progress", { stack_name: "network", resources_done: 1, resources: [{ name: "main", type: "aws:ec2/internetGateway:InternetGateway", operation: "create", status: "failed", duration_seconds: 1 }] }, 13],
      ["stack.progress", { stack_name: "db", resources: [subnet("other", "running")] }, 14],
    ]);
    const network = model.resources("network");
    assert.deepEqual(
      network.resources.map((r) => [r.type.split(":").pop(), r.name, r.status, r.durationSeconds]),
      [
        ["Vpc", "main", "done", 2.5],
        ["Subnet", "private-a", "running", undefined],
        ["Subnet", "private-b", "running", undefined],
        ["InternetGateway", "main", "failed", 1],
      ],
    );
    assert.deepEqual([network.running, network.done, network.failed], [2, 1, 1]);
    assert.deepEqual(model.resources("db").resources.map((r) => r.name), ["other"], "each stack its own");
    assert.deepEqual(model.resources("nothing").resources, []);
    assert.equal(model.stack("network")?.resourcesDone, 1, "the shared fold is unchanged");
    // A live table: the running ones on top, then the finished ones, the last finished first.
    assert.deepEqual(
      liveOrder(network.resources).map((r) => `${r.name}:${r.status}`),
      ["private-a:running", "private-b:running", "main:failed", "main:done"],
    );
    assert.deepEqual([0.04, 2.46, 9.99, 61, undefined].map(formatStepDuration), ["0.0s", "2.4s", "9.9s", "1m 01s", ""]);
  });

  test("a running resource's duration counts from when it was first reported, and stands still once its stack ended", () => {
    const model = new DeploymentModel(DEP);
    play(model, [
      ["stack.started", { stack_name: "network" }],
      ["stack.progress", { stack_name: "network", resources: [subnet("a", "running")] }, 10],
      ["stack.progress", { stack_name: "network", resources: [subnet("a", "running"), subnet("b", "running")] }, 20],
    ]);
    const [a, b] = model.resources("network").resources;
    assert.ok(a !== undefined && b !== undefined);
    const now = Date.UTC(2026, 10, 26, 10, 0, 30);
    assert.equal(resourceSeconds(a, now, true), 20, "from its first report at :10, not the repeat at :20");
    assert.equal(resourceSeconds(b, now, true), 10);
    assert.equal(resourceSeconds(a, now, false), undefined, "not ticking: no figure");
    model.apply(ev(4, "stack.progress", { stack_name: "network", resources: [subnet("a", "done", { duration_seconds: 19.5 })] }, 30));
    assert.equal(resourceSeconds(model.resources("network").resources[0]!, now + 60_000, true), 19.5, "a finished one its own duration");
  });

  test("malformed entries are skipped; a new attempt starts with no resources; a snapshot keeps those of its stacks", () => {
    const model = new DeploymentModel(DEP);
    play(model, [
      ["deployment.status", { status: "deploying" }],
      ["stack.started", { stack_name: "network" }],
      ["stack.progress", { stack_name: "network", resources: [subnet("a", "running"), { name: "b", status: "queued" }, "c", { status: "done" }, subnet("d", "done", { duration_seconds: -1 })] }],
      ["stack.progress", { stack_name: "network", resources: "not a list" }],
    ]);
    assert.deepEqual(model.resources("network").resources.map((r) => [r.name, r.durationSeconds]), [["a", undefined], ["d", undefined]]);
    model.apply(ev(5, "deployment.status", { status: "failed" }));
    model.apply(ev(6, "deployment.status", { status: "deploying" }));
    assert.equal(model.attempt, 2);
    assert.deepEqual(model.resources("network").resources, [], "attempt 2 starts afresh");

    // A page whose first events overtook the snapshot: it keeps their resources.
    const late = new DeploymentModel(DEP);
    late.apply(ev(8, "stack.progress", { stack_name: "network", resources: [subnet("a", "running")] }));
    late.apply(ev(9, "stack.progress", { stack_name: "gone", resources: [subnet("x", "running")] }));
    late.applySnapshot(
      snapshot(8, {
        status: "deploying",
        attempt: 1,
        current_layer: null,
        total_layers: null,
        started_at: null,
        updated_at: null,
        environment: null,
        stacks: { network: { status: "deploying", layer: null, environment: null, resource_count: null, duration_seconds: null, error_message: null } },
        log_counts: {},
        recent_logs: [],
      }),
    );
    assert.deepEqual(late.resources("network").resources.map((r) => r.name), ["a"]);
    assert.deepEqual(late.resources("gone").resources.map((r) => r.name), ["x"], "seq 9 came after the snapshot: folded again");
  });

  test("a stack's own log lines", () => {
    const model = new DeploymentModel(DEP);
    play(model, [
      ["log.created", { message: "one", stack_name: "network" }],
      ["log.created", { message: "two", stack_name: "db" }],
      ["log.created", { message: "three", stack_name: "network" }],
    ]);
    assert.deepEqual(model.stackLogs("network").map((line) => line.message), ["one", "three"]);
  });
});
