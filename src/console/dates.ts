/**
 * The assets filter's days, in the browser's time zone. Plain logic, no DOM: unit-tested in
 * test/unit/console-logic.test.ts under time zones with daylight saving.
 */

/** Local midnight at the start of `day` (YYYY-MM-DD), as an ISO instant. */
export function startOfDay(day: string): string {
  return new Date(`${day}T00:00:00`).toISOString();
}

/**
 * Local midnight at the end of `day` (the next day's start), so that "to" includes its day. Not
 * 24 hours on: a day with a daylight-saving change is 23 or 25 hours long.
 */
export function endOfDay(day: string): string {
  const start = new Date(`${day}T00:00:00`);
  return new Date(start.getFullYear(), start.getMonth(), start.getDate() + 1).toISOString();
}
