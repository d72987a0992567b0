"""Subcommands of ``cloud-ws``: each module has ``add_arguments(parser)`` and ``run(args) -> int``.

Modules import their heavy dependencies inside ``run`` so building the parser
stays cheap.
"""
