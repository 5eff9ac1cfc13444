# Debian's redis-server, through which a city origin and its district edges
# coordinate (docker-compose.yml, profile "city"). Its settings are the
# command line that docker-compose.yml gives it.
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o redis -g redis /var/lib/redis
USER redis
