#!/bin/bash
# compose.yaml's healthcheck: GET a health URL of this container, with bash
# alone (its /dev/tcp): no Node process per check, nothing installed in the
# image. Healthy on an "HTTP/1.x 200" status line.
#   bash services/lib/health-check.sh http://127.0.0.1:PORT/PATH
#
# Docker 20.10 has no start_interval: one interval serves start-up and the
# rest of the container's life. Each check costs a process start inside the
# container and work in Docker's daemon (about 0.1 s of CPU in all, most of it
# runc's exec), so a short interval would cost the idle lab several per cent
# of a core. So the interval is short, for a quick first "healthy", and once
# this container's process has been healthy, each later check waits
# SLOW_CHECK_SECONDS before it looks (compose's timeout allows for it): Docker
# starts the next check only when this one has ended, so the checks of a
# healthy container come that much further apart. A restart begins again quickly: the
# mark holds the start time of the container's first process. (Both can be
# set in the environment, for the script's test.)
set -u
SLOW_CHECK_SECONDS=${SLOW_CHECK_SECONDS:-30}
MARK=${HEALTH_MARK:-/tmp/.healthy-since}

[[ ${1:-} =~ ^http://([0-9.]+):([0-9]+)(/[^[:space:]]*)$ ]] || { echo "usage: $0 http://HOST:PORT/PATH" >&2; exit 2; }
host=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]} path=${BASH_REMATCH[3]}

read -r -a init </proc/1/stat
started=${init[21]} # field 22: when PID 1 started, in clock ticks since boot
[[ -f $MARK && $(<"$MARK") == "$started" ]] && sleep "$SLOW_CHECK_SECONDS"

exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$path" "$host" "$port" >&3
read -r -t 2 status <&3 || { echo "no answer from $1" >&2; exit 1; }
[[ $status =~ ^HTTP/1\.[01]\ 200 ]] || { echo "$1: $status" >&2; exit 1; }
echo "$started" >"$MARK"
