import type { FastifyInstance, FastifySchema } from 'fastify';

/** One route as it was registered: what a request to it may be, and its schema when it has one. */
export interface RouteEntry {
  methods: string[];
  url: string;
  schema: FastifySchema | undefined;
}

const registered = new WeakMap<FastifyInstance, RouteEntry[]>();

/**
 * Records every route registered on `app` from now on, in every plugin scope (an onRoute hook
 * of the root is inherited by each scope created after it). Fastify lists routes only as a
 * printed tree (printRoutes), which flattens nested wildcards wrongly; tools that walk every
 * route (the fuzz test) read this list instead.
 */
export function trackRoutes(app: FastifyInstance): void {
  const routes: RouteEntry[] = [];
  registered.set(app, routes);
  app.addHook('onRoute', (route) => {
    routes.push({ methods: [route.method].flat(), url: route.url, schema: route.schema });
  });
}

/** The routes recorded since trackRoutes(app). */
export function routesOf(app: FastifyInstance): readonly RouteEntry[] {
  return registered.get(app) ?? [];
}
