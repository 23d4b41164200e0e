/** The Matrix error model: one error type, the HTTP status derived from the errcode in one place. */

export type ErrCode =
  | 'M_FORBIDDEN'
  | 'M_UNKNOWN_TOKEN'
  | 'M_MISSING_TOKEN'
  | 'M_USER_LOCKED'
  | 'M_USER_SUSPENDED'
  | 'M_BAD_JSON'
  | 'M_NOT_JSON'
  | 'M_NOT_FOUND'
  | 'M_LIMIT_EXCEEDED'
  | 'M_UNRECOGNIZED'
  | 'M_UNKNOWN'
  | 'M_UNAUTHORIZED'
  | 'M_USER_DEACTIVATED'
  | 'M_USER_IN_USE'
  | 'M_INVALID_USERNAME'
  | 'M_ROOM_IN_USE'
  | 'M_INVALID_ROOM_STATE'
  | 'M_THREEPID_IN_USE'
  | 'M_THREEPID_NOT_FOUND'
  | 'M_THREEPID_AUTH_FAILED'
  | 'M_THREEPID_DENIED'
  | 'M_THREEPID_MEDIUM_NOT_SUPPORTED'
  | 'M_SERVER_NOT_TRUSTED'
  | 'M_UNSUPPORTED_ROOM_VERSION'
  | 'M_INCOMPATIBLE_ROOM_VERSION'
  | 'M_BAD_STATE'
  | 'M_GUEST_ACCESS_FORBIDDEN'
  | 'M_CAPTCHA_NEEDED'
  | 'M_MISSING_PARAM'
  | 'M_INVALID_PARAM'
  | 'M_TOO_LARGE'
  | 'M_EXCLUSIVE'
  | 'M_RESOURCE_LIMIT_EXCEEDED'
  | 'M_CANNOT_LEAVE_SERVER_NOTICE_ROOM'
  | 'M_WEAK_PASSWORD'
  | 'M_NOT_YET_UPLOADED'
  | 'M_CANNOT_OVERWRITE_MEDIA'
  | 'M_UNKNOWN_POS'
  | 'M_DUPLICATE_ANNOTATION'
  | 'M_INVALID_SIGNATURE'
  | 'M_WRONG_ROOM_KEYS_VERSION'
  | 'M_UNABLE_TO_AUTHORISE_JOIN'
  | 'M_UNABLE_TO_GRANT_JOIN'
  | 'M_UNKNOWN_DEVICE'
  | 'M_APPSERVICE_LOGIN_UNSUPPORTED'
  | 'M_URL_NOT_SET'
  | 'M_CONNECTION_FAILED'
  | 'M_CONNECTION_TIMEOUT'
  | 'M_BAD_STATUS'
  | 'M_PROFILE_TOO_LARGE'
  | 'M_KEY_TOO_LARGE'
  | 'M_INVITE_BLOCKED';

const STATUS: Partial<Record<ErrCode, number>> = {
  M_FORBIDDEN: 403,
  M_GUEST_ACCESS_FORBIDDEN: 403,
  M_USER_DEACTIVATED: 403,
  M_THREEPID_IN_USE: 400,
  M_UNKNOWN_TOKEN: 401,
  M_MISSING_TOKEN: 401,
  M_UNAUTHORIZED: 401,
  M_USER_LOCKED: 401,
  M_NOT_FOUND: 404,
  M_UNRECOGNIZED: 404,
  M_LIMIT_EXCEEDED: 429,
  M_TOO_LARGE: 413,
  M_UNKNOWN: 500,
  M_NOT_YET_UPLOADED: 504,
  M_CANNOT_OVERWRITE_MEDIA: 409,
  M_WRONG_ROOM_KEYS_VERSION: 403,
};

export class MatrixError extends Error {
  readonly statusOverride: number | undefined;
  constructor(
    readonly errcode: ErrCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
    status?: number,
  ) {
    super(message);
    this.name = 'MatrixError';
    this.statusOverride = status;
  }

  get status(): number {
    return this.statusOverride ?? STATUS[this.errcode] ?? 400;
  }

  toJSON(): Record<string, unknown> {
    return { errcode: this.errcode, error: this.message, ...this.extra };
  }
}

export const forbidden = (message: string): MatrixError => new MatrixError('M_FORBIDDEN', message);
export const notFound = (message: string): MatrixError => new MatrixError('M_NOT_FOUND', message);
export const badJson = (message: string): MatrixError => new MatrixError('M_BAD_JSON', message);
export const invalidParam = (message: string): MatrixError => new MatrixError('M_INVALID_PARAM', message);
export const missingParam = (message: string): MatrixError => new MatrixError('M_MISSING_PARAM', message);
export const unrecognized = (message: string, status = 404): MatrixError =>
  new MatrixError('M_UNRECOGNIZED', message, {}, status);
