"""Kept for old imports: the outputs contract and its reader live in :mod:`handlers.outputs`.

The CLI, the plugin and the emulator import :mod:`handlers.outputs` directly,
so the plugin no longer imports the CLI package. Nothing new should import this.
"""

from __future__ import annotations

from handlers.outputs import DEFAULT_PATH, ENV_VAR, REQUIRED_KEYS, OutputsError, default_path, load_outputs

__all__ = ["DEFAULT_PATH", "ENV_VAR", "REQUIRED_KEYS", "OutputsError", "default_path", "load_outputs"]
