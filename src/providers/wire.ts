/**
 * Reading providers' JSON events without trusting their shape: each getter returns
 * undefined for a missing or mistyped field, so a provider adding or changing a field
 * degrades one value instead of throwing in the message handler.
 */
export type JsonObject = Readonly<Record<string, unknown>>;

export function asObject(value: unknown): JsonObject | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : undefined;
}

export function parseObject(text: string): JsonObject | undefined {
  try {
    return asObject(JSON.parse(text));
  } catch {
    return undefined;
  }
}

export const str = (o: JsonObject | undefined, key: string): string | undefined =>
  typeof o?.[key] === 'string' ? (o[key] as string) : undefined;

export const num = (o: JsonObject | undefined, key: string): number | undefined =>
  typeof o?.[key] === 'number' && Number.isFinite(o[key]) ? (o[key] as number) : undefined;

export const bool = (o: JsonObject | undefined, key: string): boolean => o?.[key] === true;

export const obj = (o: JsonObject | undefined, key: string): JsonObject | undefined => asObject(o?.[key]);

export const arr = (o: JsonObject | undefined, key: string): readonly unknown[] =>
  Array.isArray(o?.[key]) ? (o[key] as unknown[]) : [];

/** The start of a server's explanation, on one line, for an error message. */
export function clipDetail(text: string, max = 200): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}
