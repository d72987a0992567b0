"""cloud-ws Lambda handlers: one module per route, plus the broadcaster.

Bundled as-is into the Lambda functions; imports neither Pulumi nor moto.
"""
