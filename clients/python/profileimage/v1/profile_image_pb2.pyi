import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOURCE_UNSPECIFIED: _ClassVar[Source]
    SOURCE_UPLOAD: _ClassVar[Source]
    SOURCE_URL: _ClassVar[Source]
    SOURCE_MEDIA: _ClassVar[Source]

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    STATUS_DOWNLOADING: _ClassVar[Status]
    STATUS_PROCESSING: _ClassVar[Status]
    STATUS_READY: _ClassVar[Status]
    STATUS_FAILED: _ClassVar[Status]

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_WEBP: _ClassVar[ImageFormat]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_SNAPSHOT: _ClassVar[EventType]
    EVENT_TYPE_SET: _ClassVar[EventType]
    EVENT_TYPE_STATUS_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_CROPPED: _ClassVar[EventType]
    EVENT_TYPE_DELETED: _ClassVar[EventType]
SOURCE_UNSPECIFIED: Source
SOURCE_UPLOAD: Source
SOURCE_URL: Source
SOURCE_MEDIA: Source
STATUS_UNSPECIFIED: Status
STATUS_DOWNLOADING: Status
STATUS_PROCESSING: Status
STATUS_READY: Status
STATUS_FAILED: Status
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_WEBP: ImageFormat
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_SNAPSHOT: EventType
EVENT_TYPE_SET: EventType
EVENT_TYPE_STATUS_CHANGED: EventType
EVENT_TYPE_CROPPED: EventType
EVENT_TYPE_DELETED: EventType

class CropRect(_message.Message):
    __slots__ = ("x", "y", "size")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    size: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ProfileImage(_message.Message):
    __slots__ = ("user_id", "media_id", "version", "status", "content_type", "width", "height", "size_bytes", "etag", "source", "source_url", "crop", "failure", "data", "placeholder", "create_time", "update_time", "original_width", "original_height")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URL_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PLACEHOLDER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    media_id: str
    version: int
    status: Status
    content_type: str
    width: int
    height: int
    size_bytes: int
    etag: str
    source: Source
    source_url: str
    crop: CropRect
    failure: Failure
    data: bytes
    placeholder: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    original_width: int
    original_height: int
    def __init__(self, user_id: _Optional[str] = ..., media_id: _Optional[str] = ..., version: _Optional[int] = ..., status: _Optional[_Union[Status, str]] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., size_bytes: _Optional[int] = ..., etag: _Optional[str] = ..., source: _Optional[_Union[Source, str]] = ..., source_url: _Optional[str] = ..., crop: _Optional[_Union[CropRect, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., data: _Optional[bytes] = ..., placeholder: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., original_width: _Optional[int] = ..., original_height: _Optional[int] = ...) -> None: ...

class Media(_message.Message):
    __slots__ = ("media_id", "user_id", "content_type", "width", "height", "size_bytes", "etag", "source", "source_url", "active", "create_time", "crop")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URL_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    user_id: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    etag: str
    source: Source
    source_url: str
    active: bool
    create_time: _timestamp_pb2.Timestamp
    crop: CropRect
    def __init__(self, media_id: _Optional[str] = ..., user_id: _Optional[str] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., size_bytes: _Optional[int] = ..., etag: _Optional[str] = ..., source: _Optional[_Union[Source, str]] = ..., source_url: _Optional[str] = ..., active: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., crop: _Optional[_Union[CropRect, _Mapping]] = ...) -> None: ...

class InlineImage(_message.Message):
    __slots__ = ("content_type", "data")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    data: bytes
    def __init__(self, content_type: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetProfileImageRequest(_message.Message):
    __slots__ = ("user_id", "size", "format", "metadata_only")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    METADATA_ONLY_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    size: int
    format: ImageFormat
    metadata_only: bool
    def __init__(self, user_id: _Optional[str] = ..., size: _Optional[int] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., metadata_only: _Optional[bool] = ...) -> None: ...

class GetProfileImageResponse(_message.Message):
    __slots__ = ("profile_image",)
    PROFILE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    profile_image: ProfileImage
    def __init__(self, profile_image: _Optional[_Union[ProfileImage, _Mapping]] = ...) -> None: ...

class SetProfileImageRequest(_message.Message):
    __slots__ = ("user_id", "url", "image", "media_id", "crop", "expected_version")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    url: str
    image: InlineImage
    media_id: str
    crop: CropRect
    expected_version: int
    def __init__(self, user_id: _Optional[str] = ..., url: _Optional[str] = ..., image: _Optional[_Union[InlineImage, _Mapping]] = ..., media_id: _Optional[str] = ..., crop: _Optional[_Union[CropRect, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class SetProfileImageResponse(_message.Message):
    __slots__ = ("profile_image",)
    PROFILE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    profile_image: ProfileImage
    def __init__(self, profile_image: _Optional[_Union[ProfileImage, _Mapping]] = ...) -> None: ...

class UploadMetadata(_message.Message):
    __slots__ = ("user_id", "content_type", "size_bytes", "crop", "expected_version")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    content_type: str
    size_bytes: int
    crop: CropRect
    expected_version: int
    def __init__(self, user_id: _Optional[str] = ..., content_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., crop: _Optional[_Union[CropRect, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class UploadProfileImageRequest(_message.Message):
    __slots__ = ("metadata", "chunk")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    metadata: UploadMetadata
    chunk: bytes
    def __init__(self, metadata: _Optional[_Union[UploadMetadata, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadProfileImageResponse(_message.Message):
    __slots__ = ("profile_image",)
    PROFILE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    profile_image: ProfileImage
    def __init__(self, profile_image: _Optional[_Union[ProfileImage, _Mapping]] = ...) -> None: ...

class CropProfileImageRequest(_message.Message):
    __slots__ = ("user_id", "crop", "expected_version")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    crop: CropRect
    expected_version: int
    def __init__(self, user_id: _Optional[str] = ..., crop: _Optional[_Union[CropRect, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class CropProfileImageResponse(_message.Message):
    __slots__ = ("profile_image",)
    PROFILE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    profile_image: ProfileImage
    def __init__(self, profile_image: _Optional[_Union[ProfileImage, _Mapping]] = ...) -> None: ...

class DeleteProfileImageRequest(_message.Message):
    __slots__ = ("user_id", "expected_version")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    expected_version: int
    def __init__(self, user_id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteProfileImageResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMediaRequest(_message.Message):
    __slots__ = ("user_id", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMediaResponse(_message.Message):
    __slots__ = ("media", "next_page_token")
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    media: _containers.RepeatedCompositeFieldContainer[Media]
    next_page_token: str
    def __init__(self, media: _Optional[_Iterable[_Union[Media, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteMediaRequest(_message.Message):
    __slots__ = ("user_id", "media_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    media_id: str
    def __init__(self, user_id: _Optional[str] = ..., media_id: _Optional[str] = ...) -> None: ...

class DeleteMediaResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchStatusRequest(_message.Message):
    __slots__ = ("user_id", "until_complete", "after_sequence")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    UNTIL_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    until_complete: bool
    after_sequence: int
    def __init__(self, user_id: _Optional[str] = ..., until_complete: _Optional[bool] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchStatusResponse(_message.Message):
    __slots__ = ("sequence", "type", "user_id", "profile_image", "time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: EventType
    user_id: str
    profile_image: ProfileImage
    time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., user_id: _Optional[str] = ..., profile_image: _Optional[_Union[ProfileImage, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
