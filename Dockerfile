# Zhixing Classroom (知行课堂) as a container: `docker compose up -d` (docker-compose.yml).
#
# Python 3.11 (pyproject.toml: >=3.11,<3.12) on Debian bookworm, for Debian's
# fonts-noto-cjk. No ffmpeg: recording, remuxing, import and replay go through
# PyAV, whose wheel carries its own FFmpeg libraries; nothing runs the ffmpeg
# binary (tests/test_packaging.py checks that).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# gcc for the native send path (streaming/rtp_send.c); the image has Python's headers.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/zhixing
WORKDIR /src
# What `pip install .` needs: the packages of [tool.setuptools] and the readme.
COPY pyproject.toml README.md ./
COPY streaming/ streaming/
COPY recordings/ recordings/
COPY classroom/ classroom/
COPY web/ web/
# The native module is built next to its source, then packaged with it.
RUN /opt/zhixing/bin/pip install "$(grep -o 'cffi==[0-9.]*' pyproject.toml)" \
    && /opt/zhixing/bin/python -m streaming.rtp_send_build \
    && /opt/zhixing/bin/pip install .

FROM python:3.11-slim-bookworm
# Noto Sans CJK for the Chinese labels of the attendance charts (web/charts.py);
# xorriso for course packages as ISO images (classroom/packages/).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends fonts-noto-cjk \
        xorriso \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid, so that a bind-mounted data folder can be given to it (chown 10001).
RUN groupadd --system --gid 10001 zhixing \
    && useradd --system --uid 10001 --gid zhixing --create-home --home-dir /home/zhixing \
        --shell /usr/sbin/nologin zhixing \
    && install -d -o zhixing -g zhixing -m 0750 /data
COPY --from=build /opt/zhixing /opt/zhixing
# ZHIXING_DATA also serves `zhixing admin set-password` and `zhixing archive import`
# run with `docker compose exec`.
ENV PATH=/opt/zhixing/bin:$PATH PYTHONUNBUFFERED=1 ZHIXING_DATA=/data
USER zhixing
WORKDIR /home/zhixing
# Build matplotlib's font cache now (not at the first chart), and stop the build
# if it cannot see the CJK font.
RUN python -c "import matplotlib.font_manager as f; f.findfont('Noto Sans CJK SC', fallback_to_default=False)"
VOLUME ["/data"]
EXPOSE 8080
# /healthz on the address and port that serve reads from ZHIXING_HOST and
# ZHIXING_PORT (so set those in the environment, not as flags); no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import http.client, os, sys; a = os.environ.get('ZHIXING_HOST') or '127.0.0.1'; a = {'0.0.0.0': '127.0.0.1', '::': '::1'}.get(a, a); c = http.client.HTTPConnection(a, int(os.environ.get('ZHIXING_PORT') or 8080), timeout=4); c.request('GET', '/healthz'); sys.exit(c.getresponse().status != 200)"]
ENTRYPOINT ["zhixing"]
CMD ["serve", "--data", "/data"]
