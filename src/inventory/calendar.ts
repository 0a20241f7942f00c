/**
 * systemd calendar expressions (the `OnCalendar=` values of systemd.time(7)), checked locally so
 * that a bad `backups.on` is refused with a message before anything reaches a server.
 *
 * This follows calendar_spec_from_string() in systemd's src/shared/calendarspec.c (the same in
 * what it accepts from v252 to v257) step by step, quirks included: the optional time zone is cut
 * off the end first, then a shorthand (daily, weekly, ...) must be the whole rest, or else come
 * weekdays, a date, and a time, each optional. Every number is range-checked only at the end,
 * after systemd's own normalisation (two-digit years, ranges trimmed to their repetition), so
 * "20..25/10:00" passes (it is just 20:00) while "*:45/15" does not (it never repeats).
 *
 * Where this cannot match systemd: the tz database is not read, so any Area/City-shaped name is
 * taken as a zone (a misspelt "Europe/Berln" passes here and fails on the server) and single-word
 * zones other than UTC (GMT, CET, Japan, the server's local abbreviations) are refused; and "@"
 * timestamps take spaces but no other whitespace before the number (systemd's strtoul() would
 * skip a tab or newline too, which has no place in a unit file).
 */
import { didYouMean } from './suggest.js';

/** The tail of most messages: two expressions that always work. */
const EXAMPLES = 'e.g. "*-*-* 03:00:00" or "daily"';

/** Shorthands and what systemd expands them to (strcaseeq: case-insensitive, whole string). */
const SHORTHANDS: Record<string, string> = {
  minutely: '*-*-* *:*:00',
  hourly: '*-*-* *:00:00',
  daily: '*-*-* 00:00:00',
  weekly: 'Mon *-*-* 00:00:00',
  monthly: '*-*-01 00:00:00',
  quarterly: '*-01,04,07,10-01 00:00:00',
  semiannually: '*-01,07-01 00:00:00',
  'semi-annually': '*-01,07-01 00:00:00',
  biannually: '*-01,07-01 00:00:00',
  'bi-annually': '*-01,07-01 00:00:00',
  yearly: '*-01-01 00:00:00',
  annually: '*-01-01 00:00:00',
  // A misspelling systemd still accepts for backwards compatibility.
  anually: '*-01-01 00:00:00',
};

/** In systemd's order: a full name before its abbreviation, since names are matched as prefixes. */
const WEEKDAYS: [string, number][] = [
  ['monday', 0],
  ['mon', 0],
  ['tuesday', 1],
  ['tue', 1],
  ['wednesday', 2],
  ['wed', 2],
  ['thursday', 3],
  ['thu', 3],
  ['friday', 4],
  ['fri', 4],
  ['saturday', 5],
  ['sat', 5],
  ['sunday', 6],
  ['sun', 6],
];
const DAY = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

/** What an unknown word is compared with for "did you mean". */
const WORDS = [
  ...['minutely', 'hourly', 'daily', 'weekly', 'monthly', 'quarterly', 'semiannually', 'yearly', 'annually'],
  ...['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'],
];

/** Where each field's values may lie; seconds are counted in microseconds, as systemd does. */
interface Field {
  name: 'year' | 'month' | 'day' | 'hour' | 'minute' | 'second';
  from: number;
  to: number;
  /** A repetition that works in this field, for messages. */
  repeating: string;
}
const USEC = 1_000_000;
const YEAR: Field = { name: 'year', from: 1970, to: 2199, repeating: '2026/2' };
const MONTH: Field = { name: 'month', from: 1, to: 12, repeating: '1/3' };
const DAY_OF_MONTH: Field = { name: 'day', from: 1, to: 31, repeating: '1/7' };
const HOUR: Field = { name: 'hour', from: 0, to: 23, repeating: '0/6' };
const MINUTE: Field = { name: 'minute', from: 0, to: 59, repeating: '0/15' };
const SECOND: Field = { name: 'second', from: 0, to: 60 * USEC - 1, repeating: '0/10' };

