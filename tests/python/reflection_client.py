"""Lists the services of a server and calls GetProfileImage using server reflection
alone, through grpcio-reflection's descriptor database, as grpcurl does: no generated
code and no .proto. Used by tests/reflection.rs.

    python reflection_client.py HOST:PORT USER TOKEN

Prints the services, one per line, then `---`, then the reply as JSON.
"""

from __future__ import annotations

import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "profileimage.v1.ProfileImageService"


def main(target: str, user: str, token: str) -> None:
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        for service in database.get_services():
            print(service)
        print("---")
        pool = descriptor_pool.DescriptorPool(database)
        method = pool.FindServiceByName(SERVICE).methods_by_name["GetProfileImage"]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            f"/{SERVICE}/{method.name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        request = json_format.ParseDict({"user_id": user, "metadata_only": True}, request_class())
        reply = call(request, timeout=30, metadata=(("authorization", f"Bearer {token}"),))
        print(json_format.MessageToJson(reply))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
