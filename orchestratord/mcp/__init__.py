"""`orchestratorctl mcp`: agent-orchestrator as a Model Context Protocol server.

server.py holds the tools and resources; backend.py the daemon backend and the
protocol both backends follow; embedded.py the backend on the state file; http.py the
streamable HTTP transport. The SDK (`mcp`, the `mcp` extra) is imported only here and
below, so the rest of the CLI works without it.
"""
