#!/bin/sh
# keepalived lowers this master's priority while haproxy is down, so the VIP moves to a
# master that can still forward API traffic.
exec systemctl is-active --quiet haproxy
