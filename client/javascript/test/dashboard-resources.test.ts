/**
 * A stack's panel in a real (headless Debian) Chromium against a real `cloud-ws local`:
 * a click on a stack's card opens its resources (operation, type, name, status, duration,
 * a running one's duration counting) and its own log lines, folded from the `resources`
 * entries of its `stack.progress` events; on a phone it fits the screen, a long name cut
 * on its one line with the whole name as its tooltip. Then the real producer: `cloud-ws
 * pulumi` driving the stand-in `pulumi` (emulator/pulumi_standin.py) through an
 * update, the panel following it live to every resource done, with pulumi's exit code.
 *
 * `CLOUD_WS_SHOW_RESOURCES=300` runs that update with 300 resources (issue 20's show); with
 * CLOUD_WS_UPDATE_SCREENSHOTS=1 its mid-update screenshot is written to docs/screenshots/, and
 * with CLOUD_WS_SHOW_MONITOR=DIR `cloud-ws monitor --stack dev` follows it too, its live view
 * in a 100×32 terminal (`script`) and its plain lines, recorded into DIR.
 */

import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { Page } from "playwright-core";

import { ARTIFACTS, dashboardInChromium } from "./support/dashboard.js";
import { deploymentId, PYTHON, REPO_ROOT, waitFor } from "./support/stack.js";

const DOC_SCREENSHOTS = join(REPO_ROOT, "docs", "screenshots");

/** An iPhone 12–15's screen in CSS pixels, and its device pixel ratio. */
const PHONE = { width: 390, height: 844, scale: 2 };
/** Resources of the stand-in's update (the show uses 300), and seconds between its engine events. */
const RESOURCES = Number(process.env["CLOUD_WS_SHOW_RESOURCES"] ?? "40");
const PACE = Number(process.env["CLOUD_WS_SHOW_PACE"] ?? "0.05");

// The file's stack and Chromium, started before its tests and stopped after (screenshots go to ARTIFACTS).
const dashboard = dashboardInChromium({ artifacts: true });
const { missing } = dashboard;

/** A page in a phone-sized, touch context; its errors are checked by `dashboard.closePage`. */
function phonePage(): Promise<Page> {
  return dashboard.newPage({
    context: { viewport: { width: PHONE.width, height: PHONE.height }, deviceScaleFactor: PHONE.scale, hasTouch: true, isMobile: true },
  });
}

/** A screenshot into artifacts/ (and docs/screenshots/ when asked and `toDocs`). */
async function screenshot(page: Page, name: string, toDocs = false): Promise<void> {
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path, fullPage: true });
  if (toDocs && process.env["CLOUD_WS_UPDATE_SCREENSHOTS"] === "1") {
    mkdirSync(DOC_SCREENSHOTS, { recursive: true });
    copyFileSync(path, join(DOC_SCREENSHOTS, name));
  }
}

/** The panel's rows as [operation, type shown, name, status]. */
async function rows(page: Page): Promise<string[][]> {
  return page.locator("#resources-rows tr").evaluateAll((items) =>
    items.map((item) => {
      const cells = Array.from(item.querySelectorAll("td"));
      const visibleType = Array.from(cells[1]?.querySelectorAll("span") ?? []).find((span) => getComputedStyle(span).display !== "none");
      return [cells[0]?.textContent ?? "", visibleType?.textContent ?? "", cells[2]?.textContent ?? "", cells[3]?.textContent ?? ""];
    }),
  );
}

/** Opens the page on a deployment with no events yet, once its (empty) snapshot arrived. */
async function openEmpty(page: Page, deployment: string): Promise<void> {
  await page.goto(`${dashboard.stack.http}/dashboard/?deployment=${deployment}`);
  await page.locator("#stats[data-snapshot-seq=\"0\"]").waitFor({ state: "attached", timeout: 60_000 });
}

/**
 * With CLOUD_WS_SHOW_MONITOR=DIR: `cloud-ws monitor --stack dev --until-complete` on the
 * deployment, its live view in a 100×32 terminal (`script` records it, escapes and all, into
 * DIR/monitor-live.typescript) and its plain lines (DIR/monitor-plain.txt). Resolves with their
 * exit codes.
 */
