/**
 * The dashboard's controller over a CloudWebSocketClient: the connection's lifecycle, the
 * subscription of the deployment shown, and what the page shows. It builds no DOM: the views
 * (views/*.ts) draw the model and report the user's actions back to it.
 *
 * The home page lists the recent deployments (`list_deployments`, polled while it is shown),
 * the deployment page follows one deployment live.
 *
 * A deployment page subscribes without `since`: it starts from the
 * `deployment.snapshot` that follows the ack (the deployment's whole state,
 * however long its history) and then folds each live event, which the
 * client delivers once and in seq order and resumes with `since` after a
 * reconnect. The model (model.ts) folds by the project's shared rules; the
 * views only draw it and the connection state.
 *
 * A click on a stack's card opens its panel: its resources (from its
 * `stack.progress` events' `resources`, a running one's duration counting)
 * and its own log lines; the log pane below shows that stack's lines too.
 */

import {
  type ClientError,
  CloudWebSocketClient,
  type ConnectionState,
  isValidDeploymentId,
  LOG_LEVELS,
  type LogLevel,
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
  QUERY_TOKEN_IGNORED,
  readPageParams,
  recentDeployments,
  rememberDeploymentInAddress,
  resolveSettings,
  type Settings,
  signedInSettings,
  socketOrigin,
} from "./config.js";
import { DeploymentModel, type LogFilter } from "./model.js";
import { ConnectionFormView, type SignInEntry } from "./views/connection-form.js";
import { DeploymentHeaderView } from "./views/deployment-header.js";
import { DeploymentListView } from "./views/deployment-list.js";
import { LogPaneView } from "./views/log-pane.js";
import { StackCardsView } from "./views/stack-cards.js";
import { StackPanelView } from "./views/stack-panel.js";
import { TopBarView } from "./views/topbar.js";

/** How often the home page asks for the deployment list again (milliseconds). */
const LIST_INTERVAL = 2_000;
/** How many deployments the home page lists. */
const LIST_LIMIT = 50;
/** How often a running deployment's duration is redrawn (milliseconds). */
const TICK_INTERVAL = 1_000;
/** A pasted token with less than this left gets a notice (milliseconds). */
const TOKEN_WARNING = 10 * 60_000;

export class DashboardController {
  #settings: Settings | null = null;
  #client: CloudWebSocketClient | null = null;
  #model: DeploymentModel | null = null;
  #reconnects = 0;
  #attempt = 0;
  #renderPending = false;
  #renders = 0;
  #listTimer: ReturnType<typeof setInterval> | undefined;
  #listing = false;
  readonly #levels = new Set<LogLevel>(LOG_LEVELS);
  readonly #logFilter: LogFilter = { stack: undefined, text: "" };
  /** The stack whose panel is open. */
  #openStack: string | undefined;

