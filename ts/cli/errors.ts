// The CLI's two kinds of refusal, by exit status: a bad argument (2) and anything the command
// could not do, such as the API refusing or not answering (1). Kept free of imports so every
// command can use them without loading more.

/** A refusal worth a message and exit status 1 (the API's answer, an unreachable API, no token). */
export class CliError extends Error {}

/** A bad argument: exit status 2, like the parser's own refusals. */
export class UsageError extends Error {}
