// Test fixtures: the real profile-image server binary on 127.0.0.1:0 with a temporary
// data dir (PROFILE_IMAGE_BIN), and a local HTTP origin serving the corpus
// (PROFILE_IMAGE_CORPUS) for URL downloads. tests/typescript_client.rs sets both.
//
// Authentication is on: the server starts with no key configured, so it creates its own
// secret in its data dir, and `profile-image token` signs the tests' tokens with it.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFile, mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect, createServer as createNetServer, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
import { createInterface } from "node:readline";

export const corpus = process.env.PROFILE_IMAGE_CORPUS ?? "";

export function corpusFile(relative: string): string {
  return join(corpus, relative);
}

/** A user no other test touches. */
export function newUser(): string {
  return `ts-${randomUUID().slice(0, 12)}`;
}

export interface RunningServer {
  readonly url: string;
  /** `profile-image token ARGS...` against the server's data dir: a token it accepts. */
  token(...args: string[]): string;
  stop(): Promise<void>;
}

export async function startServer(): Promise<RunningServer> {
  const binary = process.env.PROFILE_IMAGE_BIN;
  if (binary === undefined) {
    throw new Error("PROFILE_IMAGE_BIN must name the profile-image binary");
  }
  const dataDir = await mkdtemp(join(tmpdir(), "profile-image-ts-"));
  const child: ChildProcess = spawn(
    binary,
    [
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--http-listen",
      "127.0.0.1:0",
      "--data-dir",
      join(dataDir, "data"),
      "--fetch-allow-cidr",
      "127.0.0.0/8",
      // The tests change images back to back.
      "--rate-limit-per-minute",
      "0",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const address = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stderr! });
    lines.on("line", (line) => {
      const match = /listening on "?([0-9.]+:[0-9]+)/.exec(line);
      if (match?.[1] !== undefined) {
        resolve(match[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`the server exited (${code}) before listening`)));
  });
  const environment = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith("PROFILE_IMAGE_JWT")),
  );
  return {
    url: `http://${address}`,
    token(...args: string[]): string {
      return execFileSync(binary, ["token", "--data-dir", join(dataDir, "data"), ...args], {
        encoding: "utf8",
        env: environment,
      }).trim();
    },
    async stop() {
      const exited = new Promise((resolve) => child.on("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface Origin {
  readonly base: string;
  close(): Promise<void>;
}

/** Serves the corpus over HTTP/1.1 on 127.0.0.1. */
export async function startOrigin(): Promise<Origin> {
  const server: Server = createServer((request, response) => {
    const path = normalize(decodeURIComponent(request.url ?? "/")).replace(/^(\.\.[/\\])+/, "");
    readFile(join(corpus, path)).then(
      (body) => response.writeHead(200, { "content-type": "application/octet-stream" }).end(body),
      () => response.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A TCP proxy to `target` (host:port) whose connections can be cut: `cut` drops them all
 * and refuses new ones until `resume`. */
export interface Proxy {
  readonly url: string;
  cut(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startProxy(target: string): Promise<Proxy> {
  const [host, port] = target.replace("http://", "").split(":");
  const sockets = new Set<Socket>();
  let refusing = false;
  const server = createNetServer((inbound) => {
    if (refusing) {
      inbound.destroy();
      return;
    }
    const outbound = connect(Number(port), host ?? "127.0.0.1");
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => undefined);
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port: proxyPort } = server.address() as AddressInfo;
  const dropAll = () => {
    for (const socket of sockets) {
      socket.destroy();
    }
  };
  return {
    url: `http://127.0.0.1:${proxyPort}`,
    cut() {
      refusing = true;
      dropAll();
    },
    resume() {
      refusing = false;
    },
    close() {
      dropAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The directory of the test TLS certificates (PROFILE_IMAGE_TLS). */
export const tlsDir = process.env.PROFILE_IMAGE_TLS ?? "";

/** `https://localhost:PORT` of a proxy terminating TLS (localhost.crt, ALPN h2) in front
 * of the plaintext server at `target`. */
export async function startTlsProxy(target: string): Promise<{ url: string; close(): Promise<void> }> {
  const [host, port] = target.replace("http://", "").split(":");
  const sockets = new Set<Socket>();
  const server = createTlsServer(
    {
      cert: await readFile(join(tlsDir, "localhost.crt")),
      key: await readFile(join(tlsDir, "localhost.key")),
      ALPNProtocols: ["h2"],
    },
    (inbound) => {
      const outbound = connect(Number(port), host ?? "127.0.0.1");
      for (const socket of [inbound, outbound]) {
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
        socket.on("error", () => undefined);
      }
      inbound.pipe(outbound).pipe(inbound);
    },
  );
  server.on("tlsClientError", () => undefined);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port: proxyPort } = server.address() as AddressInfo;
  return {
    url: `https://localhost:${proxyPort}`,
    close() {
      for (const socket of sockets) {
        socket.destroy();
      }
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
