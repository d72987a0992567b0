import { util, extensions } from '@aws-appsync/utils';

const SUBSCRIBE_GROUPS = __SUBSCRIBE_GROUPS__;
// The stack's access policy (contract.environment.ACCESS_POLICY): Cognito group -> project patterns,
// `*` matching any run of characters; {} grants no group any project.
const ACCESS_POLICY = __ACCESS_POLICY__;

// The WebSocket API's rule (contract.authorization.may_subscribe): a well-formed deployment id,
// and, when SUBSCRIBE_GROUPS is set, membership of one of those Cognito groups.
function authorize(ctx) {
  const id = ctx.args.deployment_id;
  if (!util.matches('__ID_PATTERN__', id)) {
    util.error('deployment_id must match __ID_PATTERN__', 'ValidationError');
  }
  if (SUBSCRIBE_GROUPS.length > 0) {
    const groups = (ctx.identity && ctx.identity.groups) || [];
    if (!groups.some((group) => SUBSCRIBE_GROUPS.includes(group))) {
      util.unauthorized();
    }
  }
}

// The project patterns the caller's groups grant (contract.authorization.grants_of).
function grantsOf(ctx) {
  const groups = (ctx.identity && ctx.identity.groups) || [];
  const grants = [];
  for (const group of groups) {
    const patterns = ACCESS_POLICY[group] || [];
    for (const pattern of patterns) {
      grants.push(pattern);
    }
  }
  return grants;
}

// `*` matches any run of characters; patterns hold only [a-z0-9._*-], so `.` is the one to escape.
function granted(grants, project) {
  return grants.some((pattern) =>
    util.matches('^' + pattern.split('.').join('\\.').split('*').join('.*') + '$', project)
  );
}

// A stored row's project: rows stored before projects existed belong to the default one.
function projectOf(item) {
  return (item && item.projectName) || 'default';
}
export { util, extensions, authorize, grantsOf, granted, projectOf }; // lint-only (pulumi_component/appsync.py)
