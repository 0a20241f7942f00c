/**
 * systemd calendar expressions (OnCalendar=, e.g. backups.on) checked locally by calendarProblem.
 *
 * Every row of ACCEPTED and REJECTED was run by hand through `systemd-analyze calendar` of
 * systemd 252 (Debian 12) and 257 (Debian 13), and both agreed with the row. This file does not
 * call the tool: unit tests run without system tools. The few places where the check cannot
 * agree with systemd (it does not read the tz database) are tested on their own at the end.
 */
import { describe, expect, it } from 'vitest';
import { calendarProblem } from '../../src/inventory/calendar.js';

/** Expressions systemd accepts. */
const ACCEPTED = [
  // Shorthands, in any case.
  'minutely',
  'hourly',
  'daily',
  'weekly',
  'monthly',
  'yearly',
  'annually',
  'quarterly',
  'semiannually',
  'semi-annually',
  'DAILY',
  'Weekly',
  'daily UTC',
  // Times, with the date left out (every day) and seconds left out (:00).
  '*-*-* 03:00:00',
  '*-*-* 03:00',
  '03:00',
  '3:7',
  '12:30:45',
  '*:*',
  '*:0/15',
  '*:*:0/10',
  // Weekdays: names, ranges ("-" is the older spelling of ".."), lists, a trailing comma.
  'Mon *-*-* 07:00:00',
  'Mon',
  'Tuesday 03:00',
  'Mon..Fri 07:00',
  'mon-fri 07:00',
  'Sat,Sun 10:00',
  'Mon..Wed,Fri *-*-* 09:00',
  'Mon, 03:00',
  'Mon   *-*-*   03:00',
  // Dates: with the time left out (00:00:00), two-digit years, month-day only.
  '2026-12-24',
  '26-12-24 18:00',
  '12-24',
  '*-*',
  '*-*-01 04:00',
  '*-02-29 12:00',
  '*-01,04,07,10-01 00:00',
  '*-*-1/7 03:00',
  '*-*-01..07 03:00',
  // "~": days counted back from the end of the month.
  '*-*~01',
  '*-02~03',
  '*-*~07/2 03:00',
  '*-*~01,02',
  // Ranges and repetitions as systemd normalises them: 20..25/10 is just 20, 5..5 just 5.
  '0..23/2:00',
  '20..25/10:00',
  '5..5:00',
  // Fractions of a second, to the microsecond.
  '*-*-* 00:00:00.5',
  '*:*:59.999999',
  '*:*:0/0.5',
  // Time zones: UTC in any case, or an Area/City name.
  '2026-12-24 18:00 UTC',
  '2026-12-24 18:00 utc',
  '03:00 Europe/Berlin',
  'daily America/Argentina/Buenos_Aires',
  'Mon..Fri *-*-* 07:00:00 Europe/Berlin',
  // Seconds since 1970.
  '@1798761600',
];

/** Expressions systemd refuses, with the part the message must name. */
const REJECTED: [string, string][] = [
  ['', 'empty'],
  ['   ', 'empty'],
  [' daily', 'write "daily"'],
  ['daily ', 'write "daily"'],
  ['daily  UTC', 'write "daily UTC"'],
  ['*-*-* 03:00 ', 'write "*-*-* 03:00"'],
  ['UTC', 'nothing before the time zone "UTC"'],
  // Unknown words.
  ['dayly', '"dayly"'],
  ['every day', '"every"'],
  ['Mond', '"Mond"'],
  ['daily 03:00', 'the shorthand "daily"'],
  ['Mon Tue', '"Tue"'],
  ['3am', '"3am"'],
  // Weekdays.
  ['Fri..Mon', '"Fri..Mon"'],
  ['Mon.Tue', '"Mon.Tue"'],
  ['Mon..', '"Mon.."'],
  ['Mon,,Tue', '"Mon,,Tue"'],
  // Out of range.
  ['*-13-01', 'month 13'],
  ['*-0-1', 'month 0'],
  ['*-*-32', 'day 32'],
  ['*-*-0', 'day 0'],
  ['1969-01-01', 'year 1969'],
  ['2200-01-01', 'year 2200'],
  ['25:00:00', 'hour 25'],
  ['*-*-* 24:00', 'hour 24'],
  ['*-*-* 03:60', 'minute 60'],
  ['*-*-* 03:00:60', 'second 60'],
  ['*:*:59.9999996', 'second 59.9999996'],
  ['99999999999:00', 'hour 99999999999'],
  ['*~29', 'day 29'],
  ['@7258118400', '"@7258118400"'],
  // Ranges backwards, repetitions that never repeat or repeat every 0.
  ['*-*-* 5..3:00', '"5..3"'],
  ['*-*-05..01', '"05..01"'],
  ['*:*:10..5', '"10..5"'],
  ['*:0/0', '"0/0"'],
  ['*:*:0/0.0000001', '"0/0.0000001"'],
  ['*:45/15', '"45/15"'],
  ['*:0/60', '/60'],
  ['*/2', '"*/2"'],
  ['*-*-*/2', '"*/2"'],
  // systemd lowers the limit of each further "~" day by 3: 28, 25, 22, ...
  ['*-*~25,26', '"~26"'],
  // Shape.
  ['*~01-02', '"~"'],
  ['2026-01-01T03:00', '"2026-01-01 03:00"'],
  ['2026-01-01-05', '"2026-01-01-05"'],
  ['03', '"03"'],
  ['*', '"*"'],
  ['03:00:00:00', '"03:00:00:00"'],
  ['*:*:1.', '"1."'],
  ['03.5:00', '"03.5:00"'],
  ['daily europe/berlin', '"europe/berlin"'],
  // Characters that have no place in an expression (or a unit file).
  ['Mon\t03:00', 'a tab'],
  ['daily\n', 'a newline'],
  ['wee\u212Aly', 'U+212A'],
  ['03:00;reboot', '";"'],
  ['03:00 && reboot', '"&& reboot"'],
];

