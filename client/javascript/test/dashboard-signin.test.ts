/**
 * The dashboard's Cognito sign-in (Connection… → username and password, dashboard/src/auth.ts), in a
 * real (headless Debian) Chromium against a real `cloud-ws local --token-lifetime 15`, whose
 * embedded Cognito mints 15-second ID tokens:
 *
 * - a wrong password shows Cognito's refusal, connects nothing and stores nothing;
 * - the dev user's password signs in through the form (`USER_PASSWORD_AUTH` on the stack's
 *   `aws_endpoint_url`, not the local dev-token endpoint, which the page is not asked again), and
 *   the page, whose token provider refreshes the ID token with `REFRESH_TOKEN_AUTH` within 90 s of
 *   its `exp`, shows every event put before, across and after at least two expiries, with no gap;
 *   the tokens are in no storage, nor is the password;
 * - a pasted token that is about to expire, or has expired, shows a notice saying so.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Page } from "playwright-core";

import { tokenExpiry } from "../src/index.js";
import { assertReplacedAheadOfExp, CLOSE_REFRESH, dashboardInChromium, LEEWAY, LIFETIME, recordSockets, type SocketRecord, socketRecords, SteadyDeployment } from "./support/dashboard.js";
import { deploymentId, waitFor } from "./support/stack.js";

/** The local stack's dev user (its banner prints them). */
const USERNAME = "dev";
const PASSWORD = "Local-Dev-Passw0rd!";
const WRONG_PASSWORD = "Not-The-Passw0rd!";

const dashboard = dashboardInChromium({
  stackOptions: ["--token-lifetime", String(LIFETIME)],
  // A refused sign-in is a 400 the browser logs as a failed resource; that is the point of it.
  expectedErrors: (message) => message.text().includes("400"),
});
const { missing } = dashboard;

/** Everything the page keeps in localStorage and sessionStorage. */
function storage(page: Page): Promise<Record<string, string>> {
  return page.evaluate(() => {
    const all: Record<string, string> = {};
    for (const [name, store] of [
      ["local", localStorage],
      ["session", sessionStorage],
    ] as const) {
      for (let index = 0; index < store.length; index += 1) {
        const key = store.key(index) ?? "";
        all[`${name}:${key}`] = store.getItem(key) ?? "";
      }
    }
    return all;
  });
}

/** Watches the page's requests: Cognito's InitiateAuth calls (flow, status, tokens answered) and the local dev-token endpoint. */
function watchAuth(page: Page): { flows: { at: number; flow: string; status: number }[]; idTokens: Set<string>; secrets: Set<string>; devTokenRequests: number[] } {
  const seen = { flows: [] as { at: number; flow: string; status: number }[], idTokens: new Set<string>(), secrets: new Set<string>(), devTokenRequests: [] as number[] };
  page.on("request", (request) => {
    if (request.url().includes("/_cloud-ws/token")) {
      seen.devTokenRequests.push(Date.now());
    }
  });
  page.on("response", async (response) => {
    const request = response.request();
    if (request.method() !== "POST" || request.headers()["x-amz-target"] !== "AWSCognitoIdentityProviderService.InitiateAuth") {
      return;
    }
    const flow = String((request.postDataJSON() as { AuthFlow?: string }).AuthFlow);
    seen.flows.push({ at: Date.now(), flow, status: response.status() });
    const body = (await response.json().catch(() => ({}))) as { AuthenticationResult?: { IdToken?: string; RefreshToken?: string; AccessToken?: string } };
    const result = body.AuthenticationResult;
    if (result?.IdToken) {
      seen.idTokens.add(result.IdToken);
      seen.secrets.add(result.IdToken);
    }
    for (const secret of [result?.RefreshToken, result?.AccessToken]) {
      if (secret) {
        seen.secrets.add(secret);
      }
    }
  });
  return seen;
}

