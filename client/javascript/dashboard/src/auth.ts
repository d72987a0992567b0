/**
 * Signing in to the stack's Cognito user pool from the page (issue 18). The sign-in itself
 * (`USER_PASSWORD_AUTH`, then `REFRESH_TOKEN_AUTH` within 90 s of the ID token's `exp`, tokens in
 * memory only) is the client package's (src/cognito.ts, shared with the mobile example); a reload
 * asks again. What the page adds: a session is bound to the origin of the stack's WebSocket URL it
 * signed in for, and its tokens are only handed to a connection to that origin (config.ts
 * `fetchToken`).
 */

import { CognitoTokens, type SignInTarget } from "../../src/index.js";

export { REFRESH_MARGIN_MS, SignInError, signInTarget, type SignInTarget } from "../../src/index.js";

/** A signed-in user, bound to one WebSocket origin: the current ID token, refreshed ahead of its expiry. */
export class CognitoSession {
  /** The origin (scheme://host:port) of the WebSocket URL this session signed in for: its tokens go nowhere else. */
  readonly origin: string;
  readonly #tokens: CognitoTokens;

  private constructor(origin: string, tokens: CognitoTokens) {
    this.origin = origin;
    this.#tokens = tokens;
  }

  /** Signs in; throws SignInError when Cognito refuses. The password is not kept. */
  static async signIn(target: SignInTarget, origin: string, username: string, password: string): Promise<CognitoSession> {
    return new CognitoSession(origin, await CognitoTokens.signIn(target, username, password));
  }

  get username(): string {
    return this.#tokens.username;
  }

  /** The current ID token's `exp` (epoch ms). */
  get expiresAt(): number | undefined {
    return this.#tokens.expiresAt;
  }

  /** The current ID token, refreshed first when it is within 90 s of `exp` (one refresh at a time). */
  token(): Promise<string> {
    return this.#tokens.token();
  }
}
