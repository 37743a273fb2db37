import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './process.js';

/**
 * The code examples of docs/*.md that are not shell walkthroughs: every ```js, ```ts, ```json
 * and ```nginx block is preceded by a marker line that says how a test exercises it,
 *
 *   <!-- example: node NAME -->     run as an ES module in Node (docs-examples.test.ts)
 *   <!-- example: browser NAME -->  run in a page in Chromium (docs-examples-browser.test.ts)
 *   <!-- example: json NAME -->     a response or event whose fields a real one has (docs-examples.test.ts)
 *   <!-- example: json from FILE --> the same, compared with FILE, which the page's walkthrough
 *                                   wrote (readme.test.ts)
 *   <!-- example: nginx NAME -->    a proxy configuration nginx runs in front of Wharf
 *                                   (reverse-proxy.test.ts)
 *
 * NAME picks the test's harness for the block: what it supplies and what it checks.
 */
export interface DocExample {
  file: string;
  /** 1-based line of the block's first code line. */
  line: number;
  lang: 'js' | 'ts' | 'json';
  kind: 'node' | 'browser' | 'json';
  name: string;
  code: string;
}

export const DOC_EXAMPLE_FILES = readdirSync(join(REPO, 'docs'), { withFileTypes: true })
  .filter((entry) => entry.isFile() && entry.name.endsWith('.md'))
  .map((entry) => `docs/${entry.name}`)
  .sort();

const MARKED = /<!-- example: (node|browser|json) ([^\n]+?) -->\n```(js|ts|json)\n([\s\S]*?)\n```/g;

export function docExamples(file?: string): DocExample[] {
  const examples: DocExample[] = [];
  for (const each of file ? [file] : DOC_EXAMPLE_FILES) {
    const markdown = readFileSync(join(REPO, each), 'utf8');
    for (const match of markdown.matchAll(MARKED)) {
      examples.push({
        file: each,
        line: markdown.slice(0, match.index).split('\n').length + 2,
        kind: match[1] as DocExample['kind'],
        name: match[2]!,
        lang: match[3] as DocExample['lang'],
        code: match[4]!,
      });
    }
  }
  return examples;
}

/** The ```nginx blocks of docs/*.md, each marked `<!-- example: nginx NAME -->`. */
export interface NginxExample {
  file: string;
  /** 1-based line of the block's first line. */
  line: number;
  name: string;
  code: string;
}

const MARKED_NGINX = /<!-- example: nginx ([^\n]+?) -->\n```nginx\n([\s\S]*?)\n```/g;

export function nginxExamples(): NginxExample[] {
  const examples: NginxExample[] = [];
  for (const file of DOC_EXAMPLE_FILES) {
    const markdown = readFileSync(join(REPO, file), 'utf8');
    for (const match of markdown.matchAll(MARKED_NGINX)) {
      examples.push({
        file,
        line: markdown.slice(0, match.index).split('\n').length + 2,
        name: match[1]!,
        code: match[2]!,
      });
    }
  }
  return examples;
}

/** `file:line` of every js, ts, json or nginx block of docs/ that has no marker. */
export function unmarkedBlocks(): string[] {
  const unmarked: string[] = [];
  for (const file of DOC_EXAMPLE_FILES) {
    const lines = readFileSync(join(REPO, file), 'utf8').split('\n');
    let inBlock = false;
    lines.forEach((line, i) => {
      if (!line.startsWith('```')) return;
      const opens = !inBlock && /^```(js|ts|json|javascript|typescript|jsx|tsx|nginx)$/.test(line);
      if (opens && !/^<!-- example: (node|browser|json|nginx) [^\n]+ -->$/.test(lines[i - 1] ?? '')) {
        unmarked.push(`${file}:${i + 1}`);
      }
      inBlock = !inBlock;
    });
  }
  return unmarked;
}

/** A member `…` in an object: the real one has more fields, which the example leaves out. */
const MORE = '…';

/**
 * A json example as a value. `…` standing for further members is read as such; a fragment (a
 * block that begins with `"name":`) is members of a larger object, and so is read as one
 * with more fields.
 */
export function parseDocJson(code: string): unknown {
  let text = code.trim().replace(/,\s*…(?=\s*[}\]])/g, `, "${MORE}": true`);
  if (text.startsWith('"')) text = `{ ${text}, "${MORE}": true }`;
  return JSON.parse(text);
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Where `real` differs in shape from `documented`: an object's fields (recursively; all of them
 * unless the example has `…`), arrays by their first element. Values are not compared.
 */
export function shapeDifferences(documented: unknown, real: unknown, path = '$'): string[] {
  if (documented === null || real === null) return [];
  if (isObject(documented)) {
    if (!isObject(real)) return [`${path}: documented as an object, is ${JSON.stringify(real)}`];
    const partial = MORE in documented;
    const shown = Object.keys(documented).filter((k) => k !== MORE);
    const problems: string[] = [];
    for (const k of shown) {
      if (!(k in real)) problems.push(`${path}.${k}: documented, not in the real one`);
      else problems.push(...shapeDifferences(documented[k], real[k], `${path}.${k}`));
    }
    if (!partial) {
      for (const k of Object.keys(real)) {
        if (!shown.includes(k)) problems.push(`${path}.${k}: in the real one, not documented`);
      }
    }
    return problems;
  }
  if (Array.isArray(documented)) {
    if (!Array.isArray(real)) return [`${path}: documented as an array, is ${JSON.stringify(real)}`];
    if (documented.length === 0) return [];
    if (real.length === 0) return [`${path}: the real one is empty, nothing to compare`];
    return shapeDifferences(documented[0], real[0], `${path}[0]`);
  }
  if (isObject(real) || Array.isArray(real)) {
    return [`${path}: documented as ${JSON.stringify(documented)}, is ${JSON.stringify(real)}`];
  }
  return [];
}

/** `@wharf/sdk` and `@wharf/sdk/node` as the package exports them, from the source. */
export const wharfSdkFromSource = {
  name: 'wharf-sdk-from-source',
  setup(build: { onResolve: (o: { filter: RegExp }, f: (a: { path: string }) => { path: string }) => void }) {
    build.onResolve({ filter: /^@wharf\/sdk(\/node)?$/ }, (args) => ({
      path: join(REPO, 'src', 'sdk', args.path.endsWith('/node') ? 'node.ts' : 'index.ts'),
    }));
  },
};
