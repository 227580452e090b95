// What the real server never sends today (RetryInfo, QuotaFailure) and the bearer token,
// checked against a stand-in HTTP/2 server that answers every call with a gRPC error.

import assert from "node:assert/strict";
import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import { create, type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { anyPack, AnySchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";

import { errorDetails, ProfileImageClient, ProfileImageError } from "../src/index.js";

let server: Http2Server;
let url: string;
const sessions = new Set<ServerHttp2Session>();
const tokens: Array<string | undefined> = [];

function packed<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Uint8Array {
  return toBinary(AnySchema, anyPack(schema, message));
}

/** A google.rpc.Status (code, message, details), written field by field. */
function status(code: Code, message: string, details: Uint8Array[]): Uint8Array {
  const writer = new BinaryWriter().uint32((1 << 3) | 0).int32(code).uint32((2 << 3) | 2).string(message);
  for (const detail of details) {
    writer.uint32((3 << 3) | 2).bytes(detail);
  }
  return writer.finish();
}

before(async () => {
  const details = status(Code.ResourceExhausted, "slow down", [
    packed(errorDetails.ErrorInfoSchema, create(errorDetails.ErrorInfoSchema, { reason: "rate-limited", domain: "profileimage.v1" })),
    packed(
      errorDetails.BadRequestSchema,
      create(errorDetails.BadRequestSchema, {
        fieldViolations: [{ field: "user_id", reason: "field-invalid", description: "too long" }],
      }),
    ),
    packed(errorDetails.RetryInfoSchema, create(errorDetails.RetryInfoSchema, { retryDelay: { seconds: 2n, nanos: 500_000_000 } })),
    packed(
      errorDetails.QuotaFailureSchema,
      create(errorDetails.QuotaFailureSchema, { violations: [{ subject: "user:alice", description: "x" }] }),
    ),
  ]);
  server = createServer();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  server.on("stream", (stream, headers) => {
    tokens.push(headers["authorization"] as string | undefined);
    stream.respond(
      {
        ":status": 200,
        "content-type": "application/grpc",
        "grpc-status": String(Code.ResourceExhausted),
        "grpc-message": "slow down",
        "grpc-status-details-bin": Buffer.from(details).toString("base64").replace(/=+$/, ""),
      },
      { endStream: true },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

// close() waits for the clients' idle sessions, which stay open: end them.
after(async () => {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const session of sessions) {
    session.destroy();
  }
  await closed;
});

test("every error detail is decoded", async () => {
  await assert.rejects(new ProfileImageClient(url).get("alice"), (error: unknown) => {
    assert.ok(error instanceof ProfileImageError);
    assert.equal(error.code, Code.ResourceExhausted);
    assert.equal(error.rawMessage, "slow down");
    assert.equal(error.reason, "rate-limited");
    assert.equal(error.domain, "profileimage.v1");
    assert.deepEqual(error.violations, [{ field: "user_id", reason: "field-invalid", description: "too long" }]);
    assert.equal(error.retryDelayMs, 2500);
    assert.deepEqual(error.quotaViolations, [{ subject: "user:alice", description: "x" }]);
    return true;
  });
});

test("the bearer token is sent with every call, and none without one", async () => {
  tokens.length = 0;
  await assert.rejects(new ProfileImageClient(url, { token: "s3cret" }).get("alice"));
  await assert.rejects(new ProfileImageClient(url).delete("alice"));
  assert.deepEqual(tokens, ["Bearer s3cret", undefined]);
});
