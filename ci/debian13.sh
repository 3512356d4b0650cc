#!/usr/bin/env bash
# The Debian 13 stage: the README's test command (./setup.sh test, as root) on Debian 13
# (trixie: Python 3.13, strongSwan 6), run in a Debian 13 root file system entered with
# chroot. The kernel is this machine's (namespaces, netfilter, TUN are the host's); every
# user-space part (apt packages, Python, strongSwan, dnsmasq, Mininet's mnexec, the venv) is
# trixie's, installed there by setup.sh from a clean copy of the repository at HEAD.
#   ci/debian13.sh                 build (or reuse) the root file system, run ./setup.sh test
#   ci/debian13.sh tests/unit -x   arguments go to pytest (./setup.sh test ARGS)
#   ci/debian13.sh --fresh ...     build the root file system anew first
# Environment: DEBIAN13_ROOT  the root file system (default /var/tmp/mip-testbed-trixie);
#   it is kept between runs (apt packages and pip's cache in it make a second run faster)
#              DEBIAN13_MIRROR  the Debian mirror (default: the one this host's apt uses)
# Exit status: the test command's; 2 when the stage cannot be set up. Everything mounted is
# unmounted on exit, on failure and on Ctrl-C alike.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUITE=trixie
REPO_IN_ROOT=/srv/mip-testbed
say() { echo "debian13: $*" >&2; }
die() { say "$*"; exit 2; }

fresh=0
if [[ "${1:-}" == "--fresh" ]]; then fresh=1; shift; fi
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot, namespaces): sudo $0 $*"

# --- the host side: debootstrap and the archive keys that verify trixie's Release file ----
host_missing=()
for pkg in debootstrap debian-archive-keyring; do
  [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] ||
    host_missing+=("$pkg")
done
if ((${#host_missing[@]})); then
  say "installing on the host: ${host_missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${host_missing[@]}" >/dev/null
fi

# --- the mirror: the one this host's apt already uses (both sources formats), never a name
# of our own, so the stage reaches Debian the way the host is allowed to --------------------
# Prints "URI SUITE" for every enabled 'deb' source of the host.
host_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    # one-line format: deb [options] URI SUITE COMPONENTS...
    sed -E 's/#.*//; s/\[[^]]*\]//' "$f" | awk '$1 == "deb" { print $2, $3 }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    # deb822 format: stanzas separated by blank lines, Types/URIs/Suites/Enabled fields
    awk 'function flush() {
           if (types ~ /(^| )deb( |$)/ && enabled != "no")
             for (u in uris) for (s in suites) print uris[u], suites[s]
           types = ""; enabled = ""; delete uris; delete suites }
         /^[ \t]*#/ { next }
         /^[ \t]*$/ { flush(); next }
         { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "") }
         key == "types" { types = $0 }
         key == "enabled" { enabled = tolower($0) }
         key == "uris" { n = split($0, a, " "); for (i = 1; i <= n; i++) uris[i] = a[i] }
         key == "suites" { n = split($0, a, " "); for (i = 1; i <= n; i++) suites[i] = a[i] }
         END { flush() }' "$f"
  done
}
# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
mirror="${DEBIAN13_MIRROR:-}"
security=""
if [[ -n $codename ]]; then
  [[ -n $mirror ]] || mirror=$(host_sources | awk -v s="$codename" '$2 == s { print $1; exit }')
  security=$(host_sources | awk -v s="$codename-security" '$2 == s { print $1; exit }')
fi
[[ -n $mirror ]] || die "no Debian mirror in this host's apt sources: set DEBIAN13_MIRROR"
mirror="${mirror%/}"
security="${security%/}"

# --- the root file system, built once and reused ------------------------------------------
root="${DEBIAN13_ROOT:-/var/tmp/mip-testbed-trixie}"
mkdir -p "$(dirname "$root")"
root="$(realpath -m "$root")"
[[ $root != / && $root != "$here"* ]] || die "DEBIAN13_ROOT must be a folder of its own"
# One run at a time per root file system (a second would share its /run and apt).
exec 9>"$root.lock"
flock -n 9 || die "another run uses $root (lock $root.lock)"