/** The last moment a calendar event may fall on (2199-12-31 23:59:59 UTC), in seconds since 1970. */
const MAX_TIMESTAMP = 7258118399n;

/** systemd stores values in an int and refuses anything above INT_MAX while parsing. */
const INT_MAX = 2 ** 31 - 1;

/** A chain is at most 241 comma-separated values (CALENDARSPEC_COMPONENTS_MAX + 1). */
const MAX_VALUES = 241;

/** One comma-separated value: `start[..stop][/repeat]`; stop is -1 when there is no range. */
interface Value {
  text: string;
  /** The start as written, for messages: "69", not the 2069 it stands for. */
  startText: string;
  start: number;
  stop: number;
  stopText: string;
  repeat: number;
  repeatText: string;
  /** A number over INT_MAX, which systemd refuses while parsing (before normalisation could hide it). */
  tooLarge?: string;
}

/** A field's values, or null for `*`. */
type Chain = Value[] | null;

class Problem extends Error {}

function fail(message: string): never {
  throw new Problem(message);
}

const q = (s: string) => JSON.stringify(s);

/** ASCII-only lowercase, like systemd's strcaseeq (toLowerCase would map e.g. the Kelvin sign to "k"). */
const lower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
const isLetter = (c: string | undefined) => c !== undefined && /^[A-Za-z]$/.test(c);

/**
 * An IANA zone name as the tz database spells it: Area/City (Europe/Berlin, Etc/GMT+5,
 * America/Argentina/Buenos_Aires). systemd checks that /usr/share/zoneinfo holds the file, which
 * is case-sensitive, so every part must start with a capital as the real names do.
 */
const ZONE = /^[A-Z][A-Za-z0-9_+-]*(\/[A-Z][A-Za-z0-9_+-]*)+$/;

/** null when systemd accepts `expression` as an OnCalendar= value; else one sentence saying what is wrong and how to write it (e.g. `"25:00:00": hour 25 is out of range 0-23; e.g. "*-*-* 03:00:00" or "daily"`). */
export function calendarProblem(expression: string): string | null {
  try {
    check(expression);
    return null;
  } catch (err) {
    if (!(err instanceof Problem)) throw err;
    return `${q(expression)}: ${spacingProblem(expression) ?? zoneProblem(expression) ?? err.message}`;
  }
}

/** A stray space ("daily ", "daily  UTC") reads better as that than as whatever the parser tripped on. */
function spacingProblem(expression: string): string | null {
  const tidy = expression.replace(/^ +| +$/g, '').replace(/ +/g, ' ');
  if (tidy === expression || !passes(tidy)) return null;
  return `remove the extra spaces: write ${q(tidy)}`;
}

function passes(expression: string): boolean {
  try {
    check(expression);
    return true;
  } catch (err) {
    if (err instanceof Problem) return false;
    throw err;
  }
}

/**
 * When the expression fails only because of its last word, and that word looks like a time zone
 * (GMT, CET, europe/berlin), that is the better message than the parser's.
 */
function zoneProblem(expression: string): string | null {
  const space = expression.lastIndexOf(' ');
  if (space <= 0) return null;
  const word = expression.slice(space + 1);
  // An abbreviation (CET, GMT, EST5EDT) or something with a slash; not any word, since "Mon foo"
  // is more likely a typo than a zone.
  const looksLikeZone = word.includes('/') ? /^[A-Za-z][A-Za-z0-9_+/-]*$/.test(word) : /^[A-Z]{2,5}[A-Z0-9+-]*$/.test(word);
  if (!looksLikeZone || !passes(expression.slice(0, space))) return null;
  if (ZONE.test(word.replace(/(^|\/)([a-z])/g, (_, slash, c) => slash + c.toUpperCase()))) {
    return `time zone ${q(word)} must be spelt as in the tz database, with capitals, e.g. "Europe/Berlin"`;
  }
  return `${q(word)} is not a time zone that can be checked here; write UTC or an Area/City name from the tz database, e.g. "Europe/Berlin"`;
}

