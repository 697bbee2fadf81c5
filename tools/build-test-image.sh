#!/usr/bin/env bash
# Builds a small multi-layer OCI image layout from Debian's busybox-static, for tests, examples and
# benchmarks (no outside registry is reachable here). Three layers:
#   1 base:   /bin/busybox, absolute applet symlinks (/bin/sh -> /bin/busybox ...), /etc/passwd,
#             /etc/group, /etc/removed-later, /opq/{a,keep}, /tmp (1777)
#   2 update: /etc/layer2, a whiteout of /etc/removed-later, /opq made opaque holding only /opq/b,
#             /usr/share/hard{1,2} (a hardlink pair)
#   3 top:    /etc/layer3 and, with --pad-mb N, N MiB of data spread over files in /pad
# Usage: tools/build-test-image.sh --out DIR [--tag TAG] [--compress gzip|zstd|none] [--pad-mb N]
#        [--docker-archive FILE]   (also writes a `docker save`-style tarball of the same image)
set -euo pipefail
out= tag=latest compress=gzip pad=0 docker=
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --compress) compress=$2; shift 2 ;;
    --pad-mb) pad=$2; shift 2 ;;
    --docker-archive) docker=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build-test-image: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "build-test-image: --out DIR is required" >&2; exit 2; }
case "$compress" in gzip|zstd|none) ;; *) echo "build-test-image: --compress: expected gzip, zstd or none" >&2; exit 2 ;; esac
[[ "$pad" =~ ^[0-9]+$ ]] || { echo "build-test-image: --pad-mb: expected a number" >&2; exit 2; }
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "build-test-image: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out/blobs/sha256"

# Layer staging directories.
l1=$work/l1 l2=$work/l2 l3=$work/l3
mkdir -p "$l1/bin" "$l1/etc" "$l1/opq" "$l1/tmp" "$l1/root"
cp "$busybox" "$l1/bin/busybox"
for a in sh ls cat echo id true false sleep env mkdir rm cp mv ps grep hostname wc head; do ln -s /bin/busybox "$l1/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$l1/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$l1/etc/group"
echo 'from layer 1' > "$l1/etc/removed-later"
echo 'a from layer 1' > "$l1/opq/a"
echo 'keep from layer 1' > "$l1/opq/keep"
chmod 1777 "$l1/tmp"

mkdir -p "$l2/etc" "$l2/opq" "$l2/usr/share"
echo 'from layer 2' > "$l2/etc/layer2"
: > "$l2/etc/.wh.removed-later"
: > "$l2/opq/.wh..wh..opq"
echo 'b from layer 2' > "$l2/opq/b"
echo 'hardlinked' > "$l2/usr/share/hard1"
ln "$l2/usr/share/hard1" "$l2/usr/share/hard2"

mkdir -p "$l3/etc"
echo 'from layer 3' > "$l3/etc/layer3"
if [ "$pad" -gt 0 ]; then
  # Half incompressible, half text-like, in 1 MiB files: closer to a real image than zeros.
  mkdir -p "$l3/pad"
  for i in $(seq 1 "$pad"); do
    if [ $((i % 2)) -eq 0 ]; then head -c 1048576 /dev/urandom > "$l3/pad/r$i"
    else (yes "berth test image padding line $i" || true) | head -c 1048576 > "$l3/pad/t$i"; fi
  done
fi

blob() { # file -> prints sha256 hex, moves it into the layout
  local h; h=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$out/blobs/sha256/$h"; echo "$h"
}

diff_ids=() layers=() docker_layers=()
for l in 1 2 3; do
  tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@1700000000 --format=gnu -C "$work/l$l" -cf "$work/layer$l.tar" .
  diff=$(sha256sum "$work/layer$l.tar" | cut -d' ' -f1)
  diff_ids+=("\"sha256:$diff\"")
  [ -n "$docker" ] && cp "$work/layer$l.tar" "$work/docker-layer$l.tar" && docker_layers+=("$diff")
  case "$compress" in
    gzip) gzip -n -6 "$work/layer$l.tar"; f=$work/layer$l.tar.gz; mt=application/vnd.oci.image.layer.v1.tar+gzip ;;
    zstd) zstd -q -3 --rm "$work/layer$l.tar"; f=$work/layer$l.tar.zst; mt=application/vnd.oci.image.layer.v1.tar+zstd ;;
    none) f=$work/layer$l.tar; mt=application/vnd.oci.image.layer.v1.tar ;;
  esac
  size=$(stat -c %s "$f"); h=$(blob "$f")
  layers+=("{\"mediaType\":\"$mt\",\"digest\":\"sha256:$h\",\"size\":$size}")
done
join() { local IFS=,; echo "$*"; }

printf '{"architecture":"%s","os":"linux","created":"2023-11-14T22:13:20Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[{"created_by":"tools/build-test-image.sh"}]}' \
  "$arch" "$(join "${diff_ids[@]}")" > "$work/config.json"
csize=$(stat -c %s "$work/config.json")
[ -n "$docker" ] && cp "$work/config.json" "$work/docker-config.json"
ch=$(blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
  "$ch" "$csize" "$(join "${layers[@]}")" > "$work/manifest.json"
msize=$(stat -c %s "$work/manifest.json"); mh=$(blob "$work/manifest.json")
printf '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"},"platform":{"architecture":"%s","os":"linux"}}]}' \
  "$mh" "$msize" "$tag" "$arch" > "$out/index.json"

if [ -n "$docker" ]; then
  # The classic `docker save` layout: <id>/layer.tar, <config>.json, manifest.json.
  d=$work/docker; mkdir -p "$d"
  cp "$work/docker-config.json" "$d/$ch.json"
  dl=()
  for i in 0 1 2; do mkdir -p "$d/${docker_layers[$i]}"; mv "$work/docker-layer$((i + 1)).tar" "$d/${docker_layers[$i]}/layer.tar"; dl+=("\"${docker_layers[$i]}/layer.tar\""); done
  printf '[{"Config":"%s.json","RepoTags":["berth.test/busybox:%s"],"Layers":[%s]}]' "$ch" "$tag" "$(join "${dl[@]}")" > "$d/manifest.json"
  tar --sort=name --numeric-owner --owner=0 --group=0 -C "$d" -cf "$docker" .
fi
echo "sha256:$mh"
