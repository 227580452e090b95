"""The asyncio client: the same calls as profileimage.Client, awaited."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType

import grpc
import grpc.aio

from profileimage import _requests as rq
from profileimage._requests import Crop, Format, Progress, Source
from profileimage.client import CHANNEL_OPTIONS
from profileimage.errors import RETRYABLE, ProfileImageError, error_from_rpc
from profileimage.v1 import profile_image_pb2 as pb
from profileimage.v1 import profile_image_pb2_grpc as pb_grpc


class AsyncClient:
    """A connection to a profile-image server for asyncio code (see Client)."""

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
            self._channel = grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        # The generated stub's constructor is typed to return the async stub for an aio channel.
        self._stub = pb_grpc.ProfileImageServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def get(self, user: str, size: int = 0, format: Format | None = None) -> pb.ProfileImage:
        return await self._get(rq.get_request(user, size, format, metadata_only=False))

    async def get_metadata(self, user: str) -> pb.ProfileImage:
        return await self._get(rq.get_request(user, 0, None, metadata_only=True))

    async def _get(self, request: pb.GetProfileImageRequest) -> pb.ProfileImage:
        try:
            reply = await self._stub.GetProfileImage(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        return reply.profile_image

    async def upload(
        self,
        user: str,
        source: Source,
        crop: Crop | None = None,
        *,
        expected_version: int | None = None,
        progress: Progress | None = None,
    ) -> pb.ProfileImage:
        """Uploads bytes, a binary file object or a file (path) in 1 MiB chunks."""
        # grpc.aio takes a plain iterator too; file reads are small and local.
        requests = rq.upload_requests(user, source, crop, expected_version, progress)
        try:
            reply = await self._stub.UploadProfileImage(
                requests, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        return reply.profile_image

    async def upload_file(
        self,
        user: str,
        path: str | os.PathLike[str],
        crop: Crop | None = None,
        *,
        expected_version: int | None = None,
        progress: Progress | None = None,
    ) -> pb.ProfileImage:
        """Uploads the file at ``path`` in 1 MiB chunks; the new state (READY)."""
        return await self.upload(
            user, path, crop, expected_version=expected_version, progress=progress
        )

    async def set_inline(self, user: str, data: bytes, crop: Crop | None = None) -> pb.ProfileImage:
        return await self._set(rq.set_request(user, data=data, crop=crop))

    async def set_from_url(self, user: str, url: str) -> pb.ProfileImage:
        return await self._set(rq.set_request(user, url=url))

    async def set_from_media(self, user: str, media_id: str) -> pb.ProfileImage:
        return await self._set(rq.set_request(user, media_id=media_id))

    async def _set(self, request: pb.SetProfileImageRequest) -> pb.ProfileImage:
        try:
            reply = await self._stub.SetProfileImage(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        return reply.profile_image

    async def wait_until_complete(self, user: str, timeout: float) -> pb.ProfileImage | None:
        """Waits until the image is READY or FAILED; that state (None: no image)."""

        async def last_state() -> pb.ProfileImage | None:
            last: pb.ProfileImage | None = None
            async for event in self.watch(user, until_complete=True):
                last = event.profile_image if event.HasField("profile_image") else None
            return last

        try:
            return await asyncio.wait_for(last_state(), timeout)
        except asyncio.TimeoutError:
            raise ProfileImageError(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"not complete after {timeout} s"
            ) from None

    async def crop(self, user: str, crop: Crop) -> pb.ProfileImage:
        request = pb.CropProfileImageRequest(user_id=user, crop=rq.crop_rect(crop))
        try:
            reply = await self._stub.CropProfileImage(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        return reply.profile_image

    async def delete(self, user: str) -> None:
        request = pb.DeleteProfileImageRequest(user_id=user)
        try:
            await self._stub.DeleteProfileImage(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    async def list_media(self, user: str, page_size: int = 0) -> AsyncIterator[pb.Media]:
        """Every media item, newest first; pages are fetched as the iteration goes."""
        token = ""
        while True:
            request = pb.ListMediaRequest(user_id=user, page_size=page_size, page_token=token)
            try:
                page = await self._stub.ListMedia(
                    request, timeout=self._timeout, metadata=self._metadata
                )
            except grpc.RpcError as error:
                raise error_from_rpc(error) from error
            for media in page.media:
                yield media
            token = page.next_page_token
            if not token:
                return

    async def delete_media(self, user: str, media_id: str) -> None:
        request = pb.DeleteMediaRequest(user_id=user, media_id=media_id)
        try:
            await self._stub.DeleteMedia(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    async def watch(
        self, user: str | None = None, *, until_complete: bool = False, after_sequence: int = 0
    ) -> AsyncGenerator[pb.WatchStatusResponse, None]:
        """The snapshot, then each change: of ``user``, or of everyone (None).

        Resumes after a dropped connection like Client.watch.
        """
        failures = 0
        while True:
            request = pb.WatchStatusRequest(
                user_id=user or "", until_complete=until_complete, after_sequence=after_sequence
            )
            call = self._stub.WatchStatus(request, metadata=self._metadata)
            try:
                async for event in call:
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
            await asyncio.sleep(rq.reconnect_delay(failures))
