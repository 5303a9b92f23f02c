#!/bin/sh
# Builds a one-binary web server image from Debian's busybox-static, with no registry:
# an empty root holding busybox and a page, `docker import`ed with httpd as its command.
# Usage: build-httpd-image.sh IMAGE
set -eu

image="$1"
root="$(mktemp -d /var/tmp/boma-cat-httpd.XXXXXX)"
trap 'rm -rf "$root"' EXIT

mkdir -p "$root/bin" "$root/www"
cp /bin/busybox "$root/bin/busybox"
printf 'boma catalogue mode 5: a container behind a published port\n' >"$root/www/index.html"

tar -C "$root" -c . | docker import \
	--change 'CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]' \
	--message "busybox httpd for the boma catalogue (mode 5)" \
	- "$image"
