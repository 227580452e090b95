"""What the real server never sends today (RetryInfo, QuotaFailure) and the bearer token,
checked against a stand-in server written with grpcio's own server API."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from profileimage import AsyncClient, Client, FieldViolation, ProfileImageError, QuotaViolation
from profileimage.rpc import error_details_pb2 as details
from profileimage.v1 import profile_image_pb2 as pb

SERVICE = "profileimage.v1.ProfileImageService"


def _get_profile_image(
    request: pb.GetProfileImageRequest, context: grpc.ServicerContext
) -> pb.GetProfileImageResponse:
    """Fails with every kind of detail, or says which token it was sent."""
    metadata = dict(context.invocation_metadata())
    if request.user_id == "who-am-i":
        token = str(metadata.get("authorization", ""))
        return pb.GetProfileImageResponse(profile_image=pb.ProfileImage(user_id=token))
    packed = []
    for message in (
        details.ErrorInfo(reason="rate-limited", domain="profileimage.v1"),
        details.BadRequest(
            field_violations=[
                details.BadRequest.FieldViolation(
                    field="user_id", reason="field-invalid", description="too long"
                )
            ]
        ),
        details.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000)),
        details.QuotaFailure(
            violations=[details.QuotaFailure.Violation(subject="user:alice", description="x")]
        ),
    ):
        detail = any_pb2.Any()
        detail.Pack(message)
        packed.append(detail)
    status = status_pb2.Status(
        code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], message="slow down", details=packed
    )
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returns only by raising")


@pytest.fixture(scope="module")
def stand_in() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    get = grpc.unary_unary_rpc_method_handler(
        _get_profile_image,
        request_deserializer=pb.GetProfileImageRequest.FromString,
        response_serializer=pb.GetProfileImageResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"GetProfileImage": get}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


EXPECTED = ProfileImageError(
    code=grpc.StatusCode.RESOURCE_EXHAUSTED,
    message="slow down",
    reason="rate-limited",
    domain="profileimage.v1",
    violations=(FieldViolation("user_id", "field-invalid", "too long"),),
    retry_delay=datetime.timedelta(seconds=2.5),
    quota_violations=(QuotaViolation("user:alice", "x"),),
)


def test_every_error_detail_is_decoded(stand_in: str) -> None:
    with Client(stand_in) as client, pytest.raises(ProfileImageError) as error:
        client.get("alice")
    assert error.value == EXPECTED


def test_every_error_detail_is_decoded_by_the_async_client(stand_in: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(stand_in) as client:
            await client.get("alice")

    with pytest.raises(ProfileImageError) as error:
        asyncio.run(scenario())
    assert error.value == EXPECTED


def test_the_bearer_token_is_sent_with_every_call(stand_in: str) -> None:
    with Client(stand_in, token="s3cret") as client:
        assert client.get("who-am-i").user_id == "Bearer s3cret"
    with Client(stand_in) as client:
        assert client.get("who-am-i").user_id == ""
