// ProfileImageClient: a gRPC (HTTP/2) connection to the service and one method per thing a
// caller wants done. Every method throws ProfileImageError.

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";

import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, Code, type Interceptor, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { ProfileImageError } from "./errors.js";
import {
  type CropRectSchema,
  ImageFormat,
  type Media,
  type ProfileImage,
  ProfileImageService,
  type SetProfileImageRequestSchema,
  Status,
  type UploadProfileImageRequestSchema,
  type WatchStatusResponse,
} from "./gen/profileimage/v1/profile_image_pb.js";

/** The server refuses upload chunks larger than this. */
export const MAX_CHUNK_BYTES = 1 << 20;

export const DEFAULT_URL = "http://127.0.0.1:50051";

/** A square crop in pixels of the upright original. */
export interface Crop {
  readonly x: number;
  readonly y: number;
  readonly size: number;
}

export type Format = "jpeg" | "png" | "webp";

/** What to upload: bytes, a file path, or a Node Readable of bytes. */
export type UploadSource = Uint8Array | string | Readable;

export interface ClientOptions {
  /** Sent as `authorization: Bearer TOKEN` with every call. */
  readonly token?: string;
  /** PEM of the CA to trust for https:// (default: Node's roots). */
  readonly ca?: string | Buffer;
  /** Timeout of every unary call in milliseconds (default 30 s; streams have none). */
  readonly timeoutMs?: number;
}

export interface UploadOptions {
  readonly crop?: Crop;
  /** Succeed only if the user's current version is this one (ABORTED otherwise). */
  readonly expectedVersion?: bigint;
  /** Called after each chunk with the bytes sent so far and the total, when known. */
  readonly onProgress?: (sent: number, total: number | undefined) => void;
}

export interface WatchOptions {
  /** End once the state is READY, FAILED or absent (one user only). */
  readonly untilComplete?: boolean;
  /** Resume after this sequence (0: start with a snapshot). */
  readonly afterSequence?: bigint;
  readonly signal?: AbortSignal;
}

/** Consecutive failed reconnects after which `watch` gives up with the last error. */
export const MAX_RECONNECTS = 8;

/** Errors a new call may not meet: the connection or the server went away. */
const RETRYABLE = new Set([Code.Unavailable, Code.Unknown, Code.Canceled, Code.Aborted, Code.Internal]);

const FORMATS: Record<Format, ImageFormat> = {
  jpeg: ImageFormat.JPEG,
  png: ImageFormat.PNG,
  webp: ImageFormat.WEBP,
};

export class ProfileImageClient {
  private readonly stub: Client<typeof ProfileImageService>;
  private readonly timeoutMs: number;

