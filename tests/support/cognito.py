"""Signing in to a Cognito user pool the way an administrator's script does.

The code lives in :mod:`emulator.cognito_signin`, outside the tests, so benchmarks can get
tokens without importing the tests' helpers; this module keeps the tests' import path."""

from __future__ import annotations

from emulator.cognito_signin import PASSWORD, ensure_user, join_groups, sign_in

__all__ = ["PASSWORD", "ensure_user", "join_groups", "sign_in"]
