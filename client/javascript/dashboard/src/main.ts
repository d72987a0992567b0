/**
 * The dashboard's entry point (bundled into dist/app.js): starts the controller
 * (controller.ts: the connection, the subscriptions, what the page shows), which
 * draws through the views (views/*.ts: the top bar, the Connection… form, the
 * deployment list, the deployment's head, its stack cards, the stack panel and
 * the log pane).
 */

import { DashboardController } from "./controller.js";

void new DashboardController().start();
