/**
 * Turns a view model into file content. Built-in templates are Handlebars (templates/**\/*.hbs);
 * a project overrides any of them, partials included, with a file of the same relative name in
 * its template folder, as .hbs or .ejs. Handlebars runs with noEscape (HTML escaping would turn
 * `=` into `&#x3D;` in an nginx config) and strict (a misspelt variable is an error, not "").
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Handlebars from 'handlebars';
import { TemplateError } from '../errors.js';

export const BUILTIN_TEMPLATES = fileURLToPath(new URL('../../templates/', import.meta.url));

export interface Rendered {
  content: string;
  /** The override file used, relative to the project; absent for a built-in template. */
  override?: string;
}

export interface TemplateSource {
  file: string;
  engine: 'hbs' | 'ejs';
  override: boolean;
}

export class TemplateEngine {
  readonly #hbs = Handlebars.create();
  readonly #partialsLoaded = new Set<string>();
  /**
   * Compiled Handlebars templates by file, with the text they were compiled from. A deploy
   * renders every file twice (with assumed facts, then with the host's) and once more per host;
   * compiling is most of a render's cost, and the same text always compiles the same.
   */
  readonly #compiled = new Map<string, { text: string; template: HandlebarsTemplateDelegate }>();

  /** @param overrideDir absolute path of the project's template folder (may not exist) */
  constructor(
    private readonly overrideDir: string,
    private readonly projectDir: string,
  ) {
    this.#hbs.registerHelper('eq', (a: unknown, b: unknown) => a === b);
  }

  /** Where the template `name` (e.g. `nginx/site.conf`) comes from. */
  find(name: string): TemplateSource {
    for (const engine of ['hbs', 'ejs'] as const) {
      const file = path.join(this.overrideDir, `${name}.${engine}`);
      if (existsSync(file)) return { file, engine, override: true };
    }
    const file = path.join(BUILTIN_TEMPLATES, `${name}.hbs`);
    if (!existsSync(file)) throw new TemplateError(name, 'no such built-in template');
    return { file, engine: 'hbs', override: false };
  }

  async render(name: string, view: object): Promise<Rendered> {
    const source = this.find(name);
    const label = source.override ? path.relative(this.projectDir, source.file) : `templates/${name}.hbs (built-in)`;
    const text = readFileSync(source.file, 'utf8');
    let content: string;
    try {
      if (source.engine === 'ejs') {
        // A project's .ejs template is JavaScript the project wrote; it runs as trusted code.
        const ejs = (await import('ejs')).default;
        content = ejs.render(text, view, { filename: source.file, escape: (s: unknown) => String(s) });
      } else {
        this.#loadPartials(path.posix.dirname(name));
        content = this.#template(source.file, text)(view);
      }
    } catch (err) {
      throw new TemplateError(label, describeTemplateError(err));
    }
    return source.override ? { content, override: path.relative(this.projectDir, source.file) } : { content };
  }

  #template(file: string, text: string): HandlebarsTemplateDelegate {
    const cached = this.#compiled.get(file);
    if (cached?.text === text) return cached.template;
    const template = this.#hbs.compile(text, { noEscape: true, strict: true });
    this.#compiled.set(file, { text, template });
    return template;
  }

  /** Partials live in `<folder>/partials/NAME.hbs`, built-in first, then the project's overrides. */
  #loadPartials(folder: string): void {
    if (this.#partialsLoaded.has(folder)) return;
    this.#partialsLoaded.add(folder);
    for (const base of [BUILTIN_TEMPLATES, this.overrideDir]) {
      const dir = path.join(base, folder, 'partials');
      if (!existsSync(dir)) continue;
      for (const entry of readdirSync(dir)) {
        if (entry.endsWith('.hbs')) this.#hbs.registerPartial(entry.slice(0, -4), readFileSync(path.join(dir, entry), 'utf8'));
      }
    }
  }
}

function describeTemplateError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // Handlebars says `"x" not defined in [object Object] - 12:4`; keep the name and the position.
  const strict = message.match(/"([^"]+)" not defined in .* - (\d+):(\d+)/);
  if (strict) return `line ${strict[2]}, column ${Number(strict[3]) + 1}: "${strict[1]}" is not a field of this template's view`;
  return message.split('\n').slice(0, 6).join('\n');
}
