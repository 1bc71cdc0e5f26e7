#!/bin/sh
# Bring the Convoy batman-adv mesh up or down (run by convoy-mesh.service; settings in
# /etc/convoy/mesh.env: MESH_IFACE, MESH_SSID, MESH_FREQ in MHz, MESH_ADDRESS as CIDR).
# NetworkManager leaves MESH_IFACE alone (/etc/NetworkManager/conf.d/90-convoy-mesh.conf).
set -eu
: "${MESH_IFACE:?}" "${MESH_SSID:?}" "${MESH_FREQ:?}" "${MESH_ADDRESS:?}"
case "${1:-}" in
  up)
    modprobe batman-adv
    ip link set "$MESH_IFACE" down
    # batman-adv adds a 32-byte header: a larger MTU on the radio keeps bat0 at 1500.
    ip link set "$MESH_IFACE" mtu 1532 2>/dev/null || true
    iw dev "$MESH_IFACE" set type ibss
    iw dev "$MESH_IFACE" set power_save off
    ip link set "$MESH_IFACE" up
    iw dev "$MESH_IFACE" ibss join "$MESH_SSID" "$MESH_FREQ"
    batctl meshif bat0 interface add "$MESH_IFACE"
    ip link set bat0 up
    ip addr replace "$MESH_ADDRESS" dev bat0
    ;;
  down)
    ip link set bat0 down 2>/dev/null || true
    batctl meshif bat0 interface del "$MESH_IFACE" 2>/dev/null || true
    iw dev "$MESH_IFACE" ibss leave 2>/dev/null || true
    ;;
  *) echo "usage: mesh.sh up|down" >&2; exit 2 ;;
esac
