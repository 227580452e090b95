"""The synchronous client."""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from types import TracebackType

import grpc

from profileimage import _requests as rq
from profileimage._requests import Crop, Format, Progress, Source
from profileimage.errors import RETRYABLE, error_from_rpc
from profileimage.v1 import profile_image_pb2 as pb
from profileimage.v1 import profile_image_pb2_grpc as pb_grpc

# Full-size renditions and inline images can exceed grpcio's 4 MiB default.
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
)


class Client:
    """A connection to a profile-image server.

    ``target`` is ``host:port``, ``http://host:port``, or ``https://host:port`` for TLS
    (``root_certificates``: PEM of the CA to trust; default the system roots). ``token``
    is sent as ``authorization: Bearer TOKEN``. ``timeout`` (seconds) applies to every
    unary call; streams have none. Every method raises ProfileImageError.
    """

    def __init__(
        self,
        target: str = rq.DEFAULT_TARGET,
        *,
        token: str | None = None,
        root_certificates: bytes | None = None,
        timeout: float | None = 30.0,
    ) -> None:
        address, tls = rq.channel_target(target)
        if tls or root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates)
            self._channel = grpc.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.ProfileImageServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def get(self, user: str, size: int = 0, format: Format | None = None) -> pb.ProfileImage:
        """The image, ``size`` px on its longest edge (0 = full), as ``format``."""
        return self._get(rq.get_request(user, size, format, metadata_only=False))

    def get_metadata(self, user: str) -> pb.ProfileImage:
        """The image's metadata without its bytes."""
        return self._get(rq.get_request(user, 0, None, metadata_only=True))

    def _get(self, request: pb.GetProfileImageRequest) -> pb.ProfileImage:
        try:
            reply = self._stub.GetProfileImage(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        return reply.profile_image

    def upload(
        self,
        user: str,
        source: Source,
        crop: Crop | None = None,
        *,
        expected_version: int | None = None,
        progress: Progress | None = None,
    ) -> pb.ProfileImage:
        """Uploads bytes, a binary file object or a file (path) in 1 MiB chunks."""
        requests = rq.upload_requests(user, source, crop, expected_version, progress)
        try:
            reply = self._stub.UploadProfileImage(
                requests, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        return reply.profile_image

    def upload_file(
        self,
        user: str,
        path: str | os.PathLike[str],
        crop: Crop | None = None,
        *,
        expected_version: int | None = None,
        progress: Progress | None = None,
    ) -> pb.ProfileImage:
        """Uploads the file at ``path`` in 1 MiB chunks; the new state (READY)."""
        return self.upload(
            user, path, crop, expected_version=expected_version, progress=progress
        )

    def set_inline(self, user: str, data: bytes, crop: Crop | None = None) -> pb.ProfileImage:
        """Sets the image from bytes sent in one message (small images)."""
        return self._set(rq.set_request(user, data=data, crop=crop))

    def set_from_url(self, user: str, url: str) -> pb.ProfileImage:
        """Has the server download ``url``; the reply says STATUS_DOWNLOADING."""
        return self._set(rq.set_request(user, url=url))

    def set_from_media(self, user: str, media_id: str) -> pb.ProfileImage:
        """Makes an earlier media item the profile image again."""
        return self._set(rq.set_request(user, media_id=media_id))

    def _set(self, request: pb.SetProfileImageRequest) -> pb.ProfileImage:
        try:
            reply = self._stub.SetProfileImage(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        return reply.profile_image

    def wait_until_complete(self, user: str, timeout: float) -> pb.ProfileImage | None:
        """Waits until the image is READY or FAILED; that state (None: no image)."""
        last: pb.ProfileImage | None = None
        request = pb.WatchStatusRequest(user_id=user, until_complete=True)
        try:
            for event in self._stub.WatchStatus(request, timeout=timeout, metadata=self._metadata):
                last = event.profile_image if event.HasField("profile_image") else None
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        return last

    def crop(self, user: str, crop: Crop) -> pb.ProfileImage:
        """Crops the stored original again: a new version."""
        request = pb.CropProfileImageRequest(user_id=user, crop=rq.crop_rect(crop))
        try:
            reply = self._stub.CropProfileImage(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        return reply.profile_image

    def delete(self, user: str) -> None:
        """Removes the profile image (its media item stays)."""
        request = pb.DeleteProfileImageRequest(user_id=user)
        try:
            self._stub.DeleteProfileImage(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    def list_media(self, user: str, page_size: int = 0) -> Iterator[pb.Media]:
        """Every media item, newest first; pages are fetched as the iteration goes."""
        token = ""
        while True:
            request = pb.ListMediaRequest(user_id=user, page_size=page_size, page_token=token)
            try:
                page = self._stub.ListMedia(
                    request, timeout=self._timeout, metadata=self._metadata
                )
            except grpc.RpcError as error:
                raise error_from_rpc(error) from error
            yield from page.media
            token = page.next_page_token
            if not token:
                return

    def delete_media(self, user: str, media_id: str) -> None:
        """Deletes a media item and its bytes (and the profile image, if it is active)."""
        request = pb.DeleteMediaRequest(user_id=user, media_id=media_id)
        try:
            self._stub.DeleteMedia(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    def watch(
        self, user: str | None = None, *, until_complete: bool = False, after_sequence: int = 0
    ) -> Generator[pb.WatchStatusResponse, None, None]:
        """The snapshot, then each change: of ``user``, or of everyone (None).

        When the connection drops (or the server ends the stream) a new call resumes after
        the last sequence seen, so no event the server still retains is lost or repeated;
        it gives up after MAX_RECONNECTS consecutive failures. With ``until_complete`` it
        is one call that ends once the state is READY, FAILED or absent.
        """
        failures = 0
        while True:
            request = pb.WatchStatusRequest(
                user_id=user or "", until_complete=until_complete, after_sequence=after_sequence
            )
            call = self._stub.WatchStatus(request, metadata=self._metadata)
            try:
                for event in call:
                    failures = 0
                    after_sequence = event.sequence
                    yield event
                if until_complete:
                    return
            except grpc.RpcError as error:
                failure = error_from_rpc(error)
                if until_complete or failure.code not in RETRYABLE or failures >= rq.MAX_RECONNECTS:
                    raise failure from error
            finally:
                call.cancel()
            failures += 1
            time.sleep(rq.reconnect_delay(failures))
