import * as v from 'valibot';
import { BOOLEAN_VALUES, booleanString } from './bool.ts';

/** Schemas for environment variables, which are always strings (or absent). */

export const envString = (fallback: string) => v.optional(v.pipe(v.string(), v.trim()), fallback);

export const envOptionalString = v.optional(v.pipe(v.string(), v.trim(), v.transform((s) => (s === '' ? undefined : s))));

const envNumeric = (pattern: RegExp, what: string) => (fallback: number, min: number, max: number) =>
  v.optional(
    v.pipe(
      v.string(),
      v.trim(),
      v.regex(pattern, `must be ${what}`),
      v.transform(Number),
      v.minValue(min, `must be at least ${min}`),
      v.maxValue(max, `must be at most ${max}`),
    ),
    String(fallback),
  );

export const envInt = envNumeric(/^\d+$/, 'a whole number');

export const envNumber = envNumeric(/^-?\d+(\.\d+)?$/, 'a number');

/** Read as query parameters are (`parseBoolean`), so the same words work in both. */
export const envBool = (fallback: boolean) => v.optional(booleanString(() => `must be ${BOOLEAN_VALUES}`), String(fallback));

/** A URL whose scheme is one of `schemes` (`'wss:'`…), trimmed. */
export const urlString = (schemes: readonly string[], message = `must be a URL starting with ${schemes.map((s) => `${s}//`).join(' or ')}`) =>
  v.pipe(
    v.string(),
    v.trim(),
    v.check((s) => {
      try {
        return schemes.includes(new URL(s).protocol);
      } catch {
        return false;
      }
    }, message),
  );

export const envUrl = (fallback: string, schemes: readonly string[]) => v.optional(urlString(schemes), fallback);

/** A JSON value; `transform` receives the parsed value. */
export const envJson = <T>(check: (value: unknown) => value is T, expected: string) =>
  v.optional(
    v.pipe(
      v.string(),
      v.rawTransform(({ dataset, addIssue, NEVER }) => {
        try {
          const parsed: unknown = JSON.parse(dataset.value);
          if (check(parsed)) return parsed;
        } catch {
          // reported below
        }
        addIssue({ message: `must be ${expected}` });
        return NEVER;
      }),
    ),
  );

/** Parses `env` with `schema`; every problem is listed as `NAME: message`. */
export function parseEnvWith<TSchema extends v.GenericSchema>(
  schema: TSchema,
  env: Readonly<Record<string, string | undefined>>,
): { output?: v.InferOutput<TSchema>; errors: string[] } {
  // Unset and empty variables are both "not given".
  const given: Record<string, string> = {};
  for (const [k, val] of Object.entries(env)) if (val !== undefined && val !== '') given[k] = val;
  const result = v.safeParse(schema, given);
  if (result.success) return { output: result.output, errors: [] };
  return {
    errors: result.issues.map((i) => `${i.path?.map((p) => String(p.key)).join('.') ?? 'environment'}: ${i.message}`),
  };
}
