#!/bin/sh
# Installs a Kestrel .tar.gz bundle (for systems without dpkg, or to try it without apt):
#   tar xzf kestrel_VERSION_BOARD_arm64.tar.gz && sudo ./kestrel_VERSION_BOARD_arm64/install.sh
# Copies the tree into /, keeps an existing /etc/kestrel/kestrel.toml, creates the `kestrel`
# user in the `video` group, and enables and starts the service. The .deb does the same.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo $0)" >&2
    exit 2
fi
install -D -m 755 "$here/usr/bin/kestrel" /usr/bin/kestrel
install -d /usr/share/kestrel/models /usr/share/doc/kestrel
cp "$here"/usr/share/kestrel/models/* /usr/share/kestrel/models/
cp "$here/usr/share/doc/kestrel/README.boards.md" /usr/share/doc/kestrel/
if ! getent passwd kestrel >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/kestrel --shell /usr/sbin/nologin kestrel
fi
if getent group video >/dev/null; then
    usermod -a -G video kestrel
fi
# The settings may hold a broker password or a token: 0640 root:kestrel, as the .deb installs
# them (the service refuses a config with a secret that other users can read).
if [ -e /etc/kestrel/kestrel.toml ]; then
    install -D -m 640 -o root -g kestrel "$here/etc/kestrel/kestrel.toml" /etc/kestrel/kestrel.toml.new
    echo "kept /etc/kestrel/kestrel.toml; the bundle's version is /etc/kestrel/kestrel.toml.new"
else
    install -D -m 640 -o root -g kestrel "$here/etc/kestrel/kestrel.toml" /etc/kestrel/kestrel.toml
fi
if [ -d /run/systemd/system ]; then
    install -D -m 644 "$here/usr/lib/systemd/system/kestrel.service" /usr/lib/systemd/system/kestrel.service
    # Jetson bundles: the drop-in that keeps /tmp shared for nvargus-daemon's socket.
    if [ -e "$here/usr/lib/systemd/system/kestrel.service.d/argus.conf" ]; then
        install -D -m 644 "$here/usr/lib/systemd/system/kestrel.service.d/argus.conf" \
            /usr/lib/systemd/system/kestrel.service.d/argus.conf
    fi
    systemctl daemon-reload
    systemctl enable --now kestrel
    echo "kestrel service started: journalctl -u kestrel -f"
else
    echo "no systemd: start it with /usr/bin/kestrel run --config /etc/kestrel/kestrel.toml"
fi
