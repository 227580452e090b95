// The TypeScript client against the real server: every call, the error details and a
// watch that ends on completion.

import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { after, before, describe, test } from "node:test";

import { Code } from "@connectrpc/connect";

import {
  EventType,
  ProfileImageClient,
  ProfileImageError,
  Source,
  Status,
} from "../src/index.js";
import {
  corpusFile,
  newUser,
  type Origin,
  type RunningServer,
  startOrigin,
  startProxy,
  startServer,
  startTlsProxy,
  tlsDir,
} from "./fixtures.js";

const BIG_PHOTO = corpusFile("camera/olympus_12mp.jpg"); // 2.9 MB: three 1 MiB chunks

describe("ProfileImageClient against the real server", () => {
  let server: RunningServer;
  let origin: Origin;
  let client: ProfileImageClient;
  let adminToken: string;

  before(async () => {
    server = await startServer();
    origin = await startOrigin();
    // An admin's token: the tests act on many users.
    adminToken = server.token("--user", "ts-tests", "--admin");
    client = new ProfileImageClient(server.url, { token: adminToken });
  });

  after(async () => {
    await origin.close();
    await server.stop();
  });

  test("upload of a file path streams 1 MiB chunks and reports progress", async () => {
    const seen: Array<[number, number | undefined]> = [];
    const image = await client.uploadFile(newUser(), BIG_PHOTO, {
      onProgress: (sent, total) => seen.push([sent, total]),
    });
    const size = (await stat(BIG_PHOTO)).size;
    assert.equal(image.status, Status.READY);
    assert.equal(image.source, Source.UPLOAD);
    assert.deepEqual(seen, [
      [1 << 20, size],
      [2 << 20, size],
      [size, size],
    ]);
  });

  test("upload from a Readable applies the crop", async () => {
    const image = await client.upload(newUser(), createReadStream(BIG_PHOTO, { highWaterMark: 64 * 1024 }), {
      crop: { x: 10, y: 20, size: 500 },
    });
    assert.deepEqual([image.crop?.x, image.crop?.y, image.crop?.size], [10, 20, 500]);
  });

  test("get returns the size and format asked for", async () => {
    const user = newUser();
    await client.upload(user, await readFile(corpusFile("photos/rocket.jpg")));
    const webp = await client.get(user, 256, "webp");
    assert.equal(Buffer.from(webp.data.subarray(0, 4)).toString(), "RIFF");
    assert.equal(Buffer.from(webp.data.subarray(8, 12)).toString(), "WEBP");
    assert.equal(Math.max(webp.width, webp.height), 256);
    const metadata = await client.getMetadata(user);
    assert.equal(metadata.data.byteLength, 0);
    assert.equal(metadata.version, webp.version);
  });

  test("setInline, crop and setFromMedia make new versions", async () => {
    const user = newUser();
    const first = await client.setInline(user, await readFile(corpusFile("photos/rocket.jpg")));
    const second = await client.setInline(user, await readFile(corpusFile("photos/logo.png")));
    const cropped = await client.crop(user, { x: 0, y: 0, size: 100 });
    const back = await client.setFromMedia(user, first.mediaId);
    assert.ok(first.version < second.version && second.version < cropped.version && cropped.version < back.version);
    assert.equal(back.mediaId, first.mediaId);
    assert.equal(back.source, Source.MEDIA);
  });

  test("listMedia iterates over every page newest first; deleteMedia and delete", async () => {
    const user = newUser();
    const ids: string[] = [];
    for (const name of ["photos/rocket.jpg", "photos/logo.png", "photos/chelsea.png"]) {
      ids.push((await client.setInline(user, await readFile(corpusFile(name)))).mediaId);
    }
    const listed: string[] = [];
    for await (const media of client.listMedia(user, 1)) {
      listed.push(media.mediaId);
    }
    assert.deepEqual(listed, [...ids].reverse());

    await client.deleteMedia(user, ids[0]!);
    await client.delete(user);
    await assert.rejects(client.get(user), (error: unknown) => {
      assert.ok(error instanceof ProfileImageError);
      assert.equal(error.code, Code.NotFound);
      return true;
    });
    const left: string[] = [];
    for await (const media of client.listMedia(user)) {
      left.push(media.mediaId);
    }
    assert.deepEqual(left, [ids[2], ids[1]]);
  });

  test("a crop outside the image is InvalidArgument with its violation", async () => {
    const user = newUser();
    await client.upload(user, corpusFile("photos/rocket.jpg"));
    await assert.rejects(client.crop(user, { x: 0, y: 0, size: 100_000 }), (error: unknown) => {
      assert.ok(error instanceof ProfileImageError);
      assert.equal(error.code, Code.InvalidArgument);
      assert.equal(error.reason, "validation-failure");
      assert.equal(error.domain, "profileimage.v1");
      assert.deepEqual(
        error.violations.map((v) => [v.field, v.reason]),
        [["crop", "crop-out-of-bounds"]],
      );
      return true;
    });
  });

  test("watch until complete ends when the download is ready", async () => {
    const user = newUser();
    const accepted = await client.setFromUrl(user, `${origin.base}/photos/rocket.jpg`);
    assert.equal(accepted.status, Status.DOWNLOADING);
    const events = [];
    for await (const event of client.watch(user, { untilComplete: true })) {
      events.push(event);
    }
    assert.equal(events[0]?.type, EventType.SNAPSHOT);
    assert.equal(events.at(-1)?.profileImage?.status, Status.READY);
  });

  test("waitUntilComplete returns the failed state of a bad download", async () => {
    const user = newUser();
    await client.setFromUrl(user, `${origin.base}/no-such-file.jpg`);
    const final = await client.waitUntilComplete(user, 30_000);
    assert.equal(final?.status, Status.FAILED);
    assert.equal(final?.failure?.reason, "download-failed");
  });

  test("watch of every user reports a change", async () => {
    const abort = new AbortController();
    const user = newUser();
    const seen = (async () => {
      for await (const event of client.watch(undefined, { signal: abort.signal })) {
        if (event.type === EventType.SET && event.userId === user) {
          return event;
        }
      }
      return undefined;
    })();
    // The feed may not be open yet the first time: set until it reports one.
    const image = await readFile(corpusFile("photos/rocket.jpg"));
    let found;
    for (let attempt = 0; attempt < 50 && found === undefined; attempt++) {
      await client.setInline(user, image);
      found = await Promise.race([seen, new Promise<undefined>((resolve) => setTimeout(resolve, 200))]);
    }
    abort.abort();
    await seen.catch(() => undefined);
    assert.equal(found?.userId, user);
  });

  test("watch resumes after a dropped connection and gets the missed event replayed", async () => {
    const user = newUser();
    await client.setInline(user, await readFile(corpusFile("photos/rocket.jpg")));
    const proxy = await startProxy(server.url);
    const abort = new AbortController();
    const events = new ProfileImageClient(proxy.url, { token: adminToken }).watch(user, {
      signal: abort.signal,
    });
    try {
      const snapshot = (await events.next()).value;
      assert.equal(snapshot?.type, EventType.SNAPSHOT);

      proxy.cut();
      const missed = await client.crop(user, { x: 0, y: 0, size: 50 });
      proxy.resume();

      const replayed = (await events.next()).value;
      assert.equal(replayed?.type, EventType.CROPPED, "replayed, not a new snapshot");
      assert.equal(replayed?.profileImage?.version, missed.version);
      assert.ok(replayed.sequence > snapshot.sequence);
    } finally {
      abort.abort();
      await events.return(undefined);
      await proxy.close();
    }
  });

  test("a user may read another user's image but not change it", async () => {
    const user = newUser();
    await client.setInline(user, await readFile(corpusFile("photos/rocket.jpg")));
    const other = new ProfileImageClient(server.url, { token: server.token("--user", `${user}-other`) });
    assert.equal((await other.getMetadata(user)).userId, user);
    await assert.rejects(other.delete(user), (error: unknown) => {
      assert.ok(error instanceof ProfileImageError);
      assert.equal(error.code, Code.PermissionDenied);
      assert.equal(error.reason, "not-owner");
      return true;
    });
  });

  test("https speaks TLS and checks the certificate", async () => {
    const proxy = await startTlsProxy(server.url);
    try {
      const user = newUser();
      const trusting = new ProfileImageClient(proxy.url, {
        ca: await readFile(`${tlsDir}/ca.crt`),
        token: adminToken,
      });
      const image = await trusting.upload(user, corpusFile("photos/rocket.jpg"));
      assert.equal((await trusting.getMetadata(user)).version, image.version);
      await assert.rejects(new ProfileImageClient(proxy.url, { timeoutMs: 5_000 }).getMetadata(user), (error: unknown) => {
        // connect-node reports a failed TLS handshake as Internal, with node's reason.
        assert.ok(error instanceof ProfileImageError);
        assert.match(error.rawMessage, /certificate/);
        return true;
      });
    } finally {
      await proxy.close();
    }
  });
});
