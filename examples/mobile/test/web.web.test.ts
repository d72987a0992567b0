/**
 * The app's web export (react-native-web, `npm run export:web` → build/web)
 * in Debian's Chromium at a phone's size, with touch, against a real
 * `cloud-ws local`: sign in, the list, a deployment, and a background /
 * foreground cycle (the page hidden, then shown: react-native-web's AppState
 * follows the page's visibility). Screenshots go to artifacts/ and, with
 * CLOUD_WS_UPDATE_SCREENSHOTS=1, to docs/screenshots/ (as the dashboard's do).
 */

import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize } from "node:path";

import { type Browser, chromium, type Page } from "playwright-core";

import { deploymentId, failingDeployment, LocalStack, REPO_ROOT, type TestEvent } from "./support/stack";

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const EXPORT = join(__dirname, "..", "build", "web");
const ARTIFACTS = join(__dirname, "..", "artifacts");
const DOC_SCREENSHOTS = join(REPO_ROOT, "docs", "screenshots");
/** An iPhone 12–15's screen in CSS pixels, and its device pixel ratio (the dashboard's phone test uses the same). */
const PHONE = { width: 390, height: 844, scale: 2 };

// Without Chromium (a machine without Debian's chromium) the test is skipped, unless CI requires it.
const missing = existsSync(CHROMIUM) ? null : `${CHROMIUM} not found: apt-get install chromium, or set CHROMIUM_PATH`;
if (missing !== null && process.env["CLOUD_WS_REQUIRE_BROWSER"] === "1") {
  throw new Error(missing);
}
const browserTest = missing === null ? test : test.skip;

let stack: LocalStack;
let server: Server;
let site: string;
let browser: Browser;

beforeAll(async () => {
  if (missing !== null) {
    return;
  }
  if (!existsSync(join(EXPORT, "index.html"))) {
    throw new Error(`${EXPORT} has no index.html: run npm run export:web first (npm test does)`);
  }
  [stack, { server, site }, browser] = await Promise.all([LocalStack.start(), serve(EXPORT), launch()]);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((done) => (server ? server.close(done) : done(undefined)));
  await stack?.stop();
});

