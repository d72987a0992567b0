import { util, authorize, grantsOf, granted, projectOf } from './authorize.js'; // lint-only

// The replay AppSync lacks: seq has no gaps, so the first `limit` events after `since` are seq
// since+1 .. since+limit. A history row holds a run of consecutive events (`firstSeq` .. its
// `seq`, at most __ROW_EVENTS__) and is keyed by its last one, so the rows holding them are keyed
// since+1 .. since+limit+__ROW_EVENTS__-1: one ascending Query, at most `limit` rows.
export function request(ctx) {
  authorize(ctx);
  const { since, limit } = pageOf(ctx.args);
  if (since < 0) {
    util.error('since must not be negative', 'ValidationError');
  }
  if (limit < 1 || limit > __MAX_LIMIT__) {
    util.error('limit must be between 1 and __MAX_LIMIT__', 'ValidationError');
  }
  return {
    operation: 'Query',
    query: {
      expression: 'deploymentId = :d AND #seq BETWEEN :first AND :last',
      expressionNames: { '#seq': 'seq' },
      expressionValues: util.dynamodb.toMapValues({
        ':d': ctx.args.deployment_id,
        ':first': since + 1,
        ':last': since + limit + __ROW_EVENTS__ - 1,
      }),
    },
    consistentRead: true,
    scanIndexForward: true,
    limit: limit,
  };
}

// The page asked for, with its defaults: the request queries it, the response cuts the rows to it.
function pageOf(args) {
  return {
    since: args.since === undefined || args.since === null ? 0 : args.since,
    limit: args.limit === undefined || args.limit === null ? __DEFAULT_LIMIT__ : args.limit,
  };
}

// The wire messages a row holds, with their seq (a row an older version wrote holds one, `message`).
function heldBy(item) {
  if (item.messages) {
    return item.messages.map((message, i) => ({ seq: item.firstSeq + i, message: message }));
  }
  return [{ seq: item.seq, message: item.message }];
}

export function response(ctx) {
  if (ctx.error) {
    util.error(ctx.error.message, ctx.error.type);
  }
  // Every row of a deployment carries its project: the first says whose it is.
  if (ctx.result.items.length > 0 && !granted(grantsOf(ctx), projectOf(ctx.result.items[0]))) {
    util.unauthorized();
  }
  const { since, limit } = pageOf(ctx.args);
  const held = [];
  for (const item of ctx.result.items) {
    for (const entry of heldBy(item)) {
      if (entry.seq > since && entry.seq <= since + limit) {
        held.push(entry.message);
      }
    }
  }
  return held.map((message) => {
    const event = JSON.parse(message);
    return {
      deployment_id: event.deployment_id,
      seq: event.seq,
      type: event.type,
      event_id: event.event_id,
      timestamp: event.timestamp,
      data: JSON.stringify(event.data),
    };
  });
}
