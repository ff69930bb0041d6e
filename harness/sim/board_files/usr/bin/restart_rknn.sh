#!/bin/sh
# Kill and restart rknn_server (Rockchip's script does `killall rknn_server; start_rknn.sh &`).
# RKNN_LOG_LEVEL / RKNN_SERVER_LOGLEVEL in the environment set the new server's log level.
exec /usr/libexec/sim-gate rknn_server restart "${RKNN_SERVER_LOGLEVEL:-${RKNN_LOG_LEVEL:-0}}"