  /** `url` is `http://host:port`, or `https://host:port` for TLS. */
  constructor(url: string = DEFAULT_URL, options: ClientOptions = {}) {
    const interceptors: Interceptor[] = [];
    const token = options.token;
    if (token !== undefined) {
      interceptors.push((next) => async (request) => {
        request.header.set("authorization", `Bearer ${token}`);
        return next(request);
      });
    }
    const transport = createGrpcTransport({
      baseUrl: url,
      interceptors,
      ...(options.ca === undefined ? {} : { nodeOptions: { ca: options.ca } }),
    });
    this.stub = createClient(ProfileImageService, transport);
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** The image, `size` px on its longest edge (0 = full), as `format`. */
  async get(user: string, size = 0, format?: Format): Promise<ProfileImage> {
    const format_ = format === undefined ? ImageFormat.UNSPECIFIED : FORMATS[format];
    return this.call(async () => {
      const reply = await this.stub.getProfileImage(
        { userId: user, size, format: format_ },
        { timeoutMs: this.timeoutMs },
      );
      return required(reply.profileImage);
    });
  }

  /** The image's metadata, without its bytes. */
  async getMetadata(user: string): Promise<ProfileImage> {
    return this.call(async () => {
      const reply = await this.stub.getProfileImage(
        { userId: user, metadataOnly: true },
        { timeoutMs: this.timeoutMs },
      );
      return required(reply.profileImage);
    });
  }

  /** Uploads bytes, a file (path) or a Readable in 1 MiB chunks; the new state (READY). */
  async upload(user: string, source: UploadSource, options: UploadOptions = {}): Promise<ProfileImage> {
    const total = await sizeOf(source);
    const messages = uploadMessages(user, source, total, options);
    return this.call(async () => {
      const reply = await this.stub.uploadProfileImage(messages, { timeoutMs: this.timeoutMs });
      return required(reply.profileImage);
    });
  }

  /** `upload` from a file path. */
  async uploadFile(user: string, path: string, options: UploadOptions = {}): Promise<ProfileImage> {
    return this.upload(user, path, options);
  }

  /** Sets the image from bytes sent in one message (small images). */
  async setInline(user: string, data: Uint8Array, crop?: Crop): Promise<ProfileImage> {
    return this.set({ userId: user, source: { case: "image", value: { data } }, crop });
  }

  /** Has the server download `url`; the reply says STATUS_DOWNLOADING. */
  async setFromUrl(user: string, url: string): Promise<ProfileImage> {
    return this.set({ userId: user, source: { case: "url", value: url } });
  }

  /** Makes an earlier media item the profile image again. */
  async setFromMedia(user: string, mediaId: string): Promise<ProfileImage> {
    return this.set({ userId: user, source: { case: "mediaId", value: mediaId } });
  }

  private async set(request: MessageInitShape<typeof SetProfileImageRequestSchema>): Promise<ProfileImage> {
    return this.call(async () => {
      const reply = await this.stub.setProfileImage(request, { timeoutMs: this.timeoutMs });
      return required(reply.profileImage);
    });
  }

  /** Waits until the image is READY or FAILED; that state (undefined: no image). */
  async waitUntilComplete(user: string, timeoutMs: number): Promise<ProfileImage | undefined> {
    let last: ProfileImage | undefined;
    await this.call(async () => {
      const events = this.stub.watchStatus({ userId: user, untilComplete: true }, { timeoutMs });
      for await (const event of events) {
        last = event.profileImage;
      }
    });
    return last;
  }

  /** Crops the stored original again: a new version. */
  async crop(user: string, crop: Crop): Promise<ProfileImage> {
    return this.call(async () => {
      const reply = await this.stub.cropProfileImage({ userId: user, crop }, { timeoutMs: this.timeoutMs });
      return required(reply.profileImage);
    });
  }

  /** Removes the profile image (its media item stays). */
  async delete(user: string): Promise<void> {
    await this.call(() => this.stub.deleteProfileImage({ userId: user }, { timeoutMs: this.timeoutMs }));
  }

  /** Every media item, newest first; pages are fetched as the iteration goes. */
  async *listMedia(user: string, pageSize = 0): AsyncGenerator<Media> {
    let pageToken = "";
    do {
      const page = await this.call(() =>
        this.stub.listMedia({ userId: user, pageSize, pageToken }, { timeoutMs: this.timeoutMs }),
      );
      yield* page.media;
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
  }

  /** Deletes a media item and its bytes (and the profile image, if it is the active one). */
  async deleteMedia(user: string, mediaId: string): Promise<void> {
    await this.call(() => this.stub.deleteMedia({ userId: user, mediaId }, { timeoutMs: this.timeoutMs }));
  }

  /**
   * The snapshot, then each change: of `user`, or of everyone (undefined).
   *
   * When the connection drops (or the server ends the stream), a new call resumes with
   * `afterSequence` = the last sequence seen, so no event retained by the server is lost
   * or repeated; it gives up after MAX_RECONNECTS consecutive failures (backoff 100 ms
   * doubling to 5 s). With `untilComplete` it is one call that ends on READY/FAILED.
   */
  async *watch(user?: string, options: WatchOptions = {}): AsyncGenerator<WatchStatusResponse> {
    const request = {
      userId: user ?? "",
      untilComplete: options.untilComplete ?? false,
      afterSequence: options.afterSequence ?? 0n,
    };
    let failures = 0;
    for (;;) {
      try {
        for await (const event of this.stub.watchStatus(request, { signal: options.signal })) {
          failures = 0;
          request.afterSequence = event.sequence;
          yield event;
        }
        if (request.untilComplete) {
          return;
        }
      } catch (thrown) {
        const error = ProfileImageError.from(thrown);
        const retry = !request.untilComplete && RETRYABLE.has(error.code) && failures < MAX_RECONNECTS;
        if (!retry || options.signal?.aborted === true) {
          throw error;
        }
      }
      failures += 1;
      try {
        await delay(Math.min(100 * 2 ** (failures - 1), 5_000), undefined, { signal: options.signal });
      } catch (aborted) {
        throw ProfileImageError.from(aborted);
      }
    }
  }

  private async call<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (thrown) {
      throw ProfileImageError.from(thrown);
    }
  }
}

/** True when an image's state is final. */
export function isComplete(image: ProfileImage | undefined): boolean {
  return image === undefined || image.status === Status.READY || image.status === Status.FAILED;
}

function required(image: ProfileImage | undefined): ProfileImage {
  if (image === undefined) {
    throw new Error("the server's reply has no profile_image");
  }
  return image;
}

async function sizeOf(source: UploadSource): Promise<number | undefined> {
  if (source instanceof Uint8Array) {
    return source.byteLength;
  }
  if (typeof source === "string") {
    return (await stat(source)).size;
  }
  return undefined;
}

type UploadMessage = MessageInitShape<typeof UploadProfileImageRequestSchema>;

async function* uploadMessages(
  user: string,
  source: UploadSource,
  total: number | undefined,
  options: UploadOptions,
): AsyncGenerator<UploadMessage> {
  const crop: MessageInitShape<typeof CropRectSchema> | undefined = options.crop;
  yield {
    payload: {
      case: "metadata",
      value: {
        userId: user,
        sizeBytes: BigInt(total ?? 0),
        crop,
        expectedVersion: options.expectedVersion,
      },
    },
  };
  let sent = 0;
  for await (const chunk of chunks(source)) {
    yield { payload: { case: "chunk", value: chunk } };
    sent += chunk.byteLength;
    options.onProgress?.(sent, total);
  }
}

/** The source's bytes in chunks of MAX_CHUNK_BYTES (fewer only at the end). */
async function* chunks(source: UploadSource): AsyncGenerator<Uint8Array> {
  if (source instanceof Uint8Array) {
    for (let offset = 0; offset < source.byteLength; offset += MAX_CHUNK_BYTES) {
      yield source.subarray(offset, offset + MAX_CHUNK_BYTES);
    }
    return;
  }
  const stream = typeof source === "string" ? createReadStream(source, { highWaterMark: MAX_CHUNK_BYTES }) : source;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  for await (const piece of stream as AsyncIterable<Uint8Array | string>) {
    let bytes = typeof piece === "string" ? Buffer.from(piece) : piece;
    while (pendingBytes + bytes.byteLength >= MAX_CHUNK_BYTES) {
      const take = MAX_CHUNK_BYTES - pendingBytes;
      pending.push(bytes.subarray(0, take));
      yield Buffer.concat(pending);
      bytes = bytes.subarray(take);
      pending = [];
      pendingBytes = 0;
    }
    if (bytes.byteLength > 0) {
      pending.push(bytes);
      pendingBytes += bytes.byteLength;
    }
  }
  if (pendingBytes > 0) {
    yield Buffer.concat(pending);
  }
}
