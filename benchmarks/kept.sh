# Sourced by the loop scripts. The long measurements span sessions, and a session may start on another machine with
# runs/ gone: only git carries anything over. So the runs that cost an hour or more to redo and that later steps
# read (the sampled traces, the evaluations a comparison pairs against) are kept in git, compressed, as their
# record alone: config.yaml, results.jsonl, summary.json (no adapters: a LoRA of the default model is ~35 MB).
#
#   keep RUN_DIR      pack a run into benchmarks/kept/ (the same name, slashes as "__"); an unfinished one too,
#                     at a session's end: `reasonlab eval` resumes it where it stopped. A file (a datagen output)
#                     is kept whole, another directory (datagen pivotal's, resumable too) as its top-level files.
#   restore RUN_DIR   unpack it when RUN_DIR is missing or empty; nothing when none is kept
#   restore_all DIR   restore every kept run under DIR
#
# A restored finished run is finished to `reasonlab eval` (it re-runs nothing) and to every reader of runs. Its
# config.yaml says which CPU it ran on (versions.cpu): a later step may run on another machine kind.
# and, for the loops that run python benchmark scripts, the python reasonlab is installed in: the one beside $R
# (the loops set R before sourcing this), else the one on PATH
PY=${PYTHON:-$(d=$(dirname "$(command -v "${R:-reasonlab}")" 2>/dev/null); [ -x "$d/python" ] && echo "$d/python" || echo python)}
KEPT=${KEPT:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kept}

_kept_file() { echo "$KEPT/$(echo "${1%/}" | sed 's|^\./||; s|/|__|g').tar.gz"; }

keep() {
  local run=${1%/} file
  file=$(_kept_file "$run")
  local files="" f
  if [ -f "$run" ]; then  # a data file (a datagen output)
    files=$(basename "$run")
  elif [ -e "$run/config.yaml" ]; then  # a run: its record
    [ -s "$run/results.jsonl" ] || { echo "keep: $run has no results.jsonl" >&2; return 1; }
    # a finished run kept before, run again with nothing new (a restored run: eval reuses every problem), has only
    # rewritten its summary's "this time" figures: the kept record, whose figures say what the run cost, stays
    if [ -s "$file" ] && tar -tzf "$file" | grep -qx "$(basename "$run")/summary.json" \
        && tar -xzOf "$file" "$(basename "$run")/results.jsonl" | cmp -s - "$run/results.jsonl"; then
      echo "keep: $run is kept already ($file)"
      return 0
    fi
    for f in config.yaml results.jsonl summary.json; do
      [ -e "$run/$f" ] && files="$files $(basename "$run")/$f"
    done
  elif [ -d "$run" ]; then  # another resumable output directory (datagen pivotal's): its top-level files
    files=$(cd "$(dirname "$run")" && find "$(basename "$run")" -maxdepth 1 -type f | sort)
    # a finished output resumed with nothing left to do rewrites only its summary's "this call" figures: as above
    if [ -s "$file" ] && [ -e "$run/summary.json" ] && [ "$(tar -tzf "$file" | sort)" = "$files" ]; then
      local same=1
      for f in $files; do
        [ "$(basename "$f")" = summary.json ] && continue
        tar -xzOf "$file" "$f" | cmp -s - "$(dirname "$run")/$f" || { same=0; break; }
      done
      if [ $same = 1 ]; then
        echo "keep: $run is kept already ($file)"
        return 0
      fi
    fi
  fi
  [ -n "$files" ] || { echo "keep: nothing to keep at $run" >&2; return 1; }
  mkdir -p "$KEPT"
  # fixed times and owners, gzip -n: keeping the same run twice gives the same bytes (git sees no change)
  tar --mtime=@0 --owner=0 --group=0 --numeric-owner --sort=name -cf - -C "$(dirname "$run")" $files \
      | gzip -n -9 > "$file"
  echo "keep: $run -> $file ($(du -h "$file" | cut -f1)$([ -f "$run" ] || [ -s "$run/summary.json" ] \
      || echo ", unfinished: it resumes"))"
}

restore() {
  local run=${1%/} file
  file=$(_kept_file "$run")
  { [ -f "$run" ] || [ -n "$(ls -A "$run" 2>/dev/null)" ]; } && return 0
  [ -s "$file" ] || return 0
  mkdir -p "$(dirname "$run")"
  tar -xzf "$file" -C "$(dirname "$run")"
  echo "restore: $run <- $file"
}

restore_all() {
  local prefix f
  prefix=$(echo "${1%/}" | sed 's|^\./||; s|/|__|g')__
  for f in "$KEPT/$prefix"*.tar.gz; do
    [ -e "$f" ] || continue
    f=$(basename "$f" .tar.gz)
    restore "${f//__//}"
  done
}
