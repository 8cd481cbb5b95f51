#!/bin/sh
# The dataflow container of the Bytewax Helm chart (what waxctl deploys) runs
# `sh -c "sh ./entrypoint.sh"` in the image's WORKDIR; this is that script for every ClaimX
# stage. The chart sets BYTEWAX_PYTHON_FILE_PATH=/var/bytewax/<file> (the file waxctl shipped:
# our own dataflows/<stage>.py) and BYTEWAX_WORKDIR=/var/bytewax. Rather than run that loose
# copy, this runs the installed module of the same name: dataflows.<stage>:flow.
# BYTEWAX_IMPORT_STR, when set, names the import string instead.
set -eu

if [ -n "${BYTEWAX_IMPORT_STR:-}" ]; then
  target=$BYTEWAX_IMPORT_STR
elif [ -n "${BYTEWAX_PYTHON_FILE_PATH:-}" ]; then
  file=${BYTEWAX_PYTHON_FILE_PATH##*/}
  stage=${file%.py}
  case $file in
    *.py) ;;
    *) stage= ;;
  esac
  case $stage in
    "" | *[!A-Za-z0-9_]*)
      echo "entrypoint.sh: BYTEWAX_PYTHON_FILE_PATH=$BYTEWAX_PYTHON_FILE_PATH does not name a dataflows/<stage>.py file" >&2
      exit 2
      ;;
  esac
  target="dataflows.$stage:flow"
else
  echo "entrypoint.sh: set BYTEWAX_IMPORT_STR (dataflows.<stage>:flow) or BYTEWAX_PYTHON_FILE_PATH (/var/bytewax/<stage>.py)" >&2
  exit 2
fi

# bytewax.run refuses a recovery directory without both intervals; the chart's StatefulSet
# sets only the directory, so take them from the stage's own settings when it sets none.
if [ -n "${BYTEWAX_RECOVERY_DIRECTORY:-}" ]; then
  BYTEWAX_SNAPSHOT_INTERVAL=${BYTEWAX_SNAPSHOT_INTERVAL:-${CLAIMX_SNAPSHOT_INTERVAL_SECONDS:-5}}
  BYTEWAX_RECOVERY_BACKUP_INTERVAL=${BYTEWAX_RECOVERY_BACKUP_INTERVAL:-${CLAIMX_BACKUP_INTERVAL_SECONDS:-0}}
  export BYTEWAX_SNAPSHOT_INTERVAL BYTEWAX_RECOVERY_BACKUP_INTERVAL
fi

# The chart's writable working directory (the root filesystem is read-only).
if [ -n "${BYTEWAX_WORKDIR:-}" ] && [ -d "$BYTEWAX_WORKDIR" ]; then
  cd "$BYTEWAX_WORKDIR"
fi

echo "entrypoint.sh: python -m bytewax.run $target" >&2
if [ "${BYTEWAX_KEEP_CONTAINER_ALIVE:-false}" != true ]; then
  # No shell left behind: Python takes this process and gets the signals sent to it.
  exec python -m bytewax.run "$target"
fi

# Troubleshooting (waxctl --keep-alive): the dataflow runs as a child, SIGTERM is passed on to
# it, and once it has ended the container stays up until it is stopped.
child=
trap 'if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; fi; exit 143' TERM INT
python -m bytewax.run "$target" &
child=$!
status=0
wait "$child" || status=$?
child=
echo "entrypoint.sh: dataflow ended (exit $status); keeping the container alive" >&2
while :; do
  sleep 1 &
  wait $! || true
done
