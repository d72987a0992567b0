"""The server's insides, behind the Lambda entry points in ``handlers/``.

The delivery core: the DynamoDB store (``store``: connections, subscriptions,
the event log), the drain lease and inbox (``inbox``), emission order
(``ordering``), storing and sending a deployment's events (``delivery``), the
fan-out (``fanout``), the @connections poster and management API (``poster``,
``management``), the AppSync publisher (``appsync``) and notifications
(``notify``); and what the connection routes share: the per-container runtime
(``runtime``), configuration (``config``), Cognito JWT verification
(``cognito``), API Gateway's request shapes (``apigw``) and the message routes'
common code (``messages``). Bundled into the Lambda archive beside
``handlers/`` and ``contract/``; imports neither Pulumi nor moto.
"""
