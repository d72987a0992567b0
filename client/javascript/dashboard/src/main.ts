/**
 * The dashboard over a CloudWebSocketClient: the home page lists the recent
 * deployments (`list_deployments`, polled while it is shown), the deployment
 * page follows one deployment live.
 *
 * A deployment page subscribes without `since`: it starts from the
 * `deployment.snapshot` that follows the ack (the deployment's whole state,
 * however long its history) and then folds each live event, which the
 * client delivers once and in seq order and resumes with `since` after a
 * reconnect. The model (model.ts) folds by the project's shared rules; this
 * file only draws it and the connection state.
 *
 * A click on a stack's card opens its panel: its resources (from its
 * `stack.progress` events' `resources`, a running one's duration counting)
 * and its own log lines; the log pane below shows that stack's lines too.
 */

import {
  type ClientError,
  CloudWebSocketClient,
  type ConnectionState,
  type DeploymentSummary,
  isValidDeploymentId,
  LOG_LEVELS,
  type LogLevel,
  type StackStatus,
  SubscriptionError,
  tokenExpiry,
} from "../../src/index.js";
import { CognitoSession, SignInError, signInTarget } from "./auth.js";
import {
  addRecentDeployment,
  enteredSettings,
  fetchToken,
  forgetTokenInAddress,
  localOutputs,
  type OutputFields,
  outputFields,
  PASTE_HINT,
  QUERY_TOKEN_IGNORED,
  readPageParams,
  recentDeployments,
  rememberDeploymentInAddress,
  resolveSettings,
  type Settings,
  signedInSettings,
  socketOrigin,
} from "./config.js";
import {
  DeploymentModel,
  formatAge,
  formatDuration,
  type LayerView,
  type LogFilter,
  type LogLine,
  logLineMatches,
  formatStepDuration,
  liveOrder,
  type ResourceView,
  resourceSeconds,
  type StackView,
} from "./model.js";

/** How often the home page asks for the deployment list again (milliseconds). */
const LIST_INTERVAL = 2_000;
/** How many deployments the home page lists. */
const LIST_LIMIT = 50;
/** How often a running deployment's duration is redrawn (milliseconds). */
const TICK_INTERVAL = 1_000;
/** Log lines of one stack its panel shows (the newest; the log pane below has them all). */
const STACK_PANEL_LOG_LINES = 100;
/** A pasted token with less than this left gets a notice (milliseconds). */
const TOKEN_WARNING = 10 * 60_000;

const STATE_TEXT: Record<ConnectionState, string> = {
  idle: "Not connected",
  connecting: "Connecting…",
  open: "Connected · live",
  reconnecting: "Reconnecting…",
  closed: "Disconnected",
};

const STACK_STATE_TEXT: Record<StackStatus, string> = {
  pending: "pending",
  deploying: "deploying",
  deployed: "deployed",
  failed: "failed",
  cancelled: "cancelled",
};
const LAYER_STATE_TEXT: Record<LayerView["state"], string> = {
  pending: "pending",
  active: "deploying",
  done: "done",
  failed: "failed",
  cancelled: "cancelled",
  skipped: "not deployed",
};

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) {
    throw new Error(`the page has no #${id}`);
  }
  return found as T;
}

function make<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = "",
  text = "",
  attributes: Record<string, string> = {},
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  return node;
}

function clockTime(timestamp: string | undefined): string {
  if (timestamp === undefined) {
    return "";
  }
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour12: false });
}

class Dashboard {
  #settings: Settings | null = null;
  #client: CloudWebSocketClient | null = null;
  #model: DeploymentModel | null = null;
  #reconnects = 0;
  #attempt = 0;
  #renderPending = false;
  #renders = 0;
  #renderedLogs = 0;
  #renderedLogsRevision = -1;
  #listTimer: ReturnType<typeof setInterval> | undefined;
  #listing = false;
  readonly #levels = new Set<LogLevel>(LOG_LEVELS);
  readonly #logFilter: LogFilter = { stack: undefined, text: "" };
  #logStacksShown = "";
  /** The stack whose panel is open. */
  #openStack: string | undefined;

