"""The wire protocol's AsyncAPI document (``docs/asyncapi.yaml``) as a validator for messages.

Tests hand every message they receive from a real server, and every message
a builder makes, to :func:`validate_server_message`; what clients send goes
to :func:`validate_client_message`. The message is matched to one of the
document's messages by its ``type`` (server) or ``action`` (client), then
checked against that message's payload schema with ``jsonschema``; a mismatch
raises :class:`MessageValidationError`, which names the message, the JSON path
of the offending value and the schema rule it broke.

Payload schemas are AsyncAPI's default schema format, a superset of JSON
Schema draft 07, so they are checked as draft 07 (with ``format`` checked:
``date-time`` needs ``rfc3339-validator``). ``$ref`` is resolved within the
document.

``asyncapi-3.0.0.schema.json`` beside this file is the AsyncAPI 3.0.0 document
schema, ``schemas/3.0.0-without-$id.json`` of the AsyncAPI Initiative's
``spec-json-schemas`` repository (Apache-2.0), stored minified:
:func:`document_errors` checks the document itself against it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT_PATH = ROOT / "docs" / "asyncapi.yaml"
ASYNCAPI_SCHEMA_PATH = Path(__file__).with_name("asyncapi-3.0.0.schema.json")

#: The base URI the document is registered under, so payload ``$ref``s resolve within it.
_DOCUMENT_URI = "urn:cloud-ws:asyncapi"
#: How much of an offending value an error quotes.
_QUOTE_CHARS = 300


class MessageValidationError(AssertionError):
    """A message does not match the AsyncAPI document.

    An ``AssertionError``, so that a test that receives a bad message fails
    (rather than errors) with the explanation.
    """

    def __init__(self, reason: str, *, path: str = "$", message: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path
        """JSON path (``$.data.stacks.network.status``) of the offending value."""
        self.message = message
        """The message that was refused."""


@dataclass(frozen=True)
class MessageSpec:
    """One message of the document, as a receiver or sender sees it."""

    key: str
    """Its key under ``components.messages``."""
    name: str
    """Its ``name`` (``subscribed``, ``deployment.status``, ``stack.*``...)."""
    validator: Draft7Validator
    """Checks a message against the payload schema."""
    discriminator: str
    """The field that tells messages apart: ``type`` (server) or ``action`` (client)."""

    def claims(self, message: Mapping[str, Any]) -> bool:
        """Whether the message's discriminator field is one this message allows."""
        return not any(
            tuple(error.absolute_path)[:1] == (self.discriminator,)
            for error in self.validator.iter_errors(message)
        )


class AsyncApiContract:
    """The messages of an AsyncAPI document, ready to validate instances."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        resource: Resource[Any] = Resource.from_contents(dict(document), default_specification=DRAFT7)
        self._registry: Registry[Any] = Registry().with_resource(_DOCUMENT_URI, resource)
        self.server_messages = self._messages("receive", "type")
        """Messages of the ``receive`` operations: what the server sends."""
        self.client_messages = self._messages("send", "action")
        """Messages of the ``send`` operations: what a client sends."""

    def validator(self, pointer: str) -> Draft7Validator:
        """A validator for the schema at JSON pointer ``pointer`` (``/components/schemas/Seq``)."""
        return Draft7Validator(
            {"$ref": f"{_DOCUMENT_URI}#{pointer}"},
            registry=self._registry,
            format_checker=Draft7Validator.FORMAT_CHECKER,
        )

    def resolve(self, ref: str) -> tuple[str, Any]:
        """Follow a local ``$ref`` (and any ``$ref`` it lands on): its final pointer and value."""
        seen: set[str] = set()
        while True:
            if not ref.startswith("#/"):
                raise ValueError(f"only local references are used in the document, not {ref!r}")
            if ref in seen:
                raise ValueError(f"circular reference {ref!r}")
            seen.add(ref)
            pointer = ref[1:]
            value: Any = self.document
            for part in pointer.split("/")[1:]:
                value = value[part.replace("~1", "/").replace("~0", "~")]
            if not (isinstance(value, Mapping) and "$ref" in value):
                return pointer, value
            ref = value["$ref"]

    def _messages(self, action: str, discriminator: str) -> tuple[MessageSpec, ...]:
        specs: dict[str, MessageSpec] = {}
        for operation in self.document["operations"].values():
            if operation["action"] != action:
                continue
            for reference in operation["messages"]:
                pointer, message = self.resolve(reference["$ref"])
                key = pointer.rsplit("/", 1)[1]
                specs.setdefault(
                    key,
                    MessageSpec(
                        key=key,
                        name=message.get("name", key),
                        validator=self.validator(f"{pointer}/payload"),
                        discriminator=discriminator,
                    ),
                )
        return tuple(specs.values())

    def validate_server_message(self, message: Any) -> str:
        """Check one message the server sent; returns the name of the document's message it is."""
        return _validate(message, self.server_messages, "server message")

    def validate_client_message(self, message: Any) -> str:
        """Check one message a client sends; returns the name of the document's message it is."""
        return _validate(message, self.client_messages, "client message")

    def validate_schema(self, name: str, instance: Any) -> None:
        """Check ``instance`` against ``components.schemas.<name>`` (``SnapshotData``...)."""
        if name not in self.document["components"]["schemas"]:
            raise KeyError(f"docs/asyncapi.yaml has no schema {name!r}")
        _raise_first(self.validator(f"/components/schemas/{name}").iter_errors(instance), name, instance)


