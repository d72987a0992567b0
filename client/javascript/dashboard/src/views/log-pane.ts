/**
 * The log pane: the attempt's lines (drawn as they come, all again when the model replaced
 * them), the level chips with their counts, the text and stack filters, and the note on what
 * the pane does not show.
 */

import { LOG_LEVELS, type LogLevel } from "../../../src/index.js";
import { type DeploymentModel, type LogFilter, logLineMatches } from "../model.js";
import { clockTime, element, make } from "./dom.js";

export interface LogPaneActions {
  /** The text filter changed. */
  onText(text: string): void;
  /** A stack chosen in the stack filter (undefined: all stacks). */
  onStack(stackName: string | undefined): void;
  /** A level's chip clicked. */
  onLevel(level: LogLevel): void;
}

export class LogPaneView {
  #renderedLogs = 0;
  #renderedLogsRevision = -1;
  #logStacksShown = "";
  readonly #actions: LogPaneActions;
  readonly #ui = {
    logText: element<HTMLInputElement>("log-text"),
    logStack: element<HTMLSelectElement>("log-stack"),
    logNote: element<HTMLParagraphElement>("log-note"),
    logFilter: element<HTMLDivElement>("log-filter"),
    log: element<HTMLOListElement>("log"),
  };

  constructor(actions: LogPaneActions) {
    this.#actions = actions;
    const ui = this.#ui;
    ui.logText.addEventListener("input", () => actions.onText(ui.logText.value));
    ui.logStack.addEventListener("change", () => actions.onStack(ui.logStack.value === "" ? undefined : ui.logStack.value));
  }

  /** Forgets the lines drawn (a new deployment model). */
  reset(): void {
    this.#renderedLogs = 0;
    this.#renderedLogsRevision = -1;
    this.#ui.log.replaceChildren();
  }

  /** The stack filter's choices, then the lines the pane has not drawn yet. */
  render(model: DeploymentModel, filter: LogFilter, levels: ReadonlySet<LogLevel>): void {
    this.renderStackChoices(model, filter);
    this.#renderLines(model, filter, levels);
  }

  #renderLines(model: DeploymentModel, filter: LogFilter, levels: ReadonlySet<LogLevel>): void {
    const lines = model.logs;
    const revision = model.logsRevision;
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
        item.hidden = !logLineMatches(line, filter);
        item.append(make("time", "log-time", clockTime(line.timestamp)), make("span", `level level-${line.level}`, line.level));
        if (line.stackName !== undefined) {
          item.append(make("span", "log-stack", line.stackName));
        }
        item.append(make("span", "log-message", line.message));
        return item;
      }),
    );
    this.renderLevels(model, levels);
    this.#renderNote(model, filter);
    if (nearBottom) {
      log.scrollTop = log.scrollHeight;
    }
  }

  /** Shows the lines that pass the stack and text filters (the level chips hide with CSS). */
  applyFilter(model: DeploymentModel | null, filter: LogFilter): void {
    const lines = model?.logs ?? [];
    const items = this.#ui.log.children;
    // The pane's items are the model's lines in order (#renderLines keeps them so).
    for (let index = 0; index < items.length; index += 1) {
      const item = items[index];
      const line = lines[index];
      if (item instanceof HTMLElement && line !== undefined) {
        item.hidden = !logLineMatches(line, filter);
      }
    }
    this.#renderNote(model, filter);
  }

  /** The stack filter's choices: every stack of the attempt and every stack its lines name. */
  renderStackChoices(model: DeploymentModel | null, filter: LogFilter, force = false): void {
    const names = model?.logStacks ?? [];
    const key = names.join("\n");
    const select = this.#ui.logStack;
    if (force || key !== this.#logStacksShown) {
      this.#logStacksShown = key;
      const chosen = filter.stack;
      const options = names.includes(chosen ?? "") || chosen === undefined ? names : [...names, chosen];
      select.replaceChildren(make("option", "", "All stacks", { value: "" }), ...options.map((name) => make("option", "", name, { value: name })));
    }
    select.value = filter.stack ?? "";
  }

  /** Says what the pane does not show: lines before the snapshot's latest, lines the filters hide. */
  #renderNote(model: DeploymentModel | null, filter: LogFilter): void {
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
    const filtering = filter.stack !== undefined || filter.text.trim() !== "";
    if (filtering) {
      const shown = model.logs.filter((line) => logLineMatches(line, filter)).length;
      parts.push(`${shown} of ${model.logs.length} lines match the filter.`);
    }
    note.hidden = parts.length === 0;
    note.textContent = parts.join(" ");
    note.dataset["notHeld"] = String(notHeld);
  }

  /** The level chips: the attempt's count of each level (also its lines before the snapshot's latest 50), pressed when shown. */
  renderLevels(model: DeploymentModel | null, levels: ReadonlySet<LogLevel>): void {
    const counts = model?.logCounts ?? new Map<string, number>();
    this.#ui.logFilter.replaceChildren(
      ...LOG_LEVELS.map((level) => {
        const button = make("button", `chip level-${level}`, `${level} ${counts.get(level) ?? 0}`, {
          type: "button",
          "data-level": level,
          "aria-pressed": String(levels.has(level)),
        });
        button.addEventListener("click", () => this.#actions.onLevel(level));
        return button;
      }),
    );
  }

  /** Shows or hides a level's lines (a class on the pane: CSS hides them). */
  showLevel(level: LogLevel, shown: boolean): void {
    this.#ui.log.classList.toggle(`hide-${level}`, !shown);
  }
}
