/**
 * The API's errors: which HTTP status each stable code gets, and the one JSON shape every error
 * response has:
 *
 *   { "error": { "code": "ERR_CONFIG_INVALID", "message": "vxlan.vni: must be an integer 0..16777215",
 *                "field": "vxlan.vni", "errors": [ { "field": ..., "message": ... } ] } }
 *
 * `field` (the first problem's field) and `errors` (all of them) appear only for validation
 * errors; `field` alone also for refusals that concern one field (a conflict, a remote whose family
 * the uplink has no tunnel address for, an existing name). Clients switch on `code`, never on the message or the status alone: 404 is both "no
 * such path" (ERR_API_NO_ROUTE) and "no such connection" (ERR_API_NOT_FOUND).
 *
 * Codes raised by the daemon (src/daemon/control.ts) keep their code; a PinholeError whose code
 * is not in the table below is a failure the daemon knows (an interface that went away, a socket
 * that could not be bound, ...): 500 with its own code. Anything that is not a PinholeError is a
 * bug: 500 ERR_API_INTERNAL, logged with its stack.
 */
import { PinholeError } from '../sys/index.ts';

/** HTTP status for each code the API answers with. */
export const API_STATUS: Readonly<Record<string, number>> = {
  ERR_API_BAD_JSON: 400,
  ERR_API_BAD_REQUEST: 400,
  ERR_CONFIG_INVALID: 400,
  ERR_IFACE_NOT_FOUND: 400,
  ERR_API_NO_ROUTE: 404,
  ERR_API_NOT_FOUND: 404,
  ERR_API_METHOD: 405,
  ERR_API_TIMEOUT: 408,
  ERR_API_CONFLICT: 409,
  // The uplink has no tunnel address of the connection's family (its remote or endpoint is
  // IPv6 and the uplink has no global IPv6 address, say): the host's state, not the request's form.
  ERR_TUNNEL_NO_ADDRESS: 409,
  // The port is held by another socket on the node: a conflict with the host's state, not a bug.
  ERR_UPLINK_PORT_HELD: 409,
  // local.mode afxdp on an interface that cannot have it (queues, uplink mode, attach refused).
  ERR_WORKLOAD_QUEUES: 409,
  ERR_WORKLOAD_MODE: 409,
  ERR_WORKLOAD_AFXDP: 409,
  ERR_WORKLOAD_MTU: 409,
  ERR_API_LENGTH_REQUIRED: 411,
  // PUT with `If-None-Match: *` and the connection exists (create only, never replace).
  ERR_API_EXISTS: 412,
  ERR_API_BODY_TOO_LARGE: 413,
  ERR_API_CONTENT_TYPE: 415,
  ERR_API_HEADERS_TOO_LARGE: 431,
  ERR_API_INTERNAL: 500,
  ERR_API_BUSY: 503,
};

/** The `error` member of an error response. */
export interface ApiErrorBody {
  code: string;
  message: string;
  /** The first invalid field, e.g. `connection.vxlan.vni`, or the field a refusal concerns (`vxlan.remote`). */
  field?: string;
  /** Every problem found (validation errors only). */
  errors?: { field: string; message: string }[];
}

/** Status for a code: the table above, 500 for anything else. */
export function statusForCode(code: string): number {
  return Object.hasOwn(API_STATUS, code) ? API_STATUS[code]! : 500;
}

/** An error the server answers with directly (routing, framing, body checks). */
export function apiError(code: string, message: string, details?: Record<string, unknown>): PinholeError {
  return new PinholeError(code, message, details ? { details } : {});
}

/**
 * Any thrown value as a status and error body. `internal` is true for bugs (not a PinholeError),
 * which the server logs with their stack.
 */
export function errorResponse(err: unknown): { status: number; body: { error: ApiErrorBody }; internal: boolean } {
  if (err instanceof PinholeError) {
    const e = err;
    const body: ApiErrorBody = { code: e.code, message: e.message };
    const details = e.details ?? {};
    if (typeof details.field === 'string') body.field = details.field;
    if (Array.isArray(details.errors)) {
      body.errors = (details.errors as { field?: unknown; message?: unknown }[]).map((x) => ({
        field: String(x.field ?? ''),
        message: String(x.message ?? ''),
      }));
    }
    return { status: statusForCode(e.code), body: { error: body }, internal: false };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { status: 500, body: { error: { code: 'ERR_API_INTERNAL', message: `internal error: ${message}` } }, internal: true };
}
