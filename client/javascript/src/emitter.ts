/** A small typed event emitter: `on` returns the function that removes the handler. */

type Handler = (payload: unknown) => void;

export class Emitter {
  readonly #handlers = new Map<string, Set<Handler>>();
  readonly #onHandlerError: (error: unknown, type: string) => void;

  constructor(onHandlerError: (error: unknown, type: string) => void) {
    this.#onHandlerError = onHandlerError;
  }

  add(type: string, handler: Handler): () => void {
    let set = this.#handlers.get(type);
    if (set === undefined) {
      set = new Set();
      this.#handlers.set(type, set);
    }
    set.add(handler);
    return () => {
      set.delete(handler);
    };
  }

  has(type: string): boolean {
    return (this.#handlers.get(type)?.size ?? 0) > 0;
  }

  /** Calls every handler of `type`; a handler that throws does not stop the others. */
  emit(type: string, payload: unknown): void {
    const set = this.#handlers.get(type);
    if (set === undefined) {
      return;
    }
    for (const handler of [...set]) {
      try {
        handler(payload);
      } catch (error) {
        this.#onHandlerError(error, type);
      }
    }
  }
}
