#!/bin/sh
# The init-recovery container of the Bytewax Helm chart runs `sh ./entrypoint-recovery.sh` in the
# image's WORKDIR with BYTEWAX_RECOVERY_DIRECTORY (/var/recovery) and BYTEWAX_RECOVERY_PARTS
# (waxctl --recovery-parts): make that many recovery partitions once. A directory that has
# part-0.sqlite3 is left alone: part-0 is moved in last, so it means the set is complete.
set -eu

dir=${BYTEWAX_RECOVERY_DIRECTORY:-}
parts=${BYTEWAX_RECOVERY_PARTS:-}
if [ -z "$dir" ] || [ -z "$parts" ]; then
  echo "entrypoint-recovery.sh: BYTEWAX_RECOVERY_DIRECTORY and BYTEWAX_RECOVERY_PARTS must be set" >&2
  exit 2
fi
case $parts in
  *[!0-9]*) parts=0 ;;
esac
if [ "$parts" -lt 1 ]; then
  echo "entrypoint-recovery.sh: BYTEWAX_RECOVERY_PARTS=$BYTEWAX_RECOVERY_PARTS is not a positive number" >&2
  exit 2
fi

if [ -f "$dir/part-0.sqlite3" ]; then
  echo "entrypoint-recovery.sh: recovery partitions already in $dir"
  exit 0
fi

# Made aside, then moved in without replacing any part another pod sharing the volume (the
# chart's single recovery claim) may already have moved in and started to use.
mkdir -p "$dir"
new="$dir/.new-parts.$$"
rm -rf "$new"
mkdir "$new"
python -m bytewax.recovery "$new" "$parts"
i=$((parts - 1))
while [ "$i" -ge 0 ]; do
  if [ ! -e "$dir/part-$i.sqlite3" ]; then
    mv "$new/part-$i.sqlite3" "$dir/part-$i.sqlite3"
  fi
  i=$((i - 1))
done
rm -rf "$new"
echo "entrypoint-recovery.sh: made $parts recovery partitions in $dir"
