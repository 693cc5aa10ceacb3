#!/bin/sh
# An office behind NAT and a cloud, as Linux network namespaces, to try the
# registrar (contrib/kamailio) and pushes through it by hand:
#
#   ap-office 192.168.77.10 --- 192.168.77.1 ap-router 203.0.113.100 --- ap-cloud
#   (the phones)                 (masquerade, no way in)  203.0.113.1  (autoprov)
#                                                         203.0.113.2  (Kamailio)
#
# The router lets in only replies to flows the office opened (conntrack), so
# a packet reaches a phone only from the exact address:port the phone sent
# to: the registrar can relay a NOTIFY, autoprov cannot send one directly.
#
# Usage: tests/nat/testbed.sh up|down|status      (as root)
# Then:  ip netns exec ap-cloud kamailio ...;  ip netns exec ap-office sipp ...
# Every name and address below can be overridden from the environment.
set -eu

CLOUD_NS=${CLOUD_NS:-ap-cloud}
ROUTER_NS=${ROUTER_NS:-ap-router}
OFFICE_NS=${OFFICE_NS:-ap-office}
AUTOPROV_IP=${AUTOPROV_IP:-203.0.113.1}
KAMAILIO_IP=${KAMAILIO_IP:-203.0.113.2}
WAN_IP=${WAN_IP:-203.0.113.100}
WAN_PREFIX=${WAN_PREFIX:-24}
LAN_GW=${LAN_GW:-192.168.77.1}
PHONE_IP=${PHONE_IP:-192.168.77.10}
LAN_PREFIX=${LAN_PREFIX:-24}

die() { echo "testbed: $*" >&2; exit 1; }

need() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it creates network namespaces)"
    for tool in ip nft; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (install iproute2 and nftables)"
    done
}

in_ns() { ns=$1; shift; ip netns exec "$ns" "$@"; }

down() {
    # Deleting a namespace deletes its ends of the veth pairs, and so the pairs.
    for ns in "$OFFICE_NS" "$ROUTER_NS" "$CLOUD_NS"; do
        if ip netns list | grep -qw "^$ns"; then
            ip netns delete "$ns"
            echo "removed namespace $ns"
        fi
    done
}

up() {
    down
    for ns in "$CLOUD_NS" "$ROUTER_NS" "$OFFICE_NS"; do
        ip netns add "$ns"
        in_ns "$ns" ip link set lo up
    done

    # Interface names are per namespace, so short fixed ones do.
    ip link add wan netns "$ROUTER_NS" type veth peer name cloud0 netns "$CLOUD_NS"
    ip link add lan netns "$ROUTER_NS" type veth peer name eth0 netns "$OFFICE_NS"

    in_ns "$CLOUD_NS" ip addr add "$AUTOPROV_IP/$WAN_PREFIX" dev cloud0
    in_ns "$CLOUD_NS" ip addr add "$KAMAILIO_IP/$WAN_PREFIX" dev cloud0
    in_ns "$CLOUD_NS" ip link set cloud0 up

    in_ns "$ROUTER_NS" ip addr add "$WAN_IP/$WAN_PREFIX" dev wan
    in_ns "$ROUTER_NS" ip addr add "$LAN_GW/$LAN_PREFIX" dev lan
    in_ns "$ROUTER_NS" ip link set wan up
    in_ns "$ROUTER_NS" ip link set lan up
    in_ns "$ROUTER_NS" sysctl -qw net.ipv4.ip_forward=1

    in_ns "$OFFICE_NS" ip addr add "$PHONE_IP/$LAN_PREFIX" dev eth0
    in_ns "$OFFICE_NS" ip link set eth0 up
    in_ns "$OFFICE_NS" ip route add default via "$LAN_GW"

    # A home or office router: everything out, only replies in. Unsolicited
    # packets to the public address (no port forwarding) are dropped, counted.
    in_ns "$ROUTER_NS" nft -f - <<EOF
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
}
table ip filter {
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" counter drop
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan" oifname "wan" accept
        iifname "wan" counter drop
    }
}
EOF

    echo "namespace $CLOUD_NS:  cloud0 $AUTOPROV_IP/$WAN_PREFIX (autoprov), $KAMAILIO_IP/$WAN_PREFIX (Kamailio)"
    echo "namespace $ROUTER_NS: wan $WAN_IP/$WAN_PREFIX (masquerade), lan $LAN_GW/$LAN_PREFIX; new flows from wan dropped"
    echo "namespace $OFFICE_NS: eth0 $PHONE_IP/$LAN_PREFIX via $LAN_GW (the phones)"
}

status() {
    for ns in "$CLOUD_NS" "$ROUTER_NS" "$OFFICE_NS"; do
        if ip netns list | grep -qw "^$ns"; then
            echo "== $ns"
            in_ns "$ns" ip -brief addr show
        else
            echo "== $ns: absent"
        fi
    done
    if ip netns list | grep -qw "^$ROUTER_NS"; then
        echo "== $ROUTER_NS ruleset"
        in_ns "$ROUTER_NS" nft list ruleset
        if command -v conntrack >/dev/null 2>&1; then
            echo "== $ROUTER_NS conntrack"
            in_ns "$ROUTER_NS" conntrack -L 2>/dev/null || true
        fi
    fi
}

case "${1:-}" in
    up) need; up ;;
    down) need; down ;;
    status) need; status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
