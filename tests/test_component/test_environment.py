"""The component's Lambda environments set only names of ``contract.environment``."""

from __future__ import annotations

from contract import environment, spec
from tests.test_component.conftest import Deployment, deploy


def _variables(deployment: Deployment) -> dict[str, dict[str, str]]:
    return {
        function.name: function.inputs["environment"]["variables"]
        for function in deployment.of_type("aws:lambda/function:Function")
    }


def test_every_function_sets_only_names_of_the_contract(dev: Deployment, prod: Deployment) -> None:
    without_appsync = deploy({"enableAppSync": False})
    for deployment in (dev, prod, without_appsync):
        variables = _variables(deployment)
        assert len(variables) == len(spec.FUNCTIONS)
        for name, env in variables.items():
            assert set(env) <= environment.NAMES, (name, sorted(set(env) - environment.NAMES))
    broadcaster = _variables(dev)[f"cloud-ws-{spec.BROADCASTER.function}"]
    assert environment.APPSYNC_GRAPHQL_URL in broadcaster
    assert (
        environment.APPSYNC_GRAPHQL_URL
        not in _variables(without_appsync)[f"cloud-ws-{spec.BROADCASTER.function}"]
    )
