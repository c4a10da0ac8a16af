# Sourced by the loop scripts. The long measurements span sessions, and a session may start on another machine with
# runs/ gone: only git carries anything over. So the runs that cost an hour or more to redo and that later steps
# read (the sampled traces, the evaluations a comparison pairs against) are kept in git, compressed, as their
# record alone: config.yaml, results.jsonl, summary.json (no adapters: a LoRA of the default model is ~35 MB).
#
#   keep RUN_DIR      pack a finished run into benchmarks/kept/ (the same name, slashes as "__")
#   restore RUN_DIR   unpack it when RUN_DIR has no results yet; nothing when there is no kept copy
#
# A restored run is a finished run to `reasonlab eval` (it re-runs nothing) and to every reader of runs.
KEPT=${KEPT:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kept}

_kept_file() { echo "$KEPT/$(echo "${1%/}" | sed 's|^\./||; s|/|__|g').tar.gz"; }

keep() {
  local run=${1%/} file
  file=$(_kept_file "$run")
  [ -s "$run/summary.json" ] || { echo "keep: $run is not a finished run (no summary.json)" >&2; return 1; }
  mkdir -p "$KEPT"
  # fixed times and owners, gzip -n: keeping the same run twice gives the same bytes (git sees no change)
  tar --mtime=@0 --owner=0 --group=0 --numeric-owner --sort=name -cf - -C "$(dirname "$run")" $(cd "$run" && ls config.yaml results.jsonl summary.json 2>/dev/null \
      | sed "s|^|$(basename "$run")/|") | gzip -n -9 > "$file"
  echo "keep: $run -> $file ($(du -h "$file" | cut -f1))"
}

restore() {
  local run=${1%/} file
  file=$(_kept_file "$run")
  [ -s "$run/results.jsonl" ] && return 0
  [ -s "$file" ] || return 0
  mkdir -p "$(dirname "$run")"
  tar -xzf "$file" -C "$(dirname "$run")"
  echo "restore: $run <- $file"
}
