/**
 * The TypeScript client's copies of the protocol constants equal the shared
 * ones (conformance/protocol.json, read from the repository, never copied;
 * tests/test_client/test_contract.py holds that file to the server's modules
 * and the Python client). A constant that drifts from the server fails here.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";

import { FATAL_SUBSCRIBE_CODES, RECONNECT_CODES } from "../src/core.js";
import {
  DEFAULT_LIST_LIMIT,
  DEPLOYMENT_STATUSES,
  ERROR_CODES,
  LOG_LEVELS,
  LOG_MESSAGE_CHARS,
  MAX_LIST_LIMIT,
  RECENT_LOGS,
  stackStatusOf,
  TERMINAL_STATUSES,
} from "../src/index.js";
import * as publicSurface from "../src/index.js";
import {
  DEPLOYMENT_ID_PATTERN,
  MAX_REQUEST_ID_LENGTH,
  MESSAGE_SEPARATOR,
  parseServerMessage,
  SUBPROTOCOL,
  splitFrame,
  TOKEN_SUBPROTOCOL_PREFIX,
} from "../src/protocol.js";
import { REPO_ROOT } from "./support/stack.js";

interface SharedConstants {
  subprotocol: string;
  token_subprotocol_prefix: string;
  deployment_id_pattern: string;
  max_request_id_chars: number;
  default_list_limit: number;
  max_list_limit: number;
  message_separator: string;
  deployment_statuses: string[];
  terminal_statuses: string[];
  log_levels: string[];
  error_codes: string[];
  reconnect_error_codes: string[];
  refused_subscription_codes: string[];
  recent_logs: number;
  log_message_chars: number;
  stack_status: Record<string, string>;
}

const SHARED = JSON.parse(readFileSync(join(REPO_ROOT, "conformance", "protocol.json"), "utf8")) as SharedConstants;

const sorted = (values: Iterable<string>): string[] => [...values].sort();

describe("conformance/protocol.json", () => {
  test("the handshake and request limits", () => {
    assert.equal(SUBPROTOCOL, SHARED.subprotocol);
    assert.equal(TOKEN_SUBPROTOCOL_PREFIX, SHARED.token_subprotocol_prefix);
    assert.equal(DEPLOYMENT_ID_PATTERN.source, SHARED.deployment_id_pattern);
    assert.equal(MAX_REQUEST_ID_LENGTH, SHARED.max_request_id_chars);
    assert.equal(DEFAULT_LIST_LIMIT, SHARED.default_list_limit);
    assert.equal(MAX_LIST_LIMIT, SHARED.max_list_limit);
    assert.equal(MESSAGE_SEPARATOR, SHARED.message_separator);
  });

  test("statuses and log levels", () => {
    assert.deepEqual(sorted(DEPLOYMENT_STATUSES), sorted(SHARED.deployment_statuses));
    assert.deepEqual(sorted(TERMINAL_STATUSES), sorted(SHARED.terminal_statuses));
    assert.deepEqual([...LOG_LEVELS], SHARED.log_levels);
  });

  test("every error code the server sends is known to the client", () => {
    assert.deepEqual(sorted(ERROR_CODES), sorted(SHARED.error_codes));
    assert.deepEqual(sorted(RECONNECT_CODES), sorted(SHARED.reconnect_error_codes));
    // A refused subscribe that asking again cannot change is dropped, not resent on every reconnect.
    assert.deepEqual(sorted(FATAL_SUBSCRIBE_CODES), sorted(SHARED.refused_subscription_codes));
    for (const code of SHARED.error_codes) {
      const parsed = parseServerMessage(JSON.stringify({ type: "error", code, message: "refused" }));
      assert.equal(parsed.type, "error");
      assert.equal((parsed as { code: string }).code, code);
    }
  });

  test("the folding constants", () => {
    assert.equal(RECENT_LOGS, SHARED.recent_logs);
    assert.equal(LOG_MESSAGE_CHARS, SHARED.log_message_chars);
    for (const [type, status] of Object.entries(SHARED.stack_status)) {
      assert.equal(stackStatusOf(type), status, type);
    }
    assert.equal(stackStatusOf("log.created"), undefined);
  });

  test("a frame splits on the shared separator", () => {
    const messages = [{ type: "pong" }, { type: "unsubscribed", deployment_id: "D1" }].map((m) => JSON.stringify(m));
    assert.deepEqual(splitFrame(messages.join(SHARED.message_separator)), messages);
  });
});

describe("the package's public surface", () => {
  test("index.ts exports a deliberate list of values, not everything protocol.ts has", () => {
    // Adding a name here is a decision about the package's API: wire internals (the
    // subprotocol, the frame parser, request-id limits) stay importable from ./protocol.js only.
    assert.deepEqual(Object.keys(publicSurface).sort(), [
      "CloudWebSocketClient",
      "CognitoTokens",
      "ClientProtocol",
      "DEFAULT",
      "DEFAULT_LIST_LIMIT",
      "DEPLOYMENT_STATUSES",
      "DeploymentSequence",
      "DeploymentState",
      "ERROR_CODES",
      "KNOWN_EVENT_TYPES",
      "LOG_LEVELS",
      "LOG_MESSAGE_CHARS",
      "MAX_LIST_LIMIT",
      "MAX_PENDING_LISTS",
      "ProtocolViolation",
      "RECENT_LOGS",
      "REFRESH_MARGIN_MS",
      "RequestError",
      "SignInError",
      "SubscriptionError",
      "TERMINAL_STATUSES",
      "backoffDelay",
      "buildHandshake",
      "deadConnectionBound",
      "epochMs",
      "isEventOf",
      "isTerminalStatus",
      "isTruncated",
      "isValidDeploymentId",
      "logEntryOf",
      "parseSnapshotData",
      "replacementDelay",
      "signInTarget",
      "stackStatusOf",
      "tokenExpiry",
    ].sort());
  });

  test("the wire internals are not part of it", () => {
    for (const name of ["SUBPROTOCOL", "TOKEN_SUBPROTOCOL_PREFIX", "MESSAGE_SEPARATOR", "parseServerMessage", "splitFrame"]) {
      assert.equal(Object.hasOwn(publicSurface, name), false, name);
    }
  });
});