  readonly #topBar = new TopBarView({ onWatch: (id) => this.watch(id) });
  readonly #connectionForm = new ConnectionFormView({
    onConnect: (url, token) => this.#connectEntered(url, token),
    onReconnect: () => this.#client?.reconnect(),
    onSignIn: (entry) => void this.#signIn(entry),
  });
  readonly #list = new DeploymentListView({ onOpen: (id) => this.watch(id) });
  readonly #header = new DeploymentHeaderView({
    onRetry: () => {
      const model = this.#model;
      if (model !== null) {
        this.watch(model.deploymentId);
      }
    },
  });
  readonly #stacks = new StackCardsView({ onToggle: (name) => this.#toggleStack(name) });
  readonly #stackPanel = new StackPanelView({ onClose: () => this.#closeStack() });
  readonly #log = new LogPaneView({
    onText: (text) => {
      this.#logFilter.text = text;
      this.#log.applyFilter(this.#model, this.#logFilter);
    },
    onStack: (name) => {
      this.#logFilter.stack = name;
      this.#log.applyFilter(this.#model, this.#logFilter);
      this.#stacks.markPressed(this.#logFilter.stack);
    },
    onLevel: (level) => this.#toggleLevel(level),
  });

  async start(): Promise<void> {
    document.addEventListener("visibilitychange", () => this.#refreshList());
    this.#renderRecent();
    this.#log.renderLevels(this.#model, this.#levels);
    // A running deployment's duration counts on between events; a finished one's stands still.
    setInterval(() => this.#tick(), TICK_INTERVAL);
    const params = readPageParams(window.location);
    forgetTokenInAddress(window.location, window.history);
    // Served by cloud-ws local: its outputs name its user pool, so signing in needs only a username.
    void localOutputs(window.location.href).then((outputs) => {
      if (outputs !== null) {
        this.#connectionForm.fillSignIn(outputs, false);
      }
    });
    if (params.deployment !== null && isValidDeploymentId(params.deployment)) {
      this.watch(params.deployment);
    }
    const resolution = await resolveSettings(params, window.location.href);
    const ignored = params.queryToken ? ` ${QUERY_TOKEN_IGNORED}` : "";
    if (resolution.kind === "ask") {
      // Prefilled with the URL to confirm, never with a token: the user pastes one for that stack.
      this.#connectionForm.ask(resolution.url);
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
    this.#connectionForm.showSettings(settings);
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

  /** The Connection… form's URL and token: a local stack's or a sign-in's settings stay when only the URL is confirmed. */
  #connectEntered(url: string, token: string): void {
    if (!/^wss?:\/\//.test(url)) {
      this.#notify("The WebSocket URL starts with wss:// (or ws:// locally).");
      return;
    }
    const current = this.#settings;
    const next =
      current !== null && (current.source === "local-stack" || current.session !== null) && current.url === url && token === ""
        ? current
        : enteredSettings(url, token);
    this.#connectionForm.close();
    this.#notify(null);
    this.connect(next);
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
    const fixed = settings !== null && settings.session === null ? settings.token : null;
    const exp = tokenExpiry(fixed);
    const left = exp === undefined ? Infinity : exp - Date.now();
    this.#topBar.showTokenExpiry(left > TOKEN_WARNING ? undefined : left);
  }

  /** Signs in with the form's username and password; on success connects with the session, else says why and changes nothing. */
  async #signIn(entry: SignInEntry): Promise<void> {
    const form = this.#connectionForm;
    const origin = socketOrigin(entry.url);
    const target = signInTarget(entry.region, entry.clientId, entry.endpoint);
    if (origin === null) {
      form.signInFailed("The WebSocket URL above starts with wss:// (or ws:// locally): the sign-in is for that stack.");
      return;
    }
    if (target === null) {
      form.signInFailed("Enter the stack's region and app client id (its region and user_pool_client_id outputs), or paste its outputs JSON.");
      return;
    }
    if (entry.username === "" || entry.password === "") {
      form.signInFailed("Enter your username and password.");
      return;
    }
    form.signInPending(true);
    try {
      const session = await CognitoSession.signIn(target, origin, entry.username, entry.password);
      const settings = signedInSettings(entry.url, session);
      form.close();
      this.#notify(null);
      this.connect(settings);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      form.signInFailed(error instanceof SignInError ? `Sign-in refused: ${message}` : `Sign-in failed: ${message}`);
    } finally {
      form.signInPending(false);
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
    this.#topBar.showWatched(deploymentId);
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
    this.#log.reset();
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
          this.#list.render(rows);
        }
      })
      .catch((error: unknown) => {
        this.#notify(`Cannot list deployments: ${error instanceof Error ? error.message : String(error)}`);
      })
      .finally(() => {
        this.#listing = false;
      });
  }

  #renderRecent(): void {
    this.#topBar.renderRecent(recentDeployments());
  }

  // -- notices and the connection ----------------------------------------------------------------

  #openSettings(message: string | null): void {
    this.#connectionForm.open();
    if (message !== null) {
      this.#notify(message);
    }
  }

  #notify(message: string | null): void {
    this.#topBar.notify(message);
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
    this.#topBar.showConnection(state, this.#reconnects, this.#attempt);
  }

  // -- the deployment page ---------------------------------------------------------------------

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
    // How often the page was drawn: the browser test checks batches are drawn at once.
    this.#renders += 1;
    this.#header.render(model, this.#renders);
    this.#list.show(model === null);
    if (model === null) {
      return;
    }
    if (model.refusal !== undefined) {
      this.#stackPanel.hide();
      return;
    }
    this.#stacks.render(model.layers, model.unlayeredStacks, model.status, this.#logFilter.stack);
    this.#renderStackPanel();
    this.#log.render(model, this.#logFilter, this.#levels);
  }

  /** Redraws what counts with the clock: a running deployment's duration, and its open stack's running resources. */
  #tick(): void {
    this.#showTokenExpiry();
    const model = this.#model;
    if (model === null || document.hidden || model.refusal !== undefined || model.terminal) {
      return;
    }
    this.#header.showDuration(model);
    if (this.#openStack !== undefined && model.stack(this.#openStack)?.state === "deploying") {
      this.#renderStackPanel();
    }
  }

  #renderStackPanel(): void {
    this.#stackPanel.render(this.#model, this.#openStack);
  }

  /** Opens a stack's panel (its card clicked again closes it), showing its lines in the log pane too. */
  #toggleStack(name: string): void {
    this.#filterLogByStack(name);
    this.#openStack = this.#logFilter.stack;
    this.#renderStackPanel();
    if (this.#openStack !== undefined) {
      this.#stackPanel.scrollIntoView();
    }
  }

  #closeStack(): void {
    const name = this.#openStack;
    this.#openStack = undefined;
    if (name !== undefined && this.#logFilter.stack === name) {
      this.#filterLogByStack(name); // the log pane shows all lines again, as a second click would
    }
    this.#renderStackPanel();
  }

  #filterLogByStack(name: string): void {
    this.#logFilter.stack = this.#logFilter.stack === name ? undefined : name;
    this.#log.renderStackChoices(this.#model, this.#logFilter, true);
    this.#log.applyFilter(this.#model, this.#logFilter);
    this.#stacks.markPressed(this.#logFilter.stack);
  }

  #toggleLevel(level: LogLevel): void {
    if (this.#levels.has(level)) {
      this.#levels.delete(level);
    } else {
      this.#levels.add(level);
    }
    this.#log.showLevel(level, this.#levels.has(level));
    this.#log.renderLevels(this.#model, this.#levels);
  }
}
