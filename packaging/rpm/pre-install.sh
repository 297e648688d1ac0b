getent group mirrorfarm >/dev/null || groupadd --system mirrorfarm
getent passwd mirrorfarm >/dev/null || useradd --system --gid mirrorfarm --home-dir /var/lib/mirrorfarm --no-create-home --shell /sbin/nologin --comment "mirrorfarm services" mirrorfarm
exit 0
