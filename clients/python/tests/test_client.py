"""The synchronous client against the real server: every call, the error details and a
watch that ends on completion."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import pytest

from profileimage import Client, ProfileImageError, pb

from conftest import Proxy, make_token

JPEG = b"\xff\xd8\xff"
PNG = b"\x89PNG\r\n\x1a\n"
BIG_PHOTO = "camera/olympus_12mp.jpg"  # 2.9 MB: three 1 MiB chunks


def test_upload_file_streams_a_big_photo_in_chunks_and_reports_progress(
    server: str, corpus: Path, user: str, token: str
) -> None:
    seen: list[tuple[int, int | None]] = []
    with Client(server, token=token) as client:
        image = client.upload_file(
            user, corpus / BIG_PHOTO, progress=lambda sent, total: seen.append((sent, total))
        )
    size = (corpus / BIG_PHOTO).stat().st_size
    assert image.status == pb.STATUS_READY
    assert image.source == pb.SOURCE_UPLOAD
    assert [sent for sent, _ in seen] == [1 << 20, 2 << 20, size]
    assert all(total == size for _, total in seen)


def test_upload_from_a_file_object_with_a_crop(
    server: str, corpus: Path, user: str, token: str
) -> None:
    data = (corpus / "photos/rocket.jpg").read_bytes()
    with Client(server, token=token) as client:
        image = client.upload(user, io.BytesIO(data), crop=(10, 20, 200))
    assert (image.crop.x, image.crop.y, image.crop.size) == (10, 20, 200)


def test_get_returns_the_size_and_format_asked_for(
    server: str, corpus: Path, user: str, token: str
) -> None:
    with Client(server, token=token) as client:
        client.upload_file(user, str(corpus / "photos/rocket.jpg"))
        png = client.get(user, size=64, format="png")
        jpeg = client.get(user, size=128, format="jpeg")
        metadata = client.get_metadata(user)
    assert png.data.startswith(PNG) and png.content_type == "image/png"
    assert max(png.width, png.height) == 64
    assert jpeg.data.startswith(JPEG) and max(jpeg.width, jpeg.height) == 128
    assert metadata.data == b"" and metadata.version == png.version


def test_set_inline_crop_and_set_from_media_make_new_versions(
    server: str, corpus: Path, user: str, token: str
) -> None:
    with Client(server, token=token) as client:
        first = client.set_inline(user, (corpus / "photos/rocket.jpg").read_bytes())
        second = client.set_inline(user, (corpus / "photos/logo.png").read_bytes())
        cropped = client.crop(user, (0, 0, 100))
        back = client.set_from_media(user, first.media_id)
    assert first.version < second.version < cropped.version < back.version
    assert cropped.crop.size == 100 and cropped.media_id == second.media_id
    assert back.media_id == first.media_id and back.source == pb.SOURCE_MEDIA


def test_list_media_iterates_over_every_page_newest_first(
    server: str, corpus: Path, user: str, token: str
) -> None:
    with Client(server, token=token) as client:
        ids = [
            client.set_inline(user, (corpus / name).read_bytes()).media_id
            for name in ("photos/rocket.jpg", "photos/logo.png", "photos/chelsea.png")
        ]
        listed = [media.media_id for media in client.list_media(user, page_size=1)]
    assert listed == list(reversed(ids))


def test_delete_then_delete_media_removes_image_and_item(
    server: str, corpus: Path, user: str, token: str
) -> None:
    with Client(server, token=token) as client:
        image = client.upload_file(user, corpus / "photos/rocket.jpg")
        client.delete(user)
        with pytest.raises(ProfileImageError) as missing:
            client.get(user)
        assert [m.media_id for m in client.list_media(user)] == [image.media_id]
        client.delete_media(user, image.media_id)
        assert list(client.list_media(user)) == []
    assert missing.value.code == grpc.StatusCode.NOT_FOUND


def test_a_crop_outside_the_image_is_invalid_argument_with_its_violation(
    server: str, corpus: Path, user: str, token: str
) -> None:
    with Client(server, token=token) as client:
        client.upload_file(user, corpus / "photos/rocket.jpg")
        with pytest.raises(ProfileImageError) as error:
            client.crop(user, (0, 0, 100_000))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.reason == "validation-failure"
    assert error.value.domain == "profileimage.v1"
    assert [(v.field, v.reason) for v in error.value.violations] == [
        ("crop", "crop-out-of-bounds")
    ]


def test_bytes_that_are_no_image_are_refused_as_invalid_file_format(
    server: str, user: str, token: str
) -> None:
    with Client(server, token=token) as client, pytest.raises(ProfileImageError) as error:
        client.upload(user, b"this is not an image")
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid-file-format" in [v.reason for v in error.value.violations]


def test_watch_until_complete_ends_when_the_download_is_ready(
    server: str, origin: str, user: str, token: str
) -> None:
    with Client(server, token=token) as client:
        accepted = client.set_from_url(user, f"{origin}/photos/rocket.jpg")
        events = list(client.watch(user, until_complete=True))
    assert accepted.status == pb.STATUS_DOWNLOADING
    assert events[0].type == pb.EVENT_TYPE_SNAPSHOT
    assert events[-1].profile_image.status == pb.STATUS_READY
    assert [e.sequence for e in events] == sorted(e.sequence for e in events)


def test_wait_until_complete_returns_the_failed_state_of_a_bad_download(
    server: str, origin: str, user: str, token: str
) -> None:
    with Client(server, token=token) as client:
        client.set_from_url(user, f"{origin}/no-such-file.jpg")
        final = client.wait_until_complete(user, timeout=30)
    assert final is not None and final.status == pb.STATUS_FAILED
    assert final.failure.reason == "download-failed"


def test_watch_resumes_after_a_dropped_connection_and_replays_the_missed_event(
    server: str, proxy: Proxy, corpus: Path, user: str, token: str
) -> None:
    with Client(server, token=token) as direct, Client(proxy.address, token=token) as through_proxy:
        direct.set_inline(user, (corpus / "photos/rocket.jpg").read_bytes())
        events = through_proxy.watch(user)
        snapshot = next(events)
        proxy.cut()
        missed = direct.crop(user, (0, 0, 50))
        proxy.resume()
        replayed = next(events)
        events.close()
    assert snapshot.type == pb.EVENT_TYPE_SNAPSHOT
    assert replayed.type == pb.EVENT_TYPE_CROPPED, "replayed, not a new snapshot"
    assert replayed.profile_image.version == missed.version
    assert replayed.sequence > snapshot.sequence


def test_https_speaks_tls_and_checks_the_certificate(
    tls_proxy: str, tls_dir: Path, corpus: Path, user: str, token: str
) -> None:
    ca = (tls_dir / "ca.crt").read_bytes()
    with Client(f"https://{tls_proxy}", root_certificates=ca, token=token) as client:
        image = client.upload_file(user, corpus / "photos/rocket.jpg")
        assert client.get_metadata(user).version == image.version
    with Client(f"https://{tls_proxy}", timeout=5) as untrusted:
        with pytest.raises(ProfileImageError) as error:
            untrusted.get_metadata(user)
    assert error.value.code == grpc.StatusCode.UNAVAILABLE


def test_a_user_may_read_another_users_image_but_not_change_it(
    server: str, data_dir: Path, corpus: Path, user: str, token: str
) -> None:
    with Client(server, token=token) as admin:
        admin.set_inline(user, (corpus / "photos/rocket.jpg").read_bytes())
    other = make_token(data_dir, "--user", f"{user}-other")
    with Client(server, token=other) as client:
        assert client.get(user, size=64).user_id == user
        with pytest.raises(ProfileImageError) as error:
            client.delete(user)
    assert error.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.value.reason == "not-owner"