/** Throws a Problem unless systemd accepts `expression`. */
function check(expression: string): void {
  if (expression.trim() === '') fail(`the calendar expression is empty; ${EXAMPLES}`);
  // systemd reads only ASCII here: weekday and shorthand names, digits, " *-~:.,/@+" and zone names.
  const odd = /[^\x20-\x7e]/u.exec(expression)?.[0];
  if (odd !== undefined) {
    const code = `U+${odd.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    const what = odd === '\t' ? 'a tab' : odd === '\n' ? 'a newline' : `the character ${q(odd)} (${code})`;
    fail(`it contains ${what}; write plain ASCII with single spaces between the parts, ${EXAMPLES}`);
  }
  if (expression.startsWith(' ')) fail(`it starts with a space; remove it, ${EXAMPLES}`);

  // The time zone comes off the end first, before anything else is read: " UTC" in any case,
  // else a last word that names a zone (systemd: timezone_is_valid on the file in zoneinfo).
  let rest = expression;
  let zone: string | undefined;
  if (lower(rest.slice(-4)) === ' utc') {
    zone = rest.slice(-3);
    rest = rest.slice(0, -4);
  } else {
    const space = rest.lastIndexOf(' ');
    if (space >= 0 && ZONE.test(rest.slice(space + 1))) {
      zone = rest.slice(space + 1);
      rest = rest.slice(0, space);
    }
  }
  // A lone "UTC" or "Europe/Berlin" has no space before it, so it was not cut off above.
  if (zone === undefined && (lower(rest) === 'utc' || ZONE.test(rest))) zone = rest;
  if (rest === '' || rest === zone) fail(`there is nothing before the time zone ${q(zone ?? '')}; e.g. "*-*-* 03:00:00 ${zone}"`);
  if (lower(rest) in SHORTHANDS) return;
  new Parser(rest).parse();
}

/** A recursive-descent reader over the expression without its time zone, one position `i` at a time. */
class Parser {
  private i = 0;
  private endOfMonth = false;
  private year: Chain = null;
  private month: Chain = null;
  private day: Chain = null;
  private hour: Chain = null;
  private minute: Chain = null;
  private second: Chain = null;

  constructor(private readonly s: string) {}

  parse(): void {
    this.weekdays();
    if (this.date() === 'timestamp') return;
    this.time();
    this.validate();
  }

  private get c(): string | undefined {
    return this.s[this.i];
  }

  private get rest(): string {
    return this.s.slice(this.i);
  }

  /** The weekday part: names (case-insensitive) joined by "," with ranges "a..b" (or "a-b"). */
  private weekdays(): void {
    const s = this.s;
    let from = -1; // the first day of an open range
    let rangeStart = 0;
    let first = true;
    const part = () => s.slice(0, s.includes(' ') ? s.indexOf(' ') : s.length);
    for (;;) {
      const at = this.i;
      const match = WEEKDAYS.find(([name]) => lower(s.slice(at, at + name.length)) === name);
      if (!match) {
        // No weekday here: fine at the start (the date follows), not after "," or "..".
        if (first) return;
        if (isLetter(this.c)) fail(unknownWord(word(s, at)));
        fail(`expected a weekday after ${q(s.slice(0, at))} in ${q(part())}; separate weekdays from the date or time with a space, e.g. "Mon,Fri 03:00"`);
      }
      const [name, nr] = match;
      const after = s[at + name.length];
      // A weekday must end at a separator: "Mond" or "Month" is a word of its own, not "Mon".
      if (after !== undefined && !['-', '.', ',', ' '].includes(after)) {
        if (/[A-Za-z0-9_]/.test(after)) fail(unknownWord(word(s, at)));
        fail(
          `${q(after)} cannot follow the weekday ${q(s.slice(at, at + name.length))}; separate weekdays from the date or time with a space, e.g. "Mon 03:00"`,
        );
      }
      if (from >= 0 && from > nr) {
        const range = s.slice(rangeStart, at + name.length);
        const tail = from === 6 ? 'Sun' : `${DAY[from]}..Sun`;
        const head = nr === 0 ? 'Mon' : `Mon..${DAY[nr]}`;
        fail(`the weekday range ${q(range)} runs backwards (weeks run Mon..Sun); write ${q(`${head},${tail}`)}`);
      }
      this.i = at + name.length;
      if (this.c === undefined) return;
      if (this.c === ' ') {
        this.skipSpaces();
        return;
      }
      if (this.c === '.' || this.c === '-') {
        if (from >= 0) fail(`the weekdays ${q(part())} chain two ranges; write one range per comma, e.g. "Mon..Wed,Fri"`);
        if (this.c === '.' && s[this.i + 1] !== '.') fail(`write a weekday range with two dots, e.g. "Mon..Fri", not ${q(part())}`);
        from = nr;
        this.i += this.c === '.' ? 2 : 1; // "-" is systemd's older spelling of ".."
      } else {
        // ","
        from = -1;
        this.i += 1;
        rangeStart = this.i;
      }
      // A trailing comma is allowed ("Mon, 03:00"), an open range is not ("Mon.. 03:00").
      if (this.c === undefined || this.c === ' ') {
        if (from >= 0) fail(`the weekday range ${q(s.slice(rangeStart, this.i))} has no end; e.g. "Mon..Fri"`);
        this.skipSpaces();
        return;
      }
      first = false;
    }
  }

  /**
   * The date part: "@seconds", or Y-M-D, or M-D; "~" instead of the last "-" counts days from
   * the end of the month. A first chain followed by ":" (or nothing) is a time, not a date: the
   * position goes back and time() reads it again.
   */
  private date(): 'timestamp' | 'date' | 'none' {
    if (this.c === undefined) return 'none';
    if (this.c === '@') return this.timestamp();
    const begin = this.i;
    const first = this.chain(false, undefined);
    if (this.c === undefined || this.c === ':') {
      this.i = begin;
      return 'none';
    }
    this.separator(begin);
    const second = this.chain(false, this.s[this.i - 1]);
    if (this.c === undefined || this.c === ' ') {
      this.month = first;
      this.day = second;
      this.skipSpaces();
      return 'date';
    }
    if (this.endOfMonth) {
      if (this.c === ':') this.separator(begin);
      fail(`"~" (days counted from the end of the month) only goes between month and day, e.g. "*-02~03" or "2026-02~03"`);
    }
    this.separator(begin);
    const third = this.chain(false, this.s[this.i - 1]);
    if (this.c !== undefined && this.c !== ' ') {
      const date = this.s.slice(begin, this.i);
      if (this.c === '-' || this.c === '~') fail(`the date ${q(`${date}${this.rest}`)} has more than three parts; write YYYY-MM-DD, e.g. "2026-12-24"`);
      fail(`${q(this.rest)} cannot follow the date ${q(date)}; separate the date and the time with a space, e.g. "${date} 03:00"`);
    }
    this.year = first;
    this.month = second;
    this.day = third;
    this.skipSpaces();
    return 'date';
  }

  /** The "-" or "~" after a date part. */
  private separator(begin: number): void {
    const part = this.s.slice(begin, this.i);
    if (this.c === ' ') fail(`${q(part)} is neither a date nor a time; write dates as YYYY-MM-DD or MM-DD and times as HH:MM[:SS], ${EXAMPLES}`);
    if (this.c === ':') fail(`separate the date ${q(part)} and the time with a space, e.g. ${q(`${part} 03:00`)}`);
    if (this.c === '~') this.endOfMonth = true;
    // "*" does not check what follows it ("**", "*+"): that is left to here, as in systemd.
    else if (this.c !== '-') fail(`${q(this.c ?? '')} cannot follow ${q(part)}; write dates as YYYY-MM-DD and times as HH:MM[:SS], ${EXAMPLES}`);
    this.i += 1;
  }

  /**
   * "@" and seconds since 1970, read as strtoul() reads them: spaces and a sign may come first,
   * and "-N" wraps around 2^64 (so "@-0" is 1970). Nothing may follow.
   */
  private timestamp(): 'timestamp' {
    const m = /^@( *)([+-]?)(\d+)/.exec(this.rest);
    if (!m) fail(`"@" must be followed by seconds since 1970 (UTC), e.g. "@1798761600"`);
    const text = m[0];
    if (this.rest.length > text.length) fail(`nothing may follow the timestamp ${q(text)}; e.g. "@1798761600"`);
    let seconds = BigInt(m[3]!);
    const wrap = 2n ** 64n;
    if (m[2] === '-' && seconds < wrap) seconds = (wrap - seconds) % wrap;
    // A value of 2^63 or more is a negative time_t: before 1970 like a wrapped "-N".
    if (seconds > MAX_TIMESTAMP) fail(`the timestamp ${q(text)} is outside 1970-2199 (0 to ${MAX_TIMESTAMP} seconds); e.g. "@1798761600"`);
    return 'timestamp';
  }

  /** The time part HH:MM[:SS[.frac]], 00:00:00 when there is none. */
  private time(): void {
    if (this.c === undefined) return;
    const begin = this.i;
    this.hour = this.chain(false, undefined);
    if (this.c !== ':') {
      const hour = this.s.slice(begin, this.i);
      if (this.c === undefined) fail(`${q(hour)} has no minutes; write the time as HH:MM or HH:MM:SS, e.g. "03:00"`);
      fail(`${q(this.rest)} cannot follow ${q(hour)}; write the time as HH:MM or HH:MM:SS, e.g. "03:00"`);
    }
    this.i += 1;
    this.minute = this.chain(false, ':');
    if (this.c === undefined) return;
    if (this.c === ':') {
      this.i += 1;
      this.second = this.chain(true, ':');
      if (this.c === undefined) return;
    }
    this.trailing(begin);
  }

  /** What is left after a complete time. */
  private trailing(begin: number): never {
    const time = this.s.slice(begin, this.i);
    if (this.rest.trim() === '') fail(`remove the space after the time ${q(time)}`);
    if (this.c === ':') fail(`the time ${q(`${time}${this.rest}`)} has more than three parts; write HH:MM:SS, e.g. "03:00:00"`);
    if (this.c === ' ') {
      fail(`${q(this.rest.trimStart())} cannot follow the time ${q(time)}; only a time zone may, as UTC or an Area/City name, e.g. "03:00 Europe/Berlin"`);
    }
    fail(`${q(this.rest)} cannot follow the time ${q(time)}; write the time as HH:MM or HH:MM:SS, e.g. "03:00"`);
  }

  /**
   * One field: "*" or comma-separated values `start[..stop][/repeat]`. A value must end where the
   * grammar can go on (end, space, ",", "-", "~", ":"); which of those is right is for the caller.
   */
  private chain(seconds: boolean, after: string | undefined): Chain {
    if (this.c === '*') {
      this.i += 1;
      // "*" stands alone in every field: "*/2" or "*.5" is refused by systemd.
      const next = this.s[this.i];
      if (next === '/' || next === '.' || next === ',' || isDigit(next)) fail(starAlone(`*${/^[^ :~-]*/.exec(this.rest)![0]}`));
      return null;
    }
    const values: Value[] = [];
    for (;;) {
      if (values.length >= MAX_VALUES)
        fail(`a field has more than ${MAX_VALUES} comma-separated values; use a range such as "0..30" or a repetition such as "0/2"`);
      values.push(this.value(seconds, values.length > 0 ? ',' : after));
      if (this.c !== ',') return values;
      this.i += 1;
    }
  }

  private value(seconds: boolean, after: string | undefined): Value {
    const begin = this.i;
    const unit = seconds ? USEC : 1;
    const start = this.number(seconds, after);
    const startText = this.s.slice(begin, this.i);
    let stop = -1;
    let stopText = '';
    let repeat = 0;
    let repeatText = '';
    if (this.c === '.' && this.s[this.i + 1] === '.') {
      this.i += 2;
      const at = this.i;
      stop = this.number(seconds, '..');
      stopText = this.s.slice(at, this.i);
      repeat = unit;
    }
    if (this.c === '/') {
      this.i += 1;
      const at = this.i;
      repeat = this.number(seconds, '/');
      repeatText = this.s.slice(at, this.i);
      if (repeat === 0) fail(`${q(this.s.slice(begin, this.i))} repeats every 0, which never moves on; write "/1" or more, e.g. "0/15"`);
    } else if (seconds && stop >= 0 && start + repeat > stop) {
      // Without "/", a seconds range steps by whole seconds, so it must span at least one.
      const range = this.s.slice(begin, this.i);
      if (stop < start) fail(`the second range ${q(range)} runs backwards; write the lower value first, e.g. ${q(`${stopText}..${startText}`)}`);
      fail(`the second range ${q(range)} is shorter than one second; write a single value or a longer range, e.g. "0..30"`);
    }
    const c = this.c;
    if (c !== undefined && ![' ', ',', '-', '~', ':'].includes(c)) {
      const text = this.s.slice(begin, this.i);
      if (c === '.') {
        if (seconds) fail(`write ranges with two dots, e.g. "0..30", not ${q(text + this.rest)}`);
        fail(`only seconds take a fraction; ${q(text + this.rest)} is not a whole number (ranges are written "1..5")`);
      }
      if (c === '/') fail(`${q(text + this.rest)} has more than one "/"; write one repetition per value, e.g. "0/15"`);
      if (c === 'T' && isDigit(this.s[this.i + 1])) {
        fail(`separate the date and the time with a space, not "T": ${q(`${this.s.slice(0, this.i)} ${this.rest.slice(1)}`)}`);
      }
      if (isLetter(c)) {
        const w = word(this.s, this.i);
        if (/^(am|pm)$/i.test(w)) fail(`write the time on the 24-hour clock, e.g. "15:00", not ${q(text + w)}`);
        fail(`${q(w)} cannot follow ${q(text)}; ${EXAMPLES}`);
      }
      fail(`${q(c)} cannot follow ${q(text)}; ${EXAMPLES}`);
    }
    const tooLarge = [start, stop, repeat].findIndex((n) => n > INT_MAX);
    return {
      text: this.s.slice(begin, this.i),
      startText,
      start,
      stop,
      stopText,
      repeat,
      repeatText,
      ...(tooLarge >= 0 ? { tooLarge: [startText, stopText, repeatText][tooLarge] } : {}),
    };
  }

  /**
   * A decimal number; for seconds also a fraction, kept to microseconds and rounded on the 7th
   * digit as systemd does ("59.9999996" becomes 60, out of range). A number too large for systemd
   * (over INT_MAX) is refused by validate(), which knows the field: here it may not be known yet
   * (a first "12" is an hour or a month depending on what follows).
   */
  private number(seconds: boolean, after: string | undefined): number {
    const m = /^\d+/.exec(this.rest);
    if (!m) {
      if (after === undefined && isLetter(this.c)) {
        const w = word(this.s, this.i);
        if (WEEKDAYS.some(([name]) => name === lower(w))) {
          fail(`weekdays come together at the start, joined by "," or "..", so ${q(w)} cannot stand here; e.g. "Mon,Fri 03:00"`);
        }
        fail(unknownWord(w));
      }
      if (after === undefined && this.c === ' ') fail(`remove the extra space before ${q(this.rest.trimStart())}`);
      const where = after === undefined ? 'here' : `after ${q(after)}`;
      const found = this.c === undefined ? 'the end' : q(this.rest);
      fail(`expected a number or "*" ${where}, found ${found}; ${EXAMPLES}`);
    }
    this.i += m[0].length;
    // strtoul() reads "0005" as 5; a longer number is over INT_MAX anyway, and refused as such.
    const digits = m[0].replace(/^0+(?=\d)/, '');
    let value = digits.length > 12 ? 1e12 : Number(digits);
    if (seconds) {
      value *= USEC;
      // One "." is a decimal point, ".." a range.
      if (this.c === '.' && this.s[this.i + 1] !== '.') {
        this.i += 1;
        const f = /^\d+/.exec(this.rest);
        if (!f) fail(`${q(`${m[0]}.`)} needs digits after the decimal point, e.g. "${m[0]}.5"`);
        this.i += f[0].length;
        const fraction = f[0].padEnd(7, '0');
        value += Number(fraction.slice(0, 6)) + (fraction[6]! >= '5' ? 1 : 0);
      }
    }
    return value;
  }

  private skipSpaces(): void {
    while (this.c === ' ') this.i += 1;
  }

  /** systemd's calendar_spec_normalize() and calendar_spec_valid(), field by field. */
  private validate(): void {
    // Two-digit years: 0-69 are 2000-2069, 70-99 are 1970-1999 (fix_year).
    for (const v of this.year ?? []) {
      if (v.start >= 0 && v.start < 100) v.start += v.start < 70 ? 2000 : 1900;
      if (v.stop >= 0 && v.stop < 100) v.stop += v.stop < 70 ? 2000 : 1900;
    }
    checkChain(this.year, YEAR, false);
    checkChain(this.month, MONTH, false);
    checkChain(this.day, DAY_OF_MONTH, this.endOfMonth);
    checkChain(this.hour, HOUR, false);
    checkChain(this.minute, MINUTE, false);
    checkChain(this.second, SECOND, false);
  }
}

function checkChain(chain: Chain, field: Field, endOfMonth: boolean): void {
  if (chain === null) return;
  const big = chain.find((v) => v.tooLarge !== undefined);
  if (big?.tooLarge !== undefined) {
    const where = big.tooLarge === big.text ? '' : ` in ${q(big.text)}`;
    fail(`${field.name} ${big.tooLarge}${where} is out of range ${field.from}-${Math.floor(field.to / (field === SECOND ? USEC : 1))}; ${EXAMPLES}`);
  }
  const values = chain.map(normalize);
  if (!endOfMonth) {
    for (const v of values) checkValue(v, field, field.to, 0);
    return;
  }
  // normalize_chain() sorts and dedups the values, and chain_valid() then checks them in that
  // order; with "~" it lowers the upper bound by 3 and passes the lowered bound on to the next
  // value, so the k-th "~" day may be at most 31 - 3k (28, 25, 22, ...). A systemd quirk, but
  // it is what decides whether a timer loads, so it is reproduced.
  values.sort((a, b) => a.start - b.start || a.stop - b.stop || a.repeat - b.repeat);
  const same = (a: Value, b: Value) => a.start === b.start && a.stop === b.stop && a.repeat === b.repeat;
  const distinct = values.filter((v, k) => k === 0 || !same(v, values[k - 1]!));
  for (const [k, v] of distinct.entries()) checkValue(v, field, field.to - 3 * (k + 1), k);
}

/**
 * normalize_chain() on one value: a range is cut to a whole number of repetitions; one that
 * cannot repeat even once, or that starts and ends on the same value, becomes its start alone
 * (so "5..5" and "1..2/2" pass where "5..3" does not).
 */
function normalize(v: Value): Value {
  let { start, stop, repeat } = v;
  if (stop > start && repeat > 0) stop -= (stop - start) % repeat;
  if ((stop > start && repeat > 0 && start + repeat > stop) || start === stop) {
    repeat = 0;
    stop = -1;
  }
  return { ...v, start, stop, repeat };
}

/** chain_valid() on one normalised value, with the field's upper bound `to` (lowered for "~"). */
function checkValue(v: Value, field: Field, to: number, index: number): void {
  const endOfMonth = to < field.to;
  const unit = field === SECOND ? USEC : 1;
  const { name, from } = field;
  const { start, stop, repeat } = v;
  const top = Math.floor(to / unit);
  const range = endOfMonth ? `${from}-${top} when counted from the end of the month ("~")` : `${from}-${top}`;
  const text = endOfMonth ? `~${v.text}` : v.text;
  const inText = v.startText === v.text ? '' : ` in ${q(text)}`;
  if (index > 0 && (start > to || stop > to) && start <= field.to - 3 && stop <= field.to - 3) {
    fail(
      `systemd takes 3 off the limit for each further "~" day (in increasing order at most 28, 25, 22, ...), so ${q(text)} is out of range as value ${index + 1}; use fewer or smaller "~" days, e.g. "*-*~01,02"`,
    );
  }
  if (start < from || start > to) fail(`${name} ${v.startText}${inText} is out of range ${range}; ${EXAMPLES}`);
  const example = endOfMonth ? '"~7/2"' : q(field.repeating);
  if (repeat > to - from) fail(`the ${name} repetition /${v.repeatText} in ${q(text)} is longer than the whole range ${range}; e.g. ${example}`);
  if (stop >= 0) {
    if (stop < from || stop > to) fail(`${name} ${v.stopText} in ${q(text)} is out of range ${range}; ${EXAMPLES}`);
    // Only a backwards range fails here: normalisation made every other one at least one step long.
    if (start + repeat > stop) {
      const twoDigits = field === YEAR && [v.startText, v.stopText].some((t) => /^\d{1,2}$/.test(t));
      const years = twoDigits ? ' (00-69 mean 2000-2069 and 70-99 mean 1970-1999)' : '';
      const swapped = `${v.stopText}..${v.startText}${v.repeatText ? `/${v.repeatText}` : ''}`;
      fail(`the ${name} range ${q(text)} runs backwards${years}; write the lower value first, e.g. ${q(swapped)}`);
    }
    return;
  }
  if (endOfMonth && start - repeat < from) {
    fail(
      `day ${q(text)} would never repeat: ~${v.startText} minus ${v.repeatText} is past the last day of the month (~1); start further from the end, e.g. ${example}`,
    );
  }
  if (!endOfMonth && start + repeat > to) {
    fail(`${name} ${q(text)} would never repeat: ${v.startText} + ${v.repeatText} is past ${top}; start lower, e.g. ${example}`);
  }
}

/** "*" cannot carry "/", "..", "," or a fraction. */
function starAlone(found: string): string {
  return `"*" stands alone, so ${q(found)} is not allowed; for a repetition write its start, e.g. "0/15" (every 15 from 0) or "*-*-01/7"`;
}

/** The word starting at `at`, for messages (with the hyphen of "semi-annually" and "bi-annually"). */
function word(s: string, at: number): string {
  return /^((semi|bi)-)?[A-Za-z0-9_]*/i.exec(s.slice(at))![0] || s.slice(at, at + 1);
}

function unknownWord(w: string): string {
  const shorthand = Object.keys(SHORTHANDS).find((k) => lower(w) === k);
  if (shorthand) {
    return `the shorthand ${q(w)} stands alone (it means ${q(SHORTHANDS[shorthand]!)}); for another time of day write the full form, e.g. "*-*-* 03:00:00"`;
  }
  const guess = didYouMean(w, WORDS);
  const known =
    'write a shorthand (minutely, hourly, daily, weekly, monthly, quarterly, semiannually, yearly) or weekdays before a time, e.g. "Mon..Fri 07:00"';
  return guess ? `${q(w)} is not a shorthand or a weekday (did you mean ${q(guess)}?); ${known}` : `${q(w)} is not a shorthand or a weekday; ${known}`;
}
