// NONE data source: the result is the arguments; AppSync fans it out to subscribers.
export function request(ctx) {
  return { payload: ctx.args };
}

export function response(ctx) {
  return ctx.result;
}
