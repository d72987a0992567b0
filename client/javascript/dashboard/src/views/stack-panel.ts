/** The open stack's panel: its resources (a running one's duration counting) and its own log lines. */

import { type DeploymentModel, formatStepDuration, liveOrder, type ResourceView, resourceSeconds } from "../model.js";
import { clockTime, element, make } from "./dom.js";

/** Log lines of one stack its panel shows (the newest; the log pane below has them all). */
const STACK_PANEL_LOG_LINES = 100;

export interface StackPanelActions {
  onClose(): void;
}

export class StackPanelView {
  readonly #ui = {
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

  constructor(actions: StackPanelActions) {
    this.#ui.stackPanelClose.addEventListener("click", () => actions.onClose());
  }

  hide(): void {
    this.#ui.stackPanel.hidden = true;
  }

  scrollIntoView(): void {
    this.#ui.stackPanel.scrollIntoView({ block: "nearest" });
  }

  /** The panel of stack `name` (none when undefined). */
  render(model: DeploymentModel | null, name: string | undefined): void {
    const ui = this.#ui;
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
    ui.resourceRows.replaceChildren(...liveOrder(resources).map((resource) => resourceRow(resource, now, ticking)));
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
}

function resourceRow(resource: ResourceView, now: number, ticking: boolean): HTMLTableRowElement {
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
