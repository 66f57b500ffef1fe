# syntax=docker/dockerfile:1
# llm-gateway image: compiled in a build stage with the full toolchain, run in a slim stage
# holding only dist/, production node_modules, package.json and policies/, as a non-root user.
#
#   docker build -t llm-gateway .
#   docker run --rm -p 127.0.0.1:4000:4000 -e GATEWAY_HOST=0.0.0.0 llm-gateway      # try it
#   docker run ... -v ./policies.yaml:/etc/llm-gateway/policies.yaml:ro llm-gateway  # your policies
#
# GATEWAY_HOST defaults to 127.0.0.1: as a sidecar the gateway shares the app's network
# namespace and listens on loopback only. Set GATEWAY_HOST=0.0.0.0 to be reachable from outside
# the container (docker -p, or Prometheus scraping /metrics on the pod IP).

# ---- build: dev dependencies, tsc, then drop the dev dependencies --------------------------
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build
RUN npm prune --omit=dev --no-audit --no-fund

# ---- runtime ---------------------------------------------------------------------------------
FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY policies ./policies
# The policies file the gateway runs with: mount yours over it. The default serves the model
# `demo` from the built-in simulator, so the image runs as is.
COPY policies/policies.yaml /etc/llm-gateway/policies.yaml
# Files stay owned by root: the gateway's user can read its code and policies, not change them.
USER node
EXPOSE 4000
# No curl in slim images: node itself probes /healthz. It assumes port 4000 on loopback, which
# also answers when GATEWAY_HOST=0.0.0.0. (Kubernetes ignores HEALTHCHECK: use the probes in deploy/.)
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:4000/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]
# The command is `node dist/main.js --policies /etc/llm-gateway/policies.yaml --port 4000`, split so
# that arguments can be replaced alone: Kubernetes `args:` (deploy/k8s), or
# `docker run llm-gateway check /etc/llm-gateway/policies.yaml` to validate a policies file.
ENTRYPOINT ["node", "dist/main.js"]
CMD ["--policies", "/etc/llm-gateway/policies.yaml", "--port", "4000"]
