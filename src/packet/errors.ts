/**
 * Errors raised by the pure packet layer (address parsing, frame building). Callers switch on
 * `code`, never on the message text (the project's style notes, "Errors like Node's").
 */

export type PacketErrorCode = 'ERR_INVALID_ADDRESS' | 'ERR_INVALID_MAC' | 'ERR_INVALID_PORT' | 'ERR_INVALID_FRAME_SPEC';

export class PacketError extends Error {
  readonly code: PacketErrorCode;

  constructor(code: PacketErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PacketError';
    this.code = code;
  }
}
