/**
 * A token's lifetime is the connection's: the client refreshes its token ahead of `exp`
 * (a planned reconnect with a fresh token from the provider) and resumes with `since`,
 * losing nothing. Unit tests of the timing, then a real `cloud-ws local` whose embedded
 * Cognito mints 15-second tokens (`--token-lifetime`, a local-only option).
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { type AnyDeploymentEvent, CloudWebSocketClient, DEFAULT, replacementDelay, tokenExpiry } from "../src/index.js";
import { deploymentId, LocalStack, waitFor } from "./support/stack.js";

/** Seconds the stack's tokens live. */
const LIFETIME = 15;
/** The verifier's leeway on `exp` (server/config.py): requests are refused from `exp` + 5 s on. */
const LEEWAY = 5;

function jwt(claims: Record<string, unknown>): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "RS256", kid: "k" })}.${part(claims)}.c2lnbmF0dXJl`;
}

describe("refresh timing", () => {
  const tuning = { maxConnectionAge: DEFAULT.maxConnectionAge, tokenRefreshMargin: 60_000, minUptime: 5_000 };

  test("reads exp from a JWT without verifying it, and nothing from anything else", () => {
    assert.equal(tokenExpiry(jwt({ exp: 1_800_000_000 })), 1_800_000_000_000);
    assert.equal(tokenExpiry(jwt({ sub: "no exp" })), undefined);
    assert.equal(tokenExpiry(jwt({ exp: "soon" })), undefined);
    assert.equal(tokenExpiry("not-a-jwt"), undefined);
    assert.equal(tokenExpiry("a.%%%.c"), undefined);
    assert.equal(tokenExpiry(undefined), undefined);
  });

  test("replaces a connection a margin before its token expires, or before the 2-hour cap", () => {
    const now = 1_000_000;
    assert.equal(replacementDelay(tuning, undefined, now), DEFAULT.maxConnectionAge);
    assert.equal(replacementDelay(tuning, now + 3_600_000, now), 3_540_000);
    assert.equal(replacementDelay({ ...tuning, maxConnectionAge: 100_000 }, now + 3_600_000, now), 100_000);
    assert.equal(replacementDelay({ ...tuning, maxConnectionAge: 0 }, undefined, now), undefined);
  });

  test("refreshes a short-lived token with a third of its life left, never sooner than minUptime", () => {
    const now = 1_000_000;
    assert.equal(replacementDelay(tuning, now + 30_000, now), 20_000);
    assert.equal(replacementDelay(tuning, now + 6_000, now), 5_000);
    assert.equal(replacementDelay(tuning, now - 10_000, now), 5_000);
  });
});

describe("against cloud-ws local with 15-second tokens", () => {
  let stack: LocalStack;

  before(async () => {
    stack = await LocalStack.start("--token-lifetime", String(LIFETIME));
  });

  after(async () => {
    const code = await stack.stop();
    assert.equal(code, 0, `cloud-ws local exited with ${code}:\n${stack.log}`);
  });

  test("the stack's tokens live the given lifetime", async () => {
    const token = await stack.token();
    const exp = tokenExpiry(token);
    assert.ok(exp !== undefined);
    const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as { iat: number };
    assert.equal(exp, (payload.iat + LIFETIME) * 1000);
  });

  test("a token provider's client loses nothing before, across and after several expiries", async () => {
    const deployment = deploymentId("TOKENS");
    const minted: number[] = [];
    const client = new CloudWebSocketClient({
      url: stack.outputs.websocket_url,
      token: async () => {
        const token = await stack.token();
        minted.push(tokenExpiry(token) ?? 0);
        return token;
      },
      WebSocket,
      minReconnectionDelay: 50,
      maxReconnectionDelay: 500,
      pingInterval: 2_000,
    });
    const events: AnyDeploymentEvent[] = [];
    client.on("event", (event) => {
      if (event.deployment_id === deployment) {
        events.push(event);
      }
    });
    const refreshes: string[] = [];
    client.on("close", (info) => refreshes.push(info.reason));
    try {
      await client.connect();
      await client.subscribe(deployment, { since: 0 });
      // Given events put steadily over more than two token lifetimes
      const until = (minted[0] ?? 0) + (2 * LIFETIME + LEEWAY) * 1000;
      let put = 0;
      while (Date.now() < until) {
        put += 1;
        await stack.putEvents(deployment, [{ type: "log.created", data: { level: "info", message: `line ${put}` } }]);
        await new Promise((wake) => setTimeout(wake, 250));
      }
      // Then every one arrives, in seq order, none twice
      await waitFor(() => events.length >= put, { timeout: 30_000, what: `all ${put} events` });
      await new Promise((wake) => setTimeout(wake, 1_000)); // a late duplicate would show now
      assert.deepEqual(
        events.map((event) => event.seq),
        Array.from({ length: put }, (_, i) => i + 1),
      );
      // The client refreshed ahead of each expiry, with a fresh token each time.
      assert.ok(minted.length >= 3, `tokens used: ${minted.length}`);
      assert.ok(
        refreshes.filter((reason) => reason === "refreshing the token before it expires").length >= 2,
        `closes: ${JSON.stringify(refreshes)}`,
      );
    } finally {
      await client.disconnect();
    }
  });
});
