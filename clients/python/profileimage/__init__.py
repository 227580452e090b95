"""Typed Python client for the profile-image gRPC service.

    from profileimage import Client

    with Client("127.0.0.1:50051") as client:
        client.upload_file("alice", "photo.jpg", crop=(100, 0, 400))
        image = client.get("alice", size=256, format="webp")

``AsyncClient`` offers the same calls for asyncio. Every call raises ProfileImageError
(``.code``, ``.violations``, ``.reason``, ``.retry_delay``). The generated messages are in
``profileimage.pb`` (profileimage.v1.profile_image_pb2).
"""

from profileimage._requests import MAX_CHUNK_SIZE, Crop, Format, Progress
from profileimage.aio import AsyncClient
from profileimage.client import Client
from profileimage.errors import FieldViolation, ProfileImageError, QuotaViolation
from profileimage.v1 import profile_image_pb2 as pb

__all__ = [
    "MAX_CHUNK_SIZE",
    "AsyncClient",
    "Client",
    "Crop",
    "FieldViolation",
    "Format",
    "ProfileImageError",
    "Progress",
    "QuotaViolation",
    "pb",
]
