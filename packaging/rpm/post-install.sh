install -d -o mirrorfarm -g mirrorfarm -m 0750 /var/lib/mirrorfarm
install -d -o root -g mirrorfarm -m 0750 /etc/mirrorfarm
exit 0
