#!/usr/bin/env bash
# Build flashback's image on this machine without a container registry, then run it:
#   1. a Debian base from Debian's own packages (mmdebstrap), loaded with podman import;
#   2. deploy/Containerfile built on it with buildah (chroot isolation: no daemon, no setrlimit);
#   3. inside the image: flashback serve --check on deploy/flashback.toml, and flashback score --sample.
# Prints the build time and the image's size.  Usage: deploy/build-image.sh [cpu|gpu]
# Needs: mmdebstrap, podman, buildah (Debian packages) and PyPI; minutes, and about 10 GB of disk.
# (--format docker: the OCI format has no HEALTHCHECK)
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:-cpu}
base=localhost/debian-base:bookworm
image=localhost/flashback:$variant
work=$(mktemp -d)
ctr=""
trap '[ -n "$ctr" ] && buildah rm "$ctr" >/dev/null; rm -rf "$work"' EXIT
t0=$(date +%s)
if ! podman image exists "$base"; then
  mmdebstrap --quiet --variant=minbase bookworm "$work/rootfs.tar"
  podman import --quiet "$work/rootfs.tar" "$base" >/dev/null
fi
t1=$(date +%s)
# this machine reaches PyPI through a proxy whose CA only the host trusts: pip in the build gets the host's bundle
ca=(); [ -r /etc/ssl/certs/ca-certificates.crt ] && ca=(--volume /etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro --build-arg PIP_CERT=/host-ca.crt)
buildah build --quiet --layers --format docker --isolation chroot -f deploy/Containerfile --build-arg BASE="$base" --build-arg VARIANT="$variant" "${ca[@]}" -t "$image" .
t2=$(date +%s)
ctr=$(buildah from "$image")
echo "== flashback serve --check, inside the image"
buildah run --isolation chroot --env FLASHBACK_API_READ_TOKEN=read-token-for-the-check \
  --env FLASHBACK_API_WRITE_TOKEN=write-token-for-the-check --env MQTT_PASSWORD=x --env CAMERA_PASSWORD=x \
  -v "$PWD/deploy/flashback.toml:/config/flashback.toml:ro" "$ctr" -- flashback serve --check
echo "== flashback score --sample, inside the image"
# real weights come from the Hugging Face hub, which a registry-only network cannot reach: here the
# same architecture runs with random weights (the scores mean nothing; the path is the real one)
buildah run --isolation chroot --env HF_HUB_OFFLINE=1 "$ctr" -- \
  flashback score --sample --encoder ViT-B-32 --pretrained random --device cpu --db /tmp/sample.duckdb
t3=$(date +%s)
size=$(podman image inspect "$image" --format '{{.Size}}')
echo "base: $((t1 - t0)) s, image build: $((t2 - t1)) s, runs inside: $((t3 - t2)) s; $image: $((size / 1000000)) MB"
