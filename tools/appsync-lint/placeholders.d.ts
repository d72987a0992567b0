// The placeholders pulumi_component/appsync.py substitutes into the resolvers, with the types of
// what it writes there, so the type-aware rules know what SUBSCRIBE_GROUPS.some(...) is.
declare const __SUBSCRIBE_GROUPS__: string[];
declare const __ACCESS_POLICY__: Record<string, string[]>;
declare const __DEFAULT_LIMIT__: number;
declare const __MAX_LIMIT__: number;
declare const __ROW_EVENTS__: number;
declare const __MAX_FILTERS__: number;
declare const __INITIAL__: Record<string, unknown>;