def _validate(message: Any, specs: Iterable[MessageSpec], what: str) -> str:
    specs = tuple(specs)
    discriminator = specs[0].discriminator
    if not isinstance(message, Mapping):
        raise MessageValidationError(
            f"a {what} of docs/asyncapi.yaml is a JSON object, not {_quote(message)}", message=message
        )
    kind = message.get(discriminator)
    if not isinstance(kind, str):
        raise MessageValidationError(
            f"a {what} of docs/asyncapi.yaml needs a string {discriminator!r}: {_quote(message)}",
            path=f"$.{discriminator}",
            message=message,
        )
    candidates = [spec for spec in specs if spec.claims(message)]
    if not candidates:
        known = ", ".join(spec.name for spec in specs)
        raise MessageValidationError(
            f"no {what} of docs/asyncapi.yaml has {discriminator} {kind!r} (known: {known})",
            path=f"$.{discriminator}",
            message=message,
        )
    if len(candidates) > 1:
        names = ", ".join(spec.name for spec in candidates)
        raise MessageValidationError(
            f"docs/asyncapi.yaml is ambiguous: {discriminator} {kind!r} matches {names}", message=message
        )
    spec = candidates[0]
    _raise_first(spec.validator.iter_errors(message), spec.name, message)
    return spec.name


def _raise_first(errors: Iterable[ValidationError], name: str, instance: Any) -> None:
    error = best_match(errors)
    if error is None:
        return
    rule = "/".join(str(part) for part in error.schema_path)
    detail = _cut(error.message)
    if error.context:
        # anyOf/oneOf: say why each alternative failed, not only that all did.
        branches = sorted({f"{_branch(sub)}: {_cut(sub.message)}" for sub in error.context})
        detail = f"{detail} ({'; '.join(branches)})"
    reason = (
        f"{name!r} does not match docs/asyncapi.yaml at {error.json_path}: "
        f"{detail} (rule {rule}) in {_quote(instance)}"
    )
    raise MessageValidationError(reason, path=error.json_path, message=instance)


def _branch(error: ValidationError) -> str:
    """Which alternative of an ``anyOf``/``oneOf`` an error is from, and where (``#0 at $.data``)."""
    alternative = error.relative_schema_path[0] if error.relative_schema_path else "?"
    return f"alternative {alternative} at {error.json_path}"


def _cut(text: str) -> str:
    return text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "..."


def _quote(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return _cut(text)


@functools.cache
def contract() -> AsyncApiContract:
    """The project's document, loaded once."""
    return AsyncApiContract(load_document())


def load_document(path: Path = DOCUMENT_PATH) -> dict[str, Any]:
    """The AsyncAPI document as data."""
    with path.open(encoding="utf-8") as file:
        document = yaml.safe_load(file)
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return document


def document_errors(document: Mapping[str, Any]) -> list[str]:
    """Where ``document`` breaks the AsyncAPI 3.0.0 document schema (empty when it is valid)."""
    schema = json.loads(ASYNCAPI_SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = Draft7Validator(schema)
    return [
        f"{error.json_path}: {_cut(error.message)}"
        for error in sorted(validator.iter_errors(document), key=lambda e: e.json_path)
    ]


def validate_server_message(message: Any) -> str:
    """Check one message the server sent against the document; returns its message name.

    Raises:
        MessageValidationError: no message of the document has its ``type``, or it
            breaks that message's payload schema (the error names the JSON path).
    """
    return contract().validate_server_message(message)


def validate_client_message(message: Any) -> str:
    """Check one message a client sends against the document; returns its message name.

    Raises:
        MessageValidationError: no message of the document has its ``action``, or it
            breaks that message's payload schema.
    """
    return contract().validate_client_message(message)


def validate_schema(name: str, instance: Any) -> None:
    """Check ``instance`` against the document's ``components.schemas.<name>``.

    Raises:
        MessageValidationError: it does not match.
    """
    contract().validate_schema(name, instance)


def server_messages(frame: str | bytes) -> list[dict[str, Any]]:
    """The messages of one server frame (one JSON object per line), each validated."""
    text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
    messages: list[dict[str, Any]] = []
    for line in text.split("\n"):
        message = json.loads(line)
        validate_server_message(message)
        messages.append(message)
    return messages
