import type { Json } from "./types";

export function ms(from: string | null, to: string | null): number | null {
  if (!from || !to) return null;
  return Date.parse(to) - Date.parse(from);
}

export function duration(milliseconds: number | null): string {
  if (milliseconds === null || Number.isNaN(milliseconds)) return "…";
  if (milliseconds < 1000) return `${Math.round(milliseconds)} ms`;
  return `${(milliseconds / 1000).toFixed(milliseconds < 10_000 ? 2 : 1)} s`;
}

export function clock(iso: string | null): string {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toISOString().slice(11, 23);
}

export function short(id: string | null | undefined): string {
  return id ? id.slice(-8) : "";
}

export function pretty(value: unknown): string {
  return JSON.stringify(value, null, 2) ?? "undefined";
}

export type Change = { path: string; kind: "added" | "removed" | "changed"; before?: Json; after?: Json };

function isObject(value: Json | undefined): value is { [key: string]: Json } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** What changed from `before` to `after`, key by key (objects are walked, lists and scalars
 * compared whole; a list that only grew shows its new items as added). */
export function diff(before: Json | undefined, after: Json | undefined, path = ""): Change[] {
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((key) => diff(before[key], after[key], path ? `${path}.${key}` : key));
  }
  if (before === undefined && after === undefined) return [];
  if (before === undefined) return [{ path, kind: "added", after }];
  if (after === undefined) return [{ path, kind: "removed", before }];
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  if (Array.isArray(before) && Array.isArray(after) && after.length > before.length) {
    const prefix = after.slice(0, before.length);
    if (JSON.stringify(prefix) === JSON.stringify(before)) {
      return after
        .slice(before.length)
        .map((item, i) => ({ path: `${path}[${before.length + i}]`, kind: "added" as const, after: item }));
    }
  }
  return [{ path, kind: "changed", before, after }];
}

/** A resume value typed by the user: JSON when it parses, else the text itself. */
export function parseLoose(text: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    return text;
  }
}

export function go(hash: string): void {
  window.location.hash = hash;
}
