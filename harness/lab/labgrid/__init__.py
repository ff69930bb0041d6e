"""Remote places through labgrid: the lab stand (``stand``), the exporter file (``exporter_yaml``), places as boards.

Imports stay lazy (nothing is imported here): labgrid and gRPC are slow to import and only lab runs need them.
"""
