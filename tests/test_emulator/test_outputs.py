"""The outputs file `cloud-ws local` writes: every required key, read back by each consumer."""

from __future__ import annotations

from pathlib import Path

from cloud_ws_client.outputs import read_outputs
from contract import outputs as contract
from emulator.stack import LocalSettings, _write_atomically, outputs_for
from plugin import OrchestratorPlugin
from tests.support.local_backend import SAMPLE_BACKEND

BACKEND = SAMPLE_BACKEND


def test_the_local_outputs_have_every_required_key_and_only_known_ones(tmp_path: Path) -> None:
    settings = LocalSettings(outputs=tmp_path / "outputs.json")
    outputs = outputs_for(settings, 8080, BACKEND)

    assert outputs.keys() >= contract.REQUIRED_KEYS
    assert outputs.keys() <= contract.KEYS
    # The local-only keys are what tells consumers they face the local stack.
    assert outputs[contract.AWS_ENDPOINT_URL] == BACKEND.endpoint
    assert outputs[contract.WEBSOCKET_URL] == "ws://127.0.0.1:8080/local"
    assert outputs[contract.CONNECTIONS_TABLE_NAME] == "cloud-ws-local-connections"

    _write_atomically(settings.outputs, outputs)
    assert contract.load_outputs(settings.outputs, needs=contract.REQUIRED_KEYS) == outputs
    assert read_outputs(settings.outputs) == outputs
    plugin = OrchestratorPlugin.from_outputs(settings.outputs, client=object(), autostart=False)
    assert plugin.endpoint_url == BACKEND.endpoint
    plugin.close()


def test_the_local_stack_writes_where_consumers_look() -> None:
    assert LocalSettings().outputs == contract.DEFAULT_PATH
