/**
 * The page's top: the watch form, the connection's state, the notices (the page's own and the
 * pasted token's expiry) and the recent deployments' chips.
 */

import type { ConnectionState } from "../../../src/index.js";
import { element, make } from "./dom.js";

const STATE_TEXT: Record<ConnectionState, string> = {
  idle: "Not connected",
  connecting: "Connecting…",
  open: "Connected · live",
  reconnecting: "Reconnecting…",
  closed: "Disconnected",
};

export interface TopBarActions {
  /** A deployment id entered in the watch form, or a recent deployment's chip clicked. */
  onWatch(deploymentId: string): void;
}

export class TopBarView {
  readonly #actions: TopBarActions;
  readonly #ui = {
    connection: element<HTMLDivElement>("connection"),
    connectionText: element<HTMLSpanElement>("connection-text"),
    watchForm: element<HTMLFormElement>("watch-form"),
    deploymentInput: element<HTMLInputElement>("deployment-input"),
    notice: element<HTMLDivElement>("notice"),
    tokenNotice: element<HTMLDivElement>("token-notice"),
    recent: element<HTMLElement>("recent"),
  };

  constructor(actions: TopBarActions) {
    this.#actions = actions;
    const ui = this.#ui;
    ui.watchForm.addEventListener("submit", (event) => {
      event.preventDefault();
      actions.onWatch(ui.deploymentInput.value.trim());
    });
  }

  /** The deployment shown, in the watch form. */
  showWatched(deploymentId: string): void {
    this.#ui.deploymentInput.value = deploymentId;
  }

  /** The page's notice, or none. */
  notify(message: string | null): void {
    this.#ui.notice.hidden = message === null;
    this.#ui.notice.textContent = message ?? "";
  }

  /**
   * The pasted token's notice: `left` is the time to its `exp` (milliseconds, <= 0 once
   * expired), or undefined for no notice.
   */
  showTokenExpiry(left: number | undefined): void {
    const notice = this.#ui.tokenNotice;
    if (left === undefined) {
      notice.hidden = true;
      notice.textContent = "";
      notice.dataset["expiresIn"] = "";
      return;
    }
    const minutes = Math.max(1, Math.ceil(left / 60_000));
    notice.hidden = false;
    notice.dataset["expiresIn"] = left <= 0 ? "expired" : String(minutes);
    notice.textContent =
      left <= 0
        ? "Your token has expired: sign in or paste a new one under Connection…"
        : `Your token expires in ${minutes} min: sign in or paste a new one under Connection…`;
  }

  /** The connection's state, how often it resumed, and the reconnect attempt under way. */
  showConnection(state: ConnectionState, reconnects: number, attempt: number): void {
    const ui = this.#ui;
    ui.connection.dataset["state"] = state;
    ui.connection.dataset["reconnects"] = String(reconnects);
    let text = STATE_TEXT[state];
    if (state === "reconnecting" && attempt > 1) {
      text = `Reconnecting… (attempt ${attempt})`;
    }
    if (state === "open" && reconnects > 0) {
      text += ` · resumed ${reconnects}×`;
    }
    ui.connectionText.textContent = text;
    ui.connection.title = state === "reconnecting" && attempt > 3 ? "Still trying. Check the URL and token (Connection…)." : "";
  }

  /** The recent deployments' chips. */
  renderRecent(recent: readonly string[]): void {
    this.#ui.recent.replaceChildren(
      ...(recent.length > 0 ? [make("span", "muted", "Recent:")] : []),
      ...recent.map((id) => {
        const button = make("button", "chip", id, { type: "button" });
        button.addEventListener("click", () => this.#actions.onWatch(id));
        return button;
      }),
    );
  }
}
