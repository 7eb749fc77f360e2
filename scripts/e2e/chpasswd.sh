#!/bin/sh
# chpasswd(8) for busybox test images (busybox has no chpasswd applet):
# "user:password" lines on stdin set /etc/shadow entries; with -e the
# passwords are already crypt(3) hashes, else busybox mkpasswd hashes them
# (SHA-512). Exits non-zero, with a message, on a bad line or an unknown
# user, as chpasswd does. Shipped as /usr/sbin/chpasswd by
# scripts/e2e/under_libvirt.py so that guest-set-user-password works there.
enc=0
[ "$1" = "-e" ] && enc=1
umask 077
while IFS= read -r line || [ -n "$line" ]; do
    user=${line%%:*}
    pass=${line#*:}
    if [ "$user" = "$line" ] || [ -z "$user" ]; then
        echo "chpasswd: line without 'user:password'" >&2
        exit 1
    fi
    if ! grep -q "^$user:" /etc/passwd; then
        echo "chpasswd: unknown user '$user'" >&2
        exit 1
    fi
    if [ "$enc" = 1 ]; then
        hash=$pass
    else
        hash=$(printf '%s\n' "$pass" | mkpasswd -m sha512 -P 0) || exit 1
    fi
    touch /etc/shadow
    { grep -v "^$user:" /etc/shadow; echo "$user:$hash:0:0:99999:7:::"; } >/etc/shadow.new &&
        mv /etc/shadow.new /etc/shadow || exit 1
done
