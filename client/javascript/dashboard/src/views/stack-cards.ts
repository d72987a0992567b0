/** The deployment's stacks as cards, grouped by layer (a card's click or Enter toggles its panel). */

import type { StackStatus } from "../../../src/index.js";
import { formatDuration, type LayerView, type StackView } from "../model.js";
import { element, make } from "./dom.js";

const STACK_STATE_TEXT: Record<StackStatus, string> = {
  pending: "pending",
  deploying: "deploying",
  deployed: "deployed",
  failed: "failed",
  cancelled: "cancelled",
};

export interface StackCardsActions {
  /** A stack's card clicked (or Enter, or Space, on it). */
  onToggle(stackName: string): void;
}

export class StackCardsView {
  readonly #actions: StackCardsActions;
  readonly #stacks = element<HTMLDivElement>("stacks");

  constructor(actions: StackCardsActions) {
    this.#actions = actions;
  }

  /**
   * The cards; `status` is the deployment's (a stack a cancelled attempt left behind says
   * "cancelled"), `pressed` the stack whose lines the log shows.
   */
  render(layers: readonly LayerView[], unlayered: readonly StackView[], status: string | undefined, pressed: string | undefined): void {
    const groups: { title: string; stacks: readonly StackView[] }[] = layers
      .filter((layer) => layer.stacks.length > 0)
      .map((layer) => ({ title: `Layer ${layer.number}`, stacks: layer.stacks }));
    if (unlayered.length > 0) {
      groups.push({ title: groups.length > 0 ? "Other stacks" : "", stacks: unlayered });
    }
    if (groups.length === 0) {
      this.#stacks.replaceChildren(make("p", "muted", "No stack has started yet."));
      return;
    }
    this.#stacks.replaceChildren(
      ...groups.map((group) => {
        const section = make("section", "stack-group");
        if (group.title) {
          section.append(make("h3", "", group.title));
        }
        const grid = make("div", "stack-grid");
        grid.append(...group.stacks.map((stack) => this.#card(stack, status, pressed)));
        section.append(grid);
        return section;
      }),
    );
  }

  /** The card of the stack whose lines the log shows is pressed. */
  markPressed(pressed: string | undefined): void {
    this.#stacks.querySelectorAll<HTMLElement>(".stack").forEach((card) => {
      card.setAttribute("aria-pressed", String(card.dataset["stack"] === pressed));
    });
  }

  #card(stack: StackView, status: string | undefined, pressed: string | undefined): HTMLElement {
    const card = make("article", `stack stack-${stack.state}${stack.stopped ? " stack-stopped" : ""}`, "", {
      "data-stack": stack.name,
      "data-state": stack.state,
      "data-stopped": String(stack.stopped),
      title: `Show ${stack.name}'s resources and log lines`,
    });
    const head = make("div", "stack-head");
    // A stack the attempt left behind says so (it keeps its folded state in data-state).
    const badge = stack.stopped ? (status === "cancelled" ? "cancelled" : "stopped") : STACK_STATE_TEXT[stack.state];
    head.append(make("span", "stack-name", stack.name), make("span", `badge badge-${stack.stopped ? "stopped" : stack.state}`, badge));
    // A click (or Enter) opens the stack's panel and shows its own log lines (the log pane's
    // stack filter); again, closes it and shows all lines.
    card.tabIndex = 0;
    card.setAttribute("aria-pressed", String(pressed === stack.name));
    card.addEventListener("click", () => this.#actions.onToggle(stack.name));
    card.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.#actions.onToggle(stack.name);
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
}
