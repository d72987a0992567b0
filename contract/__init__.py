"""The contract every part of cloud-ws shares: standard library only.

The wire protocol (``protocol``), the spec of routes, tables and functions
(``spec``), the outputs file (``outputs``), the handlers' environment variables
(``environment``), deployment events as parsed and sequenced (``events``), the
fold of events into a deployment's state (``state``), the retry-wait rule
(``backoff``), structured logging (``log``), the events table's row layout
(``keys``), projects and the access policy's format (``authorization``), the
notification event and the targets' format (``notifications``) and the GraphQL
schema with its query limits (``graphql``, ``schema.graphql``). The Lambda handlers, the delivery core in
``server/``, the plugin, the Pulumi component, the emulator and the CLI build on
it; it imports none of them, and nothing outside the standard library, so a
change to the server's insides never reaches the programs that only speak the
contract (``tests/test_architecture/test_imports.py`` checks both rules).
"""
