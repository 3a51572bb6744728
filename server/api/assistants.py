"""The AssistantService servicer: proto ⇄ the core's assistant operations (core/assistants.py)."""

from __future__ import annotations

from typing import Any

from stepstream.server.api import convert
from stepstream.server.api.servicers import Context, _Servicer, owner_of
from stepstream.server.api.status import unary
from stepstream.server.core import records as rec
from stepstream.server.core.assistants import AssistantFields
from stepstream.server.core.jsonio import parse_field
from stepstream.v1 import assistants_pb2, assistants_pb2_grpc


def _fields(request: Any) -> AssistantFields:
    """The settings of a create or update request, JSON decoded (the core checks them)."""
    return AssistantFields(
        name=request.name,
        description=request.description,
        config=parse_field("config_json", request.config_json, object_only=True),
        context=parse_field("context_json", request.context_json, object_only=True),
        metadata=parse_field("metadata_json", request.metadata_json, object_only=True),
    )


class AssistantServicer(_Servicer, assistants_pb2_grpc.AssistantServiceServicer):
    @unary
    async def CreateAssistant(self, request: assistants_pb2.CreateAssistantRequest, context: Context) -> Any:
        assistant = await self._core.create_assistant(
            owner_of(self._core, context),
            request.graph_id,
            _fields(request),
            assistant_id=request.assistant_id,
            if_exists_return=request.if_exists_return,
        )
        return assistants_pb2.CreateAssistantResponse(assistant=convert.assistant_pb(assistant))

    @unary
    async def GetAssistant(self, request: assistants_pb2.GetAssistantRequest, context: Context) -> Any:
        assistant = await self._core.get_assistant(owner_of(self._core, context), request.assistant_id)
        return assistants_pb2.GetAssistantResponse(assistant=convert.assistant_pb(assistant))

    @unary
    async def UpdateAssistant(self, request: assistants_pb2.UpdateAssistantRequest, context: Context) -> Any:
        assistant = await self._core.update_assistant(
            owner_of(self._core, context), request.assistant_id, _fields(request)
        )
        return assistants_pb2.UpdateAssistantResponse(assistant=convert.assistant_pb(assistant))

    @unary
    async def SetAssistantVersion(
        self, request: assistants_pb2.SetAssistantVersionRequest, context: Context
    ) -> Any:
        assistant = await self._core.set_assistant_version(
            owner_of(self._core, context), request.assistant_id, request.version
        )
        return assistants_pb2.SetAssistantVersionResponse(assistant=convert.assistant_pb(assistant))

    @unary
    async def ListAssistantVersions(
        self, request: assistants_pb2.ListAssistantVersionsRequest, context: Context
    ) -> Any:
        versions, token = await self._core.assistant_versions(
            owner_of(self._core, context), request.assistant_id, request.page_size, request.page_token
        )
        return assistants_pb2.ListAssistantVersionsResponse(
            versions=[convert.assistant_pb(a) for a in versions], next_page_token=token
        )

    @unary
    async def DeleteAssistant(self, request: assistants_pb2.DeleteAssistantRequest, context: Context) -> Any:
        await self._core.delete_assistant(owner_of(self._core, context), request.assistant_id)
        return assistants_pb2.DeleteAssistantResponse()

    @unary
    async def SearchAssistants(
        self, request: assistants_pb2.SearchAssistantsRequest, context: Context
    ) -> Any:
        query = rec.AssistantQuery(
            graph_id=request.graph_id,
            metadata=parse_field("metadata_json", request.metadata_json, object_only=True),
            name=request.name,
        )
        found, token = await self._core.search_assistants(
            owner_of(self._core, context), query, request.page_size, request.page_token
        )
        return assistants_pb2.SearchAssistantsResponse(
            assistants=[convert.assistant_pb(a) for a in found], next_page_token=token
        )