# Mount points under a folder, deepest first (from the kernel's table, not from memory).
mounts_under() {
  awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
# Removes a folder tree only when nothing is mounted in it: rm -r through a bind mount of
# /dev or /sys would delete the host's own files.
remove_tree() {
  [[ -e $1 ]] || return 0
  [[ -z "$(mounts_under "$1")" ]] || die "refusing to remove $1: mounts left under it"
  rm -rf --one-file-system "$1"
}
# A run killed with SIGKILL could not unmount: those mounts are this stage's, release them.
for m in $(mounts_under "$root"); do umount -l "$m" && say "released a stale mount: $m"; done

if ((fresh)); then remove_tree "$root"; fi
if [[ ! -f $root/.debootstrap-done ]]; then
  remove_tree "$root"
  remove_tree "$root.partial"
  say "debootstrap --variant=minbase $SUITE from $mirror"
  started=$SECONDS
  # Built beside the final folder and renamed when complete: an interrupted build is never
  # taken for a finished one.
  # ca-certificates from the start: installed later, as a dependency pulled by setup.sh, its
  # postinst would rewrite the CA bundle carried in below (and drop the host's own CAs).
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$root.partial" "$mirror" \
    >"$root.debootstrap.log" 2>&1 ||
    { tail -n 20 "$root.debootstrap.log" >&2; die "debootstrap failed (log: $root.debootstrap.log)"; }
  touch "$root.partial/.debootstrap-done"
  mv "$root.partial" "$root"
  say "debootstrap took $((SECONDS - started)) s"
fi

# --- the host's package-manager settings, carried in (refreshed on every run) -------------
# apt: the same mirror with trixie's suites, and the host's Acquire settings (proxies,
# validity checks of a snapshot or caching mirror, a CA for https mirrors).
rm -f "$root/etc/apt/sources.list"
{
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' \
    "$mirror" "$SUITE" "$SUITE"
  printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
  if [[ -n $security ]]; then
    printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$security" "$SUITE"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
  fi
} >"$root/etc/apt/sources.list.d/debian.sources"
apt-config dump 2>/dev/null |
  grep -E '^Acquire::((https?|ftp)(::[^ ]+)?::(Proxy|CaInfo|Verify-Peer|Verify-Host)|Check-Valid-Until|Check-Date) ' \
    >"$root/etc/apt/apt.conf.d/00host-acquire" || true
cp -L /etc/resolv.conf "$root/etc/resolv.conf"

# pip: its configuration files (system, XDG, root's own) and the files and local indexes
# they name (CA bundle, constraints, find-links folders, file:// indexes); PIP_* variables
# and the CA variables go in through the environment below.
pkg_env=()  # the host's package-manager variables, as they are
other_env=()
while IFS='=' read -r name value; do
  case "$name" in
    PIP_* | SSL_CERT_FILE | SSL_CERT_DIR | REQUESTS_CA_BUNDLE | CURL_CA_BUNDLE | \
      http_proxy | https_proxy | no_proxy | HTTP_PROXY | HTTPS_PROXY | NO_PROXY)
      pkg_env+=("$name=$value") ;;
    CI | TESTBED_*) other_env+=("$name=$value") ;;  # the CI flag and the testbed's knobs
  esac
done < <(env)
carried_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
  LANG=C.UTF-8 "TERM=${TERM:-dumb}" "${pkg_env[@]}" "${other_env[@]}")
