/**
 * Signing in to the stack's Cognito user pool from the page (issue 18): `InitiateAuth` with
 * `USER_PASSWORD_AUTH` (the stack's app client allows it), then `REFRESH_TOKEN_AUTH` whenever the
 * ID token is within 90 s of its `exp`, so every connection attempt carries a valid token however
 * long the page stays open.
 *
 * The ID token and the refresh token live in this object only (memory: never localStorage nor
 * sessionStorage, so a reload asks again); the password is sent once and not kept. A session is
 * bound to the origin of the stack's WebSocket URL it signed in for: its tokens are only handed to
 * a connection to that origin (config.ts `fetchToken`).
 */

import { tokenExpiry } from "../../src/index.js";

/** Refresh the ID token when it has less than this left (the client itself reconnects 60 s ahead of `exp`). */
export const REFRESH_MARGIN_MS = 90_000;

/** The outputs keys sign-in needs (`cloud-ws local` writes them; `pulumi stack output --json` gives them). */
export interface SignInTarget {
  region: string;
  /** The stack's `user_pool_client_id` output. */
  clientId: string;
  /** Cognito's endpoint; `https://cognito-idp.{region}.amazonaws.com/` unless the outputs name an `aws_endpoint_url` (the local stack). */
  endpoint: string;
}

/** Cognito refused (wrong password, unknown user, an expired refresh token, a challenge the page cannot answer). */
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

async function initiateAuth(target: SignInTarget, body: Record<string, unknown>): Promise<AuthenticationResult> {
  let reply: Response;
  try {
    reply = await fetch(target.endpoint, {
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

/** A signed-in user: the current ID token, refreshed ahead of its expiry. */
export class CognitoSession {
  readonly username: string;
  /** The origin (scheme://host:port) of the WebSocket URL this session signed in for: its tokens go nowhere else. */
  readonly origin: string;
  readonly #target: SignInTarget;
  #idToken: string;
  readonly #refreshToken: string | undefined;
  #refreshing: Promise<string> | null = null;

  private constructor(username: string, origin: string, target: SignInTarget, result: AuthenticationResult) {
    this.username = username;
    this.origin = origin;
    this.#target = target;
    this.#idToken = result.IdToken ?? "";
    this.#refreshToken = result.RefreshToken;
  }

  /** Signs in; throws SignInError when Cognito refuses. The password is not kept. */
  static async signIn(target: SignInTarget, origin: string, username: string, password: string): Promise<CognitoSession> {
    const result = await initiateAuth(target, {
      AuthFlow: "USER_PASSWORD_AUTH",
      AuthParameters: { USERNAME: username, PASSWORD: password },
    });
    return new CognitoSession(username, origin, target, result);
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
    this.#refreshing ??= initiateAuth(this.#target, {
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
