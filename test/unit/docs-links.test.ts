import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import GithubSlugger from 'github-slugger';
import { marked, type Token } from 'marked';

/**
 * Every relative link in the checkout's markdown (README.md, docs/*.md, and the READMEs of
 * bench/ and sdk/, the SDK's being the one its package ships) names a file of the checkout,
 * and every #fragment a heading of the file it points into, so moving or renaming a section
 * cannot leave a reader at a dead link.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const FILES = [
  'README.md',
  'bench/README.md',
  'sdk/README.md',
  ...readdirSync(join(REPO, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
];

/** A heading's text as GitHub sees it: the words of its inline markdown, no markup. */
function plainText(tokens: Token[]): string {
  return tokens
    .map((token) =>
      'tokens' in token && token.tokens ? plainText(token.tokens) : 'text' in token ? token.text : '',
    )
    .join('');
}

const anchorsByFile = new Map<string, Set<string>>();
/** The anchors GitHub gives a markdown file's headings (repeated headings get -1, -2, …). */
function anchorsOf(file: string): Set<string> {
  let anchors = anchorsByFile.get(file);
  if (!anchors) {
    const slugger = new GithubSlugger();
    anchors = new Set();
    marked.walkTokens(marked.lexer(readFileSync(join(REPO, file), 'utf8')), (token) => {
      if (token.type === 'heading') anchors!.add(slugger.slug(plainText(token.tokens ?? [])));
    });
    anchorsByFile.set(file, anchors);
  }
  return anchors;
}

function linksOf(file: string): string[] {
  const links: string[] = [];
  marked.walkTokens(marked.lexer(readFileSync(join(REPO, file), 'utf8')), (token) => {
    if (token.type === 'link' || token.type === 'image') links.push(token.href);
  });
  return links;
}

test('the documentation has links to check', () => {
  assert.ok(FILES.includes('docs/README.md'), 'docs/README.md indexes the documentation');
  assert.ok(
    linksOf('README.md').some((href) => href.startsWith('docs/')),
    'the README links into docs/',
  );
});

for (const file of FILES) {
  test(`${file}: every relative link and #anchor resolves`, () => {
    for (const href of linksOf(file)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue; // https:, mailto: … are not files
      const [path = '', fragment] = href.split('#', 2);
      const target = path === '' ? file : normalize(join(dirname(file), decodeURIComponent(path)));
      assert.ok(!relative(REPO, join(REPO, target)).startsWith('..'), `${file}: ${href} leaves the checkout`);
      assert.ok(existsSync(join(REPO, target)), `${file}: ${href} names ${target}, which does not exist`);
      if (fragment === undefined) continue;
      assert.ok(
        target.endsWith('.md') && statSync(join(REPO, target)).isFile(),
        `${file}: ${href} has an anchor into something other than a markdown file`,
      );
      assert.ok(
        anchorsOf(target).has(decodeURIComponent(fragment)),
        `${file}: ${href} names #${fragment}, which is no heading of ${target} (it has: ${[
          ...anchorsOf(target),
        ].join(', ')})`,
      );
    }
  });
}
