/**
 * Where the dashboard connects, and with which token.
 *
 * In order: `url` / `token` / `deployment` from the page's hash (`#url=wss://…&token=…&deployment=…`;
 * the hash never reaches a server's logs) — `url` and `deployment` may also come from the query
 * string, a token never does (query strings land in server and proxy logs, so a `?token=` is
 * dropped from the address bar unread); else, when served by `cloud-ws local`, its helper
 * endpoints (`/_cloud-ws/outputs` for the URL, `/_cloud-ws/token` for a fresh dev token before every
 * connection attempt); else what the user entered last time (the URL in localStorage, the token
 * only in sessionStorage).
 *
 * A stored token is bound to the origin (scheme, host and port) of the WebSocket URL it was given
 * for, and is only ever sent there. A link whose `url=` names another origin does not get it: the
 * page asks for a token for that stack instead, so a crafted link cannot make the dashboard hand
 * the user's token to a server of the link author's choosing.
 *
 * Or the user signs in under Connection… (username and password against the stack's Cognito user
 * pool, auth.ts): the session's tokens stay in memory, bound to the origin of the WebSocket URL it
 * signed in for, and are refreshed ahead of their expiry; nothing of it is stored.
 */

import type { CognitoSession } from "./auth.js";

export interface Settings {
  /** The stack's websocket_url. */
  url: string;
  /** A fixed token (pasted or from the page URL); null when a local token endpoint provides one. */
  token: string | null;
  /** The local stack's token endpoint, when there is one. */
  tokenEndpoint: string | null;
  /** A Cognito sign-in (in memory only), whose token provider refreshes the ID token; null otherwise. */
  session: CognitoSession | null;
  /** Where the settings came from, for the settings panel. */
  source: "page-url" | "local-stack" | "saved" | "entered" | "signed-in";
}

/** What the page should do: connect, or open the settings panel (URL prefilled, token empty) and say why. */
export type Resolution =
  | { kind: "connect"; settings: Settings }
  | { kind: "ask"; url: string | null; reason: string };

export interface PageParams {
  url: string | null;
  /** A token from the hash; never from the query string. */
  token: string | null;
  deployment: string | null;
  /** The query string carried a `token`, which was ignored. */
  queryToken: boolean;
}

const URL_KEY = "cloud-ws.dashboard.url";
const TOKEN_KEY = "cloud-ws.dashboard.token";
/** The origin of the WebSocket URL the stored token was given for: the only place it is sent. */
const TOKEN_ORIGIN_KEY = "cloud-ws.dashboard.token-origin";
const RECENT_KEY = "cloud-ws.dashboard.recent";

export const PASTE_HINT = "Paste a stack's websocket_url and a Cognito token (`cloud-ws token` prints one), or sign in below.";
export const NOT_CONFIGURED = "Not connected to a stack yet: paste its websocket_url and a token, or sign in.";
export const QUERY_TOKEN_IGNORED =
  "The token in the address's query string was ignored (query strings reach server logs): paste it under Connection…, or put it in the link's #hash.";

/** Parameters from the hash (preferred) and the query string; a token from the hash only. */
export function readPageParams(location: Pick<Location, "search" | "hash">): PageParams {
  const query = new URLSearchParams(location.search);
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  const pick = (name: string): string | null => hash.get(name) || query.get(name) || null;
  return {
    url: pick("url"),
    token: hash.get("token") || null,
    deployment: pick("deployment") ?? pick("d"),
    queryToken: query.has("token"),
  };
}

/**
 * `scheme://host[:port]` of a ws:// or wss:// URL (lower-cased, default ports dropped, as the URL
 * parser does); null for anything else, which the dashboard never connects to.
 */
export function socketOrigin(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    return null;
  }
  return `${parsed.protocol}//${parsed.host}`;
}