describe("the dashboard's Cognito sign-in, in Chromium against cloud-ws local --token-lifetime 15", { skip: missing ?? false }, () => {
  test("a wrong password is refused and stores nothing; the dev user signs in through the form and the page loses no event across two token expiries", async (t) => {
    const { stack } = dashboard;
    const deployment = deploymentId("DASHSIGN");
    const events = new SteadyDeployment(stack, deployment);

    // Given a deployment under way, and the dashboard open on it (served by the local stack: dev tokens at first),
    await events.start();
    const page = await dashboard.newPage({ initScript: recordSockets });
    const auth = watchAuth(page);
    await page.goto(`${stack.http}/dashboard/?deployment=${deployment}`);
    await page.locator('#stats[data-last-seq="6"]').waitFor({ timeout: 20_000 });
    const records = (): Promise<SocketRecord[]> => socketRecords(page);

    // the Connection… panel offers to sign in, filled from the local stack's outputs.
    await page.locator("#settings-toggle").click();
    await page.locator("#signin-form").waitFor({ state: "visible" });
    await waitFor(async () => (await page.locator("#signin-client-id").inputValue()) === stack.outputs.user_pool_client_id, {
      timeout: 10_000,
      what: "the sign-in fields filled from the local outputs",
    });
    assert.equal(await page.locator("#signin-region").inputValue(), stack.outputs.region);
    assert.equal(await page.locator("#signin-endpoint").inputValue(), stack.outputs.aws_endpoint_url);
    assert.equal(await page.locator("#settings-url").inputValue(), stack.outputs.websocket_url);

    // When a wrong password is entered, Cognito's refusal shows, and nothing is stored or connected.
    const storedBefore = await storage(page);
    const socketsBefore = (await records()).length;
    await page.locator("#signin-username").fill(USERNAME);
    await page.locator("#signin-password").fill(WRONG_PASSWORD);
    await page.locator("#signin-submit").click();
    await page.locator("#signin-error").waitFor({ state: "visible", timeout: 10_000 });
    assert.match((await page.locator("#signin-error").textContent()) ?? "", /^Sign-in refused: .+/);
    assert.deepEqual(
      auth.flows.map(({ flow, status }) => `${flow} ${status}`),
      ["USER_PASSWORD_AUTH 400"],
    );
    assert.equal(await page.locator("#signin-password").inputValue(), "", "the password is not kept in the form");
    assert.ok(await page.locator("#settings").isVisible(), "the panel stays open to try again");
    assert.deepEqual(await storage(page), storedBefore, "a refused sign-in stores nothing");
    assert.ok((await page.locator("#settings-source").textContent())?.includes("local stack"), "still on the dev token");
    const afterRefusal = await records();
    assert.ok(afterRefusal.slice(socketsBefore).every((record) => record.closeCall === null || record.closeCall.code === CLOSE_REFRESH));

    // When the dev user's password is entered, the page signs in and connects with the session's tokens.
    await page.locator("#signin-password").fill(PASSWORD);
    const signInAt = Date.now();
    await page.locator("#signin-submit").click();
    await page.locator("#settings").waitFor({ state: "hidden", timeout: 10_000 });
    assert.ok(await page.locator("#signin-error").isHidden());
    assert.match((await page.locator("#settings-source").textContent()) ?? "", /^Signed in as dev: /);
    await page.locator('#stats[data-last-seq="6"]').waitFor({ timeout: 20_000 });
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 20_000 });
    const signedIn = (await records()).filter((record) => record.createdAt >= signInAt);
    const firstExp = tokenExpiry(signedIn[0]?.token);
    assert.ok(firstExp !== undefined, "the first signed-in connection carried a JWT with an exp");

    // and events are put steadily, across the expiry of its first token and of the next (each lives 15 s),
    // and then the rest of the deployment, to its end,
    const total = await events.runUntil(firstExp + (LIFETIME + LEEWAY) * 1000);

    // Then the page shows every event (signed in, it started again from the snapshot): the last seq,
    // every log line once in order, the final figures, no notice (no gap), connected live after
    // several resumes; no token warning either;
    await events.assertShownOn(page);
    assert.ok(await page.locator("#token-notice").isHidden(), `a token notice: ${await page.locator("#token-notice").textContent()}`);

    // every connection since the sign-in carried an ID token Cognito answered the page with (one
    // USER_PASSWORD_AUTH, then REFRESH_TOKEN_AUTH), never a dev token from the local endpoint,
    // each replaced by the page ahead of its exp and posted nothing after it; the first subscribed
    // without since (a fresh picture), the others resumed with it.
    const sinceSignIn = (await records()).filter((record) => record.createdAt >= signInAt);
    assertReplacedAheadOfExp(sinceSignIn);
    assert.deepEqual(auth.devTokenRequests.filter((at) => at >= signInAt), [], "the dev-token endpoint was not asked after the sign-in");
    const flows = auth.flows.filter(({ at }) => at >= signInAt);
    assert.equal(flows[0]?.flow, "USER_PASSWORD_AUTH");
    assert.ok(flows.every(({ status }) => status === 200), JSON.stringify(flows));
    const refreshes = flows.filter(({ flow }) => flow === "REFRESH_TOKEN_AUTH").length;
    assert.ok(refreshes >= 2, `${refreshes} refreshes`);
    sinceSignIn.forEach((record, index) => {
      assert.ok(record.token !== null && auth.idTokens.has(record.token), `socket ${index} carried an ID token from Cognito`);
      if (index === 0) {
        assert.deepEqual(record.subscribes, [null], "signed in, the page subscribes afresh (from the snapshot)");
      } else {
        assert.ok(record.subscribes.length > 0 && record.subscribes.every((since) => since !== null && since >= 6), `socket ${index} resumed with since: ${JSON.stringify(record.subscribes)}`);
      }
    });

    // and neither the tokens nor the password are in any storage.
    const stored = Object.values(await storage(page));
    for (const value of stored) {
      assert.ok(!value.includes(PASSWORD), "the password is stored");
      for (const secret of auth.secrets) {
        assert.ok(!value.includes(secret), "a Cognito token is stored");
      }
    }
    assert.equal(await page.locator("#signin-password").inputValue(), "");
    t.diagnostic(`${total} events; ${sinceSignIn.length} connections since the sign-in, ${refreshes} REFRESH_TOKEN_AUTH`);
    await dashboard.closePage(page);
  });

  test("a pasted token says it is about to expire, then that it has expired; signing in clears the notice", async () => {
    const { stack } = dashboard;
    const page = await dashboard.newPage({ initScript: recordSockets });
    await page.goto(`${stack.http}/dashboard/`);
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 20_000 });
    assert.ok(await page.locator("#token-notice").isHidden(), "the local stack's dev tokens need no notice");

    // When a token with 15 s to live is pasted under Connection…,
    const token = await stack.token();
    const exp = tokenExpiry(token);
    assert.ok(exp !== undefined);
    await page.locator("#settings-toggle").click();
    await page.locator("#settings-token").fill(token);
    await page.locator("#settings-form button[type=submit]").click();

    // then the page says it expires within a minute, and once past its exp that it has expired.
    await page.locator('#token-notice[data-expires-in="1"]').waitFor({ timeout: 5_000 });
    assert.equal(await page.locator("#token-notice").textContent(), "Your token expires in 1 min: sign in or paste a new one under Connection…");
    await page.locator('#token-notice[data-expires-in="expired"]').waitFor({ timeout: exp - Date.now() + 5_000 });
    assert.equal(await page.locator("#token-notice").textContent(), "Your token has expired: sign in or paste a new one under Connection…");

    // And signing in instead removes the notice and connects again.
    await page.locator("#settings-toggle").click();
    await page.locator("#signin-username").fill(USERNAME);
    await page.locator("#signin-password").fill(PASSWORD);
    await page.locator("#signin-submit").click();
    await page.locator("#settings").waitFor({ state: "hidden", timeout: 10_000 });
    await page.locator("#token-notice").waitFor({ state: "hidden", timeout: 5_000 });
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 20_000 });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, "the pasted token is forgotten once signed in");
    await dashboard.closePage(page);
  });
});
