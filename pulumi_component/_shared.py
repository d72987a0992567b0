"""Small helpers every builder of the component uses."""

import json
from collections.abc import Sequence
from typing import Any

import pulumi


def child(parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
    """Options of a resource the component owns: its URN is ``<component type>$<type>::<name>``."""
    return pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on))


def render_json(document: Any) -> str:
    """A policy or pattern document as the component has always rendered it.

    Compact and in insertion order: a different rendering of the same document
    would show as a change on every existing stack.
    """
    return json.dumps(document, separators=(",", ":"), sort_keys=False)
