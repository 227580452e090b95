"""Request building shared by the sync and the asyncio client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import BinaryIO, Literal, Union

from profileimage.v1 import profile_image_pb2 as pb

#: The server refuses upload chunks larger than this.
MAX_CHUNK_SIZE = 1 << 20

DEFAULT_TARGET = "127.0.0.1:50051"

Crop = Union[tuple[int, int, int], pb.CropRect]
"""A square crop: ``(x, y, size)`` in pixels of the upright original, or a CropRect."""

Format = Literal["jpeg", "png", "webp"]

Progress = Callable[[int, Union[int, None]], None]
"""Called after each upload chunk with (bytes sent, total bytes if known)."""

Source = Union[bytes, BinaryIO, "os.PathLike[str]", str]

_FORMATS = {
    None: pb.IMAGE_FORMAT_UNSPECIFIED,
    "jpeg": pb.IMAGE_FORMAT_JPEG,
    "png": pb.IMAGE_FORMAT_PNG,
    "webp": pb.IMAGE_FORMAT_WEBP,
}


def channel_target(target: str) -> tuple[str, bool]:
    """``host:port`` or ``http(s)://host:port`` -> (``host:port``, use TLS)."""
    if target.startswith("https://"):
        return target.removeprefix("https://").rstrip("/"), True
    return target.removeprefix("http://").rstrip("/"), False


def crop_rect(crop: Crop | None) -> pb.CropRect | None:
    if crop is None or isinstance(crop, pb.CropRect):
        return crop
    x, y, size = crop
    return pb.CropRect(x=x, y=y, size=size)


def image_format(format: Format | None) -> pb.ImageFormat.ValueType:
    try:
        return _FORMATS[format]
    except KeyError:
        raise ValueError(f"format must be jpeg, png, webp or None, not {format!r}") from None


def get_request(
    user: str, size: int, format: Format | None, metadata_only: bool
) -> pb.GetProfileImageRequest:
    return pb.GetProfileImageRequest(
        user_id=user, size=size, format=image_format(format), metadata_only=metadata_only
    )


def set_request(
    user: str,
    *,
    url: str | None = None,
    data: bytes | None = None,
    media_id: str | None = None,
    crop: Crop | None = None,
    expected_version: int | None = None,
) -> pb.SetProfileImageRequest:
    request = pb.SetProfileImageRequest(user_id=user, crop=crop_rect(crop))
    if url is not None:
        request.url = url
    elif data is not None:
        request.image.data = data
    elif media_id is not None:
        request.media_id = media_id
    if expected_version is not None:
        request.expected_version = expected_version
    return request


def upload_requests(
    user: str,
    source: Source,
    crop: Crop | None,
    expected_version: int | None,
    progress: Progress | None,
    chunk_size: int = MAX_CHUNK_SIZE,
) -> Iterator[pb.UploadProfileImageRequest]:
    """The metadata message, then the source's bytes in chunks of at most 1 MiB."""
    chunk_size = max(1, min(chunk_size, MAX_CHUNK_SIZE))
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            total = os.fstat(file.fileno()).st_size
            yield from _upload_messages(
                user, file, total, crop, expected_version, progress, chunk_size
            )
    elif isinstance(source, bytes):
        yield from _upload_messages(
            user, _BytesReader(source), len(source), crop, expected_version, progress, chunk_size
        )
    else:
        yield from _upload_messages(
            user, source, None, crop, expected_version, progress, chunk_size
        )


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._offset = 0

    def read(self, size: int) -> bytes:
        chunk = bytes(self._view[self._offset : self._offset + size])
        self._offset += len(chunk)
        return chunk


def _upload_messages(
    user: str,
    reader: BinaryIO | _BytesReader,
    total: int | None,
    crop: Crop | None,
    expected_version: int | None,
    progress: Progress | None,
    chunk_size: int,
) -> Iterator[pb.UploadProfileImageRequest]:
    metadata = pb.UploadMetadata(user_id=user, size_bytes=total or 0, crop=crop_rect(crop))
    if expected_version is not None:
        metadata.expected_version = expected_version
    yield pb.UploadProfileImageRequest(metadata=metadata)
    sent = 0
    while True:
        chunk = _read_full(reader, chunk_size)
        if not chunk:
            return
        yield pb.UploadProfileImageRequest(chunk=chunk)
        sent += len(chunk)
        if progress is not None:
            progress(sent, total)


def _read_full(reader: BinaryIO | _BytesReader, size: int) -> bytes:
    """Up to `size` bytes: fewer only at the end of the input."""
    parts: list[bytes] = []
    wanted = size
    while wanted > 0:
        part = reader.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


#: Consecutive failed reconnects after which ``watch`` gives up with the last error.
MAX_RECONNECTS = 8


def reconnect_delay(failures: int) -> float:
    """Seconds to wait before reconnect number ``failures``: 0.1 doubling, at most 5."""
    return float(min(0.1 * 2 ** (failures - 1), 5.0))


def is_complete(event: pb.WatchStatusResponse) -> bool:
    """True when the state is final: READY, FAILED or no image."""
    if not event.HasField("profile_image"):
        return True
    return event.profile_image.status in (pb.STATUS_READY, pb.STATUS_FAILED)