  readonly #ui = {
    connection: element<HTMLDivElement>("connection"),
    connectionText: element<HTMLSpanElement>("connection-text"),
    watchForm: element<HTMLFormElement>("watch-form"),
    deploymentInput: element<HTMLInputElement>("deployment-input"),
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
    notice: element<HTMLDivElement>("notice"),
    tokenNotice: element<HTMLDivElement>("token-notice"),
    recent: element<HTMLElement>("recent"),
    empty: element<HTMLElement>("empty"),
    deployments: element<HTMLTableElement>("deployments"),
    deploymentRows: element<HTMLTableSectionElement>("deployments-rows"),
    deploymentsEmpty: element<HTMLParagraphElement>("deployments-empty"),
    attemptText: element<HTMLElement>("attempt-text"),
    deployment: element<HTMLElement>("deployment"),
    deploymentId: element<HTMLHeadingElement>("deployment-id"),
    status: element<HTMLDivElement>("deployment-status"),
    layerText: element<HTMLElement>("layer-text"),
    stackCounts: element<HTMLElement>("stack-counts"),
    durationText: element<HTMLElement>("duration-text"),
    stats: element<HTMLElement>("stats"),
    error: element<HTMLDivElement>("deployment-error"),
    facts: element<HTMLElement>("facts"),
    forbidden: element<HTMLElement>("forbidden"),
    forbiddenMessage: element<HTMLParagraphElement>("forbidden-message"),
    forbiddenRetry: element<HTMLButtonElement>("forbidden-retry"),
    progressPanel: element<HTMLDivElement>("progress-panel"),
    columns: element<HTMLDivElement>("columns"),
    logText: element<HTMLInputElement>("log-text"),
    logStack: element<HTMLSelectElement>("log-stack"),
    logNote: element<HTMLParagraphElement>("log-note"),
    progressBar: element<HTMLDivElement>("progress-bar"),
    layers: element<HTMLOListElement>("layers"),
    stacks: element<HTMLDivElement>("stacks"),
    logFilter: element<HTMLDivElement>("log-filter"),
    log: element<HTMLOListElement>("log"),
    stackPanel: element<HTMLElement>("stack-panel"),
    stackPanelTitle: element<HTMLHeadingElement>("stack-panel-title"),
    stackPanelCounts: element<HTMLSpanElement>("stack-panel-counts"),
    stackPanelClose: element<HTMLButtonElement>("stack-panel-close"),
    stackPanelNote: element<HTMLParagraphElement>("stack-panel-note"),
    resources: element<HTMLTableElement>("resources"),
    resourceRows: element<HTMLTableSectionElement>("resources-rows"),
    resourcesEmpty: element<HTMLParagraphElement>("resources-empty"),
    stackLog: element<HTMLOListElement>("stack-log"),
    stackLogEmpty: element<HTMLParagraphElement>("stack-log-empty"),
  };

  async start(): Promise<void> {
    this.#bindControls();
    document.addEventListener("visibilitychange", () => this.#refreshList());
    this.#renderRecent();
    this.#renderLogFilter();
    // A running deployment's duration counts on between events; a finished one's stands still.
    setInterval(() => this.#tick(), TICK_INTERVAL);
    const params = readPageParams(window.location);
    forgetTokenInAddress(window.location, window.history);
    // Served by cloud-ws local: its outputs name its user pool, so signing in needs only a username.
    void localOutputs(window.location.href).then((outputs) => {
      if (outputs !== null) {
        this.#fillSignIn(outputs, false);
      }
    });
    if (params.deployment !== null && isValidDeploymentId(params.deployment)) {
      this.watch(params.deployment);
    }
    const resolution = await resolveSettings(params, window.location.href);
    const ignored = params.queryToken ? ` ${QUERY_TOKEN_IGNORED}` : "";
    if (resolution.kind === "ask") {
      // Prefilled with the URL to confirm, never with a token: the user pastes one for that stack.
      this.#ui.settingsUrl.value = resolution.url ?? "";
      this.#ui.settingsToken.value = "";
      this.#ui.settingsSource.textContent = PASTE_HINT;
      this.#openSettings(resolution.reason + ignored);
      return;
    }
    this.connect(resolution.settings);
    if (ignored) {
      this.#notify(QUERY_TOKEN_IGNORED);
    }
  }

  /** (Re)connects with these settings; the watched deployment is replayed from its start. */
  connect(settings: Settings): void {
    const previous = this.#client;
    this.#settings = settings;
    this.#ui.settingsUrl.value = settings.url;
    this.#ui.settingsToken.value = settings.token ?? "";
    this.#ui.settingsSource.textContent =
      settings.session !== null
        ? `Signed in as ${settings.session.username}: the ID token is refreshed before it expires (kept in this tab's memory only; a reload asks you to sign in again).`
        : settings.source === "local-stack"
          ? "Connected to the local stack (cloud-ws local): a fresh dev token is fetched for every connection."
          : PASTE_HINT;
    if (previous !== null) {
      void previous.disconnect();
    }
    const client = new CloudWebSocketClient({
      url: settings.url,
      token: () => this.#token(settings),
    });
    this.#client = client;
    this.#reconnects = 0;
    client.on("state", ({ state }) => {
      if (client === this.#client) {
        this.#showConnection(state);
      }
    });
    client.on("reconnecting", ({ attempt }) => {
      this.#attempt = attempt;
      this.#showConnection(client.state);
    });
    client.on("open", ({ reconnected }) => {
      if (reconnected) {
        this.#reconnects += 1;
      }
      this.#attempt = 0;
      this.#showConnection(client.state);
    });
    client.on("event", (event) => {
      if (client === this.#client && this.#model !== null && this.#model.apply(event)) {
        this.#scheduleRender();
      }
    });
    client.on("snapshot", (snapshot) => {
      const model = this.#model;
      if (client !== this.#client || model === null) {
        return;
      }
      if (model.historyWentBack(snapshot)) {
        this.#startOver(model.deploymentId, snapshot.seq, model.lastSeq);
      } else if (model.applySnapshot(snapshot)) {
        this.#scheduleRender();
      }
    });
    client.on("open", () => this.#refreshList());
    client.on("gap", (gap) => {
      if (gap.action === "skipped") {
        this.#notify(`Some events of ${gap.deployment_id} are no longer stored (after seq ${gap.last}); the picture may be incomplete.`);
      }
    });
    client.on("error", (error) => this.#showError(error));
    const model = this.#model;
    if (model !== null) {
      this.#resetModel(model.deploymentId);
      this.#subscribe(model.deploymentId);
    }
    this.#showTokenExpiry();
    client.connect().catch((error: unknown) => {
      this.#notify(`Cannot connect: ${error instanceof Error ? error.message : String(error)}`);
    });
    // The home page stays live by asking again every few seconds (while it is shown).
    clearInterval(this.#listTimer);
    this.#listTimer = setInterval(() => this.#refreshList(), LIST_INTERVAL);
  }

  /** The token for the next connection attempt; a sign-in whose refresh is refused says so. */
  async #token(settings: Settings): Promise<string | null> {
    try {
      return await fetchToken(settings);
    } catch (error) {
      if (settings === this.#settings && settings.session !== null) {
        const why = error instanceof SignInError ? `Cognito refused to refresh your sign-in (${error.message})` : String(error instanceof Error ? error.message : error);
        this.#notify(`${why}: sign in again, or paste a token, under Connection…`);
      }
      throw error;
    }
  }

  /**
   * A pasted (fixed) token cannot be refreshed: shortly before its `exp`, and after, the page says
   * so, since from then on the server posts nothing and every reconnect is refused.
   */
  #showTokenExpiry(): void {
    const settings = this.#settings;
    const notice = this.#ui.tokenNotice;
    const fixed = settings !== null && settings.session === null ? settings.token : null;
    const exp = tokenExpiry(fixed);
    const left = exp === undefined ? Infinity : exp - Date.now();
    if (left > TOKEN_WARNING) {
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

  /** Fills the sign-in fields from a stack's outputs (and the WebSocket URL, when asked). */
  #fillSignIn(outputs: OutputFields, withUrl: boolean): void {
    const ui = this.#ui;
    if (withUrl) {
      ui.settingsUrl.value = outputs.websocketUrl;
    }
    ui.signInRegion.value = outputs.region;
    ui.signInClientId.value = outputs.clientId;
    ui.signInEndpoint.value = outputs.endpoint;
  }

  /** Signs in with the form's username and password; on success connects with the session, else says why and changes nothing. */
  async #signIn(): Promise<void> {
    const ui = this.#ui;
    const password = ui.signInPassword.value;
    ui.signInPassword.value = ""; // not kept, not even in the form
    const username = ui.signInUsername.value.trim();
    const url = ui.settingsUrl.value.trim();
    const origin = socketOrigin(url);
    const target = signInTarget(ui.signInRegion.value, ui.signInClientId.value, ui.signInEndpoint.value);
    const fail = (message: string): void => {
      ui.signInError.hidden = false;
      ui.signInError.textContent = message;
    };
    if (origin === null) {
      fail("The WebSocket URL above starts with wss:// (or ws:// locally): the sign-in is for that stack.");
      return;
    }
    if (target === null) {
      fail("Enter the stack's region and app client id (its region and user_pool_client_id outputs), or paste its outputs JSON.");
      return;
    }
    if (username === "" || password === "") {
      fail("Enter your username and password.");
      return;
    }
    ui.signInError.hidden = true;
    ui.signInSubmit.disabled = true;
    ui.signInSubmit.textContent = "Signing in…";
    try {
      const session = await CognitoSession.signIn(target, origin, username, password);
      const settings = signedInSettings(url, session);
      ui.settings.hidden = true;
      ui.settingsToggle.setAttribute("aria-expanded", "false");
      this.#notify(null);
      this.connect(settings);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      fail(error instanceof SignInError ? `Sign-in refused: ${message}` : `Sign-in failed: ${message}`);
    } finally {
      ui.signInSubmit.disabled = false;
      ui.signInSubmit.textContent = "Sign in";
    }
  }

  /** Shows a deployment: its snapshot at once, then its live events. */
  watch(deploymentId: string): void {
    if (!isValidDeploymentId(deploymentId)) {
      this.#notify("A deployment id is 1 to 64 letters, digits, '-' or '_'.");
      return;
    }
    if (this.#model?.deploymentId === deploymentId && this.#model.refusal === undefined) {
      return;
    }
    const previous = this.#model;
    if (previous !== null) {
      this.#client?.unsubscribe(previous.deploymentId);
    }
    this.#resetModel(deploymentId);
    this.#ui.deploymentInput.value = deploymentId;
    rememberDeploymentInAddress(window.location, window.history, deploymentId);
    addRecentDeployment(deploymentId);
    this.#renderRecent();
    this.#notify(null);
    this.#subscribe(deploymentId);
  }

  #resetModel(deploymentId: string): void {
    this.#model = new DeploymentModel(deploymentId);
    this.#logFilter.stack = undefined;
    this.#openStack = undefined;
    this.#renderedLogs = 0;
    this.#renderedLogsRevision = -1;
    this.#ui.log.replaceChildren();
    this.#render();
  }

  /**
   * Without `since`: the snapshot after the ack is the starting point, so a
   * long history is never replayed. After a reconnect the client itself
   * resumes with `since` = the last seq it delivered.
   */
  #subscribe(deploymentId: string): void {
    this.#client?.subscribe(deploymentId).catch((error: unknown) => {
      if (error instanceof SubscriptionError && error.code === "forbidden" && this.#refuse(deploymentId, error.code, error.message)) {
        return;
      }
      this.#notify(`Cannot watch ${deploymentId}: ${error instanceof Error ? error.message : String(error)}`);
    });
  }

  /**
   * The server's history went back below what the page folded (issue: a restarted local
   * stack, a reused id): drop the picture and the client's position, and subscribe afresh,
   * which starts from the server's snapshot. Said, not silent.
   */
  #startOver(deploymentId: string, serverSeq: number, pageSeq: number): void {
    this.#client?.unsubscribe(deploymentId);
    this.#resetModel(deploymentId);
    this.#notify(
      `The server's history of ${deploymentId} went back (seq ${serverSeq}, the page had ${pageSeq}): the stack was restarted or the id reused. The page started again from the server's picture.`,
    );
    this.#subscribe(deploymentId);
  }

  /**
   * The server will not show this deployment: the page says so and what to do, instead of
   * waiting. Returns false when it is not the deployment shown.
   */
  #refuse(deploymentId: string, code: string, message: string): boolean {
    const model = this.#model;
    if (model === null || model.deploymentId !== deploymentId) {
      return false;
    }
    if (model.refusal === undefined) {
      model.refuse(code, message);
      this.#render();
    }
    return true;
  }

  // -- home page -------------------------------------------------------------------------------

  #refreshList(): void {
    const client = this.#client;
    // A hidden tab does not ask (it asks again when shown): the list is for someone looking at it.
    if (client === null || this.#model !== null || this.#listing || client.state !== "open" || document.hidden) {
      return;
    }
    this.#listing = true;
    client
      .listDeployments(LIST_LIMIT)
      .then((rows) => {
        if (client === this.#client && this.#model === null) {
          this.#renderDeployments(rows);
        }
      })
      .catch((error: unknown) => {
        this.#notify(`Cannot list deployments: ${error instanceof Error ? error.message : String(error)}`);
      })
      .finally(() => {
        this.#listing = false;
      });
  }

  #renderDeployments(rows: readonly DeploymentSummary[]): void {
    const ui = this.#ui;
    const now = Date.now();
    ui.deployments.dataset["loaded"] = "true";
    ui.deploymentsEmpty.hidden = rows.length > 0;
    ui.deploymentRows.replaceChildren(
      ...rows.map((row) => {
        const tr = make("tr", "", "", { "data-deployment": row.deployment_id, "data-status": row.status, "data-attempt": String(row.attempt) });
        const open = make("button", "open-deployment", row.deployment_id, { type: "button" });
        // data-label: on a phone each row is a card, and each cell shows its column's name (style.css).
        const name = make("td", "cell-deployment", "", { "data-label": "Deployment" });
        name.append(open);
        const status = make("td", "cell-status", "", { "data-label": "Status" });
        status.append(make("span", "status-badge small", row.status, { "data-status": row.status }));
        const layer = row.total_layers !== null ? `${row.current_layer ?? 0} of ${row.total_layers}` : row.current_layer !== null ? String(row.current_layer) : "–";
        tr.append(
          name,
          status,
          make("td", "cell-attempt", row.attempt > 0 ? String(row.attempt) : "–", { "data-label": "Attempt" }),
          make("td", "cell-layer", layer, { "data-label": "Layer" }),
          make("td", "cell-environment", row.environment ?? "", { "data-label": "Environment" }),
          make("td", "cell-age", formatAge(row.updated_at, now), { "data-label": "Updated", "data-updated": row.updated_at ?? "" }),
        );
        tr.addEventListener("click", () => this.watch(row.deployment_id));
        return tr;
      }),
    );
  }

  // -- controls --------------------------------------------------------------------------------

  #bindControls(): void {
    const ui = this.#ui;
    ui.watchForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.watch(ui.deploymentInput.value.trim());
    });
    ui.settingsToggle.addEventListener("click", () => {
      if (ui.settings.hidden) {
        this.#openSettings(null);
      } else {
        ui.settings.hidden = true;
        ui.settingsToggle.setAttribute("aria-expanded", "false");
      }
    });
    ui.settingsForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const url = ui.settingsUrl.value.trim();
      if (!/^wss?:\/\//.test(url)) {
        this.#notify("The WebSocket URL starts with wss:// (or ws:// locally).");
        return;
      }
      const token = ui.settingsToken.value.trim();
      const current = this.#settings;
      const next =
        current !== null && (current.source === "local-stack" || current.session !== null) && current.url === url && token === ""
          ? current
          : enteredSettings(url, token);
      ui.settings.hidden = true;
      ui.settingsToggle.setAttribute("aria-expanded", "false");
      this.#notify(null);
      this.connect(next);
    });
    ui.reconnect.addEventListener("click", () => this.#client?.reconnect());
    ui.stackPanelClose.addEventListener("click", () => {
      const name = this.#openStack;
      this.#openStack = undefined;
      if (name !== undefined && this.#logFilter.stack === name) {
        this.#filterLogByStack(name); // the log pane shows all lines again, as a second click would
      }
      this.#renderStackPanel();
    });
    ui.signInForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.#signIn();
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
        this.#fillSignIn(fields, true);
      }
    });
    ui.forbiddenRetry.addEventListener("click", () => {
      const model = this.#model;
      if (model !== null) {
        this.watch(model.deploymentId);
      }
    });
    ui.logText.addEventListener("input", () => {
      this.#logFilter.text = ui.logText.value;
      this.#applyLogFilter();
    });
    ui.logStack.addEventListener("change", () => {
      this.#logFilter.stack = ui.logStack.value === "" ? undefined : ui.logStack.value;
      this.#applyLogFilter();
      this.#markFilteredStack();
    });
  }

  #openSettings(message: string | null): void {
    this.#ui.settings.hidden = false;
    this.#ui.settingsToggle.setAttribute("aria-expanded", "true");
    if (message !== null) {
      this.#notify(message);
    }
  }

  #notify(message: string | null): void {
    this.#ui.notice.hidden = message === null;
    this.#ui.notice.textContent = message ?? "";
  }

  #showError(error: ClientError): void {
    if (
      error.kind === "server" &&
      error.message.code === "forbidden" &&
      error.deployment_id !== undefined &&
      // Its own view, not a notice: a refused subscription is dropped, nothing will follow.
      this.#refuse(error.deployment_id, error.message.code, error.message.message)
    ) {
      return;
    }
    if (error.kind === "server") {
      const about = error.deployment_id === undefined ? "" : ` (${error.deployment_id})`;
      this.#notify(`Server: ${error.message.message}${about}`);
    } else if (error.kind === "handler") {
      console.error("dashboard handler failed", error.error);
    }
    // Transport errors show as the connection state; the client retries on its own.
  }

  #showConnection(state: ConnectionState): void {
    const ui = this.#ui;
    ui.connection.dataset["state"] = state;
    ui.connection.dataset["reconnects"] = String(this.#reconnects);
    let text = STATE_TEXT[state];
    if (state === "reconnecting" && this.#attempt > 1) {
      text = `Reconnecting… (attempt ${this.#attempt})`;
    }
    if (state === "open" && this.#reconnects > 0) {
      text += ` · resumed ${this.#reconnects}×`;
    }
    ui.connectionText.textContent = text;
    ui.connection.title =
      state === "reconnecting" && this.#attempt > 3 ? "Still trying. Check the URL and token (Connection…)." : "";
  }

  // -- rendering -------------------------------------------------------------------------------

  #scheduleRender(): void {
    if (this.#renderPending) {
      return;
    }
    this.#renderPending = true;
    // Events are applied to the model as they come (a server frame can carry a whole batch,
    // a replay hundreds), but the page is drawn once per animation frame, whatever arrived
    // meanwhile. A hidden tab gets no animation frames: it is drawn when shown again.
    requestAnimationFrame(() => {
      this.#renderPending = false;
      this.#render();
    });
  }

  #render(): void {
    const model = this.#model;
    const ui = this.#ui;
    // How often the page was drawn: the browser test checks batches are drawn at once.
    this.#renders += 1;
    ui.stats.dataset["renders"] = String(this.#renders);
    ui.empty.hidden = model !== null;
    ui.deployment.hidden = model === null;
    if (model === null) {
      return;
    }
    ui.deploymentId.textContent = model.deploymentId;
    const refusal = model.refusal;
    ui.forbidden.hidden = refusal === undefined;
    ui.forbiddenMessage.textContent = refusal?.message ?? "";
    ui.facts.hidden = ui.progressPanel.hidden = ui.columns.hidden = refusal !== undefined;
    if (refusal !== undefined) {
      ui.stackPanel.hidden = true;
      ui.status.dataset["status"] = "forbidden";
      ui.status.textContent = "not allowed";
      ui.error.hidden = true;
      return;
    }
    const reported = model.attempt > 0;
    ui.status.dataset["status"] = reported ? model.status : "unknown";
    ui.status.textContent = reported ? model.status : "waiting for events";
    ui.attemptText.dataset["attempt"] = String(model.attempt);
    ui.attemptText.textContent = reported ? String(model.attempt) : "–";

    const layers = model.layers;
    ui.layerText.textContent =
      model.totalLayers !== undefined ? `${Math.max(model.currentLayer ?? 0, 0)} of ${model.totalLayers}` : layers.length > 0 ? `${layers.length}` : "–";
    const counts = [`${model.count("deployed")} deployed`];
    // Stacks a finished attempt left pending or deploying count as stopped: they will not move on.
    const stacks = model.stackList;
    const stopped = stacks.filter((stack) => stack.stopped).length;
    const deploying = stacks.filter((stack) => !stack.stopped && stack.state === "deploying").length;
    if (deploying > 0) {
      counts.push(`${deploying} deploying`);
    }
    if (model.count("failed") > 0) {
      counts.push(`${model.count("failed")} failed`);
    }
    const cancelled = model.count("cancelled") + (model.status === "cancelled" ? stopped : 0);
    if (cancelled > 0) {
      counts.push(`${cancelled} cancelled`);
    }
    if (model.status !== "cancelled" && stopped > 0) {
      counts.push(`${stopped} stopped`);
    }
    ui.stackCounts.textContent = model.state.stacks.size > 0 ? counts.join(" · ") : "–";
    ui.durationText.textContent = this.#durationText(model);
    ui.stats.textContent = `${model.eventCount} (seq ${model.lastSeq})`;
    ui.stats.dataset["lastSeq"] = String(model.lastSeq);
    ui.stats.dataset["events"] = String(model.eventCount);
    ui.stats.dataset["snapshotSeq"] = model.snapshotSeq === undefined ? "" : String(model.snapshotSeq);
    ui.stats.title =
      model.snapshotSeq === undefined ? "" : `Started from the deployment's snapshot at seq ${model.snapshotSeq}; events counted since.`;

    const banner = model.banner;
    ui.error.hidden = banner === undefined;
    ui.error.dataset["status"] = banner?.status ?? "";
    ui.error.textContent = banner?.text ?? "";

    const percent = Math.round(model.progress * 100);
    ui.progressBar.setAttribute("aria-valuenow", String(percent));
    ui.progressBar.dataset["status"] = reported ? model.status : "unknown";
    const fill = ui.progressBar.firstElementChild;
    if (fill instanceof HTMLElement) {
      fill.style.width = `${percent}%`;
    }
    ui.layers.replaceChildren(
      ...layers.map((layer) => {
        const item = make("li", `layer layer-${layer.state}`, "", { "data-layer": String(layer.number), "data-state": layer.state });
        item.append(make("span", "layer-name", `Layer ${layer.number}`), make("span", "layer-state", LAYER_STATE_TEXT[layer.state]));
        return item;
      }),
    );

    this.#renderStacks(model.layers, model.unlayeredStacks);
    this.#renderStackPanel();
    this.#renderLogStacks();
    this.#renderLogs(model.logs, model.logsRevision);
  }

  #durationText(model: DeploymentModel): string {
    const elapsed = model.elapsed(Date.now());
    if (elapsed === undefined) {
      return "–";
    }
    return `${formatDuration(elapsed.seconds)}${elapsed.running ? " so far" : ""}`;
  }

  /** Redraws what counts with the clock: a running deployment's duration, and its open stack's running resources. */
  #tick(): void {
    this.#showTokenExpiry();
    const model = this.#model;
    if (model === null || document.hidden || model.refusal !== undefined || model.terminal) {
      return;
    }
    this.#ui.durationText.textContent = this.#durationText(model);
    if (this.#openStack !== undefined && model.stack(this.#openStack)?.state === "deploying") {
      this.#renderStackPanel();
    }
  }

  /** The open stack's panel: its resources (a running one's duration counting) and its own log lines. */
  #renderStackPanel(): void {
    const ui = this.#ui;
    const model = this.#model;
    const name = this.#openStack;
    ui.stackPanel.hidden = model === null || name === undefined || model.refusal !== undefined;
    if (model === null || name === undefined) {
      ui.stackPanel.dataset["stack"] = "";
      return;
    }
    const stack = model.stack(name);
    const { resources, running, done, failed } = model.resources(name);
    ui.stackPanel.dataset["stack"] = name;
    ui.stackPanel.dataset["state"] = stack?.state ?? "";
    ui.stackPanelTitle.textContent = name;
    ui.stackPanelTitle.title = name;
    const counts = [`${resources.length} resource${resources.length === 1 ? "" : "s"}`];
    if (running > 0) {
      counts.push(`${running} running`);
    }
    counts.push(`${done} done`);
    if (failed > 0) {
      counts.push(`${failed} failed`);
    }
    ui.stackPanelCounts.textContent = counts.join(" · ");
    ui.stackPanelCounts.dataset["running"] = String(running);
    ui.stackPanelCounts.dataset["done"] = String(done);
    ui.stackPanelCounts.dataset["failed"] = String(failed);
    // A page that started from a snapshot lists only what the events it folded since say.
    const partial = model.snapshotSeq !== undefined && model.snapshotSeq > 0;
    ui.stackPanelNote.hidden = !partial;
    ui.stackPanelNote.textContent = partial
      ? `The page started from the deployment's snapshot (seq ${model.snapshotSeq}), which does not list resources: only the steps reported since are shown.`
      : "";
    const ticking = stack !== undefined && stack.state === "deploying" && !stack.stopped;
    const now = Date.now();
    ui.resources.hidden = resources.length === 0;
    ui.resourcesEmpty.hidden = resources.length > 0;
    ui.resourceRows.replaceChildren(...liveOrder(resources).map((resource) => this.#resourceRow(resource, now, ticking)));
    const lines = model.stackLogs(name).slice(-STACK_PANEL_LOG_LINES);
    ui.stackLogEmpty.hidden = lines.length > 0;
    ui.stackLog.replaceChildren(
      ...lines.map((line) => {
        const item = make("li", "stack-log-line", "", { "data-level": line.level, "data-seq": String(line.seq) });
        item.append(make("time", "log-time", clockTime(line.timestamp)), make("span", `level level-${line.level}`, line.level), make("span", "log-message", line.message));
        return item;
      }),
    );
  }

  #resourceRow(resource: ResourceView, now: number, ticking: boolean): HTMLTableRowElement {
    const seconds = resourceSeconds(resource, now, ticking);
    const row = make("tr", `resource resource-${resource.status}`, "", {
      "data-name": resource.name,
      "data-type": resource.type,
      "data-status": resource.status,
      "data-operation": resource.operation,
    });
    // One line each: long names and types are cut with an ellipsis (CSS), the whole in the tooltip.
    const type = make("td", "res-type", "", { title: resource.type });
    // On a phone only the type's last part (`Vpc` of `aws:ec2/vpc:Vpc`) is shown.
    type.append(make("span", "type-full", resource.type), make("span", "type-short", resource.type.split(":").pop() ?? resource.type));
    row.append(
      make("td", "res-op", resource.operation, { title: resource.operation, "data-operation": resource.operation }),
      type,
      make("td", "res-name", resource.name, { title: resource.name }),
      make("td", "res-status", "", {}),
      make("td", "res-duration num", formatStepDuration(seconds), { "data-seconds": seconds === undefined ? "" : String(Math.round(seconds * 1000) / 1000) }),
    );
    row.querySelector(".res-status")?.append(make("span", `badge badge-${resource.status === "done" ? "deployed" : resource.status === "running" ? "deploying" : "failed"}`, resource.status));
    return row;
  }

  /** Opens a stack's panel (its card clicked again closes it), showing its lines in the log pane too. */
  #toggleStack(name: string): void {
    this.#filterLogByStack(name);
    this.#openStack = this.#logFilter.stack;
    this.#renderStackPanel();
    if (this.#openStack !== undefined) {
      this.#ui.stackPanel.scrollIntoView({ block: "nearest" });
    }
  }

  #renderStacks(layers: LayerView[], unlayered: StackView[]): void {
    const groups: { title: string; stacks: StackView[] }[] = layers
      .filter((layer) => layer.stacks.length > 0)
      .map((layer) => ({ title: `Layer ${layer.number}`, stacks: layer.stacks }));
    if (unlayered.length > 0) {
      groups.push({ title: groups.length > 0 ? "Other stacks" : "", stacks: unlayered });
    }
    if (groups.length === 0) {
      this.#ui.stacks.replaceChildren(make("p", "muted", "No stack has started yet."));
      return;
    }
    this.#ui.stacks.replaceChildren(
      ...groups.map((group) => {
        const section = make("section", "stack-group");
        if (group.title) {
          section.append(make("h3", "", group.title));
        }
        const grid = make("div", "stack-grid");
        grid.append(...group.stacks.map((stack) => this.#stackCard(stack)));
        section.append(grid);
        return section;
      }),
    );
  }

  #stackCard(stack: StackView): HTMLElement {
    const card = make("article", `stack stack-${stack.state}${stack.stopped ? " stack-stopped" : ""}`, "", {
      "data-stack": stack.name,
      "data-state": stack.state,
      "data-stopped": String(stack.stopped),
      title: `Show ${stack.name}'s resources and log lines`,
    });
    const head = make("div", "stack-head");
    // A stack the attempt left behind says so (it keeps its folded state in data-state).
    const badge = stack.stopped ? (this.#model?.status === "cancelled" ? "cancelled" : "stopped") : STACK_STATE_TEXT[stack.state];
    head.append(make("span", "stack-name", stack.name), make("span", `badge badge-${stack.stopped ? "stopped" : stack.state}`, badge));
    // A click (or Enter) opens the stack's panel and shows its own log lines (the log pane's
    // stack filter); again, closes it and shows all lines.
    card.tabIndex = 0;
    card.setAttribute("aria-pressed", String(this.#logFilter.stack === stack.name));
    card.addEventListener("click", () => this.#toggleStack(stack.name));
    card.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.#toggleStack(stack.name);
      }
    });
    const meta = make("div", "stack-meta");
    const duration = stack.state === "deploying" || stack.state === "pending" ? "" : formatDuration(stack.durationSeconds);
    meta.append(make("span", "duration", duration, { "data-seconds": String(stack.durationSeconds ?? "") }));
    let resources = "";
    if (stack.state === "deployed" && stack.resourceCount !== undefined) {
      resources = `${stack.resourceCount} resources`;
    } else if (stack.resourcesDone !== undefined) {
      resources = `${stack.resourcesDone} resources done`;
    }
    meta.append(make("span", "resources", resources, { "data-count": String(stack.resourceCount ?? "") }));
    if (stack.environment !== undefined) {
      meta.append(make("span", "environment", stack.environment));
    }
    card.append(head, meta);
    if (stack.state === "failed") {
      card.append(make("p", "stack-error", stack.error ?? "failed"));
    }
    return card;
  }

  #renderLogs(lines: readonly LogLine[], revision: number): void {
    const log = this.#ui.log;
    if (this.#renderedLogs === lines.length && this.#renderedLogsRevision === revision) {
      return;
    }
    const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    if (this.#renderedLogsRevision !== revision) {
      // Lines were replaced (a snapshot, a new attempt) or placed before drawn ones: draw them all again.
      log.replaceChildren();
      this.#renderedLogs = 0;
      this.#renderedLogsRevision = revision;
    }
    const fresh = lines.slice(this.#renderedLogs);
    this.#renderedLogs = lines.length;
    log.append(
      ...fresh.map((line) => {
        const item = make("li", "log-line", "", { "data-level": line.level, "data-seq": String(line.seq) });
        item.hidden = !logLineMatches(line, this.#logFilter);
        item.append(make("time", "log-time", clockTime(line.timestamp)), make("span", `level level-${line.level}`, line.level));
        if (line.stackName !== undefined) {
          item.append(make("span", "log-stack", line.stackName));
        }
        item.append(make("span", "log-message", line.message));
        return item;
      }),
    );
    this.#renderLogFilter();
    this.#renderLogNote();
    if (nearBottom) {
      log.scrollTop = log.scrollHeight;
    }
  }

  /** Shows the lines that pass the stack and text filters (the level chips hide with CSS). */
  #applyLogFilter(): void {
    const lines = this.#model?.logs ?? [];
    const items = this.#ui.log.children;
    // The pane's items are the model's lines in order (#renderLogs keeps them so).
    for (let index = 0; index < items.length; index += 1) {
      const item = items[index];
      const line = lines[index];
      if (item instanceof HTMLElement && line !== undefined) {
        item.hidden = !logLineMatches(line, this.#logFilter);
      }
    }
    this.#renderLogNote();
  }

  #filterLogByStack(name: string): void {
    this.#logFilter.stack = this.#logFilter.stack === name ? undefined : name;
    this.#renderLogStacks(true);
    this.#applyLogFilter();
    this.#markFilteredStack();
  }

  /** The card of the stack whose lines the log shows is pressed. */
  #markFilteredStack(): void {
    this.#ui.stacks.querySelectorAll<HTMLElement>(".stack").forEach((card) => {
      card.setAttribute("aria-pressed", String(card.dataset["stack"] === this.#logFilter.stack));
    });
  }

  /** The stack filter's choices: every stack of the attempt and every stack its lines name. */
  #renderLogStacks(force = false): void {
    const names = this.#model?.logStacks ?? [];
    const key = names.join("\n");
    const select = this.#ui.logStack;
    if (force || key !== this.#logStacksShown) {
      this.#logStacksShown = key;
      const chosen = this.#logFilter.stack;
      const options = names.includes(chosen ?? "") || chosen === undefined ? names : [...names, chosen];
      select.replaceChildren(make("option", "", "All stacks", { value: "" }), ...options.map((name) => make("option", "", name, { value: name })));
    }
    select.value = this.#logFilter.stack ?? "";
  }

  /** Says what the pane does not show: lines before the snapshot's latest, lines the filters hide. */
  #renderLogNote(): void {
    const model = this.#model;
    const note = this.#ui.logNote;
    if (model === null) {
      note.hidden = true;
      return;
    }
    const parts: string[] = [];
    const notHeld = model.logLinesNotHeld;
    if (notHeld > 0) {
      parts.push(
        `${notHeld} earlier line${notHeld === 1 ? "" : "s"} of this attempt not shown: the page started from the deployment's snapshot, which carries the latest lines only.`,
      );
    }
    const filtering = this.#logFilter.stack !== undefined || this.#logFilter.text.trim() !== "";
    if (filtering) {
      const shown = model.logs.filter((line) => logLineMatches(line, this.#logFilter)).length;
      parts.push(`${shown} of ${model.logs.length} lines match the filter.`);
    }
    note.hidden = parts.length === 0;
    note.textContent = parts.join(" ");
    note.dataset["notHeld"] = String(notHeld);
  }

  #renderLogFilter(): void {
    // The attempt's counts per level: all its lines, also those before the snapshot's latest 50.
    const counts = this.#model?.logCounts ?? new Map<string, number>();
    this.#ui.logFilter.replaceChildren(
      ...LOG_LEVELS.map((level) => {
        const button = make("button", `chip level-${level}`, `${level} ${counts.get(level) ?? 0}`, {
          type: "button",
          "data-level": level,
          "aria-pressed": String(this.#levels.has(level)),
        });
        button.addEventListener("click", () => {
          if (this.#levels.has(level)) {
            this.#levels.delete(level);
          } else {
            this.#levels.add(level);
          }
          this.#ui.log.classList.toggle(`hide-${level}`, !this.#levels.has(level));
          this.#renderLogFilter();
        });
        return button;
      }),
    );
  }

  #renderRecent(): void {
    const recent = recentDeployments();
    this.#ui.recent.replaceChildren(
      ...(recent.length > 0 ? [make("span", "muted", "Recent:")] : []),
      ...recent.map((id) => {
        const button = make("button", "chip", id, { type: "button" });
        button.addEventListener("click", () => this.watch(id));
        return button;
      }),
    );
  }
}

void new Dashboard().start();
