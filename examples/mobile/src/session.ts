/**
 * Where the app connects and who it is: a stack's outputs (the project's one
 * contract between a stack and its consumers) and a token provider, either
 * from a Cognito sign-in (USER_PASSWORD_AUTH, then REFRESH_TOKEN_AUTH ahead
 * of each ID token's expiry) or from a pasted token.
 */

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

export type Fetch = typeof fetch;

/** The password of `cloud-ws local`'s dev user: fixed, printed in its banner, throwaway. */
export const LOCAL_DEV_PASSWORD = "Local-Dev-Passw0rd!";

/** Refresh the ID token this long before its `exp` (the client itself reconnects 60 s before it). */
const REFRESH_MARGIN_MS = 90_000;

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

/** Cognito refused the sign-in (wrong password, unknown user, a challenge the app cannot answer). */
export class SignInError extends Error {
  override readonly name = "SignInError";
}

interface AuthenticationResult {
  IdToken?: string;
  RefreshToken?: string;
}

/**
 * Signs in through the stack's user pool (its app client allows
 * USER_PASSWORD_AUTH) and returns a session whose token provider refreshes
 * the ID token with the refresh token when it is close to expiring.
 */
export async function signIn(outputs: StackOutputs, username: string, password: string, fetchImpl: Fetch = fetch): Promise<Session> {
  const { region, user_pool_client_id: clientId } = outputs;
  if (!region || !clientId) {
    throw new SignInError("The outputs name no user pool (region, user_pool_client_id): paste a token instead");
  }
  const endpoint = outputs.aws_endpoint_url ?? `https://cognito-idp.${region}.amazonaws.com`;
  const first = await initiateAuth(fetchImpl, endpoint, {
    AuthFlow: "USER_PASSWORD_AUTH",
    ClientId: clientId,
    AuthParameters: { USERNAME: username, PASSWORD: password },
  });
  let idToken = first.IdToken ?? "";
  const refreshToken = first.RefreshToken;
  return {
    outputs,
    who: username,
    token: async () => {
      const exp = expiry(idToken);
      if (refreshToken && exp !== undefined && exp - Date.now() < REFRESH_MARGIN_MS) {
        const next = await initiateAuth(fetchImpl, endpoint, {
          AuthFlow: "REFRESH_TOKEN_AUTH",
          ClientId: clientId,
          AuthParameters: { REFRESH_TOKEN: refreshToken },
        });
        idToken = next.IdToken ?? idToken;
      }
      return idToken;
    },
  };
}

async function initiateAuth(fetchImpl: Fetch, endpoint: string, body: object): Promise<AuthenticationResult> {
  const reply = await fetchImpl(endpoint.replace(/\/?$/, "/"), {
    method: "POST",
    headers: {
      "Content-Type": "application/x-amz-json-1.1",
      "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
    },
    body: JSON.stringify(body),
  });
  const answer = (await reply.json().catch(() => ({}))) as {
    AuthenticationResult?: AuthenticationResult;
    ChallengeName?: string;
    message?: string;
    __type?: string;
  };
  if (!reply.ok) {
    // 5xx is Cognito's own trouble (the caller may retry); 4xx is a refusal.
    const reason = answer.message ?? answer.__type ?? `HTTP ${reply.status}`;
    throw reply.status >= 500 ? new Error(`Cognito answered ${reply.status}`) : new SignInError(reason);
  }
  if (!answer.AuthenticationResult?.IdToken) {
    throw new SignInError(`Cognito answered with ${answer.ChallengeName ?? "no token"}: sign in once elsewhere`);
  }
  return answer.AuthenticationResult;
}

/** A JWT's `exp` in epoch ms, read without verifying (the server verifies). */
function expiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (!payload) {
    return undefined;
  }
  try {
    const json = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/"))) as { exp?: unknown };
    return typeof json.exp === "number" ? json.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
