"""The asyncio client against the real server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from profileimage import AsyncClient, Client, ProfileImageError, pb

from conftest import Proxy


def test_async_upload_get_list_and_delete(server: str, corpus: Path, user: str, token: str) -> None:
    async def scenario() -> tuple[pb.ProfileImage, pb.ProfileImage, list[str], list[str]]:
        async with AsyncClient(server, token=token) as client:
            uploaded = await client.upload_file(user, corpus / "camera/olympus_12mp.jpg")
            webp = await client.get(user, size=256, format="webp")
            listed = [media.media_id async for media in client.list_media(user)]
            await client.delete_media(user, uploaded.media_id)
            after = [media.media_id async for media in client.list_media(user)]
            return uploaded, webp, listed, after

    uploaded, webp, listed, after = asyncio.run(scenario())
    assert uploaded.status == pb.STATUS_READY
    assert webp.data[:4] == b"RIFF" and webp.data[8:12] == b"WEBP"
    assert listed == [uploaded.media_id] and after == []


def test_async_watch_ends_when_the_download_is_ready(
    server: str, origin: str, user: str, token: str
) -> None:
    async def scenario() -> list[pb.WatchStatusResponse]:
        async with AsyncClient(server, token=token) as client:
            await client.set_from_url(user, f"{origin}/photos/logo.png")
            return [event async for event in client.watch(user, until_complete=True)]

    events = asyncio.run(scenario())
    assert events[0].type == pb.EVENT_TYPE_SNAPSHOT
    assert events[-1].profile_image.status == pb.STATUS_READY


def test_async_wait_until_complete_returns_the_ready_state(
    server: str, origin: str, user: str, token: str
) -> None:
    async def scenario() -> pb.ProfileImage | None:
        async with AsyncClient(server, token=token) as client:
            await client.set_from_url(user, f"{origin}/photos/rocket.jpg")
            return await client.wait_until_complete(user, timeout=30)

    final = asyncio.run(scenario())
    assert final is not None and final.status == pb.STATUS_READY


def test_async_errors_carry_code_and_violations(server: str, user: str, token: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(server, token=token) as client:
            await client.set_from_url(user, "not a url")

    with pytest.raises(ProfileImageError) as error:
        asyncio.run(scenario())
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.reason == "validation-failure"
    assert [v.reason for v in error.value.violations] == ["invalid-url"]


def test_async_watch_resumes_after_a_dropped_connection(
    server: str, proxy: Proxy, corpus: Path, user: str, token: str
) -> None:
    async def scenario() -> tuple[pb.WatchStatusResponse, pb.WatchStatusResponse, int]:
        with Client(server, token=token) as direct:
            direct.set_inline(user, (corpus / "photos/rocket.jpg").read_bytes())
            async with AsyncClient(proxy.address, token=token) as through_proxy:
                events = through_proxy.watch(user)
                snapshot = await anext(events)
                proxy.cut()
                missed = await asyncio.to_thread(direct.crop, user, (0, 0, 50))
                proxy.resume()
                replayed = await asyncio.wait_for(anext(events), 30)
                await events.aclose()
        return snapshot, replayed, missed.version

    snapshot, replayed, version = asyncio.run(scenario())
    assert snapshot.type == pb.EVENT_TYPE_SNAPSHOT
    assert replayed.type == pb.EVENT_TYPE_CROPPED
    assert replayed.profile_image.version == version
