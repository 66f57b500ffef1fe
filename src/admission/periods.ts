// Budget periods, all at UTC boundaries: day = midnight, week = ISO week (Monday 00:00),
// month = the 1st, total = never resets. A period has a stable id ("day:2025-06-01") that
// names its spend in the state file and in Redis, so a new period starts at zero by itself.
export type Period = 'day' | 'week' | 'month' | 'total';

export interface PeriodWindow {
  readonly id: string;
  /** Epoch ms of the first instant of the period (0 for total). */
  readonly start: number;
  /** Epoch ms of the first instant of the next period (Infinity for total). */
  readonly end: number;
}

const DAY_MS = 86_400_000;
const TOTAL: PeriodWindow = { id: 'total', start: 0, end: Infinity };

const isoDate = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** The window of `period` that contains `now` (epoch ms). */
export function periodAt(period: Period, now: number): PeriodWindow {
  if (period === 'total') return TOTAL;
  const d = new Date(now);
  const dayStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  switch (period) {
    case 'day':
      return { id: `day:${isoDate(dayStart)}`, start: dayStart, end: dayStart + DAY_MS };
    case 'week': {
      const sinceMonday = (d.getUTCDay() + 6) % 7;
      const start = dayStart - sinceMonday * DAY_MS;
      return { id: `week:${isoDate(start)}`, start, end: start + 7 * DAY_MS };
    }
    case 'month': {
      const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
      return { id: `month:${isoDate(start).slice(0, 7)}`, start, end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
    }
  }
}

/** periodAt with the current window of each period cached: one comparison per call on the hot path. */
export class PeriodClock {
  private readonly cache: Partial<Record<Period, PeriodWindow>> = {};

  at(period: Period, now: number): PeriodWindow {
    const c = this.cache[period];
    if (c && now >= c.start && now < c.end) return c;
    const w = periodAt(period, now);
    this.cache[period] = w;
    return w;
  }
}
