/**
 * Where the app connects and who it is: a stack's outputs (the project's one
 * contract between a stack and its consumers) and a token provider, either
 * from a Cognito sign-in (the client package's, shared with the dashboard:
 * USER_PASSWORD_AUTH, then REFRESH_TOKEN_AUTH ahead of each ID token's
 * expiry) or from a pasted token.
 */

import { CognitoTokens, type Fetch, SignInError, signInTarget } from "./cloudws";

export { SignInError, type Fetch };

/** The outputs keys the app reads (`cloud-ws local` writes them; `pulumi stack output --json` gives them). */
export interface StackOutputs {
  websocket_url: string;
  region?: string;
  user_pool_client_id?: string;
  /** `cloud-ws local` only: its embedded AWS endpoint, Cognito included. */
  aws_endpoint_url?: string;
  dev_username?: string;
}

/** What the monitor needs: where, and a token before every connection attempt. */
export interface Session {
  outputs: StackOutputs;
  /** Called before every connection attempt, so a reconnect carries a fresh token. */
  token: () => Promise<string>;
  /** Who is signed in, for the header ("pasted token" when the token was pasted). */
  who: string;
}

/** The password of `cloud-ws local`'s dev user: fixed, printed in its banner, throwaway. */
export const LOCAL_DEV_PASSWORD = "Local-Dev-Passw0rd!";

/**
 * The outputs from what the user typed: the outputs JSON itself, or the
 * address of a `cloud-ws local` (whose `/_cloud-ws/outputs` is fetched). A
 * local stack names 127.0.0.1 (or 0.0.0.0) in its URLs, which on a phone is
 * the phone: the URLs are moved to the host the address names.
 */
export async function loadOutputs(text: string, fetchImpl: Fetch = fetch): Promise<StackOutputs> {
  const trimmed = text.trim();
  if (trimmed.startsWith("{")) {
    return checkOutputs(JSON.parse(trimmed) as unknown);
  }
  // Strings, not URL objects: React Native's URL cannot set a hostname.
  const address = /^https?:\/\/(\[[^\]]+\]|[^/:?#]+)(:\d+)?/.exec(trimmed);
  if (address === null) {
    throw new Error("Paste the stack's outputs JSON, or the address of a cloud-ws local (http://host:8080)");
  }
  const [origin, hostname = ""] = address;
  const reply = await fetchImpl(`${origin}/_cloud-ws/outputs`);
  if (!reply.ok) {
    throw new Error(`${origin} answered ${reply.status} for its outputs`);
  }
  const outputs = checkOutputs(await reply.json());
  return {
    ...outputs,
    websocket_url: moveLoopback(outputs.websocket_url, hostname),
    ...(outputs.aws_endpoint_url ? { aws_endpoint_url: moveLoopback(outputs.aws_endpoint_url, hostname) } : {}),
  };
}

function checkOutputs(value: unknown): StackOutputs {
  if (typeof value !== "object" || value === null || typeof (value as { websocket_url?: unknown }).websocket_url !== "string") {
    throw new Error("The outputs have no websocket_url");
  }
  return value as StackOutputs;
}

/** A URL on this machine's loopback or on "every interface" (`cloud-ws local --host 0.0.0.0`), moved to `hostname`. */
function moveLoopback(url: string, hostname: string): string {
  return url.replace(/^([a-z]+:\/\/)(127\.0\.0\.1|localhost|0\.0\.0\.0|\[::\])(?=[:/]|$)/, `$1${hostname}`);
}

/** A session on a pasted token (a fixed token: it cannot be refreshed, so sign in again once it expires). */
export function pastedToken(outputs: StackOutputs, token: string): Session {
  const value = token.trim().replace(/^Bearer\s+/i, "");
  if (value.split(".").length !== 3) {
    throw new Error("That is not a JWT (three dot-separated parts)");
  }
  return { outputs, token: () => Promise.resolve(value), who: "pasted token" };
}

/**
 * Signs in through the stack's user pool (its app client allows
 * USER_PASSWORD_AUTH) and returns a session whose token provider refreshes
 * the ID token with the refresh token when it is close to expiring.
 */
export async function signIn(outputs: StackOutputs, username: string, password: string, fetchImpl: Fetch = fetch): Promise<Session> {
  const target = signInTarget(outputs.region ?? "", outputs.user_pool_client_id ?? "", outputs.aws_endpoint_url);
  if (target === null) {
    throw new SignInError("The outputs name no user pool (region, user_pool_client_id): paste a token instead");
  }
  const tokens = await CognitoTokens.signIn(target, username, password, fetchImpl);
  return { outputs, who: username, token: () => tokens.token() };
}
