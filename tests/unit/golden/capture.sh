#!/bin/sh
# Re-captures the golden DHCP packets in this directory from real clients.
#
# Run as root on Debian 12 from the repository root:   sh tests/unit/golden/capture.sh
# Needs: iproute2, tcpdump, busybox (udhcpd, udhcpc), isc-dhcp-client, dhcpcd,
# isc-dhcp-relay. Everything happens in throw-away network namespaces; dhcpcd runs in a
# private mount namespace with tmpfs over its state directories so that its DUID and
# lease files never touch the host; every client runs with a no-op script so nothing
# outside the namespaces is configured.
#
# Topology (addresses from 10.77.0.0/16, private to the namespaces):
#
#   CLI  c0 ── s0 SRV 10.77.0.1/24  busybox udhcpd (range .100-.150, lease 120 s)
#   RCL  c1 ── rd0 RLY ru0 ── s1 SRV 10.77.2.1/24  second udhcpd for the relayed subnet
#              10.77.1.1/24 10.77.2.2/24   dhcrelay -a -id rd0 -iu ru0 10.77.2.1
#
# Output (overwritten), each a pcap of UDP 67/68 on the server-side interface unless said:
#   dhclient.pcap           ISC dhclient 4.4.3-P1, MAC 02:00:00:00:c1:01, hostname gc-dhclient
#   udhcpc.pcap             busybox udhcpc 1.35.0, MAC 02:00:00:00:c1:02
#   dhcpcd.pcap             dhcpcd 9.4.1 with Debian's /etc/dhcpcd.conf, MAC 02:00:00:00:c1:03
#   dhcrelay_upstream.pcap  udhcpc behind ISC dhcrelay 4.4.3-P1 -a, as seen by the server
#   dhcrelay_downstream.pcap  the same exchange on the relay's client side (rd0)
# and next to each, <name>.txt: its `tcpdump -n -e -vv` dissection.
#
# Note: frames the kernel sends from an ordinary UDP socket on veth (dhcrelay, and udhcpd's
# replies to the relay) carry a partial UDP checksum (CHECKSUM_PARTIAL: only the folded
# pseudo-header sum); tcpdump flags them "bad udp cksum". They are kept as captured:
# tests/unit/test_wire.py uses them to pin down how parse_udp treats them.
#
# The files checked in were captured on 2026-11-25 with the versions above. A new capture
# changes xids, addresses handed out and dhcpcd's DUID time: the expected values in
# tests/unit/test_dhcp_*.py (read from the .txt dissections) must then be updated.
set -eu

OUT=$(cd "$(dirname "$0")" && pwd)
P="gc$$"
SRV="${P}srv" CLI="${P}cli" RLY="${P}rly" RCL="${P}rcl"
TMP=$(mktemp -d)
PIDS=""

