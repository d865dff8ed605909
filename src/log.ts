export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose lines all carry `fields` (session, tag, provider…). */
  child(fields: LogFields): Logger;
  enabled(level: LogLevel): boolean;
}

/** Where a finished line goes; the default prints one JSON object per line. */
export type LogWriter = (level: LogLevel, line: string) => void;

const consoleWriter: LogWriter = (level, line) => {
  if (level === 'error' || level === 'warn') console.error(line);
  else console.log(line);
};

/**
 * Structured JSON-lines logger. Errors are flattened to their message so that a provider's
 * stack or a socket object never lands in a log line.
 */
export function createLogger(level: LogLevel, write: LogWriter = consoleWriter, bound: LogFields = {}): Logger {
  const min = RANK[level];
  const emit = (lvl: LogLevel, msg: string, fields?: LogFields) => {
    if (RANK[lvl] < min) return;
    const record: LogFields = { time: new Date().toISOString(), level: lvl, msg, ...bound };
    if (fields) for (const [k, v] of Object.entries(fields)) record[k] = v instanceof Error ? v.message : v;
    write(lvl, JSON.stringify(record));
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(level, write, { ...bound, ...fields }),
    enabled: (lvl) => RANK[lvl] >= min,
  };
}

/**
 * Whether the `occurrence`th repeat of the same trouble gets a log line: the first five, then
 * every power of ten, so an outage or a client sending garbage shows without flooding the log.
 */
export function worthLogging(occurrence: number): boolean {
  return occurrence <= 5 || Number.isInteger(Math.log10(occurrence));
}
