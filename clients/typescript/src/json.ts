// The contract's `_json` fields: one JSON value as UTF-8 text, "" meaning absent.

/** Encode a payload that must be present: `null` and `undefined` become "null". */
export function toJson(value: unknown): string {
  const text = JSON.stringify(value ?? null);
  if (text === undefined) {
    throw new TypeError(`stepstream: ${typeof value} is not a JSON payload`);
  }
  return text;
}

/** Encode an optional payload: `undefined` becomes "", which the contract reads as absent. */
export function toOptionalJson(value: unknown): string {
  return value === undefined ? "" : toJson(value);
}

/** Decode a `_json` field; "" (absent) decodes to `undefined`. */
export function fromJson<T = unknown>(text: string): T | undefined {
  return text === "" ? undefined : (JSON.parse(text) as T);
}
