/**
 * Where the dashboard connects, and with which token.
 *
 * In order: `url` / `token` / `deployment` from the page's hash or query
 * (`#url=wss://…&token=…&deployment=…`; the hash never reaches a server's
 * logs); else, when served by `cloud-ws local`, its helper endpoints
 * (`/_cloud-ws/outputs` for the URL, `/_cloud-ws/token` for a fresh dev token
 * before every connection attempt); else what the user entered last time
 * (the URL in localStorage, the token only in sessionStorage).
 */

export interface Settings {
  /** The stack's websocket_url. */
  url: string;
  /** A fixed token (pasted or from the page URL); null when a local token endpoint provides one. */
  token: string | null;
  /** The local stack's token endpoint, when there is one. */
  tokenEndpoint: string | null;
  /** Where the settings came from, for the settings panel. */
  source: "page-url" | "local-stack" | "saved" | "entered";
}

export interface PageParams {
  url: string | null;
  token: string | null;
  deployment: string | null;
}

const URL_KEY = "cloud-ws.dashboard.url";
const TOKEN_KEY = "cloud-ws.dashboard.token";
const RECENT_KEY = "cloud-ws.dashboard.recent";

/** Parameters from the hash (preferred) and the query string. */
export function readPageParams(location: Location): PageParams {
  const query = new URLSearchParams(location.search);
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  const pick = (name: string): string | null => hash.get(name) || query.get(name) || null;
  return { url: pick("url"), token: pick("token"), deployment: pick("deployment") ?? pick("d") };
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

/** Resolves the settings; null when the user has to enter them. */
export async function resolveSettings(params: PageParams, base: string): Promise<Settings | null> {
  if (params.url !== null) {
    if (params.token !== null) {
      sessionStorage.setItem(TOKEN_KEY, params.token);
    }
    localStorage.setItem(URL_KEY, params.url);
    return { url: params.url, token: params.token ?? sessionStorage.getItem(TOKEN_KEY), tokenEndpoint: null, source: "page-url" };
  }
  const local = await localStack(base);
  if (local !== null) {
    return { url: local.url, token: params.token, tokenEndpoint: local.tokenEndpoint, source: "local-stack" };
  }
  const saved = localStorage.getItem(URL_KEY);
  if (saved !== null) {
    const token = params.token ?? sessionStorage.getItem(TOKEN_KEY);
    if (params.token !== null) {
      sessionStorage.setItem(TOKEN_KEY, params.token);
    }
    return { url: saved, token, tokenEndpoint: null, source: "saved" };
  }
  return null;
}

/** Settings typed into the settings panel. */
export function enteredSettings(url: string, token: string): Settings {
  localStorage.setItem(URL_KEY, url);
  sessionStorage.setItem(TOKEN_KEY, token);
  return { url, token: token || null, tokenEndpoint: null, source: "entered" };
}

/** A token: the fixed one, else a fresh one from the local stack's endpoint. */
export async function fetchToken(settings: Settings): Promise<string | null> {
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

async function localStack(base: string): Promise<{ url: string; tokenEndpoint: string } | null> {
  try {
    const reply = await fetch(new URL("../_cloud-ws/outputs", base), { cache: "no-store" });
    if (!reply.ok) {
      return null;
    }
    const outputs: unknown = await reply.json();
    const url = typeof outputs === "object" && outputs !== null ? Reflect.get(outputs, "websocket_url") : undefined;
    if (typeof url !== "string") {
      return null;
    }
    return { url, tokenEndpoint: new URL("../_cloud-ws/token", base).toString() };
  } catch {
    return null; // static hosting: no helper endpoints
  }
}
