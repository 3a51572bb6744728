"""GraphService: the graphs the server was configured with."""

from __future__ import annotations

from stepstream.client.models import Graph
from stepstream.client.pool import ChannelPool
from stepstream.v1 import graphs_pb2


class Graphs:
    def __init__(self, pool: ChannelPool) -> None:
        self._pool = pool

    async def list(self) -> tuple[Graph, ...]:
        response: graphs_pb2.ListGraphsResponse = await self._pool.unary(
            "graphs", "ListGraphs", graphs_pb2.ListGraphsRequest(), idempotent=True
        )
        return tuple(Graph.from_proto(g) for g in response.graphs)

    async def get(self, graph_id: str) -> Graph:
        response: graphs_pb2.GetGraphResponse = await self._pool.unary(
            "graphs", "GetGraph", graphs_pb2.GetGraphRequest(graph_id=graph_id), idempotent=True
        )
        return Graph.from_proto(response.graph)
