/**
 * The deployment page's head: its id, status and facts (attempt, layer, stacks, duration,
 * events), the end banner, the refusal's view, and the progress bar with its layers.
 */

import { type DeploymentModel, formatDuration, type LayerView } from "../model.js";
import { element, make } from "./dom.js";

const LAYER_STATE_TEXT: Record<LayerView["state"], string> = {
  pending: "pending",
  active: "deploying",
  done: "done",
  failed: "failed",
  cancelled: "cancelled",
  skipped: "not deployed",
};

export interface DeploymentHeaderActions {
  /** Try again, after a refusal. */
  onRetry(): void;
}

export class DeploymentHeaderView {
  readonly #ui = {
    deployment: element<HTMLElement>("deployment"),
    deploymentId: element<HTMLHeadingElement>("deployment-id"),
    status: element<HTMLDivElement>("deployment-status"),
    attemptText: element<HTMLElement>("attempt-text"),
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
    progressBar: element<HTMLDivElement>("progress-bar"),
    layers: element<HTMLOListElement>("layers"),
    columns: element<HTMLDivElement>("columns"),
  };

  constructor(actions: DeploymentHeaderActions) {
    this.#ui.forbiddenRetry.addEventListener("click", () => actions.onRetry());
  }

  /**
   * Draws the deployment page's head from the model (or hides the page when none is shown);
   * `renders` is how often the page was drawn (the browser test checks batches are drawn at once).
   */
  render(model: DeploymentModel | null, renders: number): void {
    const ui = this.#ui;
    ui.stats.dataset["renders"] = String(renders);
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
    this.showDuration(model);
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
  }

  /** The deployment's duration (a running one's counting on between events). */
  showDuration(model: DeploymentModel): void {
    const elapsed = model.elapsed(Date.now());
    this.#ui.durationText.textContent = elapsed === undefined ? "–" : `${formatDuration(elapsed.seconds)}${elapsed.running ? " so far" : ""}`;
  }
}
