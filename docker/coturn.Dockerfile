# Debian's coturn, for rooms whose network lets no UDP reach the relay
# (docker-compose.yml, profile "turn"). Its settings are the command line
# that docker-compose.yml gives it.
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends coturn \
    && rm -rf /var/lib/apt/lists/*
USER turnserver
ENTRYPOINT ["turnserver"]
