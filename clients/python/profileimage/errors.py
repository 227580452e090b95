"""The one exception the client raises, with the server's google.rpc details decoded."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import grpc
from grpc_status import rpc_status

from profileimage.rpc import error_details_pb2


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (google.rpc.BadRequest.FieldViolation)."""

    field: str
    """Path of the field, e.g. ``crop.size``."""
    reason: str
    """Machine-readable reason, e.g. ``crop-out-of-bounds``."""
    description: str = ""


@dataclass(frozen=True)
class QuotaViolation:
    """One exceeded quota (google.rpc.QuotaFailure.Violation)."""

    subject: str
    description: str = ""


@dataclass
class ProfileImageError(Exception):
    """A failed call: the status code, the message and the decoded error details."""

    code: grpc.StatusCode
    message: str
    reason: str | None = None
    """ErrorInfo.reason, e.g. ``validation-failure``."""
    domain: str | None = None
    """ErrorInfo.domain (``profileimage.v1``)."""
    violations: tuple[FieldViolation, ...] = ()
    """BadRequest.field_violations, in the server's order."""
    retry_delay: datetime.timedelta | None = None
    """RetryInfo.retry_delay: how long to wait before trying again."""
    quota_violations: tuple[QuotaViolation, ...] = field(default=())

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        for violation in self.violations:
            text += f"; {violation.field}: {violation.reason}"
        return text


#: Codes after which a new call may succeed: the connection or the server went away.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
    }
)


def error_from_rpc(error: grpc.RpcError) -> ProfileImageError:
    """Turns what grpcio raised (sync or asyncio) into a ProfileImageError."""
    if not isinstance(error, (grpc.Call, grpc.aio.AioRpcError)):
        return ProfileImageError(code=grpc.StatusCode.UNKNOWN, message=str(error))
    result = ProfileImageError(code=error.code(), message=error.details() or "")
    try:
        # AioRpcError has the same synchronous accessors from_call reads.
        status = rpc_status.from_call(error)
    except ValueError:
        status = None  # details that contradict the status: ignore them
    if status is not None:
        for detail in status.details:
            _add_detail(result, detail)
    return result


def _add_detail(result: ProfileImageError, detail: object) -> None:
    """Decodes one google.protobuf.Any of the status details into `result`."""
    info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    retry = error_details_pb2.RetryInfo()
    quota = error_details_pb2.QuotaFailure()
    unpack = getattr(detail, "Unpack")
    if unpack(info):
        result.reason, result.domain = info.reason, info.domain
    elif unpack(bad_request):
        result.violations = tuple(
            FieldViolation(v.field, v.reason, v.description) for v in bad_request.field_violations
        )
    elif unpack(retry):
        result.retry_delay = retry.retry_delay.ToTimedelta()
    elif unpack(quota):
        result.quota_violations = tuple(
            QuotaViolation(v.subject, v.description) for v in quota.violations
        )
