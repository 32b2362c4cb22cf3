
/** Options of a {@link TunnelClient}. */
export interface TunnelClientOptions {
  /**
   * The tunnel server's URL, e.g. `"https://tunnel.example.com"` (`https:`/`wss:` connect with TLS; a path
   * other than `/` is the control endpoint). The alternative to `host`, `port` and `secure`.
   */
  server?: string;
  /**
   * Several servers instead of `server`: the nodes of one cluster (`docs/CLUSTER.md`), tried in order on connect
   * and on every reconnect; the name follows the client to another node with its reconnect token.
   */
  servers?: string[];
  /** The tunnel server's host name, without scheme or port, e.g. `"tunnel.example.com"`. */
  host?: string;
  /** The server's port. Default: 443 when `secure`, else 80. */
  port?: number;
  /** Connect with `wss:`. Default: `true` when `port` is 443. */
  secure?: boolean;
  /** The name (subdomain) to ask for; the server picks one when left out. */
  subdomain?: string;
  /** A full custom hostname (e.g. `"app.example.com"`, its DNS pointed at the server) instead of a name under the server's domain; the server grants it only to tokens allowed to use it (else refused with `hostname_not_allowed`). */
  hostname?: string;
  /** Auth token, when the server requires one. */
  token?: string;
  /**
   * The {@link TunnelClient.reconnectToken} of an earlier client of this name on this server (kept in
   * storage): a new process or an evicted Worker then gets the name back at once, although the server
   * still holds it for the connection that dropped.
   */
  reconnectToken?: string;
  /** Milliseconds a request handler has to produce its Response before the visitor gets 504. Default 30000. */
  responseTimeout?: number;
  /** Reconnect after the connection drops. Default `true`. */
  reconnect?: boolean;
  /** Longest wait between reconnect attempts, in milliseconds. Default 30000. */
  maxReconnectDelay?: number;
  /** The control endpoint's path. Default `"/api/tunnel"`. */
  path?: string;
  /** `"user:password"`: the server asks visitors for HTTP basic auth. */
  basicAuth?: string;
  /** Visitor addresses or CIDR ranges the server lets in; empty lets everyone in. */
  allowIps?: string[];
  /**
   * Show visitors the handler's exception text on error pages (for development). Default `false`:
   * visitors get a generic page with a request id, and the detail goes to the `error` event.
   */
  exposeErrors?: boolean;
  /** Forward every request to `http://<localHost>:<localPort>` (instead of `onRequest`). */
  localPort?: number;
  /** Host for `localPort`. Default `"localhost"`. */
  localHost?: string;
  /** Same as calling {@link TunnelClient.onRequest}. */
  onRequest?: RequestHandler;
  /** Same as calling {@link TunnelClient.onWebSocket}. */
  onWebSocket?: WebSocketHandler;
}

/**
 * A response as a plain object. Browsers' `Response` silently drops `set-cookie` (a forbidden
 * response header); answer with this shape to set cookies from a tab.
 */
export interface PlainResponse {
  status: number;
  headers?: Headers | [string, string][] | Record<string, string | number | string[]>;
  body?: ReadableStream<Uint8Array> | string | ArrayBuffer | ArrayBufferView | null;
}

/**
 * Answers a visitor's HTTP request. Throwing or rejecting gives the visitor a 502; not answering
 * within `responseTimeout` a 504: a generic page with a request id (HTML for browsers, one line of
 * text otherwise). The exception reaches the `error` event, not the visitor, unless `exposeErrors`.
 */
export type RequestHandler =
  | ((request: Request) => Response | PlainResponse | Promise<Response | PlainResponse>)
  | { fetch(request: Request): Response | PlainResponse | Promise<Response | PlainResponse> };

/** Takes a visitor's WebSocket, already accepted (the first offered subprotocol is chosen). */
export type WebSocketHandler = (socket: TunnelSocket, request: Request) => void | Promise<void>;

/** Payloads of the client's events. */
export interface TunnelEvents {
  connected: { url: string; name: string };
  disconnected: { code: string; reason: string; byServer: boolean };
  reconnecting: { attempt: number; delay: number };
  /** `recordId`: the request's id in {@link TunnelClient.requests} (absent with the inspector off). */
  request: { id: number; method: string; url: string; websocket: boolean; recordId?: string };
  response: { id: number; method: string; url: string; status: number; duration: number; recordId?: string };
  error: Error;
}

/** An Error from `connect()`; `reason` is e.g. `"name_taken"`, `"unauthorized"` or `"unreachable"`. */
export interface TunnelError extends Error {
  reason?: string;
}

/** A tunnel: the visitors of a public URL are answered by this JavaScript. */
export class TunnelClient {
  /** Checks the options (throws an Error naming the bad one); nothing connects until {@link connect}. */
  constructor(options: TunnelClientOptions);
  /** Sets the HTTP request handler. */
  onRequest(handler: RequestHandler): void;
  /** Sets the WebSocket handler; without one, visitors' WebSockets are refused with 404. */
  onWebSocket(handler: WebSocketHandler): void;
  /** Adds an event listener. */
  on<E extends keyof TunnelEvents>(event: E, listener: (payload: TunnelEvents[E]) => void): void;
  /** Removes an event listener. */
  off<E extends keyof TunnelEvents>(event: E, listener: (payload: TunnelEvents[E]) => void): void;
  /**
   * Connects; resolves with the public URL. Rejects with a {@link TunnelError} if refused or unreachable.
   * An aborted `signal` rejects a pending connect with the signal's reason and closes the tunnel.
   */
  connect(options?: { signal?: AbortSignal }): Promise<string>;
  /**
   * Closes the tunnel; no reconnect follows, and the server frees the name at once. Resolves once the
   * connection to the server has closed.
   */
  close(): Promise<void>;
  /** `await using client = new TunnelClient(...)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
  /** Frees the WebAssembly side of this object (the tunnel must be closed first). */
  free(): void;
  /** The public URL, once connected. */
  readonly url: string | undefined;
  /** The granted name, once connected. */
  readonly name: string | undefined;
  /** Whether the tunnel is up. */
  readonly connected: boolean;
  /** The secret that takes this tunnel's name back after a crash or an eviction (see the option). */
  readonly reconnectToken: string | undefined;
}

/** A visitor's WebSocket, shaped like the browser's `WebSocket`. */
export class TunnelSocket {
  private constructor();
  /** Sends a text (string) or binary (ArrayBuffer, typed array) message. */
  send(data: string | ArrayBuffer | ArrayBufferView): void;
  /** Closes with `code` (1000 or 3000-4999) and `reason` (at most 123 bytes). */
  close(code?: number, reason?: string): void;
  addEventListener(type: 'message', listener: (event: { data: string | ArrayBuffer }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string; wasClean: boolean }) => void): void;
  addEventListener(type: 'error', listener: (event: { message: string }) => void): void;
  removeEventListener(type: 'message' | 'close' | 'error', listener: (event: any) => void): void;
  onmessage: ((event: { data: string | ArrayBuffer }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((event: { message: string }) => void) | null;
  /** 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  /** The public `ws:`/`wss:` URL the visitor opened. */
  readonly url: string;
  /** The accepted subprotocol, or `""`. */
  readonly protocol: string;
  /** Bytes sent and not yet handed to the tunnel. */
  readonly bufferedAmount: number;
  readonly binaryType: 'arraybuffer';
  free(): void;
}

/** A request handler that forwards every request to a local HTTP server, e.g. `forward('http://localhost:8000')`. */
export function forward(target: string): (request: Request) => Promise<Response>;
