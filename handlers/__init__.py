"""cloud-ws Lambda entry points: one module per function (``contract.spec.FUNCTIONS``).

``connect``, ``disconnect``, ``default``, ``subscribe``, ``unsubscribe``,
``ping`` and ``list_deployments`` answer the WebSocket API's routes; the
``broadcaster`` drains the delivery queue; the ``sweeper`` removes connections
API Gateway no longer knows. Each is a thin shell over ``server/`` (the
insides) and ``contract/`` (what every part shares). Bundled as-is into the
Lambda functions; imports neither Pulumi nor moto.
"""