function showMonitors(deployment: string): [string, Promise<number | null>][] {
  const directory = process.env["CLOUD_WS_SHOW_MONITOR"];
  if (directory === undefined || directory === "") {
    return [];
  }
  mkdirSync(directory, { recursive: true });
  const monitor = `${PYTHON} -m cloud_ws.cli monitor ${deployment} --outputs ${dashboard.stack.outputsPath} --stack dev --until-complete`;
  const runs: [string, string[]][] = [
    ["live", ["script", "-q", "-e", "-c", `stty cols 100 rows 32; ${monitor}`, join(directory, "monitor-live.typescript")]],
    ["plain", ["sh", "-c", `${monitor} > ${join(directory, "monitor-plain.txt")} 2>&1`]],
  ];
  return runs.map(([name, [command, ...args]]) => {
    const child = spawn(command ?? "sh", args, { cwd: REPO_ROOT, env: { ...process.env, PYTHONUNBUFFERED: "1", TERM: "xterm-256color" }, stdio: "ignore" });
    return [name, new Promise<number | null>((settle) => child.on("exit", (code) => settle(code)))];
  });
}

const LONG_NAME = "sg-ingress-from-the-transit-gateway-attachment-0123456789abcdef-and-more";

describe("a stack's resources in Chromium", { skip: missing ?? false }, () => {
  test("a click on a stack opens its resources and own log lines; on a phone a row is one line, a long name cut with its tooltip; a running one counts", async () => {
    const deployment = deploymentId("resources");
    const step = (name: string, type: string, status: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
      name,
      type,
      operation: "create",
      status,
      ...extra,
    });
    // Open before the events: a page that starts from a later snapshot lists only what came after it.
    const page = await phonePage();
    await openEmpty(page, deployment);
    await dashboard.stack.putEvents(deployment, [
      { type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 1 } },
      { type: "stack.started", data: { stack_name: "network", layer: 1 } },
      { type: "stack.started", data: { stack_name: "dns", layer: 1 } },
      {
        type: "stack.progress",
        data: {
          stack_name: "network",
          layer: 1,
          resources_done: 1,
          resources_in_progress: 2,
          resources: [
            step("main", "aws:ec2/vpc:Vpc", "done", { duration_seconds: 2.4 }),
            step(LONG_NAME, "aws:ec2/securityGroup:SecurityGroup", "running"),
            step("private-a", "aws:ec2/subnet:Subnet", "running"),
          ],
        },
      },
      { type: "log.created", data: { level: "info", message: "creating the VPC", stack_name: "network" } },
      { type: "log.created", data: { level: "info", message: "zone ready", stack_name: "dns" } },
      { type: "stack.progress", data: { stack_name: "dns", layer: 1, resources_done: 0, resources: [step("zone", "aws:route53/zone:Zone", "running")] } },
    ]);
    const card = page.locator('.stack[data-stack="network"]');
    await card.waitFor({ timeout: 30_000 });
    await page.locator("#log .log-line").nth(1).waitFor({ timeout: 15_000 });
    await page.locator('.stack[data-stack="dns"]').waitFor({ timeout: 15_000 });
    assert.ok(await page.locator("#stack-panel").isHidden(), "closed until a stack is chosen");

    await card.tap();
    const panel = page.locator('#stack-panel[data-stack="network"]');
    await panel.waitFor({ timeout: 5_000 });
    assert.deepEqual(await rows(page), [
      ["create", "SecurityGroup", LONG_NAME, "running"],
      ["create", "Subnet", "private-a", "running"],
      ["create", "Vpc", "main", "done"],
    ]);
    assert.equal(await page.locator("#stack-panel-counts").textContent(), "3 resources · 2 running · 1 done");
    assert.deepEqual(await page.locator("#stack-log .log-message").allTextContents(), ["creating the VPC"], "its own log lines only");
    assert.equal(await page.locator("#log-stack").inputValue(), "network", "the log pane shows its lines too");

    // Fits the phone: nothing sideways, each row one line, the long name cut with its whole self in the tooltip.
    assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= PHONE.width, "no sideways scrolling");
    const panelBox = await panel.boundingBox();
    assert.ok(panelBox !== null && panelBox.x >= 0 && panelBox.x + panelBox.width <= PHONE.width, `panel on screen: ${JSON.stringify(panelBox)}`);
    const heights = await page.locator("#resources-rows tr").evaluateAll((items) => items.map((item) => item.getBoundingClientRect().height));
    assert.ok(Math.max(...heights) - Math.min(...heights) < 2, `rows of one height (one line each): ${heights.join(", ")}`);
    const long = page.locator(`#resources-rows tr[data-name="${LONG_NAME}"] .res-name`);
    assert.equal(await long.getAttribute("title"), LONG_NAME);
    assert.ok(await long.evaluate((cell) => cell.scrollWidth > cell.clientWidth), "the long name is cut");
    const cellsOff = await page.locator("#resources-rows td, #resources th").evaluateAll((items, width) =>
      items.filter((item) => item.getBoundingClientRect().right > width + 0.5).length, PHONE.width);
    assert.equal(cellsOff, 0, "every column on screen");
    await screenshot(page, "dashboard-phone-resources-fixture.png");

    // A running one's duration counts; a finished one's stands.
    const running = page.locator('#resources-rows tr[data-name="private-a"] .res-duration');
    const first = Number(await running.getAttribute("data-seconds"));
    await waitFor(async () => Number(await running.getAttribute("data-seconds")) >= first + 1, { timeout: 5_000, what: "a running resource's duration to count" });
    assert.equal(await page.locator('#resources-rows tr[data-name="main"] .res-duration').textContent(), "2.4s");

    // Live: the next progress event's entries change their rows and add new ones.
    await dashboard.stack.putEvents(deployment, [
      {
        type: "stack.progress",
        data: {
          stack_name: "network",
          resources_done: 2,
          resources: [step("private-a", "aws:ec2/subnet:Subnet", "done", { duration_seconds: 61 }), step("route", "aws:ec2/route:Route", "running")],
        },
      },
      { type: "stack.failed", data: { stack_name: "network", error_message: "boom" } },
    ]);
    await page.locator('#resources-rows tr[data-name="route"]').waitFor({ timeout: 15_000 });
    await page.locator('#stack-panel[data-state="failed"]').waitFor({ timeout: 15_000 });
    assert.equal(await running.textContent(), "1m 01s");
    assert.equal(await page.locator('#resources-rows tr[data-name="route"] .res-duration').textContent(), "", "its stack ended: no figure counts");

    // The card again (or Close) closes it.
    await card.tap();
    assert.ok(await page.locator("#stack-panel").isHidden());
    await page.locator('.stack[data-stack="dns"]').tap();
    await page.locator('#stack-panel[data-stack="dns"]').waitFor({ timeout: 5_000 });
    assert.deepEqual(await rows(page), [["create", "Zone", "zone", "running"]]);
    await page.locator("#stack-panel-close").tap();
    assert.ok(await page.locator("#stack-panel").isHidden());
    assert.equal(await page.locator("#log-stack").inputValue(), "", "closing shows all log lines again");
    await dashboard.closePage(page);
  });

  test(`cloud-ws pulumi through a ${RESOURCES}-resource update: the panel follows every resource live; pulumi's exit code`, { timeout: 300_000 }, async () => {
    const deployment = deploymentId("pulumi");
    const work = mkdtempSync(join(tmpdir(), "cloud-ws-resources-"));
    try {
      // The stand-in pulumi and its scenario, from the module the Python tests and benchmarks share.
      const setup = spawnSync(
        PYTHON,
        [
          "-c",
          [
            "import json, sys",
            "from pathlib import Path",
            "from emulator import pulumi_standin as s",
            "d, n, pace = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])",
            "fake = s.install(d / 'bin')",
            "env = s.scenario(d, events=s.update_events('dev', n, warning_at=n // 2), pace=pace, stdout=['Updating (dev)\\n'])",
            "print(json.dumps({'pulumi': str(fake), 'env': env}))",
          ].join("\n"),
          work,
          String(RESOURCES),
          String(PACE),
        ],
        { cwd: REPO_ROOT, encoding: "utf8" },
      );
      assert.equal(setup.status, 0, setup.stderr);
      const { pulumi, env } = JSON.parse(setup.stdout) as { pulumi: string; env: Record<string, string> };

      const page = await phonePage();
      await openEmpty(page, deployment);

      const monitors = showMonitors(deployment);
      if (monitors.length > 0) {
        await new Promise((settle) => setTimeout(settle, 5_000)); // subscribed before the first event
      }
      const started = Date.now();
      const wrapper: ChildProcess = spawn(
        PYTHON,
        ["-m", "cloud_ws.cli", "pulumi", "--outputs", dashboard.stack.outputsPath, "--deployment-id", deployment, "--pulumi", pulumi, "--", "up", "--yes", "-s", "dev"],
        { cwd: REPO_ROOT, env: { ...process.env, ...env, PYTHONUNBUFFERED: "1" }, stdio: ["ignore", "pipe", "pipe"] },
      );
      const output: string[] = [];
      wrapper.stdout?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
      wrapper.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
      const exited = new Promise<number | null>((settle) => wrapper.on("exit", (code) => settle(code)));
      let code: number | null | undefined;
      void exited.then((value) => {
        code = value;
      });

      const card = page.locator('.stack[data-stack="dev"]');
      await card.waitFor({ timeout: 60_000 });
      await card.tap();
      // Mid-update: some done, the stack's own resource (and the current one) running.
      const counts = page.locator("#stack-panel-counts");
      await waitFor(async () => Number(await counts.getAttribute("data-done")) >= Math.min(RESOURCES / 3, 100), {
        timeout: 120_000,
        what: "a third of the resources done",
      });
      assert.equal(code, undefined, `pulumi still running mid-update (exit ${code}): ${output.join("")}`);
      assert.ok(Number(await counts.getAttribute("data-running")) >= 1, "resources running while it deploys");
      await screenshot(page, RESOURCES >= 300 ? "dashboard-phone-resources.png" : `dashboard-phone-resources-${RESOURCES}.png`, RESOURCES >= 300);

      assert.equal(await exited, 0, output.join(""));
      const seconds = (Date.now() - started) / 1000;
      await page.locator('#stack-panel[data-state="deployed"]').waitFor({ timeout: 60_000 });
      await waitFor(async () => Number(await counts.getAttribute("data-done")) === RESOURCES + 1, { timeout: 30_000, what: "every resource done" });
      assert.equal(await counts.getAttribute("data-running"), "0");
      const shown = await rows(page);
      assert.equal(shown.length, RESOURCES + 1, "every resource and the stack's own");
      // The last finished first: the stack's own resource, then resource-300 … resource-1.
      assert.deepEqual(shown[0], ["create", "Stack", "infra-dev", "done"]);
      assert.deepEqual(shown[1], ["create", RESOURCES % 2 ? "BucketV2" : "Subnet", `resource-${RESOURCES}`, "done"]);
      assert.deepEqual(shown[RESOURCES], ["create", "BucketV2", "resource-1", "done"]);
      assert.ok((await page.locator("#stack-log .log-message").allTextContents()).includes("map_public_ip_on_launch is deprecated"), "its log lines");
      const events = Number(await page.locator("#stats").getAttribute("data-events"));
      // The figures of the show (issue 20): how many events carried the update, and how long it took.
      console.log(`# ${RESOURCES} resources: ${events} events on the page, wrapper ${seconds.toFixed(1)} s, exit code ${code}`);
      assert.ok(events < RESOURCES, `batched: ${events} events for ${RESOURCES} resources`);
      for (const [name, done] of monitors) {
        assert.equal(await done, 0, `cloud-ws monitor (${name}) exit code`);
      }
      await dashboard.closePage(page);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

