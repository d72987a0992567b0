"""The cloud-ws GraphQL schema as AppSync reads it, built for graphql-core.

``contract/schema.graphql`` is written for AppSync, which knows ``AWSJSON`` and
the ``@aws_*`` directives without declarations; graphql-core does not, so this
module prepends AppSync's built-ins, gives ``AWSJSON`` AppSync's behaviour (a
JSON document travelling as a string) and reads from the directives what the
local server enforces: which authorization modes may use each field, and which
mutations trigger each subscription.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLField,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    StringValueNode,
    ValueNode,
    build_schema,
    get_directive_values,
)

from contract.graphql import SCHEMA_PATH

#: Authorization modes, named as AppSync names them.
COGNITO = "AMAZON_COGNITO_USER_POOLS"
IAM = "AWS_IAM"

#: AppSync's built-in scalars and directives, which AppSync schemas use without declaring.
APPSYNC_PRELUDE = """
scalar AWSJSON
scalar AWSDate
scalar AWSTime
scalar AWSDateTime
scalar AWSTimestamp
scalar AWSEmail
scalar AWSURL
scalar AWSPhone
scalar AWSIPAddress
directive @aws_iam on OBJECT | FIELD_DEFINITION
directive @aws_cognito_user_pools(cognito_groups: [String]) on OBJECT | FIELD_DEFINITION
directive @aws_api_key on OBJECT | FIELD_DEFINITION
directive @aws_oidc on OBJECT | FIELD_DEFINITION
directive @aws_lambda on OBJECT | FIELD_DEFINITION
directive @aws_subscribe(mutations: [String]) on FIELD_DEFINITION
"""

#: Directive name → the authorization mode it admits.
_MODE_DIRECTIVES = {
    "aws_iam": IAM,
    "aws_cognito_user_pools": COGNITO,
    "aws_api_key": "API_KEY",
    "aws_oidc": "OPENID_CONNECT",
    "aws_lambda": "AWS_LAMBDA",
}


def _json_text(value: Any) -> str:
    """AWSJSON out: AppSync returns the document as a JSON string."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            raise GraphQLError("AWSJSON value is not valid JSON") from None
        return value
    return json.dumps(value, separators=(",", ":"))


def _json_value(value: Any) -> Any:
    """AWSJSON in (variables): a string holding a JSON document, parsed."""
    if not isinstance(value, str):
        raise GraphQLError("AWSJSON expects a string holding a JSON document")
    try:
        return json.loads(value)
    except ValueError:
        raise GraphQLError(f"Unable to parse {value!r} as valid JSON") from None


def _json_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> Any:
    """AWSJSON in (inline literal): only a string literal holds a JSON document."""
    if not isinstance(node, StringValueNode):
        raise GraphQLError("AWSJSON expects a string literal holding a JSON document")
    return _json_value(node.value)


@dataclass(frozen=True)
class AppSyncSchema:
    """The executable schema and the AppSync rules read from its directives."""

    schema: GraphQLSchema
    default_mode: str
    additional_modes: frozenset[str]
    triggers: dict[str, tuple[str, ...]]
    """Mutation field → the subscription fields it publishes to (``@aws_subscribe``)."""

    def allowed_modes(self, parent: GraphQLObjectType, field: GraphQLField) -> frozenset[str]:
        """Modes that may resolve ``parent.field``, by AppSync's rule.

        A field's own directives decide; without any, its type's directives; without
        any, only the API's default mode.
        """
        for node in (field.ast_node, parent.ast_node):
            modes = _modes(node)
            if modes:
                return modes
        return frozenset({self.default_mode})


def _modes(node: Any) -> frozenset[str]:
    if node is None:
        return frozenset()
    names = {directive.name.value for directive in node.directives or ()}
    return frozenset(_MODE_DIRECTIVES[name] for name in names if name in _MODE_DIRECTIVES)


def load_schema(
    path: Path = SCHEMA_PATH,
    default_mode: str = COGNITO,
    additional_modes: frozenset[str] = frozenset({IAM}),
) -> AppSyncSchema:
    """Build the schema from ``path`` (the one schema file) the way AppSync serves it."""
    schema = build_schema(APPSYNC_PRELUDE + path.read_text(encoding="utf-8"))
    aws_json = schema.type_map["AWSJSON"]
    assert isinstance(aws_json, GraphQLScalarType)
    # graphql-core 3.3 reads the coerce_* names; 3.2 (and 3.3's deprecated paths) the older ones.
    aws_json.coerce_output_value = aws_json.serialize = _json_text  # type: ignore[method-assign]
    aws_json.coerce_input_value = aws_json.parse_value = _json_value  # type: ignore[method-assign]
    aws_json.coerce_input_literal = aws_json.parse_literal = _json_literal  # type: ignore[method-assign,assignment]

    triggers: dict[str, list[str]] = {}
    subscribe = schema.get_directive("aws_subscribe")
    assert subscribe is not None
    if schema.subscription_type is not None:
        for name, field in schema.subscription_type.fields.items():
            if field.ast_node is None:
                continue
            values = get_directive_values(subscribe, field.ast_node) or {}
            for mutation in values.get("mutations") or ():
                triggers.setdefault(str(mutation), []).append(name)
    return AppSyncSchema(
        schema=schema,
        default_mode=default_mode,
        additional_modes=additional_modes,
        triggers={mutation: tuple(fields) for mutation, fields in triggers.items()},
    )
