
/** A captured request, in the shape of ngrok's agent API (`GET /api/requests/http`). */
export interface InspectedRequest {
  uri: string;
  id: string;
  tunnel_name: string;
  remote_addr: string;
  /** RFC 3339. */
  start: string;
  /** Nanoseconds; 0 while pending. */
  duration: number;
  request: { method: string; proto: string; headers: Record<string, string[]>; uri: string; raw: string; body_size: number; truncated: boolean };
  /** null while pending. */
  response: { status: string; status_code: number; proto: string; headers: Record<string, string[]>; raw: string; body_size: number; truncated: boolean } | null;
  /** The id of the request this one replays. */
  replay_of: string | null;
  error: string | null;
  websocket: boolean;
}

/** Bounds of the request inspector (defaults: on, 64 KiB per body, 3 MiB in all). */
export interface InspectOptions {
  enabled?: boolean;
  bodyLimit?: number;
  maxBytes?: number;
  /** Mask Authorization, Cookie and Set-Cookie values in `requests()`. */
  redact?: boolean;
}

export interface TunnelClient {
  /** The recent requests, newest first (bounded: the oldest are forgotten). */
  requests(): InspectedRequest[];
  /** Sends a captured request to the request handler again; resolves with the new entry's id. */
  replay(id: string): Promise<string>;
  /** Forgets the captured requests. */
  clearRequests(): void;
  /** Sets the inspector's bounds (clears what it holds). */
  inspect(options: InspectOptions): void;
}
