// Browsers' protocol: the same service called with connect's gRPC-Web transport over
// HTTP/1.1 (what a web app's fetch sends), unary and server streaming.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";

import { EventType, ImageFormat, ProfileImageClient, ProfileImageService, Status } from "../src/index.js";
import { corpusFile, newUser, type RunningServer, startServer } from "./fixtures.js";

describe("gRPC-Web against the real server", () => {
  let server: RunningServer;
  let adminToken: string;

  before(async () => {
    server = await startServer();
    // An admin's token: the tests act on several users.
    adminToken = server.token("--user", "ts-web-tests", "--admin");
  });

  after(async () => {
    await server.stop();
  });

  function webClient() {
    return createClient(
      ProfileImageService,
      createGrpcWebTransport({
        baseUrl: server.url,
        httpVersion: "1.1",
        // What a web app does: its bearer token on every call.
        interceptors: [
          (next) => async (request) => {
            request.header.set("authorization", `Bearer ${adminToken}`);
            return next(request);
          },
        ],
      }),
    );
  }

  test("a unary call answers the image gRPC answers, with its URL and thumbhash", async () => {
    const user = newUser();
    const grpc = new ProfileImageClient(server.url, { token: adminToken });
    await grpc.uploadFile(user, corpusFile("photos/rocket.jpg"));
    const reply = await webClient().getProfileImage({ userId: user, size: 64, format: ImageFormat.JPEG });
    const image = reply.profileImage;
    assert.ok(image !== undefined);
    const expected = await grpc.get(user, 64, "jpeg");
    assert.deepEqual(image.data, expected.data);
    assert.equal(image.etag, expected.etag);
    assert.ok(image.thumbhash.length > 0);
  });

  test("a server stream delivers the snapshot and ends when complete", async () => {
    const user = newUser();
    await new ProfileImageClient(server.url, { token: adminToken }).uploadFile(user, corpusFile("photos/rocket.jpg"));
    const events = [];
    for await (const event of webClient().watchStatus({ userId: user, untilComplete: true })) {
      events.push(event);
    }
    assert.equal(events.length, 1);
    assert.equal(events[0]?.type, EventType.SNAPSHOT);
    assert.equal(events[0]?.profileImage?.status, Status.READY);
  });
});
