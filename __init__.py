"""stepstream: serve LangGraph workflows over gRPC.

The repository root is this package, so an import names its file: `stepstream.X`
is the folder `X/` (`stepstream.server.core.runs` is server/core/runs.py), and the
Python SDK `stepstream.client` is clients/python/. The one exception is the
generated contract `stepstream.v1`, which lives in gen/python/stepstream/v1/
(`make protos`). pyproject.toml's package-dir says the same in three lines.
"""
