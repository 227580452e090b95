"""A small, synchronous Python client for the profile-image gRPC service.

    from profile_image_client import ProfileImageClient, error_details

    with ProfileImageClient("127.0.0.1:50051") as client:
        client.upload("alice", "photo.jpg")
        image = client.get("alice", size=256, format="webp")
        open("alice.webp", "wb").write(image.data)

Every method returns the generated protobuf messages (``profileimage.v1.profile_image_pb2``)
and raises ``grpc.RpcError`` on failure; ``error_details(err)`` turns one into the status
code, the google.rpc ErrorInfo reason and the BadRequest field violations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from profileimage.v1 import profile_image_pb2 as pb
from profileimage.v1 import profile_image_pb2_grpc as pb_grpc

__all__ = [
    "ProfileImageClient",
    "ErrorDetails",
    "FieldViolation",
    "error_details",
    "pb",
    "MAX_CHUNK_SIZE",
]

#: The server refuses upload chunks larger than this.
MAX_CHUNK_SIZE = 1 << 20

# Inline images may be up to 16 MiB and full-size renditions can exceed grpcio's 4 MiB
# default receive limit.
_DEFAULT_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
)

CropLike = Union[pb.CropRect, Tuple[int, int, int], Sequence[int], Mapping[str, int], None]
FormatLike = Union[int, str, None]


def _format(value: FormatLike) -> int:
    """None / ImageFormat value / "jpeg" / "IMAGE_FORMAT_JPEG" -> ImageFormat value."""
    if value is None:
        return pb.IMAGE_FORMAT_UNSPECIFIED
    if isinstance(value, str):
        name = value.strip().upper()
        if name in ("JPG",):
            name = "JPEG"
        if not name.startswith("IMAGE_FORMAT_"):
            name = "IMAGE_FORMAT_" + name
        try:
            return pb.ImageFormat.Value(name)
        except ValueError:
            raise ValueError(
                f"unknown image format {value!r}: use jpeg, png, webp or None"
            ) from None
    pb.ImageFormat.Name(int(value))  # ValueError for an unknown number
    return int(value)


def _crop(value: CropLike) -> Optional[pb.CropRect]:
    """None / CropRect / (x, y, size) / {"x":..,"y":..,"size":..} -> CropRect or None."""
    if value is None:
        return None
    if isinstance(value, pb.CropRect):
        return value
    if isinstance(value, Mapping):
        return pb.CropRect(x=value["x"], y=value["y"], size=value["size"])
    x, y, size = value
    return pb.CropRect(x=x, y=y, size=size)


class ProfileImageClient:
    """Wraps ``ProfileImageServiceStub`` with keyword-friendly methods.

    ``target`` is ``HOST:PORT``. Without ``credentials`` the channel is plaintext (the
    service speaks h2c). ``timeout`` is the default deadline in seconds for unary calls and
    uploads (None = no deadline); every method also takes its own ``timeout``.
    ``metadata`` is sent with every call.
    """

    def __init__(
        self,
        target: str,
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        timeout: Optional[float] = 30.0,
        metadata: Optional[Sequence[Tuple[str, str]]] = None,
        options: Sequence[Tuple[str, object]] = (),
        channel: Optional[grpc.Channel] = None,
    ):
        self.target = target
        self.timeout = timeout
        self.metadata = tuple(metadata or ())
        all_options = list(_DEFAULT_CHANNEL_OPTIONS) + list(options)
        if channel is not None:
            self._channel = channel
            self._owns_channel = False
        elif credentials is not None:
            self._channel = grpc.secure_channel(target, credentials, options=all_options)
            self._owns_channel = True
        else:
            self._channel = grpc.insecure_channel(target, options=all_options)
            self._owns_channel = True
        self.stub = pb_grpc.ProfileImageServiceStub(self._channel)

    # -- lifecycle ---------------------------------------------------------------------

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the channel is connected; raises grpc.FutureTimeoutError."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> "ProfileImageClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _kw(self, timeout: Optional[float]) -> dict:
        return {
            "timeout": self.timeout if timeout is None else timeout,
            "metadata": self.metadata,
        }

    # -- reads -------------------------------------------------------------------------

    def get(
        self,
        user_id: str,
        size: int = 0,
        format: FormatLike = None,
        metadata_only: bool = False,
        *,
        timeout: Optional[float] = None,
    ) -> pb.ProfileImage:
        """The user's current image. ``size``: longest edge (0 = full, snapped up to a
        rendition size); ``format``: None (server picks), "jpeg", "png", "webp" or an
        ``ImageFormat`` value. NOT_FOUND when the user has none."""
        request = pb.GetProfileImageRequest(
            user_id=user_id,
            size=size,
            format=_format(format),
            metadata_only=metadata_only,
        )
        return self.stub.GetProfileImage(request, **self._kw(timeout)).profile_image

    def list_media(
        self,
        user_id: str,
        page_size: int = 0,
        *,
        timeout: Optional[float] = None,
    ) -> Iterator[pb.Media]:
        """Every media item of the user, newest first, fetching pages lazily."""
        token = ""
        while True:
            response = self.stub.ListMedia(
                pb.ListMediaRequest(user_id=user_id, page_size=page_size, page_token=token),
                **self._kw(timeout),
            )
            yield from response.media
            token = response.next_page_token
            if not token:
                return

    def watch(
        self,
        user_id: str = "",
        until_complete: bool = True,
        *,
        after_sequence: int = 0,
        timeout: Optional[float] = None,
    ) -> Iterator[pb.WatchStatusResponse]:
        """Streams WatchStatus events: a SNAPSHOT first, then one per change. With
        ``until_complete`` the stream ends once the image is READY, FAILED or absent.
        ``user_id=""`` watches every user (then pass ``until_complete=False``).
        ``timeout`` (default: none) bounds the whole stream. Closing the generator (or
        leaving a ``for`` loop early) cancels the call."""
        request = pb.WatchStatusRequest(
            user_id=user_id, until_complete=until_complete, after_sequence=after_sequence
        )
        call = self.stub.WatchStatus(request, timeout=timeout, metadata=self.metadata)
        try:
            yield from call
        finally:
            call.cancel()

    # -- writes ------------------------------------------------------------------------

    def set_inline(
        self,
        user_id: str,
        data: bytes,
        crop: CropLike = None,
        expected_version: Optional[int] = None,
        *,
        content_type: str = "",
        timeout: Optional[float] = None,
    ) -> pb.ProfileImage:
        """Sets the image from bytes sent in one message (READY when it returns)."""
        request = pb.SetProfileImageRequest(
            user_id=user_id,
            image=pb.InlineImage(content_type=content_type, data=bytes(data)),
            crop=_crop(crop),
            expected_version=expected_version,
        )
        return self.stub.SetProfileImage(request, **self._kw(timeout)).profile_image

    def set_url(
        self,
        user_id: str,
        url: str,
        crop: CropLike = None,
        expected_version: Optional[int] = None,
        *,
        timeout: Optional[float] = None,
    ) -> pb.ProfileImage:
        """Has the server download the image in the background: the reply says
        STATUS_DOWNLOADING; follow it with ``watch(user_id)``."""
        request = pb.SetProfileImageRequest(
            user_id=user_id,
            url=url,
            crop=_crop(crop),
            expected_version=expected_version,
        )
        return self.stub.SetProfileImage(request, **self._kw(timeout)).profile_image

    def set_media(
        self,
        user_id: str,
        media_id: str,
        crop: CropLike = None,
        expected_version: Optional[int] = None,
        *,
        timeout: Optional[float] = None,
    ) -> pb.ProfileImage:
        """Makes one of the user's earlier media items the profile image again."""
        request = pb.SetProfileImageRequest(
            user_id=user_id,
            media_id=media_id,
            crop=_crop(crop),
            expected_version=expected_version,
        )
        return self.stub.SetProfileImage(request, **self._kw(timeout)).profile_image

    def upload(
        self,
        user_id: str,
        path_or_bytes: Union[str, os.PathLike, bytes, bytearray, memoryview],
        chunk_size: int = MAX_CHUNK_SIZE,
        crop: CropLike = None,
        expected_version: Optional[int] = None,
        *,
        content_type: str = "",
        timeout: Optional[float] = None,
    ) -> pb.ProfileImage:
        """Streams a file (a path, read lazily) or bytes in chunks of ``chunk_size``
        (at most 1 MiB). The declared size lets the server refuse an oversized file at
        once."""
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK_SIZE}, got {chunk_size}")
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            data = bytes(path_or_bytes)
            size = len(data)
            chunks: Iterable[bytes] = (
                data[i : i + chunk_size] for i in range(0, size, chunk_size)
            )
        else:
            path = os.fspath(path_or_bytes)
            size = os.path.getsize(path)
            chunks = _read_chunks(path, chunk_size)

        metadata = pb.UploadMetadata(
            user_id=user_id,
            content_type=content_type,
            size_bytes=size,
            crop=_crop(crop),
            expected_version=expected_version,
        )

        def requests() -> Iterator[pb.UploadProfileImageRequest]:
            yield pb.UploadProfileImageRequest(metadata=metadata)
            for chunk in chunks:
                yield pb.UploadProfileImageRequest(chunk=chunk)

        return self.stub.UploadProfileImage(requests(), **self._kw(timeout)).profile_image

    def crop(
        self,
        user_id: str,
        crop: CropLike,
        expected_version: Optional[int] = None,
        *,
        timeout: Optional[float] = None,
    ) -> pb.ProfileImage:
        """Crops the stored original again (x, y, size in upright original pixels)."""
        request = pb.CropProfileImageRequest(
            user_id=user_id, crop=_crop(crop), expected_version=expected_version
        )
        return self.stub.CropProfileImage(request, **self._kw(timeout)).profile_image

    def delete(
        self,
        user_id: str,
        expected_version: Optional[int] = None,
        *,
        timeout: Optional[float] = None,
    ) -> None:
        """Removes the profile image (its media item stays until delete_media)."""
        request = pb.DeleteProfileImageRequest(
            user_id=user_id, expected_version=expected_version
        )
        self.stub.DeleteProfileImage(request, **self._kw(timeout))

    def delete_media(
        self, user_id: str, media_id: str, *, timeout: Optional[float] = None
    ) -> None:
        """Deletes one media item (and the profile image, if it is the active one)."""
        request = pb.DeleteMediaRequest(user_id=user_id, media_id=media_id)
        self.stub.DeleteMedia(request, **self._kw(timeout))


