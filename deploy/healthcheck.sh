#!/bin/bash
# Container health check for the sluice image, without curl: one HTTP/1.0
# GET over bash's /dev/tcp to this container's own health endpoint.
#   SLUICE_HEALTHCHECK_PORT  port to probe on 127.0.0.1 (default 8080, the api;
#                            9090 for a worker started with --metrics-listen,
#                            8090 for mock-llm)
#   SLUICE_HEALTHCHECK_PATH  path (default /healthz)
# Healthy when the status line says 200; Docker's --timeout bounds the wait.
set -u
port="${SLUICE_HEALTHCHECK_PORT:-8080}"
path="${SLUICE_HEALTHCHECK_PATH:-/healthz}"

if ! { exec 3<>"/dev/tcp/127.0.0.1/${port}"; } 2>/dev/null; then
    echo "unhealthy: nothing listens on 127.0.0.1:${port}" >&2
    exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' \
    "$path" "$port" >&3
status=""
IFS= read -r -t 2 status <&3
exec 3<&- 3>&-
case "$status" in
    "HTTP/1."[01]" 200"*) exit 0 ;;
esac
echo "unhealthy: GET ${path} on port ${port} answered '${status%$'\r'}'" >&2
exit 1