browserTest("at 390×844 with touch: signs in, lists, shows a deployment, and resumes from the snapshot after the page was hidden", async () => {
  const failed = deploymentId("web");
  const live = deploymentId("web");
  await stack.put(failed, failingDeployment(30));
  await stack.put(live, [
    { type: "deployment.status", data: { status: "deploying", current_layer: 1, total_layers: 2 } },
    { type: "stack.started", data: { stack_name: "network-with-a-rather-long-name-0123456789abcdef", layer: 1, environment: "production" } },
  ]);
  await stack.snapshot(failed);
  await stack.snapshot(live);

  const context = await browser.newContext({
    viewport: { width: PHONE.width, height: PHONE.height },
    deviceScaleFactor: PHONE.scale,
    hasTouch: true,
    isMobile: true,
  });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(error.message));
  await page.goto(site);

  // Sign in as the local dev user (Cognito's InitiateAuth from the browser), the outputs pasted.
  await page.getByTestId("connect").waitFor({ timeout: 30_000 });
  await expectFitsTheScreen(page);
  await screenshot(page, "mobile-sign-in.png");
  await page.getByTestId("stack-input").fill(stack.outputsText);
  await page.getByTestId("connect").tap();

  // The list: both deployments, newest first.
  await page.getByTestId(`deployment-${failed}`).waitFor({ timeout: 30_000 });
  await page.getByTestId(`deployment-${live}`).waitFor({ timeout: 30_000 });
  await page.getByText("Live", { exact: true }).waitFor();
  await expectFitsTheScreen(page);
  await screenshot(page, "mobile-list.png");

  // A failed deployment: status, layers, stacks, the failure banner, the latest log lines.
  await page.getByTestId(`deployment-${failed}`).tap();
  await page.getByTestId("failure-banner").waitFor({ timeout: 30_000 });
  expect(await page.getByTestId("status").textContent()).toBe("failed");
  expect(await page.getByTestId("layers").textContent()).toBe("Layer 2 of 3");
  expect(await page.getByTestId("log-count").textContent()).toBe("31 lines · 3 warning · 1 error");
  await expectFitsTheScreen(page);
  await screenshot(page, "mobile-deployment.png");

  // A live one, hidden and shown again: paused while hidden, then the snapshot with everything it missed.
  await page.getByTestId("back").tap();
  await page.getByTestId(`deployment-${live}`).tap();
  await page.getByTestId("seq").filter({ hasText: "#2" }).waitFor({ timeout: 30_000 });
  await setVisibility(page, "hidden");
  await page.getByText("Paused", { exact: true }).waitFor();
  const meanwhile: TestEvent[] = [
    { type: "stack.deployed", data: { stack_name: "network-with-a-rather-long-name-0123456789abcdef", layer: 1, resource_count: 15 } },
    { type: "deployment.status", data: { status: "deploying", current_layer: 2, total_layers: 2 } },
    { type: "stack.started", data: { stack_name: "api", layer: 2, environment: "production" } },
    ...Array.from({ length: 40 }, (_, i) => ({ type: "log.created", data: { level: "info", message: `api: resource ${i + 1} created`, stack_name: "api" } })),
  ];
  await stack.put(live, meanwhile);
  const snapshot = await stack.snapshot(live);
  expect(await page.getByTestId("seq").textContent()).toBe("#2");
  await setVisibility(page, "visible");
  await page.getByTestId("seq").filter({ hasText: `#${snapshot.seq}` }).waitFor({ timeout: 30_000 });
  expect(await page.getByTestId("layers").textContent()).toBe("Layer 2 of 2");
  expect(await page.getByTestId("log-count").textContent()).toBe("40 lines");
  expect(await page.getByTestId("stack-status-api").textContent()).toBe("deploying");
  await page.getByText("Live", { exact: true }).waitFor();
  await expectFitsTheScreen(page);
  await screenshot(page, "mobile-resumed.png");

  expect(problems).toEqual([]);
  await context.close();
});

/** Nothing is wider than the screen: no sideways scrolling. */
async function expectFitsTheScreen(page: Page): Promise<void> {
  const width = await page.evaluate(() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth));
  expect(width).toBeLessThanOrEqual(PHONE.width);
}

/** A full-page screenshot, checked to be a PNG of the phone's width in device pixels. */
async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path, fullPage: true });
  const bytes = readFileSync(path);
  expect(bytes.subarray(1, 4).toString("latin1")).toBe("PNG");
  expect(bytes.readUInt32BE(16)).toBe(PHONE.width * PHONE.scale);
  expect(bytes.readUInt32BE(20)).toBeGreaterThanOrEqual(PHONE.height * PHONE.scale);
  if (process.env["CLOUD_WS_UPDATE_SCREENSHOTS"] === "1") {
    mkdirSync(DOC_SCREENSHOTS, { recursive: true });
    copyFileSync(path, join(DOC_SCREENSHOTS, name));
  }
}

/** What a phone's browser does when the user switches apps: the page becomes hidden (or visible again). */
async function setVisibility(page: Page, state: "hidden" | "visible"): Promise<void> {
  await page.evaluate((value) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => value });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => value === "hidden" });
    document.dispatchEvent(new Event("visibilitychange"));
  }, state);
}

function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css",
  ".json": "application/json",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".ttf": "font/ttf",
};

/** The export as a static site on 127.0.0.1 (a single-page app: unknown paths get index.html). */
async function serve(root: string): Promise<{ server: Server; site: string }> {
  const server = createServer((request, response) => {
    const path = normalize(decodeURIComponent((request.url ?? "/").split("?")[0] ?? "/")).replace(/^(\.\.[/\\])+/, "");
    let file = join(root, path);
    if (!file.startsWith(root) || !existsSync(file) || path.endsWith("/")) {
      file = join(root, "index.html");
    }
    response.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
    response.end(readFileSync(file));
  });
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
  return { server, site: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` };
}
