#!/usr/bin/env bash
# Installs everything the tests need (Debian clients, Python packages), then runs the
# linters and the whole test suite. Safe to re-run; installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in aria2c:aria2 transmission-show:transmission-cli transmission-daemon:transmission-daemon \
            mktorrent:mktorrent nginx:nginx-light wrk:wrk opentracker:opentracker \
            redis-server:redis-server pg_ctlcluster:postgresql rclone:rclone s3cmd:s3cmd \
            qbittorrent-nox:qbittorrent-nox rtorrent:rtorrent ctorrent:ctorrent lftp:lftp \
            node:nodejs npm:npm chromium:chromium curl:curl; do
  bin=${pair%%:*}; pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || [ -x "/usr/bin/$bin" ] || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'

# WebTorrent for the interop matrix (tests/interop/clients.py looks here). --ignore-scripts:
# a dependency's install script insists on pnpm, and WebRTC's native build needs a download
# (the tests stub WebRTC out). uint8-util 2.3 broke webtorrent 2.8's hex conversion.
node_prefix="${S3TORRENT_TEST_NODE_PREFIX:-$HOME/.cache/s3torrent-interop}"
if [ ! -f "$node_prefix/node_modules/webtorrent/package.json" ]; then
  mkdir -p "$node_prefix"
  npm install --prefix "$node_prefix" --no-audit --no-fund --ignore-scripts \
    webtorrent@2.8.5 uint8-util@2.2.5 >/dev/null
fi

python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy
# The layers of docs/ARCHITECTURE.md (contracts in pyproject.toml).
lint-imports

# tests/scale starts PostgreSQL, Redis and moto itself; installed above, so fail, not skip.
export S3TORRENT_REQUIRE_ENGINES=1
python3 -m pytest -q -p no:cacheprovider tests "$@"
