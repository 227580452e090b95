#!/usr/bin/env python3
"""End-to-end smoke test of the Python client against a running profile-image server.

    python smoke_test.py --target 127.0.0.1:50051 --corpus ../../../shared/corpus

Prints one line per check and a final "N passed, M failed"; exits 1 if any check failed
(2 if the server cannot be reached). Uses a fresh random user id, so it can run against a
server that has other data.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import uuid

import grpc

from profile_image_client import ProfileImageClient, error_details, pb

MAGIC = {
    "image/jpeg": lambda b: b[:3] == b"\xff\xd8\xff",
    "image/png": lambda b: b[:8] == b"\x89PNG\r\n\x1a\n",
    "image/webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
}

TIMEOUT = 30.0


class CheckFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_error(code: grpc.StatusCode, call, *args, **kwargs):
    """Runs call(*args, **kwargs), which must fail with `code`; returns its ErrorDetails."""
    try:
        result = call(*args, **kwargs)
    except grpc.RpcError as error:
        details = error_details(error)
        check(details.code == code, f"expected {code.name}, got {details}")
        return details
    raise CheckFailed(f"expected {code.name}, but the call succeeded: {result!r}"[:500])


class Smoke:
    def __init__(self, client: ProfileImageClient, corpus: str):
        self.client = client
        self.corpus = corpus
        self.user = f"py-smoke-{uuid.uuid4().hex[:12]}"
        self.passed = 0
        self.failed = 0
        # State carried from one check to the next.
        self.uploaded: pb.ProfileImage | None = None
        self.version = 0

    def run(self, name: str, function) -> None:
        try:
            function()
        except CheckFailed as failure:
            self.failed += 1
            print(f"FAIL {name}: {failure}", flush=True)
        except grpc.RpcError as error:
            self.failed += 1
            print(f"FAIL {name}: unexpected RPC error: {error_details(error)}", flush=True)
        except Exception:  # noqa: BLE001 - report, keep going
            self.failed += 1
            print(f"FAIL {name}: unexpected exception:", flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            self.passed += 1
            print(f"ok   {name}", flush=True)

    # -- the checks, in order ------------------------------------------------------------

    def upload_chunks(self) -> None:
        path = os.path.join(self.corpus, "photos", "rocket.jpg")
        size = os.path.getsize(path)
        chunk_size = 16 << 10
        check(size > 2 * chunk_size, f"rocket.jpg is only {size} bytes")
        image = self.client.upload(
            self.user, path, chunk_size=chunk_size, content_type="image/jpeg", timeout=TIMEOUT
        )
        check(image.user_id == self.user, f"user_id {image.user_id!r}")
        check(image.status == pb.STATUS_READY, f"status {pb.Status.Name(image.status)}")
        check(image.source == pb.SOURCE_UPLOAD, f"source {pb.Source.Name(image.source)}")
        check(image.version > 0, f"version {image.version}")
        check(bool(image.media_id), "no media_id")
        check(image.data == b"", "write replies carry no data")
        check(
            (image.original_width, image.original_height) == (640, 427),
            f"original {image.original_width}x{image.original_height}, want 640x427",
        )
        self.uploaded = image
        self.version = image.version

    def get_formats(self) -> None:
        for fmt, content_type in (
            ("jpeg", "image/jpeg"),
            ("png", "image/png"),
            ("webp", "image/webp"),
        ):
            image = self.client.get(self.user, size=256, format=fmt, timeout=TIMEOUT)
            check(
                image.content_type == content_type,
                f"{fmt}: content_type {image.content_type!r}, want {content_type}",
            )
            check(MAGIC[content_type](image.data), f"{fmt}: bytes start {image.data[:12]!r}")
            check(
                (image.width, image.height) == (256, 256),
                f"{fmt}: {image.width}x{image.height}, want 256x256 (square default crop)",
            )
            check(
                image.size_bytes == len(image.data),
                f"{fmt}: size_bytes {image.size_bytes} != {len(image.data)}",
            )
            check(image.version == self.version, f"{fmt}: version {image.version}")
            check(not image.placeholder, f"{fmt}: placeholder")

    def metadata_only(self) -> None:
        image = self.client.get(self.user, size=256, format="png", metadata_only=True)
        check(image.data == b"", f"metadata_only returned {len(image.data)} bytes")
        check(image.content_type == "image/png", f"content_type {image.content_type!r}")
        check(image.size_bytes > 0, "size_bytes is 0")
        check(bool(image.etag), "no etag")
        check(image.version == self.version, f"version {image.version}")
        full = self.client.get(self.user, size=256, format="png")
        check(full.etag == image.etag, "etag differs between metadata_only and full get")

    def crop(self) -> None:
        image = self.client.crop(self.user, (10, 20, 300), expected_version=self.version)
        check(image.version > self.version, f"version {image.version} after {self.version}")
        check(
            (image.crop.x, image.crop.y, image.crop.size) == (10, 20, 300),
            f"crop {image.crop}",
        )
        self.version = image.version
        served = self.client.get(self.user, size=0, format="jpeg")
        check(
            (served.width, served.height) == (300, 300),
            f"full size after crop {served.width}x{served.height}, want 300x300",
        )
        out_of_bounds = expect_error(
            grpc.StatusCode.INVALID_ARGUMENT, self.client.crop, self.user, (600, 0, 300)
        )
        check(
            out_of_bounds.reason == "validation-failure",
            f"out-of-bounds crop: reason {out_of_bounds.reason!r}",
        )

    def list_media(self) -> None:
        second = self.client.set_inline(
            self.user,
            open(os.path.join(self.corpus, "photos", "chelsea.png"), "rb").read(),
            expected_version=self.version,
        )
        check(second.status == pb.STATUS_READY, f"status {pb.Status.Name(second.status)}")
        self.version = second.version
        # page_size=1 makes the generator follow next_page_token.
        media = list(self.client.list_media(self.user, page_size=1))
        ids = [m.media_id for m in media]
        check(
            ids == [second.media_id, self.uploaded.media_id],
            f"media {ids}, want newest first {[second.media_id, self.uploaded.media_id]}",
        )
        check([m.active for m in media] == [True, False], f"active {[m.active for m in media]}")
        check(media[1].source == pb.SOURCE_UPLOAD, "source of the upload")
        # Re-activate the upload, then delete the other media item.
        again = self.client.set_media(self.user, self.uploaded.media_id)
        check(again.source == pb.SOURCE_MEDIA, f"source {pb.Source.Name(again.source)}")
        check(again.media_id == self.uploaded.media_id, "set_media media_id")
        self.version = again.version
        self.client.delete_media(self.user, second.media_id)
        ids = [m.media_id for m in self.client.list_media(self.user)]
        check(ids == [self.uploaded.media_id], f"after delete_media: {ids}")

    def version_conflict(self) -> None:
        data = open(os.path.join(self.corpus, "photos", "rocket.jpg"), "rb").read()
        expect_error(
            grpc.StatusCode.ABORTED,
            self.client.set_inline,
            self.user,
            data,
            expected_version=self.version - 1,
        )
        expect_error(
            grpc.StatusCode.ABORTED, self.client.delete, self.user, expected_version=self.version + 1
        )
        current = self.client.get(self.user, metadata_only=True)
        check(current.version == self.version, "a failed expected_version changed the image")

    def invalid_file(self) -> None:
        details = expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            self.client.set_inline,
            self.user,
            b"this is not an image, just some text" * 10,
        )
        check(details.reason == "validation-failure", f"ErrorInfo reason {details.reason!r}")
        check(details.domain == "profileimage.v1", f"ErrorInfo domain {details.domain!r}")
        check(
            details.has_violation("image.data", "invalid-file-format"),
            f"violations {details.field_violations}",
        )
        missing = expect_error(
            grpc.StatusCode.INVALID_ARGUMENT, self.client.get, ""
        )
        check(missing.has_violation("user_id"), f"empty user_id: {missing.field_violations}")

    def watch(self) -> None:
        events = list(self.client.watch(self.user, until_complete=True, timeout=TIMEOUT))
        check(len(events) >= 1, "no events")
        first = events[0]
        check(
            first.type == pb.EVENT_TYPE_SNAPSHOT, f"first event {pb.EventType.Name(first.type)}"
        )
        check(first.user_id == self.user, f"user_id {first.user_id!r}")
        check(
            first.profile_image.status == pb.STATUS_READY,
            f"snapshot status {pb.Status.Name(first.profile_image.status)}",
        )
        check(first.profile_image.version == self.version, "snapshot version")
        check(len(events) == 1, f"stream went on after a READY snapshot: {len(events)} events")

    def delete(self) -> None:
        self.client.delete(self.user, expected_version=self.version)
        details = expect_error(grpc.StatusCode.NOT_FOUND, self.client.get, self.user)
        check(bool(details.message), "NOT_FOUND without a message")
        events = list(self.client.watch(self.user, until_complete=True, timeout=TIMEOUT))
        check(
            len(events) == 1 and not events[0].HasField("profile_image"),
            f"watch after delete: {[pb.EventType.Name(e.type) for e in events]}",
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument("--corpus", required=True, help="the shared/corpus directory")
    args = parser.parse_args()

    if not os.path.isfile(os.path.join(args.corpus, "photos", "rocket.jpg")):
        print(f"smoke_test: {args.corpus}/photos/rocket.jpg not found", file=sys.stderr)
        return 2

    with ProfileImageClient(args.target, timeout=TIMEOUT) as client:
        try:
            client.wait_ready(timeout=10)
        except grpc.FutureTimeoutError:
            print(f"smoke_test: cannot connect to {args.target} within 10 s", file=sys.stderr)
            print("0 passed, 1 failed")
            return 2
        smoke = Smoke(client, args.corpus)
        print(f"smoke_test: {args.target}, user {smoke.user}", flush=True)
        smoke.run("upload rocket.jpg in chunks", smoke.upload_chunks)
        smoke.run("get 256 px as JPEG, PNG, WebP", smoke.get_formats)
        smoke.run("get metadata_only", smoke.metadata_only)
        smoke.run("crop", smoke.crop)
        smoke.run("list_media, set_media, delete_media", smoke.list_media)
        smoke.run("expected_version conflict is ABORTED", smoke.version_conflict)
        smoke.run("invalid file is INVALID_ARGUMENT with details", smoke.invalid_file)
        smoke.run("watch(until_complete) ends after the snapshot", smoke.watch)
        smoke.run("delete, then get is NOT_FOUND", smoke.delete)

    print(f"{smoke.passed} passed, {smoke.failed} failed", flush=True)
    return 1 if smoke.failed else 0


if __name__ == "__main__":
    sys.exit(main())