pip_configs=()
for f in /etc/pip.conf /etc/xdg/pip/pip.conf "${HOME:-/root}/.config/pip/pip.conf" \
  "${HOME:-/root}/.pip/pip.conf" "${PIP_CONFIG_FILE:-}"; do
  [[ -n $f && -f $f ]] || continue
  dest="$f"
  case "$f" in "${HOME:-/root}"/*) dest="/root/${f#"${HOME:-/root}"/}" ;; esac
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$f" "$root$dest"
  pip_configs+=("$f")
done
[[ -d /etc/xdg/pip ]] && mkdir -p "$root/etc/xdg" && cp -rL /etc/xdg/pip "$root/etc/xdg/"
# The host's local CAs (Debian's place for them): any update-ca-certificates in the root
# file system keeps them in its bundle.
if [[ -d /usr/local/share/ca-certificates ]]; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp -rL /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
# Absolute paths in those files and variables: files are copied, folders mounted read-only
# (a local index "…/simple" links to its files beside it: its parent is mounted).
carried_paths() {
  {
    ((${#pip_configs[@]})) && cat "${pip_configs[@]}"
    ((${#pkg_env[@]})) && printf '%s\n' "${pkg_env[@]#*=}"
    cat "$root/etc/apt/apt.conf.d/00host-acquire"
  } | tr -s ' \t="'"'"',;' '\n' | grep -E '^(file://)?/' | sed -E 's|^file://||; s|/+$||' |
    sort -u
}
ro_dirs=()
while read -r p; do
  [[ -n $p && -e $p ]] || continue
  case "$p" in /usr/* | /bin/* | /sbin/* | /lib* | /proc/* | /sys/* | /dev/* | /run/*) continue ;; esac
  if [[ -f $p ]]; then
    mkdir -p "$root$(dirname "$p")" && cp -L "$p" "$root$p"
  elif [[ -d $p && $p != /etc/* ]]; then
    [[ $(basename "$p") == simple ]] && p=$(dirname "$p")
    ro_dirs+=("$p")
  fi
done < <(carried_paths)

# --- a clean copy of the repository at HEAD (what is committed, nothing else) -------------
[[ -z "$(git -C "$here" status --porcelain --untracked-files=no)" ]] ||
  say "note: uncommitted changes are not tested (the copy is HEAD, $(git -C "$here" rev-parse --short HEAD))"
remove_tree "$root$REPO_IN_ROOT"
mkdir -p "$root$REPO_IN_ROOT"
git -C "$here" archive --format=tar HEAD | tar -x -C "$root$REPO_IN_ROOT"

# --- mounts, all undone by the exit trap ---------------------------------------------------
mounted=()  # in mount order; "L:" marks a recursive bind, unmounted lazily
# shellcheck disable=SC2317  # called by the traps
cleanup() {
  local status=$? i m p pids n
  trap - EXIT INT TERM
  set +e
  # Processes still running in the root file system were started by this run (charon,
  # dnsmasq, agents of a test that failed): they would hold its mounts and namespaces.
  pids=()
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/root" 2>/dev/null)" == "$root" ]] && pids+=("${p#/proc/}")
  done
  if ((${#pids[@]})); then
    say "stopping ${#pids[@]} process(es) left in the root file system: ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      n=0
      for p in "${pids[@]}"; do [[ -e /proc/$p ]] && n=1; done
      ((n)) || break
      sleep 0.5
    done
    kill -KILL "${pids[@]}" 2>/dev/null
  fi
  # Named network namespaces the tests left behind live under this root's /run/netns.
  n=0
  for p in "$root"/run/netns/*; do
    [[ -e $p ]] || continue
    umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null
    rm -f "$p" && n=$((n + 1))
  done
  ((n)) && say "removed $n network namespace(s) left behind by the run"
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    m=${mounted[i]}
    if [[ $m == L:* ]]; then
      umount -R -l "${m#L:}"
    else
      umount -R "$m" 2>/dev/null || umount -R -l "$m"
    fi
  done
  m=$(mounts_under "$root")
  [[ -z $m ]] || say "warning: still mounted: $m"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mnt() { mount "$@" && mounted+=("${*: -1}"); }
rbind() {  # recursive bind, made a slave so no unmount inside travels back to the host
  mount --rbind "$1" "$2" && mounted+=("L:$2") && mount --make-rslave "$2"
}
# The root itself must be a mount point: 'ip netns exec' and 'ip -n' make "/" a slave in
# their own mount namespace, and on a plain folder that fails ("mount --make-rslave /":
# Invalid argument). A slave too: nothing mounted inside travels back to the host.
mnt --bind "$root" "$root"
mount --make-rslave "$root"
mnt -t proc proc "$root/proc"
rbind /sys "$root/sys"
mnt --bind /dev "$root/dev"
mnt --bind /dev/pts "$root/dev/pts"
mnt -t tmpfs -o mode=1777 shm "$root/dev/shm"  # the host's /dev/shm stays the host's
mnt -t tmpfs -o mode=755 run "$root/run"        # /run/netns of this run's namespaces only
for d in "${ro_dirs[@]}"; do
  mkdir -p "$root$d"
  mnt --bind "$d" "$root$d" && mount -o remount,bind,ro "$root$d"
done

in_root() {
  # shellcheck disable=SC2016  # expanded by the shell inside
  chroot "$root" /usr/bin/env -i "${carried_env[@]}" /bin/bash -c \
    'cd "$0" && exec ./setup.sh "$@"' "$REPO_IN_ROOT" "$@" 9>&-  # the lock stays ours
}
say "root $root ($(cat "$root/etc/debian_version")), repository at $REPO_IN_ROOT"
started=$SECONDS
in_root || die "./setup.sh (install) failed inside the root file system"
say "setup (apt + venv) took $((SECONDS - started)) s; python: $(
  chroot "$root" "$REPO_IN_ROOT/.venv/bin/python" -VV | head -n 1)"
started=$SECONDS
set +e
in_root test "$@"
status=$?
set -e
say "./setup.sh test exited $status after $((SECONDS - started)) s"
exit "$status"
