import * as v from 'valibot';

/**
 * The one way a boolean is read from text, for query parameters and environment variables
 * alike: an operator who writes USE_DISPATCHER=yes and a client that sends sendBack=1 mean
 * the same thing, and anything else is a mistake worth naming rather than a silent false.
 */
const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

/** What `parseBoolean` accepts, for messages. */
export const BOOLEAN_VALUES = 'true or false (or 1, 0, yes, no, on, off)';

/** `true`/`false` for the accepted spellings (any case, surrounding blanks ignored); undefined otherwise. */
export function parseBoolean(text: string): boolean | undefined {
  const word = text.trim().toLowerCase();
  if (TRUE.has(word)) return true;
  if (FALSE.has(word)) return false;
  return undefined;
}

/** A string read with `parseBoolean`; `message` says what is wrong with any other. */
export const booleanString = (message: (input: string) => string) =>
  v.pipe(
    v.string(),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const value = parseBoolean(dataset.value);
      if (value !== undefined) return value;
      addIssue({ message: message(dataset.value) });
      return NEVER;
    }),
  );
