/** The home page: the recent deployments' table (a row's click opens the deployment). */

import type { DeploymentSummary } from "../../../src/index.js";
import { formatAge } from "../model.js";
import { element, make } from "./dom.js";

export interface DeploymentListActions {
  onOpen(deploymentId: string): void;
}

export class DeploymentListView {
  readonly #actions: DeploymentListActions;
  readonly #ui = {
    home: element<HTMLElement>("empty"),
    deployments: element<HTMLTableElement>("deployments"),
    deploymentRows: element<HTMLTableSectionElement>("deployments-rows"),
    deploymentsEmpty: element<HTMLParagraphElement>("deployments-empty"),
  };

  constructor(actions: DeploymentListActions) {
    this.#actions = actions;
  }

  /** The home page is shown when no deployment is. */
  show(shown: boolean): void {
    this.#ui.home.hidden = !shown;
  }

  render(rows: readonly DeploymentSummary[]): void {
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
        tr.addEventListener("click", () => this.#actions.onOpen(row.deployment_id));
        return tr;
      }),
    );
  }
}
