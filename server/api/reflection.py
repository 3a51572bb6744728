"""Server reflection as current tools expect it: `grpc.reflection.v1` and `v1alpha`, methods too.

grpcio-reflection serves only v1alpha, and current tools (grpcurl, ghz, Postman) ask for v1.
The two versions are the same messages under two package names
(protos/vendor/stepstream/v1/grpc_reflection_v1.proto), so the v1 service hands every
request, re-encoded, to grpcio-reflection's v1alpha servicer and re-encodes its answers:
one set of lookups over one descriptor pool, two doors.

Those lookups ask the pool for the file containing a symbol, and the protobuf runtime's pool
finds messages, fields, enums, values and services but not methods, which the reflection
protocol includes (`<package>.<service>.<method>`) and ghz asks for
(`stepstream.v1.RunService.StreamRun` answered "Symbol not found"). `MethodAwarePool` adds them.

The rate-limiter sidecar uses this module too, so both servers answer the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, TypeAlias

import grpc
from google.protobuf import descriptor, descriptor_pool
from grpc_reflection.v1alpha import reflection as v1alpha
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as v1alpha_pb2_grpc

from stepstream.v1 import grpc_reflection_v1_pb2 as v1_pb2
from stepstream.v1 import grpc_reflection_v1_pb2_grpc as v1_pb2_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

V1_SERVICE_NAME: str = v1_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
V1ALPHA_SERVICE_NAME: str = v1alpha.SERVICE_NAME
SERVICE_NAMES = (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)


class MethodAwarePool:
    """A descriptor pool whose file-containing-symbol lookup also finds methods.

    It offers the lookups grpcio-reflection makes of the pool it is given, each a KeyError
    when the name is unknown (which the servicer answers as NOT_FOUND).
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool or descriptor_pool.Default()

    def FindFileContainingSymbol(self, name: str) -> descriptor.FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(name)
        except KeyError:
            return self._pool.FindMethodByName(name).containing_service.file

    def FindFileByName(self, name: str) -> descriptor.FileDescriptor:
        return self._pool.FindFileByName(name)

    def FindMessageTypeByName(self, name: str) -> descriptor.Descriptor:
        return self._pool.FindMessageTypeByName(name)

    def FindExtensionByNumber(
        self, message: descriptor.Descriptor, number: int
    ) -> descriptor.FieldDescriptor:
        return self._pool.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: descriptor.Descriptor) -> list[descriptor.FieldDescriptor]:
        return list(self._pool.FindAllExtensions(message))


class ReflectionV1Servicer(v1_pb2_grpc.ServerReflectionServicer):
    """grpc.reflection.v1, answered by the v1alpha servicer's lookups."""

    def __init__(self, lookups: v1alpha.aio.ReflectionServicer) -> None:
        self._lookups = lookups

    async def ServerReflectionInfo(
        self, request_iterator: AsyncIterator[v1_pb2.ServerReflectionRequest], context: Context
    ) -> AsyncIterator[v1_pb2.ServerReflectionResponse]:
        async def as_v1alpha() -> AsyncIterator[v1alpha_pb2.ServerReflectionRequest]:
            async for request in request_iterator:
                yield v1alpha_pb2.ServerReflectionRequest.FromString(request.SerializeToString())

        async for response in self._lookups.ServerReflectionInfo(as_v1alpha(), context):
            # original_request comes back as the client sent it: the bytes are the same.
            yield v1_pb2.ServerReflectionResponse.FromString(response.SerializeToString())


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve both reflection versions, listing service_names and the reflection services."""
    lookups = v1alpha.aio.ReflectionServicer((*service_names, *SERVICE_NAMES), pool=MethodAwarePool())
    v1alpha_pb2_grpc.add_ServerReflectionServicer_to_server(lookups, server)
    v1_pb2_grpc.add_ServerReflectionServicer_to_server(ReflectionV1Servicer(lookups), server)
