/** Startup and usage errors: one line naming the cause, exit status 2 (or the given one), no stack trace. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
