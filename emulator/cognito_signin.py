"""Signing in to a Cognito user pool (moto's, in process or behind the local stack) the way
an administrator's script does: create the user once, set a permanent password, and run
ADMIN_USER_PASSWORD_AUTH for real tokens.

Used by :mod:`emulator.launcher` (so benchmarks get tokens without the tests' helpers) and
re-exported by ``tests.support.cognito``. Unlike :func:`emulator.backend.ensure_user` (the
stack's own dev user), users here get :data:`PASSWORD`, no email unless given, and their
groups are created on demand.
"""

from __future__ import annotations

import contextlib
from typing import Any

#: The password of every user the tests (and benchmarks) create.
PASSWORD = "Corr3ct-Horse!"


def ensure_user(
    idp: Any, pool_id: str, username: str, email: str | None = None, groups: tuple[str, ...] = ()
) -> bool:
    """Create ``username`` with :data:`PASSWORD` (permanent) unless it exists, and add it to
    ``groups`` (see :func:`join_groups`); True if created."""
    try:
        idp.admin_create_user(
            UserPoolId=pool_id,
            Username=username,
            TemporaryPassword="Tmp-" + PASSWORD,
            MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": email}] if email else [],
        )
    except idp.exceptions.UsernameExistsException:
        created = False
    else:
        idp.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=PASSWORD, Permanent=True)
        created = True
    join_groups(idp, pool_id, username, groups)
    return created


def join_groups(idp: Any, pool_id: str, username: str, groups: tuple[str, ...]) -> None:
    """Add ``username`` to each of ``groups``, creating the groups that do not exist yet."""
    for group in groups:
        with contextlib.suppress(idp.exceptions.GroupExistsException):
            idp.create_group(UserPoolId=pool_id, GroupName=group)
        idp.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)


def sign_in(idp: Any, pool_id: str, client_id: str, username: str, create: bool = True) -> dict[str, str]:
    """Real tokens for ``username`` (created first unless ``create`` is false):
    ``IdToken``, ``AccessToken``, ``RefreshToken``, ..."""
    if create:
        ensure_user(idp, pool_id, username)
    result: dict[str, str] = idp.admin_initiate_auth(
        UserPoolId=pool_id,
        ClientId=client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD},
    )["AuthenticationResult"]
    return result
