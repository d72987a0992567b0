/**
 * A scripted WebSocket server (the `ws` package) standing in for cloud-ws, so
 * tests can produce what the real stack only does under load or by accident:
 * gaps, reordering, capped replays, silent keep-alives, refused subscriptions.
 */

import type { IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { type WebSocket, WebSocketServer } from "ws";

export interface ScriptedConnection {
  socket: WebSocket;
  request: IncomingMessage;
  /** Every frame the client sent, parsed. */
  received: Record<string, unknown>[];
  /**
   * A silent connection is one the server has "forgotten" (as API Gateway can): what the
   * client sends reaches no handler (it is kept in `ignored`) and nothing is sent back; the
   * socket stays open.
   */
  silent: boolean;
  /** Frames received while silent. */
  ignored: Record<string, unknown>[];
  send(message: Record<string, unknown>): void;
  /** Sends several messages in one frame, one per line (how the server batches). */
  sendBatch(messages: Record<string, unknown>[]): void;
}

export class ScriptedServer {
  readonly connections: ScriptedConnection[] = [];
  readonly #server: WebSocketServer;
  #onConnection: (connection: ScriptedConnection) => void = () => undefined;
  #onFrame: (connection: ScriptedConnection, frame: Record<string, unknown>) => void = () => undefined;

  private constructor(server: WebSocketServer) {
    this.#server = server;
    server.on("connection", (socket, request) => {
      const connection: ScriptedConnection = {
        socket,
        request,
        received: [],
        silent: false,
        ignored: [],
        send: (message) => {
          if (!connection.silent) {
            socket.send(JSON.stringify(message));
          }
        },
        sendBatch: (messages) => {
          if (!connection.silent) {
            socket.send(messages.map((message) => JSON.stringify(message)).join("\n"));
          }
        },
      };
      this.connections.push(connection);
      socket.on("message", (data) => {
        const frame = JSON.parse(String(data)) as Record<string, unknown>;
        connection.received.push(frame);
        if (connection.silent) {
          connection.ignored.push(frame);
          return;
        }
        this.#onFrame(connection, frame);
      });
      this.#onConnection(connection);
    });
  }

  static async start(): Promise<ScriptedServer> {
    const server = new WebSocketServer({
      port: 0,
      host: "127.0.0.1",
      // Echo "cloud-ws" when offered, as the real $connect does.
      handleProtocols: (protocols) => (protocols.has("cloud-ws") ? "cloud-ws" : false),
    });
    await new Promise<void>((ready) => server.once("listening", () => ready()));
    return new ScriptedServer(server);
  }

  get url(): string {
    const address = this.#server.address() as AddressInfo;
    return `ws://127.0.0.1:${address.port}/local`;
  }

  /** What to do when a client connects. */
  onConnection(handler: (connection: ScriptedConnection) => void): void {
    this.#onConnection = handler;
  }

  /** What to do with each frame a client sends. */
  onFrame(handler: (connection: ScriptedConnection, frame: Record<string, unknown>) => void): void {
    this.#onFrame = handler;
  }

  /** Every frame received on every connection, in order. */
  get frames(): Record<string, unknown>[] {
    return this.connections.flatMap((connection) => connection.received);
  }

  async close(): Promise<void> {
    for (const client of this.#server.clients) {
      client.terminate();
    }
    await new Promise<void>((done) => this.#server.close(() => done()));
  }
}

/** `message` as a reply to `request`: with the request's `id` echoed, as the server does. */
export function reply(request: Record<string, unknown>, message: Record<string, unknown>): Record<string, unknown> {
  return typeof request["id"] === "string" ? { ...message, id: request["id"] } : message;
}

/** A deployment event frame as the server sends it. */
export function event(deploymentId: string, seq: number, type = "log.created", data: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type,
    deployment_id: deploymentId,
    seq,
    event_id: `e-${seq}`,
    data: Object.keys(data).length > 0 ? data : { level: "info", message: `message ${seq}` },
    timestamp: new Date(Date.UTC(2026, 10, 26, 10, 0, seq)).toISOString(),
  };
}
