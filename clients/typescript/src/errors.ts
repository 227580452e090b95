// The one error type the client throws: the status code and the google.rpc details the
// server attached, decoded with the types generated from proto/google/rpc/error_details.proto.

import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  QuotaFailureSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";

/** One bad field of a request (google.rpc.BadRequest.FieldViolation). */
export interface FieldViolation {
  /** Path of the field, e.g. `crop`. */
  readonly field: string;
  /** Machine-readable reason, e.g. `crop-out-of-bounds`. */
  readonly reason: string;
  readonly description: string;
}

/** One exceeded quota (google.rpc.QuotaFailure.Violation). */
export interface QuotaViolation {
  readonly subject: string;
  readonly description: string;
}

export class ProfileImageError extends Error {
  override readonly name = "ProfileImageError";

  constructor(
    /** The gRPC status code (connect's `Code`; `Code[error.code]` names it). */
    readonly code: Code,
    /** The server's message, without the code in front. */
    readonly rawMessage: string,
    /** ErrorInfo.reason, e.g. `validation-failure`. */
    readonly reason: string | undefined,
    /** ErrorInfo.domain (`profileimage.v1`). */
    readonly domain: string | undefined,
    /** BadRequest.field_violations, in the server's order. */
    readonly violations: readonly FieldViolation[],
    /** RetryInfo.retry_delay in milliseconds. */
    readonly retryDelayMs: number | undefined,
    readonly quotaViolations: readonly QuotaViolation[],
    options?: { cause?: unknown },
  ) {
    super(`[${Code[code]}] ${rawMessage}`, options);
  }

  /** Converts whatever a call threw (a ConnectError, or anything else). */
  static from(thrown: unknown): ProfileImageError {
    const error = ConnectError.from(thrown);
    const info = error.findDetails(ErrorInfoSchema)[0];
    const retry = error.findDetails(RetryInfoSchema)[0];
    return new ProfileImageError(
      error.code,
      error.rawMessage,
      info?.reason,
      info?.domain,
      error.findDetails(BadRequestSchema).flatMap((bad) =>
        bad.fieldViolations.map(({ field, reason, description }) => ({ field, reason, description })),
      ),
      retry?.retryDelay === undefined ? undefined : durationMs(retry.retryDelay),
      error.findDetails(QuotaFailureSchema).flatMap((quota) =>
        quota.violations.map(({ subject, description }) => ({ subject, description })),
      ),
      { cause: thrown },
    );
  }
}
