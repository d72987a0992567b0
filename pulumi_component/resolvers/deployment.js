import { util, authorize, grantsOf, granted, projectOf } from './authorize.js'; // lint-only

// The deployment's snapshot as of its latest checkpoint: the state the broadcaster folds and
// writes to the `D#state` row every few hundred events, on every status change and whenever the
// deployment goes quiet (contract/keys.py). `seq` says how far it reaches: deploymentEvents(since: seq)
// returns what came after.
export function request(ctx) {
  authorize(ctx);
  return {
    operation: 'GetItem',
    key: util.dynamodb.toMapValues({ deploymentId: ctx.args.deployment_id + '#state', seq: 0 }),
    consistentRead: true,
    projection: { expression: 'upTo, #state, projectName', expressionNames: { '#state': 'state' } },
  };
}

// A state stored by an older broadcaster orders its fields with `_keys`, which a snapshot leaves out.
function withoutKeys(stored) {
  const result = {};
  for (const name of Object.keys(stored)) {
    if (name !== '_keys') {
      result[name] = stored[name];
    }
  }
  return result;
}

export function response(ctx) {
  if (ctx.error) {
    util.error(ctx.error.message, ctx.error.type);
  }
  const item = ctx.result;
  if (item && !granted(grantsOf(ctx), projectOf(item))) {
    util.unauthorized();
  }
  const stored = item && item.state ? JSON.parse(item.state) : null;
  const state = stored ? withoutKeys(stored) : __INITIAL__;
  const stacks = {};
  for (const name of Object.keys(state.stacks || {})) {
    stacks[name] = withoutKeys(state.stacks[name]);
  }
  state.stacks = stacks;
  state.deployment_id = ctx.args.deployment_id;
  state.seq = item && item.upTo ? item.upTo : 0;
  return JSON.stringify(state);
}
