#!/bin/sh
# prepare-base.sh: runs INSIDE the freshly debootstrapped base root (chroot), called by `testhost base`.
# Its content is part of the base cache key: editing this file rebuilds the base.
# Per-instance things (hostname, address, machine-id, host keys, authorized_keys, /etc/hosts)
# are written by `testhost up` into each instance's overlay, not here.
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

# Services: networkd configures host0 (per-instance .network file), sshd answers on 22.
systemctl enable systemd-networkd.service ssh.service
systemctl mask systemd-resolved.service
# apt timers would take the dpkg lock in the middle of a test.
systemctl disable apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true
systemctl mask apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service
# No DNS in guests: mirror names come from /etc/hosts (written per instance).
printf '# no DNS in test hosts: names come from /etc/hosts\n' > /etc/resolv.conf
: > /etc/machine-id   # per instance

# nspawn mounts the cgroup v1 controllers read-only; Docker in the guest needs them writable.
# (a plain remount,rw fails on memory with "mount point is busy": remount,bind,rw works)
cat > /etc/systemd/system/cgroup-rw.service <<'UNIT'
[Unit]
Description=Remount cgroup v1 controllers read-write (for Docker inside nspawn)
DefaultDependencies=no
Before=sysinit.target
ConditionVirtualization=container

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for c in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$c"; done'

[Install]
WantedBy=sysinit.target
UNIT
systemctl enable cgroup-rw.service

# SSH: no host keys in the base (every instance gets fresh ones from `testhost up`);
# the drop-in regenerates missing keys anyway, should an instance be booted otherwise.
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/hostkeys.conf <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
cat > /etc/ssh/sshd_config.d/10-testhost.conf <<'CONF'
PermitRootLogin prohibit-password
CONF

# Users: deploy = passwordless sudo; secure = sudo needs the password s3cret-Pa55.
for u in deploy secure; do
  id "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
done
usermod -p '*' deploy            # no password, but not "locked" (key login works)
echo 'secure:s3cret-Pa55' | chpasswd
echo 'deploy ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy
echo 'secure ALL=(ALL:ALL) ALL' > /etc/sudoers.d/secure
chmod 0440 /etc/sudoers.d/deploy /etc/sudoers.d/secure
visudo -c >/dev/null

apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/*.log /var/log/apt/* /tmp/* 2>/dev/null || true