cleanup() {
	for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
	sleep 0.3
	for ns in "$SRV" "$CLI" "$RLY" "$RCL"; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

for ns in "$SRV" "$CLI" "$RLY" "$RCL"; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done
ip link add s0 netns "$SRV" type veth peer name c0 netns "$CLI"
ip link add rd0 netns "$RLY" type veth peer name c1 netns "$RCL"
ip link add ru0 netns "$RLY" type veth peer name s1 netns "$SRV"
ip -n "$SRV" addr add 10.77.0.1/24 dev s0
ip -n "$SRV" addr add 10.77.2.1/24 dev s1
ip -n "$RLY" addr add 10.77.1.1/24 dev rd0
ip -n "$RLY" addr add 10.77.2.2/24 dev ru0
ip -n "$RCL" link set c1 address 02:00:00:00:c1:04
for l in "$SRV s0" "$SRV s1" "$RLY rd0" "$RLY ru0" "$RCL c1"; do
	set -- $l
	ip -n "$1" link set "$2" up
done
ip -n "$SRV" route add 10.77.1.0/24 via 10.77.2.2

udhcpd_conf() { # iface start end router
	cat <<EOF
interface $1
start $2
end $3
lease_file $TMP/udhcpd-$1.leases
pidfile $TMP/udhcpd-$1.pid
opt subnet 255.255.255.0
opt router $4
opt dns 10.77.0.53
opt domain golden.test
opt lease 120
EOF
}
udhcpd_conf s0 10.77.0.100 10.77.0.150 10.77.0.1 >"$TMP/s0.conf"
udhcpd_conf s1 10.77.1.100 10.77.1.150 10.77.1.1 >"$TMP/s1.conf"
touch "$TMP/udhcpd-s0.leases" "$TMP/udhcpd-s1.leases"
ip netns exec "$SRV" busybox udhcpd -f "$TMP/s0.conf" &
PIDS="$PIDS $!"
ip netns exec "$SRV" busybox udhcpd -f "$TMP/s1.conf" &
PIDS="$PIDS $!"

start_tcpdump() { # ns iface file; sets T to the tcpdump pid
	ip netns exec "$1" tcpdump --immediate-mode -Z root -U -s 0 -i "$2" -w "$TMP/$3" 'udp port 67 or udp port 68' \
		>"$TMP/$3.log" 2>&1 &
	T=$!
	PIDS="$PIDS $T"
}
stop_tcpdump() { # pid file
	sleep 1.5
	kill "$1"
	wait "$1" || true
	cp "$TMP/$2" "$OUT/$2"
}
client_mac() {
	ip -n "$CLI" link set c0 down
	ip -n "$CLI" link set c0 address "$1"
	ip -n "$CLI" link set c0 up
	sleep 1
}

# ISC dhclient with Debian's /etc/dhcp/dhclient.conf (send host-name = gethostname()).
client_mac 02:00:00:00:c1:01
start_tcpdump "$SRV" s0 dhclient.pcap
sleep 1
ip netns exec "$CLI" unshare --uts sh -c "hostname gc-dhclient; \
	timeout 6 dhclient -4 -d -1 -sf /bin/true -lf $TMP/dhclient.leases -pf $TMP/dhclient.pid c0" \
	>/dev/null 2>&1 || true
stop_tcpdump "$T" dhclient.pcap

# busybox udhcpc: client-id 01+MAC, vendor class "udhcp 1.35.0".
client_mac 02:00:00:00:c1:02
start_tcpdump "$SRV" s0 udhcpc.pcap
sleep 1
ip netns exec "$CLI" timeout 20 udhcpc -i c0 -f -q -n -t 3 -T 2 -s /bin/true \
	>/dev/null 2>&1 || true
stop_tcpdump "$T" udhcpc.pcap

# dhcpcd with Debian's config: client-id 0xff + IAID + DUID-LLT (RFC 4361), rapid commit.
client_mac 02:00:00:00:c1:03
start_tcpdump "$SRV" s0 dhcpcd.pcap
sleep 1
ip netns exec "$CLI" unshare -m sh -c "mount -t tmpfs tmpfs /var/lib/dhcpcd; \
	mkdir -p /run/dhcpcd; mount -t tmpfs tmpfs /run/dhcpcd; \
	timeout 20 dhcpcd -4 -1 -B -L -t 10 -c /bin/true c0" >/dev/null 2>&1 || true
stop_tcpdump "$T" dhcpcd.pcap

# dhcrelay -a: Option 82 with circuit-id = "rd0" (the downstream interface), no remote-id.
ip netns exec "$RLY" dhcrelay -4 -d -q -a -pf "$TMP/dhcrelay.pid" -id rd0 -iu ru0 10.77.2.1 \
	>/dev/null 2>&1 &
PIDS="$PIDS $!"
sleep 1
start_tcpdump "$SRV" s1 dhcrelay_upstream.pcap
TU=$T
start_tcpdump "$RLY" rd0 dhcrelay_downstream.pcap
TD=$T
sleep 1
ip netns exec "$RCL" timeout 20 udhcpc -i c1 -f -q -n -t 3 -T 2 -s /bin/true >/dev/null 2>&1 || true
stop_tcpdump "$TU" dhcrelay_upstream.pcap
stop_tcpdump "$TD" dhcrelay_downstream.pcap

# A dissection next to each capture, for reviewers (Kea keeps one above each packet).
for f in "$OUT"/*.pcap; do
	tcpdump -r "$f" -n -e -vv 2>/dev/null >"${f%.pcap}.txt"
done
ls -l "$OUT"/*.pcap
