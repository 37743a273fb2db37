import assert from 'node:assert/strict';
import { test } from 'node:test';
import Fastify from 'fastify';
import { Type } from 'typebox';
import { buildSharedSerializer } from '../../src/http/serialization.js';

const ErrorShape = Type.Object({ code: Type.String() });
const Other = Type.Object({ name: Type.String() });

test('one serializer per schema object, shared across routes and statuses; other schemas get their own', () => {
  const compile = buildSharedSerializer(undefined, {});
  const a = compile({ method: 'GET', url: '/a', httpStatus: '400', schema: ErrorShape });
  const b = compile({ method: 'POST', url: '/b', httpStatus: '404', schema: ErrorShape });
  const c = compile({ method: 'GET', url: '/a', httpStatus: '200', schema: Other });
  assert.equal(a, b);
  assert.notEqual(a, c);
  // Each keeps to its own schema: what it does not declare is left out.
  assert.equal(a({ code: 'X', name: 'n', secret: 's' }), '{"code":"X"}');
  assert.equal(c({ code: 'X', name: 'n', secret: 's' }), '{"name":"n"}');
});

test('in a Fastify app, routes that share a schema answer as Fastify itself would', async () => {
  const build = (shared: boolean) => {
    const app = Fastify(
      shared ? { schemaController: { compilersFactory: { buildSerializer: buildSharedSerializer } } } : {},
    );
    const response = { 200: Other, 400: ErrorShape, 404: ErrorShape };
    const body = { code: 'NOPE', name: 'file.txt', extra: true };
    app.get('/one', { schema: { response } }, async (_req, reply) => reply.status(404).send(body));
    app.get('/two', { schema: { response } }, async (_req, reply) => reply.status(400).send(body));
    app.get('/three', { schema: { response } }, async () => body);
    return app;
  };
  const answers = async (shared: boolean) => {
    const app = build(shared);
    try {
      const out = [];
      for (const url of ['/one', '/two', '/three']) {
        const res = await app.inject({ url });
        out.push([res.statusCode, res.body]);
      }
      return out;
    } finally {
      await app.close();
    }
  };
  const expected = [
    [404, '{"code":"NOPE"}'],
    [400, '{"code":"NOPE"}'],
    [200, '{"name":"file.txt"}'],
  ];
  assert.deepEqual(await answers(false), expected);
  assert.deepEqual(await answers(true), expected);
});
