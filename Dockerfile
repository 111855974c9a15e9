# One image for every lab service; compose.yaml picks the command and the instance file.
FROM node:24-slim
WORKDIR /lab
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY services services
COPY instances instances
COPY dns-zone dns-zone
RUN mkdir /data && chown node:node /data
USER node
# Compile (and type-strip) each module once, not at every start: faster, smaller.
ENV NODE_COMPILE_CACHE=/tmp/node-compile-cache
# compose.yaml sets a healthcheck per service (timing explained there); this one fits an MTA.
HEALTHCHECK --interval=1s --timeout=25s --retries=3 --start-period=10s CMD ["bash", "services/lib/health-check.sh", "http://127.0.0.1:8025/api/health"]
CMD ["node", "services/mta/main.ts"]
