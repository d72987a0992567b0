"""Every IAM policy document the component builds, audited with parliament (duo-labs' IAM linter).

The documents are collected from what the program registers under Pulumi's mocks: role policies,
trust policies, queue policies, the bus policy, whatever is added later. parliament checks each
action exists, each resource ARN fits the action's resource types, each condition key applies,
and (with the community auditors) privilege-escalation and credential-exposure patterns. A
finding fails the test unless ``ALLOWED`` names it, with the reason.

The broadcaster's table grants come from ``contract/spec.py`` (``BROADCASTER.tables``): the audit
reads whatever the spec holds when it runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from parliament import analyze_policy_string  # type: ignore[import-untyped]  # no stubs published

from tests.test_component.conftest import ACCOUNT, Deployment, deploy

#: (input key, parliament issue, detail) → why it is not a problem. Nothing else may be found.
ALLOWED: dict[tuple[str, str, str], str] = {
    (
        "assumeRolePolicy",
        "MALFORMED",
        "Statement contains neither Resource nor NotResource",
    ): (
        "A role's trust policy is a resource policy on the role itself: IAM's grammar gives its "
        "statements a Principal and no Resource. parliament reads every document as an identity "
        "policy, which needs one."
    ),
}

#: Inputs that hold IAM policy documents (JSON strings with a ``Statement``).
POLICY_INPUTS = ("policy", "assumeRolePolicy")


def _documents(deployment: Deployment) -> Iterator[tuple[str, str, str]]:
    """``(resource name, input key, document)`` for every IAM document the deployment registered."""
    for resource in deployment.resources.values():
        for key in POLICY_INPUTS:
            value = resource.inputs.get(key)
            if isinstance(value, str) and '"Statement"' in value:
                yield resource.name, key, value


def _findings(document: str) -> list[Any]:
    return list(analyze_policy_string(document, include_community_auditors=True).findings)


@pytest.fixture(scope="module")
def everything() -> Deployment:
    """A stack with every optional document: foreign producers, the API Gateway logging role, AppSync,
    notifications (topic and webhooks)."""
    return deploy(
        {
            "configureApiGatewayAccount": True,
            "producers": json.dumps([f"arn:aws:iam::{ACCOUNT}:role/orchestrator", "210987654321"]),
            "alarmTopicArn": f"arn:aws:sns:eu-west-1:{ACCOUNT}:alerts",
            "notifications": json.dumps(
                {"emails": ["oncall@example.com"], "webhooks": [{"url": "https://hooks.example.com/x"}]}
            ),
        }
    )


def test_every_policy_document_passes_parliament(
    everything: Deployment, dev: Deployment, prod: Deployment
) -> None:
    audited: set[str] = set()
    unexpected: list[str] = []
    for deployment in (everything, dev, prod):
        for name, key, document in _documents(deployment):
            audited.add(name)
            for finding in _findings(document):
                if (key, finding.issue, str(finding.detail)) in ALLOWED:
                    continue
                unexpected.append(f"{name}.{key}: {finding.issue} {finding.title} {finding.detail}")
    assert unexpected == []
    # The audit saw what it is meant to: every function's role and policy, the queues, the bus.
    for expected in ("cloud-ws-broadcaster-policy", "cloud-ws-broadcaster-role", "cloud-ws-bus-policy"):
        assert expected in audited, expected
    assert "cloud-ws-delivery-queue-policy" in audited
    assert "cloud-ws-graphql-publish-policy" in audited
    for expected in (
        "cloud-ws-broadcaster-notify-policy",
        "cloud-ws-notifications-topic-policy",
        "cloud-ws-notify-webhooks-policy",
        "cloud-ws-notify-webhooks-role",
    ):
        assert expected in audited, expected


def test_every_allowed_finding_still_occurs(dev: Deployment) -> None:
    """An allow-list entry nothing produces any more is stale: remove it."""
    seen = set()
    for _, key, document in _documents(dev):
        for finding in _findings(document):
            seen.add((key, finding.issue, str(finding.detail)))
    assert set(ALLOWED) <= seen, set(ALLOWED) - seen


def test_the_audit_catches_a_grant_on_the_wrong_resource() -> None:
    """The audit bites: a table action on a queue ARN is reported (so a clean run means something)."""
    wrong = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem"],
                "Resource": [f"arn:aws:sqs:eu-west-1:{ACCOUNT}:queue"],
            }
        ],
    }
    assert {f.issue for f in _findings(json.dumps(wrong))} == {"RESOURCE_MISMATCH"}
