/**
 * The Connection… panel: the WebSocket URL and a pasted token, the reconnect button, and the
 * sign-in form (a stack's outputs JSON fills its fields).
 */

import { type OutputFields, outputFields, PASTE_HINT, type Settings } from "../config.js";
import { element } from "./dom.js";

/** What the sign-in form holds when submitted (the password is cleared from the form). */
export interface SignInEntry {
  url: string;
  region: string;
  clientId: string;
  endpoint: string;
  username: string;
  password: string;
}

export interface ConnectionFormActions {
  /** The URL and token form submitted (both trimmed). */
  onConnect(url: string, token: string): void;
  /** Reconnect now. */
  onReconnect(): void;
  /** The sign-in form submitted. */
  onSignIn(entry: SignInEntry): void;
}

export class ConnectionFormView {
  readonly #ui = {
    settings: element<HTMLElement>("settings"),
    settingsToggle: element<HTMLButtonElement>("settings-toggle"),
    settingsForm: element<HTMLFormElement>("settings-form"),
    settingsUrl: element<HTMLInputElement>("settings-url"),
    settingsToken: element<HTMLInputElement>("settings-token"),
    settingsSource: element<HTMLParagraphElement>("settings-source"),
    reconnect: element<HTMLButtonElement>("reconnect"),
    signInForm: element<HTMLFormElement>("signin-form"),
    signInOutputs: element<HTMLTextAreaElement>("signin-outputs"),
    signInRegion: element<HTMLInputElement>("signin-region"),
    signInClientId: element<HTMLInputElement>("signin-client-id"),
    signInEndpoint: element<HTMLInputElement>("signin-endpoint"),
    signInUsername: element<HTMLInputElement>("signin-username"),
    signInPassword: element<HTMLInputElement>("signin-password"),
    signInSubmit: element<HTMLButtonElement>("signin-submit"),
    signInError: element<HTMLParagraphElement>("signin-error"),
  };

  constructor(actions: ConnectionFormActions) {
    const ui = this.#ui;
    ui.settingsToggle.addEventListener("click", () => {
      if (ui.settings.hidden) {
        this.open();
      } else {
        this.close();
      }
    });
    ui.settingsForm.addEventListener("submit", (event) => {
      event.preventDefault();
      actions.onConnect(ui.settingsUrl.value.trim(), ui.settingsToken.value.trim());
    });
    ui.reconnect.addEventListener("click", () => actions.onReconnect());
    ui.signInForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const password = ui.signInPassword.value;
      ui.signInPassword.value = ""; // not kept, not even in the form
      actions.onSignIn({
        username: ui.signInUsername.value.trim(),
        url: ui.settingsUrl.value.trim(),
        region: ui.signInRegion.value,
        clientId: ui.signInClientId.value,
        endpoint: ui.signInEndpoint.value,
        password,
      });
    });
    ui.signInOutputs.addEventListener("input", () => {
      const text = ui.signInOutputs.value.trim();
      if (text === "") {
        return;
      }
      let fields: OutputFields | null = null;
      try {
        fields = outputFields(JSON.parse(text));
      } catch {
        fields = null;
      }
      ui.signInError.hidden = fields !== null;
      ui.signInError.textContent = fields !== null ? "" : "That is not a stack's outputs JSON (an object with websocket_url).";
      if (fields !== null) {
        this.fillSignIn(fields, true);
      }
    });
  }

  open(): void {
    this.#ui.settings.hidden = false;
    this.#ui.settingsToggle.setAttribute("aria-expanded", "true");
  }

  close(): void {
    this.#ui.settings.hidden = true;
    this.#ui.settingsToggle.setAttribute("aria-expanded", "false");
  }

  /** Asks for a token: the URL to confirm (never a token), and the hint to paste one. */
  ask(url: string | null): void {
    this.#ui.settingsUrl.value = url ?? "";
    this.#ui.settingsToken.value = "";
    this.#ui.settingsSource.textContent = PASTE_HINT;
  }

  /** The settings the page connects with, and where they come from. */
  showSettings(settings: Settings): void {
    const ui = this.#ui;
    ui.settingsUrl.value = settings.url;
    ui.settingsToken.value = settings.token ?? "";
    ui.settingsSource.textContent =
      settings.session !== null
        ? `Signed in as ${settings.session.username}: the ID token is refreshed before it expires (kept in this tab's memory only; a reload asks you to sign in again).`
        : settings.source === "local-stack"
          ? "Connected to the local stack (cloud-ws local): a fresh dev token is fetched for every connection."
          : PASTE_HINT;
  }

  /** Fills the sign-in fields from a stack's outputs (and the WebSocket URL, when asked). */
  fillSignIn(outputs: OutputFields, withUrl: boolean): void {
    const ui = this.#ui;
    if (withUrl) {
      ui.settingsUrl.value = outputs.websocketUrl;
    }
    ui.signInRegion.value = outputs.region;
    ui.signInClientId.value = outputs.clientId;
    ui.signInEndpoint.value = outputs.endpoint;
  }

  /** Says why the sign-in did not happen. */
  signInFailed(message: string): void {
    this.#ui.signInError.hidden = false;
    this.#ui.signInError.textContent = message;
  }

  /** A sign-in under way (its error cleared, the button disabled), or over. */
  signInPending(pending: boolean): void {
    const ui = this.#ui;
    if (pending) {
      ui.signInError.hidden = true;
    }
    ui.signInSubmit.disabled = pending;
    ui.signInSubmit.textContent = pending ? "Signing in…" : "Sign in";
  }
}