describe('calendarProblem', () => {
  it('checks a table of at least 40 expressions', () => {
    expect(ACCEPTED.length + REJECTED.length).toBeGreaterThanOrEqual(40);
  });

  it.each(ACCEPTED)('accepts %j', (expression) => {
    expect(calendarProblem(expression)).toBeNull();
  });

  it.each(REJECTED)('refuses %j, naming %s', (expression, part) => {
    const problem = calendarProblem(expression);
    expect(problem).not.toBeNull();
    expect(problem!.startsWith(`${JSON.stringify(expression)}: `)).toBe(true);
    expect(problem).toContain(part);
    // One sentence: no line breaks, no full stop followed by another sentence.
    expect(problem).not.toMatch(/\n|\.\s+[A-Z]/);
  });

  it('says what is out of range and how to write the expression', () => {
    expect(calendarProblem('25:00:00')).toBe('"25:00:00": hour 25 is out of range 0-23; e.g. "*-*-* 03:00:00" or "daily"');
    expect(calendarProblem('*-13-01')).toBe('"*-13-01": month 13 is out of range 1-12; e.g. "*-*-* 03:00:00" or "daily"');
  });

  it('suggests the word that was probably meant', () => {
    expect(calendarProblem('dayly')).toContain('did you mean "daily"?');
    expect(calendarProblem('Mond 03:00')).toContain('did you mean "Monday"?');
  });

  it.each([
    ['Fri..Mon', 'Mon,Fri..Sun'],
    ['daily ', 'daily'],
    ['2026-01-01T03:00', '2026-01-01 03:00'],
    ['*-*-* 03:00 ', '*-*-* 03:00'],
  ])('suggests for %j an expression that is accepted (%j)', (expression, suggestion) => {
    expect(calendarProblem(expression)).toContain(JSON.stringify(suggestion));
    expect(calendarProblem(suggestion)).toBeNull();
  });

  it('allows 241 comma-separated values in a field, as systemd does, and refuses 242', () => {
    const hours = (n: number) => Array.from({ length: n }, (_, i) => i % 24).join(',');
    expect(calendarProblem(`${hours(241)}:00`)).toBeNull();
    expect(calendarProblem(`${hours(242)}:00`)).toContain('more than 241 comma-separated values');
  });
});

describe('where calendarProblem cannot agree with systemd', () => {
  // systemd takes any zone whose file is in /usr/share/zoneinfo; this check does not read it.
  it('refuses single-word zones other than UTC, which systemd would take (GMT, CET)', () => {
    expect(calendarProblem('daily GMT')).toContain('"GMT" is not a time zone that can be checked here');
  });

  it('takes any Area/City-shaped zone, which systemd would refuse when the tz database lacks it', () => {
    expect(calendarProblem('daily Mars/Olympus')).toBeNull();
  });

  it('refuses whitespace other than spaces after "@", which strtoul() would skip', () => {
    expect(calendarProblem('@\t1798761600')).toContain('a tab');
    expect(calendarProblem('@ 1798761600')).toBeNull();
  });
});
