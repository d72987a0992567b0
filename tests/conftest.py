"""Fixtures shared by every suite: moto's AWS, a Cognito pool minting real JWTs,
the tables built from the shared spec, and a real-HTTP @connections stand-in.

The classes behind them are in tests/support/moto_stack.py: import them from there."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from contract import environment as names
from emulator import moto_patches
from server.runtime import reset_runtime
from tests.support.management_standin import ManagementStandIn
from tests.support.moto_stack import REGION, CognitoPool, Stack, create_tables


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's mock of every AWS service, with throwaway credentials."""
    for name, value in {
        names.AWS_ACCESS_KEY_ID: "testing",
        names.AWS_SECRET_ACCESS_KEY: "testing",
        names.AWS_DEFAULT_REGION: REGION,
        names.AWS_REGION: REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # The broadcaster calls DynamoDB from several threads; moto's models are not thread-safe,
    # and DynamoDB applies each request atomically: one request at a time, as the local stack's.
    moto_patches.serialize_dynamodb()
    with mock_aws():
        yield


@pytest.fixture
def pool(aws: None) -> CognitoPool:
    """A user pool and app client in moto."""
    idp = boto3.client("cognito-idp", region_name=REGION)
    pool_id = idp.create_user_pool(PoolName="cloud-ws-test")["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName="cli", ExplicitAuthFlows=["ADMIN_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    return CognitoPool(idp, pool_id, client_id)


@pytest.fixture
def standin() -> Iterator[ManagementStandIn]:
    """The @connections stand-in on a loopback port."""
    with ManagementStandIn().running() as server:
        yield server


@pytest.fixture
def stack(
    aws: None, pool: CognitoPool, standin: ManagementStandIn, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    """Tables from the spec, handler configuration in the environment, a fresh runtime."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    tables = create_tables(ddb)
    for name, value in {
        **tables,
        names.COGNITO_USER_POOL_ID: pool.pool_id,
        names.COGNITO_CLIENT_IDS: pool.client_id,
        names.MANAGEMENT_ENDPOINT: standin.endpoint,
        names.POST_MAX_ATTEMPTS: "3",
    }.items():
        monkeypatch.setenv(name, value)
    reset_runtime()
    yield Stack(ddb, pool, standin, tables)
    reset_runtime()
