"""The second door: LangGraph's HTTP API (the one langgraph-sdk, useStream, Agent Chat UI and
Studio call) served from the same core as gRPC. Handlers translate HTTP and JSON to the core's
operations and back; docs/http-api.md says what is served and how it differs."""
