#!/bin/sh
# Builds a Caddy container image from Debian's caddy package, inside the host, with no
# registry: apt-get download, unpack, copy the binary with the shared libraries it
# links (Debian's caddy is dynamically linked) and the CA bundle into an empty root,
# then `docker import` it. Usage: build-debian-caddy-image.sh IMAGE
set -eu

image="$1"
work="$(mktemp -d /var/tmp/caddy-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT
cd "$work"

apt-get download caddy
dpkg-deb -x caddy_*.deb pkg

root="$work/root"
mkdir -p "$root/usr/bin" "$root/etc/ssl/certs" "$root/etc/caddy" "$root/data" "$root/config"
mkdir -m 1777 "$root/tmp"
cp pkg/usr/bin/caddy "$root/usr/bin/caddy"

# Every library ldd resolves, plus the dynamic loader, at the paths ldd prints (the
# loader's path is the one recorded in the binary).
ldd pkg/usr/bin/caddy | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
	while read -r lib; do
		cp --parents --dereference "$lib" "$root/"
	done

cp --dereference /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

# Caddy keeps its state under $XDG_DATA_HOME/caddy (certificates, the local CA) and
# its autosaved config under $XDG_CONFIG_HOME/caddy: /data and /config, as in the
# upstream image, so the same volumes work for both image sources.
tar -C "$root" -c . | docker import \
	--change 'ENV XDG_DATA_HOME=/data' \
	--change 'ENV XDG_CONFIG_HOME=/config' \
	--change 'ENV HOME=/root' \
	--change 'WORKDIR /srv' \
	--change 'ENTRYPOINT ["/usr/bin/caddy"]' \
	--change 'CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]' \
	--message "caddy from Debian's package $(dpkg-deb -f caddy_*.deb Version)" \
	- "$image"

# Fail the build here, not at container start, if a library is missing.
docker run --rm "$image" version
