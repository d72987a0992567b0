/**
 * The dashboard's URL and token resolution (dashboard/src/config.ts), run in Node with in-memory
 * storage: a token never comes from the query string, and a stored token is only sent to the
 * origin it was given for. Every refusal also checks that nothing stored changed.
 */

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";

import { CognitoSession, REFRESH_MARGIN_MS, SignInError, signInTarget } from "../dashboard/src/auth.js";
import {
  enteredSettings,
  fetchToken,
  signedInSettings,
  NOT_CONFIGURED,
  type PageParams,
  readPageParams,
  resolveSettings,
  type Resolution,
  socketOrigin,
  storedTokenFor,
} from "../dashboard/src/config.js";

/** The Web Storage API over a Map. */
class MemoryStorage implements Storage {
  readonly #items = new Map<string, string>();
  get length(): number {
    return this.#items.size;
  }
  clear(): void {
    this.#items.clear();
  }
  getItem(key: string): string | null {
    return this.#items.get(key) ?? null;
  }
  key(index: number): string | null {
    return [...this.#items.keys()][index] ?? null;
  }
  removeItem(key: string): void {
    this.#items.delete(key);
  }
  setItem(key: string, value: string): void {
    this.#items.set(key, String(value));
  }
  dump(): Record<string, string> {
    return Object.fromEntries(this.#items);
  }
}

const STACK = "wss://abc123.execute-api.eu-west-1.amazonaws.com/prod";
const EVIL = "wss://evil.example/collect";
const BASE = "https://dashboards.example.com/index.html";
const LOCAL_BASE = "http://127.0.0.1:8080/dashboard/";
const LOCAL_SOCKET = "ws://127.0.0.1:8080/local";

let local: MemoryStorage;
let session: MemoryStorage;
let fetched: string[];
const realFetch = globalThis.fetch;

/** Installs fresh storage, and a fetch that is a static host (404) unless `outputs` says otherwise. */
function environment(outputs: Record<string, unknown> | null = null): void {
  local = new MemoryStorage();
  session = new MemoryStorage();
  fetched = [];
  Object.defineProperty(globalThis, "localStorage", { value: local, configurable: true, writable: true });
  Object.defineProperty(globalThis, "sessionStorage", { value: session, configurable: true, writable: true });
  globalThis.fetch = async (input: string | URL | Request): Promise<Response> => {
    const url = String(input instanceof Request ? input.url : input);
    fetched.push(url);
    if (outputs !== null && url.endsWith("/_cloud-ws/outputs")) {
      return new Response(JSON.stringify(outputs), { status: 200 });
    }
    return new Response("not found", { status: 404 });
  };
}

function params(values: Partial<PageParams>): PageParams {
  return { url: null, token: null, deployment: null, queryToken: false, ...values };
}

function stored(): { local: Record<string, string>; session: Record<string, string> } {
  return { local: local.dump(), session: session.dump() };
}

function asked(resolution: Resolution): { url: string | null; reason: string } {
  assert.equal(resolution.kind, "ask", `expected a question, got ${JSON.stringify(resolution)}`);
  return resolution as { kind: "ask"; url: string | null; reason: string };
}

function connected(resolution: Resolution): { url: string; token: string | null; tokenEndpoint: string | null } {
  assert.equal(resolution.kind, "connect", `expected a connection, got ${JSON.stringify(resolution)}`);
  return (resolution as { kind: "connect"; settings: { url: string; token: string | null; tokenEndpoint: string | null } }).settings;
}

beforeEach(() => environment());
afterEach(() => {
  globalThis.fetch = realFetch;
});

describe("page parameters", () => {
  test("a token is read from the hash, never from the query string", () => {
    const fromQuery = readPageParams({ search: `?url=${encodeURIComponent(STACK)}&token=stolen&deployment=D1`, hash: "" });
    assert.deepEqual(fromQuery, { url: STACK, token: null, deployment: "D1", queryToken: true });

    const fromHash = readPageParams({ search: "?token=ignored", hash: `#url=${encodeURIComponent(STACK)}&token=T1` });
    assert.equal(fromHash.token, "T1");
    assert.equal(fromHash.queryToken, true);
  });

  test("socket origins: scheme, host and port; anything but ws/wss is none", () => {
    assert.equal(socketOrigin(STACK), "wss://abc123.execute-api.eu-west-1.amazonaws.com");
    assert.equal(socketOrigin("WSS://ABC123.execute-api.eu-west-1.amazonaws.com:443/other"), "wss://abc123.execute-api.eu-west-1.amazonaws.com");
    assert.equal(socketOrigin("wss://abc123.execute-api.eu-west-1.amazonaws.com:8443/prod"), "wss://abc123.execute-api.eu-west-1.amazonaws.com:8443");
    assert.equal(socketOrigin("ws://127.0.0.1:8080/local"), "ws://127.0.0.1:8080");
    assert.equal(socketOrigin("https://abc123.execute-api.eu-west-1.amazonaws.com/prod"), null);
    assert.equal(socketOrigin("javascript:alert(1)"), null);
    assert.equal(socketOrigin("not a url"), null);
  });
});

describe("a stored token goes only to the origin it was given for", () => {
  test("a link to another origin does not get the token, and nothing stored changes", async () => {
    enteredSettings(STACK, "T-user");
    const before = stored();

    const question = asked(await resolveSettings(params({ url: EVIL, deployment: "D1" }), BASE));

    assert.equal(question.url, EVIL, "the link's URL is shown for the user to confirm");
    assert.match(question.reason, /evil\.example/);
    assert.match(question.reason, /your token was not sent/);
    assert.deepEqual(stored(), before, "the saved URL and the token are untouched");
    assert.equal(storedTokenFor(EVIL), null);
  });

  for (const [name, url] of [
    ["a look-alike host", "wss://abc123.execute-api.eu-west-1.amazonaws.com.evil.example/prod"],
    ["user-info in front of another host", "wss://abc123.execute-api.eu-west-1.amazonaws.com@evil.example/prod"],
    ["another port", "wss://abc123.execute-api.eu-west-1.amazonaws.com:444/prod"],
    ["plain ws to the same host", "ws://abc123.execute-api.eu-west-1.amazonaws.com/prod"],
  ] as const) {
    test(`${name} is another origin`, async () => {
      enteredSettings(STACK, "T-user");
      const before = stored();

      const question = asked(await resolveSettings(params({ url }), BASE));

      assert.match(question.reason, /not sent/);
      assert.deepEqual(stored(), before);
    });
  }

  test("a link to the same origin (another stage) connects with the stored token", async () => {
    enteredSettings(STACK, "T-user");
    const other = "wss://abc123.execute-api.eu-west-1.amazonaws.com/staging";

    const settings = connected(await resolveSettings(params({ url: other }), BASE));

    assert.equal(settings.url, other);
    assert.equal(settings.token, "T-user");
  });

  test("a link that carries its own token in the hash connects with that token, bound to its origin", async () => {
    enteredSettings(STACK, "T-user");

    const settings = connected(await resolveSettings(params({ url: EVIL, token: "T-link" }), BASE));

    assert.equal(settings.token, "T-link", "the link's own token, never the user's");
    assert.equal(storedTokenFor(EVIL), "T-link");
    assert.equal(storedTokenFor(STACK), null, "the user's token is no longer sent anywhere");
  });

  test("a token stored without an origin (by an older page) is sent nowhere", async () => {
    session.setItem("cloud-ws.dashboard.token", "T-legacy");
    local.setItem("cloud-ws.dashboard.url", STACK);
    const before = stored();

    const fromLink = asked(await resolveSettings(params({ url: STACK }), BASE));
    const fromSaved = asked(await resolveSettings(params({}), BASE));

    assert.equal(fromLink.url, STACK);
    assert.equal(fromSaved.url, STACK);
    assert.deepEqual(stored(), before);
  });

  test("a saved URL that is not where the token was given (left by an older link) gets no token", async () => {
    enteredSettings(STACK, "T-user");
    local.setItem("cloud-ws.dashboard.url", EVIL);
    const before = stored();

    const question = asked(await resolveSettings(params({}), BASE));

    assert.equal(question.url, EVIL);
    assert.deepEqual(stored(), before);
  });

  test("a link that is not a WebSocket URL is ignored", async () => {
    enteredSettings(STACK, "T-user");
    const before = stored();

    const question = asked(await resolveSettings(params({ url: "https://evil.example/collect" }), BASE));

    assert.equal(question.url, null);
    assert.match(question.reason, /not a ws:\/\/ or wss:\/\/ URL/);
    assert.deepEqual(stored(), before);
  });

  test("a reload after entering the settings reconnects with the bound token", async () => {
    enteredSettings(STACK, "T-user");

    const settings = connected(await resolveSettings(params({}), BASE));

    assert.deepEqual([settings.url, settings.token], [STACK, "T-user"]);
  });
});

describe("the query string never supplies a token", () => {
  test("?url=…&token=… asks for a token and stores nothing", async () => {
    const page = readPageParams({ search: `?url=${encodeURIComponent(STACK)}&token=T-query`, hash: "" });

    const question = asked(await resolveSettings(page, BASE));

    assert.equal(question.url, STACK);
    assert.deepEqual(stored(), { local: {}, session: {} });
  });

  test("with nothing configured the page asks for everything", async () => {
    const question = asked(await resolveSettings(params({}), BASE));

    assert.deepEqual(question, { kind: "ask", url: null, reason: NOT_CONFIGURED });
  });
});

describe("served by cloud-ws local", () => {
  test("the local stack's token endpoint serves its own origin", async () => {
    environment({ websocket_url: LOCAL_SOCKET });

    const plain = connected(await resolveSettings(params({}), LOCAL_BASE));
    const linked = connected(await resolveSettings(params({ url: `${LOCAL_SOCKET}?x=1` }), LOCAL_BASE));

    assert.equal(plain.tokenEndpoint, "http://127.0.0.1:8080/_cloud-ws/token");
    assert.equal(linked.tokenEndpoint, "http://127.0.0.1:8080/_cloud-ws/token");
    assert.equal(linked.token, null);
  });

  test("a link to another origin gets no dev token either", async () => {
    environment({ websocket_url: LOCAL_SOCKET });

    const question = asked(await resolveSettings(params({ url: EVIL }), LOCAL_BASE));

    assert.equal(question.url, EVIL);
    assert.ok(!fetched.some((url) => url.endsWith("/_cloud-ws/token")), "no token was even fetched");
    assert.deepEqual(stored(), { local: {}, session: {} });
  });
});

/** An unsigned JWT whose `exp` is `seconds` from now (the page reads `exp`, the server verifies). */
function jwt(seconds: number, name = "id"): string {
  const part = (value: object): string => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "none" })}.${part({ exp: Math.floor(Date.now() / 1000) + seconds, name, jti: Math.random() })}.sig`;
}

/** A Cognito InitiateAuth endpoint that knows one password and answers refreshes with `lifetime`-second ID tokens. */
function cognito(lifetime: number): { calls: { url: string; target: string | null; body: Record<string, unknown> }[] } {
  const seen = { calls: [] as { url: string; target: string | null; body: Record<string, unknown> }[] };
  globalThis.fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const body = JSON.parse(String(init?.body ?? "{}")) as Record<string, unknown>;
    const headers = new Headers(init?.headers);
    seen.calls.push({ url: String(input), target: headers.get("x-amz-target"), body });
    const parameters = body["AuthParameters"] as Record<string, string>;
    if (body["AuthFlow"] === "USER_PASSWORD_AUTH" && parameters["PASSWORD"] !== "right") {
      return new Response(JSON.stringify({ __type: "NotAuthorizedException", message: "Incorrect username or password." }), { status: 400 });
    }
    await new Promise((wake) => setTimeout(wake, 10));
    return new Response(JSON.stringify({ AuthenticationResult: { IdToken: jwt(lifetime, String(body["AuthFlow"])), RefreshToken: "refresh-1" } }), { status: 200 });
  };
  return seen;
}

describe("a Cognito sign-in", () => {
  const target = signInTarget("eu-west-1", "client-1");
  const origin = "wss://abc123.execute-api.eu-west-1.amazonaws.com";

  test("Cognito's regional endpoint unless the outputs name one; no region or client id, no sign-in", () => {
    assert.deepEqual(target, { region: "eu-west-1", clientId: "client-1", endpoint: "https://cognito-idp.eu-west-1.amazonaws.com/" });
    assert.equal(signInTarget("us-east-1", "c", "http://127.0.0.1:8081")?.endpoint, "http://127.0.0.1:8081/");
    assert.equal(signInTarget("", "client-1"), null);
    assert.equal(signInTarget("eu-west-1", " "), null);
    assert.equal(signInTarget("evil.example/x", "client-1"), null);
  });

  test("a wrong password is a SignInError and stores nothing; a right one keeps the tokens in memory only", async () => {
    assert.ok(target !== null);
    const seen = cognito(3600);
    await assert.rejects(CognitoSession.signIn(target, origin, "dev", "wrong"), (error: unknown) => error instanceof SignInError && /Incorrect/.test(error.message));
    assert.deepEqual(stored(), { local: {}, session: {} });
    assert.deepEqual(seen.calls[0], {
      url: "https://cognito-idp.eu-west-1.amazonaws.com/",
      target: "AWSCognitoIdentityProviderService.InitiateAuth",
      body: { AuthFlow: "USER_PASSWORD_AUTH", AuthParameters: { USERNAME: "dev", PASSWORD: "wrong" }, ClientId: "client-1" },
    });

    session.setItem("cloud-ws.dashboard.token", "pasted");
    session.setItem("cloud-ws.dashboard.token-origin", origin);
    const signedIn = await CognitoSession.signIn(target, origin, "dev", "right");
    const settings = signedInSettings(STACK, signedIn);
    assert.deepEqual(stored(), { local: { "cloud-ws.dashboard.url": STACK }, session: {} }, "the URL only; the pasted token is forgotten");
    const token = await fetchToken(settings);
    assert.equal(JSON.parse(Buffer.from(String(token).split(".")[1] ?? "", "base64url").toString())["name"], "USER_PASSWORD_AUTH");
    assert.equal(seen.calls.length, 2, "an hour to live: no refresh");
    assert.ok(!JSON.stringify(stored()).includes(String(token)));
  });

  test("the session's token goes only to the origin it signed in for", async () => {
    assert.ok(target !== null);
    cognito(3600);
    const signedIn = await CognitoSession.signIn(target, origin, "dev", "right");
    assert.throws(() => signedInSettings(EVIL, signedIn), /not wss:\/\/evil\.example/);
    const settings = signedInSettings(STACK, signedIn);
    const seen = cognito(3600);
    await assert.rejects(fetchToken({ ...settings, url: EVIL }), /its token was not sent/);
    await assert.rejects(fetchToken({ ...settings, url: "wss://abc123.execute-api.eu-west-1.amazonaws.com.evil.example/prod" }), /its token was not sent/);
    assert.equal(seen.calls.length, 0, "not even refreshed");
  });

  test("within 90 s of exp the ID token is refreshed with REFRESH_TOKEN_AUTH, once for concurrent callers", async () => {
    assert.ok(target !== null);
    assert.equal(REFRESH_MARGIN_MS, 90_000);
    const seen = cognito(60); // every token lives 60 s: always within the margin
    const signedIn = await CognitoSession.signIn(target, origin, "dev", "right");
    const [first, second] = await Promise.all([signedIn.token(), signedIn.token()]);
    assert.equal(first, second);
    assert.deepEqual(
      seen.calls.map((call) => call.body["AuthFlow"]),
      ["USER_PASSWORD_AUTH", "REFRESH_TOKEN_AUTH"],
    );
    assert.deepEqual(seen.calls[1]?.body, { AuthFlow: "REFRESH_TOKEN_AUTH", AuthParameters: { REFRESH_TOKEN: "refresh-1" }, ClientId: "client-1" });
    const third = await signedIn.token();
    assert.notEqual(third, first, "the next attempt refreshes again");
    assert.equal(seen.calls.length, 3);
  });
});
