/**
 * Signing in to a stack's Cognito user pool (issue 18), shared by the dashboard and the mobile
 * example: `InitiateAuth` with `USER_PASSWORD_AUTH` (the stack's app client allows it), then
 * `REFRESH_TOKEN_AUTH` whenever the ID token is within 90 s of its `exp`, so every connection
 * attempt carries a valid token however long the app stays open.
 *
 * The ID token and the refresh token live in a `CognitoTokens` object only (memory: never
 * localStorage nor sessionStorage); the password is sent once and not kept. Where the tokens may
 * go is the caller's business (the dashboard binds them to one WebSocket origin, auth.ts).
 */

import { tokenExpiry } from "./lifetime.js";

/** Refresh the ID token when it has less than this left (the client itself reconnects 60 s ahead of `exp`). */
export const REFRESH_MARGIN_MS = 90_000;

/** The `fetch` sign-in uses: the global one unless the caller hands another (React Native's tests use Node's). */
export type Fetch = typeof fetch;

/** The outputs keys sign-in needs (`cloud-ws local` writes them; `pulumi stack output --json` gives them). */
export interface SignInTarget {
  region: string;
  /** The stack's `user_pool_client_id` output. */
  clientId: string;
  /** Cognito's endpoint; `https://cognito-idp.{region}.amazonaws.com/` unless the outputs name an `aws_endpoint_url` (the local stack). */
  endpoint: string;
}

/** Cognito refused (wrong password, unknown user, an expired refresh token, a challenge the app cannot answer). */
export class SignInError extends Error {
  override readonly name = "SignInError";
}

/** Where to sign in, from the stack's outputs (or its fields typed separately); null when they name no user pool. */
export function signInTarget(region: string, clientId: string, endpoint?: string | null): SignInTarget | null {
  const r = region.trim();
  const c = clientId.trim();
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(r) || c === "") {
    return null;
  }
  const e = endpoint?.trim() || `https://cognito-idp.${r}.amazonaws.com/`;
  return { region: r, clientId: c, endpoint: e.replace(/\/?$/, "/") };
}

interface AuthenticationResult {
  IdToken?: string;
  RefreshToken?: string;
}

/** The global `fetch`, looked up at each call (a test may replace it) and never called as a method (browsers refuse that). */
const globalFetch: Fetch = (input, init) => fetch(input, init);

async function initiateAuth(fetchImpl: Fetch, target: SignInTarget, body: Record<string, unknown>): Promise<AuthenticationResult> {
  let reply: Response;
  try {
    reply = await fetchImpl(target.endpoint, {
      method: "POST",
      cache: "no-store",
      credentials: "omit",
      headers: {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
      },
      body: JSON.stringify({ ...body, ClientId: target.clientId }),
    });
  } catch (error) {
    throw new Error(`Cognito at ${target.endpoint} could not be reached (${error instanceof Error ? error.message : String(error)})`);
  }
  const answer = (await reply.json().catch(() => ({}))) as {
    AuthenticationResult?: AuthenticationResult;
    ChallengeName?: string;
    message?: string;
    __type?: string;
  };
  if (!reply.ok) {
    // 5xx is Cognito's own trouble (retry later); 4xx is a refusal.
    const reason = answer.message ?? answer.__type ?? `HTTP ${reply.status}`;
    throw reply.status >= 500 ? new Error(`Cognito answered ${reply.status}`) : new SignInError(reason);
  }
  if (!answer.AuthenticationResult?.IdToken) {
    throw new SignInError(`Cognito answered with ${answer.ChallengeName ?? "no token"}: complete that step once elsewhere (e.g. the AWS console or an administrator), then sign in here`);
  }
  return answer.AuthenticationResult;
}

/** A signed-in user's tokens: the current ID token, refreshed ahead of its expiry. */
export class CognitoTokens {
  readonly username: string;
  readonly #target: SignInTarget;
  readonly #fetch: Fetch;
  #idToken: string;
  readonly #refreshToken: string | undefined;
  #refreshing: Promise<string> | null = null;

  private constructor(username: string, target: SignInTarget, fetchImpl: Fetch, result: AuthenticationResult) {
    this.username = username;
    this.#target = target;
    this.#fetch = fetchImpl;
    this.#idToken = result.IdToken ?? "";
    this.#refreshToken = result.RefreshToken;
  }

  /** Signs in; throws SignInError when Cognito refuses. The password is not kept. */
  static async signIn(target: SignInTarget, username: string, password: string, fetchImpl: Fetch = globalFetch): Promise<CognitoTokens> {
    const result = await initiateAuth(fetchImpl, target, {
      AuthFlow: "USER_PASSWORD_AUTH",
      AuthParameters: { USERNAME: username, PASSWORD: password },
    });
    return new CognitoTokens(username, target, fetchImpl, result);
  }

  /** The current ID token's `exp` (epoch ms). */
  get expiresAt(): number | undefined {
    return tokenExpiry(this.#idToken);
  }

  /** The current ID token, refreshed first when it is within 90 s of `exp` (one refresh at a time). */
  async token(): Promise<string> {
    const exp = this.expiresAt;
    if (this.#refreshToken === undefined || exp === undefined || exp - Date.now() >= REFRESH_MARGIN_MS) {
      return this.#idToken;
    }
    this.#refreshing ??= initiateAuth(this.#fetch, this.#target, {
      AuthFlow: "REFRESH_TOKEN_AUTH",
      AuthParameters: { REFRESH_TOKEN: this.#refreshToken },
    })
      .then((result) => {
        this.#idToken = result.IdToken ?? this.#idToken;
        return this.#idToken;
      })
      .finally(() => {
        this.#refreshing = null;
      });
    return this.#refreshing;
  }
}