/** Removes the token from the address bar (it stays in this tab's sessionStorage). */
export function forgetTokenInAddress(location: Location, history: History): void {
  const url = new URL(location.href);
  const hash = new URLSearchParams(url.hash.replace(/^#/, ""));
  if (!url.searchParams.has("token") && !hash.has("token")) {
    return;
  }
  url.searchParams.delete("token");
  hash.delete("token");
  url.hash = hash.toString();
  history.replaceState(null, "", url.toString());
}

/** Shows the watched deployment in the address bar, so a reload or a shared link comes back to it. */
export function rememberDeploymentInAddress(location: Location, history: History, deploymentId: string): void {
  const url = new URL(location.href);
  url.searchParams.set("deployment", deploymentId);
  history.replaceState(null, "", url.toString());
}

/** The stored token, if it was given for `url`'s origin; null otherwise (including a token stored
 * without an origin by an older page: it is bound to nothing, so it is sent nowhere). */
export function storedTokenFor(url: string): string | null {
  const origin = socketOrigin(url);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (origin === null || !token || sessionStorage.getItem(TOKEN_ORIGIN_KEY) !== origin) {
    return null;
  }
  return token;
}

/** Keeps `token` in this tab, bound to `url`'s origin; an empty token forgets the stored one. */
function storeToken(url: string, token: string | null): void {
  const origin = socketOrigin(url);
  if (!token || origin === null) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(TOKEN_ORIGIN_KEY);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(TOKEN_ORIGIN_KEY, origin);
}

/** Resolves the settings, or why the user has to enter them. */
export async function resolveSettings(params: PageParams, base: string): Promise<Resolution> {
  if (params.url !== null) {
    return fromLink(params.url, params.token, base);
  }
  const local = await localStack(base);
  if (local !== null) {
    return { kind: "connect", settings: { url: local.url, token: params.token, tokenEndpoint: local.tokenEndpoint, session: null, source: "local-stack" } };
  }
  const saved = localStorage.getItem(URL_KEY);
  if (saved !== null && socketOrigin(saved) !== null) {
    if (params.token !== null) {
      storeToken(saved, params.token);
    }
    const token = storedTokenFor(saved);
    if (token === null) {
      return { kind: "ask", url: saved, reason: `Paste a token for ${saved} (a token is kept only in the tab it was entered in).` };
    }
    return { kind: "connect", settings: { url: saved, token, tokenEndpoint: null, session: null, source: "saved" } };
  }
  return { kind: "ask", url: null, reason: NOT_CONFIGURED };
}

/**
 * A link's `url=`: used with the token the link carries in its hash, or with the stored token only
 * when that token was given for the same origin. Anything else is a question to the user, and
 * nothing is stored until they answer (so a reload does not connect to the link's URL either).
 */
async function fromLink(url: string, linkToken: string | null, base: string): Promise<Resolution> {
  const origin = socketOrigin(url);
  if (origin === null) {
    return { kind: "ask", url: null, reason: "The link's url is not a ws:// or wss:// URL: it was ignored. Paste the stack's websocket_url and a token." };
  }
  if (linkToken !== null) {
    storeToken(url, linkToken);
    localStorage.setItem(URL_KEY, url);
    return { kind: "connect", settings: { url, token: linkToken, tokenEndpoint: null, session: null, source: "page-url" } };
  }
  const stored = storedTokenFor(url);
  if (stored !== null) {
    localStorage.setItem(URL_KEY, url);
    return { kind: "connect", settings: { url, token: stored, tokenEndpoint: null, session: null, source: "page-url" } };
  }
  const local = await localStack(base);
  if (local !== null && socketOrigin(local.url) === origin) {
    // The page's own local stack: its token endpoint mints tokens for exactly this origin.
    return { kind: "connect", settings: { url, token: null, tokenEndpoint: local.tokenEndpoint, session: null, source: "local-stack" } };
  }
  const boundTo = sessionStorage.getItem(TOKEN_KEY) ? sessionStorage.getItem(TOKEN_ORIGIN_KEY) : null;
  const reason =
    boundTo !== null
      ? `This link points the dashboard at ${origin}, not at ${boundTo} where your token was entered: your token was not sent. To watch that stack, paste a token for it; otherwise ignore the link.`
      : `This link points the dashboard at ${origin}. Nothing was sent: paste a token for that stack to connect, or ignore the link.`;
  return { kind: "ask", url, reason };
}

/** Settings typed into the settings panel. */
export function enteredSettings(url: string, token: string): Settings {
  localStorage.setItem(URL_KEY, url);
  // The user typed both: the token is bound to this URL's origin from now on.
  storeToken(url, token || null);
  return { url, token: token || null, tokenEndpoint: null, session: null, source: "entered" };
}

/**
 * After a sign-in: the URL is remembered (a reload offers it again), the session is not (it is
 * memory only: a reload asks to sign in again), and a token pasted earlier is forgotten.
 */
export function signedInSettings(url: string, session: CognitoSession): Settings {
  if (socketOrigin(url) !== session.origin) {
    throw new Error(`this sign-in is for ${session.origin}, not ${url}`);
  }
  localStorage.setItem(URL_KEY, url);
  storeToken(url, null);
  return { url, token: null, tokenEndpoint: null, session, source: "signed-in" };
}

/**
 * A token: the signed-in session's current ID token (refreshed ahead of its expiry, and only for
 * the origin it signed in for), else the fixed one, else a fresh one from the local stack's endpoint.
 */
export async function fetchToken(settings: Settings): Promise<string | null> {
  if (settings.session !== null) {
    if (socketOrigin(settings.url) !== settings.session.origin) {
      throw new Error(`the sign-in is for ${settings.session.origin}, not ${settings.url}: its token was not sent`);
    }
    return settings.session.token();
  }
  if (settings.token !== null || settings.tokenEndpoint === null) {
    return settings.token;
  }
  const reply = await fetch(settings.tokenEndpoint, { cache: "no-store" });
  if (!reply.ok) {
    throw new Error(`the local token endpoint answered ${reply.status}`);
  }
  const body: unknown = await reply.json();
  const token = typeof body === "object" && body !== null ? Reflect.get(body, "token") : undefined;
  if (typeof token !== "string") {
    throw new Error("the local token endpoint sent no token");
  }
  return token;
}

export function recentDeployments(): string[] {
  try {
    const value: unknown = JSON.parse(localStorage.getItem(RECENT_KEY) ?? "[]");
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
  } catch {
    return [];
  }
}

export function addRecentDeployment(deploymentId: string): string[] {
  const recent = [deploymentId, ...recentDeployments().filter((d) => d !== deploymentId)].slice(0, 8);
  localStorage.setItem(RECENT_KEY, JSON.stringify(recent));
  return recent;
}

/** What sign-in needs from a stack's outputs (every field a string, empty when absent). */
export interface OutputFields {
  websocketUrl: string;
  region: string;
  clientId: string;
  /** `aws_endpoint_url` (the local stack's embedded AWS, Cognito included); empty for a cloud stack. */
  endpoint: string;
}

/** The fields of a stack's outputs object (`pulumi stack output --json`, `cloud-ws local --outputs`); null when it has no websocket_url. */
export function outputFields(outputs: unknown): OutputFields | null {
  if (typeof outputs !== "object" || outputs === null) {
    return null;
  }
  const text = (name: string): string => {
    const value: unknown = Reflect.get(outputs, name);
    return typeof value === "string" ? value : "";
  };
  const websocketUrl = text("websocket_url");
  if (websocketUrl === "") {
    return null;
  }
  return { websocketUrl, region: text("region"), clientId: text("user_pool_client_id"), endpoint: text("aws_endpoint_url") };
}

/** The outputs of the `cloud-ws local` that serves this page; null on any other host. */
export async function localOutputs(base: string): Promise<OutputFields | null> {
  try {
    const reply = await fetch(new URL("../_cloud-ws/outputs", base), { cache: "no-store" });
    if (!reply.ok) {
      return null;
    }
    return outputFields(await reply.json());
  } catch {
    return null; // static hosting: no helper endpoints
  }
}

async function localStack(base: string): Promise<{ url: string; tokenEndpoint: string } | null> {
  const outputs = await localOutputs(base);
  if (outputs === null) {
    return null;
  }
  return { url: outputs.websocketUrl, tokenEndpoint: new URL("../_cloud-ws/token", base).toString() };
}
