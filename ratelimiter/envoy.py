"""Envoy's rate limit service (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`)
answered from the same limits, so an Envoy proxy can use the sidecar.

Only the fields the sidecar reads or writes are declared, with Envoy's own
names and field numbers, so the messages are wire-compatible with Envoy; the
rest of Envoy's messages (headers to add, quotas, metadata) are skipped as
unknown fields by the parser. The descriptors are built in code rather than
vendored as a .proto under protos/, whose lint rules (buf STANDARD) Envoy's
names do not follow.

Mapping: a descriptor applies the limit whose key equals one of its entry
values, last entry first (Envoy's `generic_key` action sends
`generic_key: <value>`), or "<entry key>=<entry value>". A descriptor that
matches no limit is not limited, as in Envoy's reference service. The answer
never waits: a descriptor over its limit is OVER_LIMIT with the time until a
retry could pass as `duration_until_reset`.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, message_factory
from grpc_status import rpc_status

from stepstream.ratelimiter.core import LimiterCore
from stepstream.ratelimiter.errors import LimiterError
from stepstream.ratelimiter.servicer import status_of

PACKAGE = "envoy.service.ratelimit.v3"
SERVICE_NAME = f"{PACKAGE}.RateLimitService"
_FILE = "stepstream/ratelimiter/envoy_rls_subset.proto"
_F = descriptor_pb2.FieldDescriptorProto

# RateLimitResponse.Code and RateLimit.Unit values, as Envoy numbers them.
CODE_OK = 1
CODE_OVER_LIMIT = 2
_UNITS = ((1, 1.0), (2, 60.0), (3, 3600.0), (4, 86400.0))


def _field(name: str, number: int, kind: int, type_name: str = "", repeated: bool = False) -> _F:
    label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    field = _F(name=name, number=number, type=kind, label=label)  # type: ignore[arg-type]
    if type_name:
        field.type_name = type_name
    return field


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name=_FILE, package=PACKAGE, syntax="proto3")
    f.dependency.append("google/protobuf/duration.proto")
    entry = descriptor_pb2.DescriptorProto(
        name="Entry", field=[_field("key", 1, _F.TYPE_STRING), _field("value", 2, _F.TYPE_STRING)]
    )
    # Envoy's envoy.extensions.common.ratelimit.v3.RateLimitDescriptor, same wire form.
    f.message_type.add(
        name="RateLimitDescriptor",
        field=[_field("entries", 1, _F.TYPE_MESSAGE, f".{PACKAGE}.RateLimitDescriptor.Entry", True)],
        nested_type=[entry],
    )
    f.message_type.add(
        name="RateLimitRequest",
        field=[
            _field("domain", 1, _F.TYPE_STRING),
            _field("descriptors", 2, _F.TYPE_MESSAGE, f".{PACKAGE}.RateLimitDescriptor", True),
            _field("hits_addend", 3, _F.TYPE_UINT32),
        ],
    )
    resp = f".{PACKAGE}.RateLimitResponse"
    code = descriptor_pb2.EnumDescriptorProto(name="Code")
    for name, number in (("UNKNOWN", 0), ("OK", CODE_OK), ("OVER_LIMIT", CODE_OVER_LIMIT)):
        code.value.add(name=name, number=number)
    unit = descriptor_pb2.EnumDescriptorProto(name="Unit")
    for name, number in (("UNKNOWN", 0), ("SECOND", 1), ("MINUTE", 2), ("HOUR", 3), ("DAY", 4)):
        unit.value.add(name=name, number=number)
    rate_limit = descriptor_pb2.DescriptorProto(
        name="RateLimit",
        field=[
            _field("requests_per_unit", 1, _F.TYPE_UINT32),
            _field("unit", 2, _F.TYPE_ENUM, f"{resp}.RateLimit.Unit"),
            _field("name", 3, _F.TYPE_STRING),
        ],
        enum_type=[unit],
    )
    status = descriptor_pb2.DescriptorProto(
        name="DescriptorStatus",
        field=[
            _field("code", 1, _F.TYPE_ENUM, f"{resp}.Code"),
            _field("current_limit", 2, _F.TYPE_MESSAGE, f"{resp}.RateLimit"),
            _field("limit_remaining", 3, _F.TYPE_UINT32),
            _field("duration_until_reset", 4, _F.TYPE_MESSAGE, ".google.protobuf.Duration"),
        ],
    )
    f.message_type.add(
        name="RateLimitResponse",
        field=[
            _field("overall_code", 1, _F.TYPE_ENUM, f"{resp}.Code"),
            _field("statuses", 2, _F.TYPE_MESSAGE, f"{resp}.DescriptorStatus", True),
        ],
        nested_type=[rate_limit, status],
        enum_type=[code],
    )
    service = f.service.add(name="RateLimitService")
    service.method.add(name="ShouldRateLimit", input_type=f".{PACKAGE}.RateLimitRequest", output_type=resp)
    return f


def _load() -> tuple[Any, Any]:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_FILE)
    except KeyError:
        duration_pb2.Duration.DESCRIPTOR  # noqa: B018 - the dependency must be in the pool first
        pool.Add(_file())
    request = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.RateLimitRequest"))
    response = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.RateLimitResponse"))
    return request, response


RateLimitRequest, RateLimitResponse = _load()


def _limit_key(core: LimiterCore, entries: Any) -> str | None:
    for entry in reversed(entries):
        for candidate in (entry.value, f"{entry.key}={entry.value}"):
            if candidate in core.limits:
                return str(candidate)
    return None


def _current_limit(core: LimiterCore, key: str) -> Any:
    spec = core.limits[key]
    per_second = spec.tokens_per_second
    # The smallest Envoy unit in which the limit is a whole number of requests.
    unit, seconds = next(
        (
            u
            for u in _UNITS
            if abs(per_second * u[1] - round(per_second * u[1])) < 1e-6 and per_second * u[1] >= 1
        ),
        _UNITS[-1],
    )
    return RateLimitResponse.RateLimit(name=key, requests_per_unit=round(per_second * seconds), unit=unit)


class EnvoyRateLimitService:
    def __init__(self, core: LimiterCore) -> None:
        self.core = core

    async def should_rate_limit(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        hits = request.hits_addend or 1
        response = RateLimitResponse(overall_code=CODE_OK)
        granted: list[str] = []
        for descriptor in request.descriptors:
            key = _limit_key(self.core, descriptor.entries)
            status = response.statuses.add(code=CODE_OK)
            if key is None:
                continue
            status.current_limit.CopyFrom(_current_limit(self.core, key))
            try:
                decision = await self.core.acquire(key, hits, 0.0)
            except LimiterError as exc:
                await context.abort_with_status(rpc_status.to_status(status_of(exc)))
            if decision.granted:
                granted.append(key)
                continue
            status.code = CODE_OVER_LIMIT
            status.duration_until_reset.FromNanoseconds(int(decision.retry_after_s * 1e9))
            response.overall_code = CODE_OVER_LIMIT
        if response.overall_code == CODE_OVER_LIMIT:
            # The request is refused as a whole: what its other descriptors took goes back.
            for key in granted:
                await self.core.reconcile(key, hits, 0)
        return response


def add_to_server(core: LimiterCore, server: grpc.aio.Server) -> None:
    service = EnvoyRateLimitService(core)
    handler = grpc.unary_unary_rpc_method_handler(
        service.should_rate_limit,
        request_deserializer=RateLimitRequest.FromString,
        response_serializer=RateLimitResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_NAME, {"ShouldRateLimit": handler}),)
    )