def _read_chunks(path: str, chunk_size: int) -> Iterator[bytes]:
    with open(path, "rb") as file:
        while True:
            chunk = file.read(chunk_size)
            if not chunk:
                return
            yield chunk


# -- errors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldViolation:
    """One google.rpc.BadRequest.FieldViolation, e.g. ("image.data", "invalid-file-format")."""

    field: str
    reason: str
    description: str = ""


@dataclass(frozen=True)
class ErrorDetails:
    """What a failed call said: the status plus its google.rpc details."""

    code: grpc.StatusCode
    message: str
    #: ErrorInfo.reason, e.g. "validation-failure" (None when there is no ErrorInfo).
    reason: Optional[str] = None
    #: ErrorInfo.domain, e.g. "profileimage.v1".
    domain: Optional[str] = None
    #: ErrorInfo.metadata.
    info_metadata: Mapping[str, str] = field(default_factory=dict)
    #: BadRequest field violations, in order.
    field_violations: Tuple[FieldViolation, ...] = ()

    def has_violation(self, field: str, reason: Optional[str] = None) -> bool:
        return any(
            v.field == field and (reason is None or v.reason == reason)
            for v in self.field_violations
        )

    def __str__(self) -> str:
        parts = [f"{self.code.name}: {self.message}"]
        if self.reason:
            parts.append(f"reason={self.reason}")
        parts.extend(f"{v.field}: {v.reason} ({v.description})" for v in self.field_violations)
        return "; ".join(parts)


_STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _status_proto(error: grpc.RpcError) -> Optional[status_pb2.Status]:
    try:
        return rpc_status.from_call(error)
    except ValueError:
        # from_call insists that the code and message in the details match the call's;
        # the details are still worth reading when they do not.
        for key, value in error.trailing_metadata() or ():
            if key == _STATUS_DETAILS_KEY:
                return status_pb2.Status.FromString(value)
        return None


def error_details(error: grpc.RpcError) -> ErrorDetails:
    """Extracts the status code, message, ErrorInfo and BadRequest of a failed call.

    Works on the ``grpc.RpcError`` raised by any method of ProfileImageClient (including
    while iterating ``watch``)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    reason = domain = None
    info_metadata: Mapping[str, str] = {}
    violations = []
    status = _status_proto(error) if hasattr(error, "trailing_metadata") else None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, info_metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations.extend(
                    FieldViolation(v.field, v.reason, v.description)
                    for v in bad_request.field_violations
                )
    return ErrorDetails(
        code=code,
        message=message or "",
        reason=reason,
        domain=domain,
        info_metadata=info_metadata,
        field_violations=tuple(violations),
    )
