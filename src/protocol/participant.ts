const LEADING_HEX = /^([0-9a-fA-F]+)-/;

/**
 * The participant a tag belongs to: the leading hex run before the first '-'
 * (`abc123-a0` → `abc123`, `aaaaaaaa-305123557` → `aaaaaaaa`); any other tag is its own id.
 */
export function participantIdOf(tag: string): string {
  const m = LEADING_HEX.exec(tag);
  return m ? m[1]! : tag;
}
