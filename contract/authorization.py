"""Who may watch which deployment: projects and the access policy.

Every deployment belongs to one project (``detail.project`` of its events,
``default`` when absent), fixed by its first stored event. The access policy
maps Cognito groups to project patterns (``*`` matches any run of
characters): ``{"team-a": ["alpha"], "sre": ["*"]}``. A user may watch a
deployment when one of their ``cognito:groups`` grants its project.

``ACCESS_POLICY`` unset means no policy: every signed-in user sees every
project (what ``cloud-ws local`` runs without ``--access``). The component
always sets it, and its default ``{}`` grants nothing: a stack nobody has
configured shows nothing rather than everything (see docs/security.md).

``SUBSCRIBE_GROUPS``, when set, is checked first: only members of one of
those groups may watch anything at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

#: A project name (``detail.project``); absent means :data:`DEFAULT_PROJECT`.
PROJECT_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_PROJECT = re.compile(PROJECT_PATTERN)
DEFAULT_PROJECT = "default"

#: A pattern of the policy: a project name in which ``*`` may stand for any run of characters.
PROJECT_GLOB_PATTERN = r"^[a-z0-9._*-]{1,63}$"
_GLOB = re.compile(PROJECT_GLOB_PATTERN)

#: What a connection opened without an access policy is granted.
EVERYTHING: tuple[str, ...] = ("*",)


class AccessPolicyError(ValueError):
    """``ACCESS_POLICY`` is not a JSON object of group → list of project patterns."""


def is_valid_project(value: object) -> bool:
    """True for a project name matching :data:`PROJECT_PATTERN`."""
    return isinstance(value, str) and bool(_PROJECT.fullmatch(value))


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(
        "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern))
    )


def granted(patterns: Iterable[str], project: str) -> bool:
    """Whether one of ``patterns`` (``*`` = any run of characters) matches ``project`` whole."""
    return any(_compiled(pattern).fullmatch(project) for pattern in patterns)


@dataclass(frozen=True)
class AccessPolicy:
    """Cognito group → project patterns; ``None`` in :attr:`Config.access` means no policy."""

    groups: Mapping[str, tuple[str, ...]]

    @classmethod
    def parse(cls, text: str) -> AccessPolicy:
        """Read ``ACCESS_POLICY``'s JSON; raises :class:`AccessPolicyError` naming what is wrong."""
        try:
            raw = json.loads(text)
        except ValueError:
            raise AccessPolicyError(f"ACCESS_POLICY must be JSON, got {text[:80]!r}") from None
        if not isinstance(raw, dict):
            raise AccessPolicyError('ACCESS_POLICY must be a JSON object, e.g. {"sre": ["*"]}')
        groups: dict[str, tuple[str, ...]] = {}
        for group, patterns in raw.items():
            if not isinstance(patterns, list) or not all(
                isinstance(p, str) and _GLOB.fullmatch(p) for p in patterns
            ):
                raise AccessPolicyError(
                    f"ACCESS_POLICY: group {group!r} must map to a list of project patterns "
                    f"matching {PROJECT_GLOB_PATTERN}, got {patterns!r}"
                )
            groups[str(group)] = tuple(patterns)
        return cls(groups)

    def grants(self, user_groups: Iterable[str]) -> tuple[str, ...]:
        """The project patterns the user's groups grant, deduplicated, in the policy's order."""
        mine = set(user_groups)
        found: dict[str, None] = {}
        for group, patterns in self.groups.items():
            if group in mine:
                found.update(dict.fromkeys(patterns))
        return tuple(found)


def grants_of(
    user_groups: Sequence[str], policy: AccessPolicy | None, subscribe_groups: frozenset[str]
) -> tuple[str, ...]:
    """The project patterns a user may watch: nothing outside ``subscribe_groups`` (when set),
    everything without a policy, else what the policy grants their groups."""
    if subscribe_groups and subscribe_groups.isdisjoint(user_groups):
        return ()
    if policy is None:
        return EVERYTHING
    return policy.grants(user_groups)


def forbidden_message(deployment_id: str, project: str) -> str:
    """The sentence a refused user reads: what they asked, why not, who can change it."""
    return (
        f"you are not allowed to watch deployment {deployment_id}: none of your groups is granted "
        f"project {project!r}; ask an administrator to grant it in the stack's access policy"
    )
