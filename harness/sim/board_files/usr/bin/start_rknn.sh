#!/bin/sh
# Start rknn_server if it is not running (the real script loops it in the background).
exec /usr/libexec/sim-gate rknn_server start "${RKNN_SERVER_LOGLEVEL:-${RKNN_LOG_LEVEL:-0}}"
