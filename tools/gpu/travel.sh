#!/usr/bin/env bash
# What travels to the GPU machine with a device call, and making room in it. A call copies the working tree (tracked
# files present, and untracked ones git does not ignore) and the ignored paths it carries, at most 64 MiB in all. The
# tree alone is about 58 MB (docs/ 14.5 MB, the 128x128 model 21.5 MB, the latent model 17.3 MB), so a call that
# carries much (the CLI and the Debian packages; a transformer's fp32 shards in .v2/init/dit) first moves folders the
# GPU machine does not need out of the tree, and puts them back right after the call:
#   tools/gpu/travel.sh size [CARRY...]   bytes that would travel with these carried paths, against the limit
#   tools/gpu/travel.sh aside [PATH...]   move PATHs (default: assets/models/default) to .travel-aside/ (ignored)
#   tools/gpu/travel.sh back              put them back
#   tools/gpu/travel.sh status            what is aside (exit 1 if anything is)
# `aside` refuses a path with uncommitted changes, so that nothing made here can be lost, and `back` refuses to
# overwrite. While something is aside, git sees its files as deleted: run `back` before any commit.
# Examples: a training call continuing from fp32 shards (docs/ and the 128x128 model aside, carry [".v2"]):
#   tools/gpu/travel.sh aside docs assets/models/default && tools/gpu/travel.sh size .v2
# an eval call with the CUDA CLI built here (carry [".debs", ".keep/cli"]):
#   tools/gpu/travel.sh aside && tools/gpu/travel.sh size .debs .keep/cli
set -euo pipefail
SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/../.."
LIMIT=$((64 << 20))
ASIDE=.travel-aside

die() {
  echo "travel.sh: $*" >&2
  exit 1
}

ignored() { git check-ignore -q "$1"; }

case "${1:-}" in
size)
  shift
  # files moved aside are still listed as tracked: stat skips them (and fails for them, hence the || true)
  tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null |
    awk '{s += $1} END {print s + 0}') || true
  total=$tree
  printf '%-28s %12d bytes\n' "working tree" "$tree"
  for path in "$@"; do
    [[ -e $path ]] || die "$path: not here (a carried path that is missing is removed on the GPU machine)"
    ignored "$path" || echo "travel.sh: note: $path is not ignored by git, so it travels with the tree already" >&2
    bytes=$(du -sb "$path" | cut -f1)
    printf '%-28s %12d bytes\n' "$path" "$bytes"
    total=$((total + bytes))
  done
  printf '%-28s %12d bytes of %d (%d%%)\n' "in all" "$total" "$LIMIT" $((100 * total / LIMIT))
  ((total <= LIMIT)) || die "over the 64 MiB a call carries: move more aside (docs, assets/models/default)"
  ;;
aside)
  shift
  (($#)) || set -- assets/models/default
  ignored "$ASIDE/.moved" || die "$ASIDE/ is not ignored by git (.gitignore lists it)"
  for path in "$@"; do  # every path checked before any moves
    path=${path%/}
    [[ $path != /* && $path != .. && $path != ../* && $path != */../* && $path != */.. ]] ||
      die "$path: give a path inside the working tree, relative to its root"
    [[ -e $path ]] || die "$path: not in the working tree"
    [[ -e $ASIDE/$path ]] && die "$ASIDE/$path already exists: run 'travel.sh back' first"
    [[ -z $(git status --porcelain -- "$path") ]] || die "$path has uncommitted changes: commit them first"
  done
  for path in "$@"; do
    path=${path%/}
    mkdir -p "$ASIDE/$(dirname "$path")"
    echo "$path" >> "$ASIDE/.moved"  # recorded before the move: `back` skips what never left
    mv "$path" "$ASIDE/$path"
    echo "aside: $path"
  done
  ;;
back)
  [[ -e $ASIDE ]] || {
    echo "nothing aside"
    exit 0
  }
  [[ -f $ASIDE/.moved ]] || die "$ASIDE holds files but no list of what was moved: look at it by hand"
  while IFS= read -r path; do
    [[ -e $ASIDE/$path ]] || continue  # returned by an earlier, interrupted `back`
    [[ -e $path ]] && die "$path exists in the working tree again: compare it with $ASIDE/$path by hand"
    mkdir -p "$(dirname "$path")"
    mv "$ASIDE/$path" "$path"
    echo "back: $path"
  done < "$ASIDE/.moved"
  rm -f "$ASIDE/.moved"
  find "$ASIDE" -depth -type d -empty -delete 2>/dev/null || true
  [[ ! -e $ASIDE ]] || die "$ASIDE still holds something 'aside' did not put there: look at it by hand"
  ;;
status)
  if [[ -e $ASIDE ]]; then
    echo "aside (git sees these as deleted; run 'travel.sh back' before any commit):"
    if [[ -f $ASIDE/.moved ]]; then sed 's/^/  /' "$ASIDE/.moved"; else find "$ASIDE" -mindepth 1 -maxdepth 2; fi
    exit 1
  fi
  echo "nothing aside"
  ;;
*)
  sed -n '2,16p' "$SELF"
  exit 2
  ;;
esac
