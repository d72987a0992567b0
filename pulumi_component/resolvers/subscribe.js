import { util, extensions, authorize, grantsOf, granted, projectOf } from './authorize.js'; // lint-only

// Runs when a client subscribes: a refusal here means no subscription is created. The deployment's
// counter row says its project (absent: nobody has reported on it yet).
export function request(ctx) {
  authorize(ctx);
  return {
    operation: 'GetItem',
    key: util.dynamodb.toMapValues({ deploymentId: ctx.args.deployment_id, seq: 0 }),
    consistentRead: true,
    projection: { expression: 'projectName, lastSeq' },
  };
}

// Known deployment: its project must be granted. Either way, the subscription only receives
// what the publisher marks with a granted project (enhanced subscription filter): a literal
// pattern is an `eq`, `prefix*` a `beginsWith`, `*` no filter at all. A pattern with an inner `*`
// cannot be expressed as a filter and grants nothing here (it still does in queries).
export function response(ctx) {
  if (ctx.error) {
    util.error(ctx.error.message, ctx.error.type);
  }
  const grants = grantsOf(ctx);
  if (ctx.result && ctx.result.lastSeq && !granted(grants, projectOf(ctx.result))) {
    util.unauthorized();
  }
  if (grants.includes('*')) {
    return null;
  }
  const any = [];
  for (const pattern of grants) {
    const star = pattern.indexOf('*');
    if (star < 0) {
      any.push({ project: { eq: pattern } });
    } else if (star === pattern.length - 1) {
      any.push({ project: { beginsWith: pattern.slice(0, star) } });
    }
  }
  if (any.length === 0 || any.length > __MAX_FILTERS__) {
    util.unauthorized();
  }
  extensions.setSubscriptionFilter(util.transform.toSubscriptionFilter({ or: any }));
  return null;
}
